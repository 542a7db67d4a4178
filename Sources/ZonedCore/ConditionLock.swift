// A mutex with a condition variable, for the few places that must park a thread until state
// changes (a writer waiting for a zone finish, a range lock, an ordered extent).
//
// Invariants: `wait()` is only called inside `withLock`; waiters re-check their predicate after
// waking (spurious wake-ups are allowed by POSIX). `broadcast()` is used instead of `signal()`
// because waiters wait for different predicates on the same condition. A lock with a rank takes
// its place in the stack's lock order (LockOrder.swift), checked in debug builds. Timed waits
// measure CLOCK_MONOTONIC (on Linux the condition is made with it), so a wall-clock jump never
// stretches or cuts them short; they are for background threads' timers, never for engine
// decisions.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public final class ConditionLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Place in the lock order; nil = not checked (backends, tests).
    public let rank: LockRank?

    public init(rank: LockRank? = nil) {
        self.rank = rank
        pthread_mutex_init(mutex, nil)
        #if os(Linux)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
        #else
        pthread_cond_init(cond, nil)
        #endif
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    public func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        LockOrder.willTake(rank)
        pthread_mutex_lock(mutex)
        LockOrder.took(rank)
        defer {
            LockOrder.gave(rank)
            pthread_mutex_unlock(mutex)
        }
        return try body()
    }

    /// Runs `body` under the lock if it is free now; nil, without running it, when another thread
    /// holds it (NOWAIT paths).
    public func withLockIfFree<T>(_ body: () -> T) -> T? {
        LockOrder.willTake(rank)
        guard pthread_mutex_trylock(mutex) == 0 else { return nil }
        LockOrder.took(rank)
        defer {
            LockOrder.gave(rank)
            pthread_mutex_unlock(mutex)
        }
        return body()
    }

    /// Releases the lock, sleeps until a broadcast, and takes the lock again. Call inside `withLock`.
    public func wait() { pthread_cond_wait(cond, mutex) }

    /// Like `wait()`, but gives up after `nanoseconds`; returns false when the time ran out.
    @discardableResult
    public func wait(nanoseconds: UInt64) -> Bool {
        #if os(Linux)
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let end = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec) + nanoseconds
        var deadline = timespec(tv_sec: Int(end / 1_000_000_000), tv_nsec: Int(end % 1_000_000_000))
        return pthread_cond_timedwait(cond, mutex, &deadline) != ETIMEDOUT
        #else
        var relative = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        return pthread_cond_timedwait_relative_np(cond, mutex, &relative) != ETIMEDOUT
        #endif
    }

    public func broadcast() { pthread_cond_broadcast(cond) }
}
