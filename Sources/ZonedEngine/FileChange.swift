// A file's layout (size and extent map) and the changes that move it, one at a time.
//
// Invariants:
// - The engine changes a file's layout only by applying a `FileChange` (`Inode.apply`), and hands
//   the same change, in the same order and under the same inode state lock, to its recorder.
//   Replaying the recorded changes on an empty layout with `FileLayout.apply` therefore gives the
//   layout the engine had: this is what makes the metadata log (ZonedFS) a faithful record.
// - A change is recorded only once the device IO it describes has completed: `.mapped` points at
//   written (or, for prealloc, claimed) space, never at space still in flight.
// - `checksums` of a `.mapped` data extent hold one CRC-32C per logical block, in order; extents
//   written in place (NOCOW/prealloc, conventional mode) and prealloc carry none.

import ZonedCore

public enum FileChange: Sendable, Equatable {
    /// Maps `extent` (replacing what was there) and grows the size to at least `sizeAtLeast`.
    case mapped(FileExtent, checksums: [UInt32], sizeAtLeast: UInt64)
    /// Sets the size; extents past it (rounded up to a block) are dropped.
    case truncated(to: UInt64)
    /// Unmaps whole blocks [at, at+length); the size does not change.
    case punched(at: UInt64, length: UInt64)
    /// Grows the size to at least `to` (fallocate past EOF).
    case extended(to: UInt64)
}

extension FileChange {
    /// The file offset the change starts at (where its neighbourhood in the map is).
    var offset: UInt64 {
        switch self {
        case .mapped(let e, _, _): return e.fileOffset
        case .truncated(let size): return size
        case .punched(let at, _): return at
        case .extended(let to): return to
        }
    }
}

/// Size plus extent map: everything about a file the engine owns.
public struct FileLayout: Sendable, Equatable {
    public var size: UInt64 = 0
    public var map: ExtentMap

    public init(zoneSize: UInt64) { map = ExtentMap(zoneSize: zoneSize) }

    /// Applies `change`; returns the device ranges that stopped being referenced.
    @discardableResult
    public mutating func apply(_ change: FileChange, block: UInt64) -> [FileExtent] {
        let freed = applyUnchecked(change, block: block)
        #if DEBUG
        // Whole maps up to a few thousand extents; past that, the changed neighbourhood.
        let near: UInt64? = map.extents.count > 4096 ? change.offset : nil
        if let p = map.problem(block: block, near: near) { preconditionFailure("extent map invariant broken by \(change): \(p)") }
        #endif
        return freed
    }

    private mutating func applyUnchecked(_ change: FileChange, block: UInt64) -> [FileExtent] {
        switch change {
        case .mapped(let e, _, let atLeast):
            let replaced = map.insert(e)
            size = max(size, atLeast)
            // Writing in place over prealloc or a NOCOW extent reuses the same device space.
            return replaced.filter { r in r.device != e.device + ByteCount(r.fileOffset - e.fileOffset) }
        case .truncated(let newSize):
            let dropped = map.truncate(to: newSize, block: block)
            size = newSize
            return dropped
        case .punched(let at, let length):
            return map.remove(at, length)
        case .extended(let to):
            size = max(size, to)
            return []
        }
    }
}

/// Receives every layout change the engine makes (the metadata log). Called with the inode's state
/// lock held: it must only buffer, never do IO or take locks that wait on the engine.
public protocol ChangeRecorder: AnyObject, Sendable {
    func record(_ inode: InodeNumber, _ change: FileChange)
}
