// A mutex with a condition variable, for the few places that must park a thread until state
// changes (a writer waiting for a zone finish, a range lock, an ordered extent).
//
// Invariants: `wait()` is only called inside `withLock`; waiters re-check their predicate after
// waking (spurious wake-ups are allowed by POSIX). `broadcast()` is used instead of `signal()`
// because waiters wait for different predicates on the same condition. A lock with a rank takes
// its place in the stack's lock order (LockOrder.swift), checked in debug builds.

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
        pthread_cond_init(cond, nil)
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

    public func broadcast() { pthread_cond_broadcast(cond) }
}
