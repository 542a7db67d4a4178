// Locks that ThreadSanitizer understands: `Lock` (a critical section over a pthread mutex) and
// `Locked` (a value that is reached only under one), in place of Synchronization.Mutex.
//
// Why not Synchronization.Mutex: on Linux its contended path (a futex priority-inheritance lock
// and unlock) runs inside the Swift runtime, which is not built for ThreadSanitizer, so TSan sees
// no ordering between two holders that contended and reports a race on everything the lock
// guards. pthread_mutex_lock/unlock are intercepted by TSan: with these locks `tools/test --tsan`
// reports only real races (and lock-order inversions, which it also checks).
//
// Why `Lock` and not `Locked<Void>`: a lock that guards no value of its own (it orders IOs) must
// not pass a zero-sized value `inout`. Such a value has no storage of its own, so the exclusivity
// access TSan records for it can sit at the address of a neighbouring object, and two threads
// holding two different locks were reported as racing there.
//
// Invariants:
// - `Locked.value` is read and written only inside `withLock`, under its `Lock`.
// - Not re-entrant: `withLock` inside `withLock` of the same lock deadlocks (as Mutex would).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public final class Lock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    public init() { pthread_mutex_init(mutex, nil) }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// For the one caller that holds many locks at once (a device image taken with every zone
    /// locked): `withLock` is the rule everywhere else. Every `lock()` is paired with `unlock()`
    /// on the same thread.
    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }
}

public final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = Lock()
    private var value: Value

    public init(_ value: Value) { self.value = value }

    public func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        try lock.withLock { () throws(E) -> R in try body(&value) }
    }
}
