// The engine's locks. Their order, with every other lock of the stack, is written once in
// ZonedCore/LockOrder.swift and checked in debug builds; the engine's part of it:
//   inode lock (ReadWriteLock, rank .inode: shared or exclusive, writer-preferring)
//   → file range lock (RangeLock, rank .range) — released before write IO, as the seed does once
//     it created the ordered extent; the ordered extent then stands for the range
//   → the inode's state lock (`Inode.state`, rank .inodeState: short sections, never held across
//     IO or waits other than its own condition)
//   → allocator internals (zone sequencer, then the allocator's lock)
// and one leaf beside the last two: the page cache account (DirtyFiles, rank .leaf), taken
// inside a state lock, taking nothing. A thread holds at most one inode lock: a buffered writer
// that must write back other files to make room in the page cache does so before it takes its own.
// Waiting for an ordered extent happens with no range lock held (the seed unlocks the range and
// then waits), so the writer that owns the ordered extent can always finish it.

import ZonedCore

/// Locks on byte ranges of one file (the seed's extent io tree locks). Ranges are half-open.
/// Invariant: held ranges never overlap; `waits` counts lock calls that had to wait.
public final class RangeLock: @unchecked Sendable {
    private let cond = ConditionLock()
    private var held: [(start: UInt64, end: UInt64)] = []
    private var waitCount: UInt64 = 0

    public init() {}

    private func overlaps(_ s: UInt64, _ e: UInt64) -> Bool { held.contains { $0.start < e && s < $0.end } }

    /// Locks [start, end); with `nowait`, returns false instead of waiting for an overlapping holder.
    public func lock(_ start: UInt64, _ end: UInt64, nowait: Bool = false) -> Bool {
        precondition(start < end, "empty range [\(start), \(end))")
        LockOrder.willTake(.range)
        let got = cond.withLock { () -> Bool in
            if overlaps(start, end) {
                if nowait { return false }
                waitCount += 1
                while overlaps(start, end) { cond.wait() }
            }
            held.append((start, end))
            return true
        }
        if got { LockOrder.took(.range) }
        return got
    }

    public func unlock(_ start: UInt64, _ end: UInt64) {
        cond.withLock {
            let i = held.firstIndex { $0.start == start && $0.end == end }
            precondition(i != nil, "unlocking a range that is not locked")
            held.remove(at: i!)
            cond.broadcast()
        }
        LockOrder.gave(.range)
    }

    public var isLocked: Bool { cond.withLock { !held.isEmpty } }
    /// Lock calls that had to wait so far.
    public var waits: UInt64 { cond.withLock { waitCount } }
}
