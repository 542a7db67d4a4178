// One file's map from file offsets to device space.
//
// Invariants:
// - Extents are sorted by file offset and never overlap; holes are simply absent.
// - Every extent is a whole number of blocks in file offset, length and device address (the
//   engine only maps block-aligned ranges; sub-block bytes live in the buffered path).
// - Inserting or removing a range returns exactly the device ranges that stopped being referenced,
//   so the caller can account them as garbage; nothing is lost or counted twice.
// - Adjacent extents that are also adjacent on the device and of the same kind are merged, so a
//   sequential file maps to as few extents as its zones allow — but never across a zone boundary:
//   one extent lies in one zone, so IO and garbage accounting never straddle zones.
// All but the third are checked by `problem(block:)`, which debug builds run after every layout
// change (`FileLayout.apply`) and the model and crash tests run on every file.

import ZonedCore

public struct FileExtent: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// Written data, copy on write, with a CRC-32C per block.
        case data
        /// Data written in place (a NOCOW file or a prealloc range, conventional mode only): no
        /// checksums, as btrfs keeps none for nodatacow (an in-place rewrite would outdate them).
        case unchecked
        /// Allocated but never written (fallocate, conventional mode): reads as zeros.
        case prealloc
    }

    public var fileOffset: UInt64
    public var length: UInt64
    public var device: DeviceOffset
    public var kind: Kind

    public init(fileOffset: UInt64, length: UInt64, device: DeviceOffset, kind: Kind = .data) {
        self.fileOffset = fileOffset
        self.length = length
        self.device = device
        self.kind = kind
    }

    public var fileEnd: UInt64 { fileOffset + length }
    /// True for extents whose bytes come from the device (prealloc reads as zeros).
    public var holdsData: Bool { kind != .prealloc }
    public var deviceEnd: DeviceOffset { device + ByteCount(length) }

    /// The part of this extent inside [start, end), with its device address moved along.
    func clipped(_ start: UInt64, _ end: UInt64) -> FileExtent? {
        let s = max(start, fileOffset), e = min(end, fileEnd)
        guard s < e else { return nil }
        return FileExtent(fileOffset: s, length: e - s, device: device + ByteCount(s - fileOffset), kind: kind)
    }

    public var description: String { "[\(fileOffset), +\(length)) → \(device)\(kind == .data ? "" : " \(kind)")" }
}

/// A piece of a lookup: either mapped space or a hole.
public enum MappedRange: Equatable, Sendable {
    case extent(FileExtent)
    case hole(fileOffset: UInt64, length: UInt64)

    public var fileOffset: UInt64 {
        switch self { case .extent(let e): return e.fileOffset; case .hole(let o, _): return o }
    }
    public var length: UInt64 {
        switch self { case .extent(let e): return e.length; case .hole(_, let l): return l }
    }
}

public struct ExtentMap: Sendable, Equatable {
    public private(set) var extents: [FileExtent] = []
    /// Extents are not merged across multiples of this (the zone size).
    public let zoneSize: UInt64

    public init(zoneSize: UInt64) {
        precondition(zoneSize > 0, "zone size must be positive")
        self.zoneSize = zoneSize
    }

    /// Index of the first extent whose end is past `offset`.
    private func firstEnding(after offset: UInt64) -> Int {
        var lo = 0, hi = extents.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if extents[mid].fileEnd <= offset { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// The mapping of [start, start+length): extents and holes, in order, covering it exactly.
    public func lookup(_ start: UInt64, _ length: UInt64) -> [MappedRange] {
        let end = start + length
        var out: [MappedRange] = []
        var at = start
        var i = firstEnding(after: start)
        while at < end {
            if i < extents.count, extents[i].fileOffset < end {
                let e = extents[i]
                if e.fileOffset > at { out.append(.hole(fileOffset: at, length: e.fileOffset - at)); at = e.fileOffset }
                let c = e.clipped(at, end)!
                out.append(.extent(c))
                at = c.fileEnd
                i += 1
            } else {
                out.append(.hole(fileOffset: at, length: end - at))
                at = end
            }
        }
        return out
    }

    /// Removes [start, start+length) from the map; returns the device ranges no longer referenced.
    @discardableResult
    public mutating func remove(_ start: UInt64, _ length: UInt64) -> [FileExtent] {
        guard length > 0 else { return [] }
        let end = start + length
        var removed: [FileExtent] = []
        var i = firstEnding(after: start)
        var replacement: [FileExtent] = []
        let first = i
        while i < extents.count, extents[i].fileOffset < end {
            let e = extents[i]
            if let left = e.clipped(e.fileOffset, start) { replacement.append(left) }
            if let mid = e.clipped(start, end) { removed.append(mid) }
            if let right = e.clipped(end, e.fileEnd) { replacement.append(right) }
            i += 1
        }
        extents.replaceSubrange(first..<i, with: replacement)
        return removed
    }

    /// Maps `e`, replacing whatever was mapped there; returns the replaced device ranges.
    @discardableResult
    public mutating func insert(_ e: FileExtent) -> [FileExtent] {
        precondition(e.length > 0, "empty extent")
        let replaced = remove(e.fileOffset, e.length)
        let i = firstEnding(after: e.fileOffset)
        extents.insert(e, at: i)
        mergeAround(i)
        return replaced
    }

    /// Drops everything at or past `size` (rounded up to `block`); returns the dropped ranges.
    @discardableResult
    public mutating func truncate(to size: UInt64, block: UInt64) -> [FileExtent] {
        let keep = (size + block - 1) / block * block
        guard let last = extents.last, last.fileEnd > keep else { return [] }
        return remove(keep, last.fileEnd - keep)
    }

    private mutating func mergeAround(_ i: Int) {
        var j = i
        if j > 0, mergeable(extents[j - 1], extents[j]) {
            extents[j - 1].length += extents[j].length
            extents.remove(at: j)
            j -= 1
        }
        if j + 1 < extents.count, mergeable(extents[j], extents[j + 1]) {
            extents[j].length += extents[j + 1].length
            extents.remove(at: j + 1)
        }
    }

    private func mergeable(_ a: FileExtent, _ b: FileExtent) -> Bool {
        a.fileEnd == b.fileOffset && a.deviceEnd == b.device && a.kind == b.kind && b.device.bytes % zoneSize != 0
    }

    /// The first broken invariant (blocks of `block` bytes), or nil. `near`: only the extents
    /// around that file offset (a change's neighbourhood), for maps too big to check whole at
    /// every change.
    public func problem(block: UInt64, near offset: UInt64? = nil) -> String? {
        var range = extents.indices
        if let offset {
            let i = firstEnding(after: offset)
            range = max(0, i - 2)..<min(extents.count, i + 3)
        }
        for i in range {
            let e = extents[i]
            if e.length == 0 { return "extent \(e) is empty" }
            if e.fileOffset % block != 0 || e.length % block != 0 || e.device.bytes % block != 0 {
                return "extent \(e) is not made of whole \(block)-byte blocks"
            }
            if e.device.bytes / zoneSize != (e.deviceEnd.bytes - 1) / zoneSize { return "extent \(e) crosses a zone boundary" }
            guard i + 1 < extents.count else { continue }
            let next = extents[i + 1]
            if e.fileEnd > next.fileOffset { return "extents \(e) and \(next) overlap or are out of order" }
            if mergeable(e, next) { return "extents \(e) and \(next) should have been merged" }
        }
        return nil
    }

    /// Bytes mapped (data and prealloc).
    public var mappedBytes: UInt64 { extents.reduce(0) { $0 + $1.length } }
}
