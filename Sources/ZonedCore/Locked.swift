// A value that is reached only under a lock: what Synchronization.Mutex offers, on a pthread mutex.
//
// Why not Synchronization.Mutex: on Linux its contended path (a futex priority-inheritance lock
// and unlock) runs inside the Swift runtime, which is not built for ThreadSanitizer, so TSan sees
// no ordering between two holders that contended and reports a race on everything the lock
// guards. pthread_mutex_lock/unlock are intercepted by TSan: with this lock, `tools/test --tsan`
// reports only real races (and lock-order inversions, which it also checks).
//
// Invariants:
// - `value` is read and written only inside `withLock`, under `mutex`.
// - Not re-entrant: `withLock` inside `withLock` of the same instance deadlocks (as Mutex would).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public final class Locked<Value: Sendable>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
