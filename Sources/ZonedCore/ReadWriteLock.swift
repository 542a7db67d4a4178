// A shared/exclusive lock that prefers writers: once a thread waits for the exclusive lock, new
// shared lockers wait behind it. The file system lock needs this (a checkpoint takes it
// exclusively and every fsync waits for the checkpoint; glibc's default rwlock prefers readers,
// so under steady load the checkpoint could wait forever), and so do inode locks (an extending
// writer must not starve behind a stream of writes inside EOF).
//
// Invariants:
// - `writer` excludes `readers > 0`; `writersWaiting` counts threads blocked in an exclusive lock.
// - A shared locker never passes a waiting writer, so a writer waits at most for the readers
//   that held the lock when it arrived.
// - Not recursive: a thread holding it shared must not take it again (with a writer waiting, it
//   would wait for itself). The lock order check (debug builds) traps on that.
// - `waits` counts lock calls that had to block (contention, and the event tests wait for).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public final class ReadWriteLock: @unchecked Sendable {
    public enum Mode: Sendable { case shared, exclusive }
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var readers = 0
    private var writer = false
    private var writersWaiting = 0
    private var waitCount: UInt64 = 0
    public let rank: LockRank?

    public init(rank: LockRank? = nil) {
        self.rank = rank
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    /// Takes the lock; with `nowait`, returns false instead of blocking.
    public func lock(_ mode: Mode, nowait: Bool = false) -> Bool {
        LockOrder.willTake(rank)
        pthread_mutex_lock(mutex)
        let got: Bool
        switch mode {
        case .shared: got = lockShared(nowait)
        case .exclusive: got = lockExclusive(nowait)
        }
        pthread_mutex_unlock(mutex)
        if got { LockOrder.took(rank) }
        return got
    }

    private func lockShared(_ nowait: Bool) -> Bool {
        if writer || writersWaiting > 0 {
            if nowait { return false }
            waitCount += 1
            while writer || writersWaiting > 0 { pthread_cond_wait(cond, mutex) }
        }
        readers += 1
        return true
    }

    private func lockExclusive(_ nowait: Bool) -> Bool {
        if writer || readers > 0 {
            if nowait { return false }
            waitCount += 1
            writersWaiting += 1
            while writer || readers > 0 { pthread_cond_wait(cond, mutex) }
            writersWaiting -= 1
        }
        writer = true
        return true
    }

    /// Gives back the lock, whichever mode it was taken in.
    public func unlock() {
        pthread_mutex_lock(mutex)
        if writer {
            writer = false
        } else {
            precondition(readers > 0, "unlocking a ReadWriteLock that is not held")
            readers -= 1
        }
        let wake = readers == 0
        pthread_mutex_unlock(mutex)
        if wake { pthread_cond_broadcast(cond) }
        LockOrder.gave(rank)
    }

    /// Lock calls that had to block so far.
    public var waits: UInt64 {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return waitCount
    }

    /// Threads blocked waiting for the exclusive lock now.
    public var waitingWriters: Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return writersWaiting
    }
}
