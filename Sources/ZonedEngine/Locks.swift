// The engine's locks, in the order they are taken (never the other way round):
//   1. inode lock (InodeLock: shared or exclusive)
//   2. file range lock (RangeLock) — released before device IO, as the seed does after it
//      created the ordered extent; the ordered extent then stands for the range
//   3. the inode's state lock (`Inode.state`, short critical sections, never held across IO or waits
//      other than its own condition)
//   4. allocator internals (ZoneAllocator's lock and per-zone sequencers)
// and one leaf beside 3 and 4: the page cache account (DirtyFiles), taken inside a state lock,
// taking nothing. A thread holds at most one inode lock: a buffered writer that must write back
// other files to make room in the page cache does so before it takes its own.
// Waiting for an ordered extent happens with no range lock held (the seed unlocks the range and
// then waits), so the writer that owns the ordered extent can always finish it.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ZonedCore

/// A reader-writer lock for an inode (the seed's BTRFS_ILOCK / BTRFS_ILOCK_SHARED).
public final class InodeLock: @unchecked Sendable {
    public enum Mode: Sendable { case shared, exclusive }
    private let rw = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)

    public init() { pthread_rwlock_init(rw, nil) }
    deinit {
        pthread_rwlock_destroy(rw)
        rw.deallocate()
    }

    /// Takes the lock; with `nowait`, returns false instead of blocking.
    public func lock(_ mode: Mode, nowait: Bool = false) -> Bool {
        switch (mode, nowait) {
        case (.shared, false): pthread_rwlock_rdlock(rw); return true
        case (.exclusive, false): pthread_rwlock_wrlock(rw); return true
        case (.shared, true): return pthread_rwlock_tryrdlock(rw) == 0
        case (.exclusive, true): return pthread_rwlock_trywrlock(rw) == 0
        }
    }

    public func unlock() { pthread_rwlock_unlock(rw) }
}

/// Locks on byte ranges of one file (the seed's extent io tree locks). Ranges are half-open.
public final class RangeLock: @unchecked Sendable {
    private let cond = ConditionLock()
    private var held: [(start: UInt64, end: UInt64)] = []

    public init() {}

    private func overlaps(_ s: UInt64, _ e: UInt64) -> Bool { held.contains { $0.start < e && s < $0.end } }

    /// Locks [start, end); with `nowait`, returns false instead of waiting for an overlapping holder.
    public func lock(_ start: UInt64, _ end: UInt64, nowait: Bool = false) -> Bool {
        cond.withLock {
            while overlaps(start, end) {
                if nowait { return false }
                cond.wait()
            }
            held.append((start, end))
            return true
        }
    }

    public func unlock(_ start: UInt64, _ end: UInt64) {
        cond.withLock {
            let i = held.firstIndex { $0.start == start && $0.end == end }
            precondition(i != nil, "unlocking a range that is not locked")
            held.remove(at: i!)
            cond.broadcast()
        }
    }

    public var isLocked: Bool { cond.withLock { !held.isEmpty } }
}
