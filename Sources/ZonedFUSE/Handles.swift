// Open file and directory handles: the `fh` FUSE hands back with every request on an open file.
//
// Invariants:
// - A handle number is never reused while the mount runs (a 64-bit counter), so a stale `fh`
//   can only miss, never reach another file.
// - Every open file handle holds one `FileSystem.retain` of its inode, taken before the handle
//   exists and given back (`release`) after it is removed: an unlinked open file lives exactly
//   as long as some handle names it.
// - A directory handle holds a snapshot of the directory's entries, taken when reading starts at
//   offset 0, so offsets stay meaningful while the directory changes (`rm -rf` unlinks entries
//   between two readdir calls and must still see every one exactly once).

import ZonedCore
import ZonedEngine
import ZonedFS

/// One open(2) of a regular file.
struct OpenFile: Sendable {
    var inode: InodeNumber
    /// Opened with O_DIRECT: IO goes down the engine's direct path (unaligned IO falls back).
    var direct: Bool
}

/// One opendir(3): the entries as they were when reading (re)started.
struct OpenDirectory: Sendable {
    var inode: InodeNumber
    var parent: InodeNumber
    var entries: [DirectoryEntry] = []
}

final class HandleTable<Value: Sendable>: Sendable {
    private struct State {
        var next: UInt64 = 1
        var open: [UInt64: Value] = [:]
    }
    private let state = Locked(State())

    func insert(_ v: Value) -> UInt64 {
        state.withLock { s in
            let h = s.next
            s.next += 1
            s.open[h] = v
            return h
        }
    }

    func get(_ h: UInt64) -> Value? { state.withLock { $0.open[h] } }

    func update(_ h: UInt64, _ body: (inout Value) -> Void) {
        state.withLock { s in
            guard var v = s.open[h] else { return }
            body(&v)
            s.open[h] = v
        }
    }

    func remove(_ h: UInt64) -> Value? { state.withLock { $0.open.removeValue(forKey: h) } }

    var count: Int { state.withLock { $0.open.count } }
}
