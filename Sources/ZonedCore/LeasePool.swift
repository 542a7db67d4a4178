// LeasePool: the lease bookkeeping shared by the backends that drive the kernel (KernelZonedDevice
// with its io_uring rings, NVMeZonedDevice with its passthrough queues). A caller leases the
// device, and optionally one pooled resource, for the length of one call, so concurrent callers
// never share a resource and never wait on each other's IO; `close()` shuts the door to new
// callers while calls in flight finish on valid descriptors.
//
// Invariants:
// - A lease begins only while the pool is open; leasing after close fails with EBADF. Every lease
//   that began ends exactly once (a `defer` in `withLease`), whether the body returns or throws.
// - A resource belongs to at most one lease at a time: it is either in `idle` or held by the
//   lease that took it. At most `idleLimit` idle resources are kept; one its lease reports broken,
//   one that would exceed the limit, and every one after close are dropped (their deinit frees them).
// - `release` (closing the device's descriptors) runs exactly once: from `close()` when no lease
//   is active, otherwise when the last lease ends after close. It runs outside the lock, because
//   closing a descriptor may block.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public final class LeasePool<Resource: Sendable>: Sendable {
    private struct State {
        var closed = false
        var active = 0
        var idle: [Resource] = []
        var released = false
    }
    private let state: Locked<State>
    private let idleLimit: Int
    private let release: @Sendable () -> Void

    /// `first` starts the idle list (made at open, so a device that cannot make one fails to
    /// open); `release` closes the device's descriptors once the pool is closed and idle.
    public init(first: Resource, idleLimit: Int, release: @escaping @Sendable () -> Void) {
        var s = State()
        s.idle.append(first)
        state = Locked(s)
        self.idleLimit = idleLimit
        self.release = release
    }

    /// Runs `body` inside a lease, holding a resource when `wanted` (an idle one, or a new one from
    /// `make`). The resource goes back to the idle list afterwards unless `body` says it is broken.
    /// `path` names the device in the EBADF error after close.
    public func withLease<R>(_ op: DeviceOperation, path: String, resource wanted: Bool,
                             make: () throws(DeviceError) -> Resource,
                             _ body: (Resource?) throws(DeviceError) -> (R, broken: Bool)) throws(DeviceError) -> R {
        // .none: closed; .some(nil): open, nothing idle (or nothing wanted).
        let taken: Resource?? = state.withLock { s -> Resource?? in
            if s.closed { return .none }
            s.active += 1
            return .some(wanted ? s.idle.popLast() : nil)
        }
        guard case .some(var resource) = taken else {
            throw DeviceError(errno: EBADF, op, "\(path) is closed")
        }
        var broken = false
        defer { endLease(resource, broken: broken) }
        if wanted && resource == nil { resource = try make() }
        let (value, resourceBroken) = try body(resource)
        broken = resourceBroken
        return value
    }

    private func endLease(_ resource: Resource?, broken: Bool) {
        let releaseNow = state.withLock { s -> Bool in
            s.active -= 1
            if let r = resource, !broken, !s.closed, s.idle.count < idleLimit { s.idle.append(r) }
            guard s.closed, s.active == 0, !s.released else { return false }
            s.released = true
            return true
        }
        if releaseNow { release() }
    }

    /// Refuses new leases and drops the idle resources; releases now if no lease is active.
    /// Idempotent.
    public func close() {
        let releaseNow = state.withLock { s -> Bool in
            guard !s.closed else { return false }
            s.closed = true
            s.idle.removeAll()
            guard s.active == 0 else { return false }
            s.released = true
            return true
        }
        if releaseNow { release() }
    }
}
