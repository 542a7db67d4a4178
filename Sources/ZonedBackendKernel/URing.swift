// One io_uring instance, used by one thread at a time.
//
// Invariants:
// - The `io_uring` struct lives at one heap address for the ring's whole life (liburing and the
//   kernel's mmaps point into it): allocated in init, torn down and freed exactly once in deinit.
// - A ring is dropped only with no IO in flight. `BatchRun` reaps every SQE the kernel accepted
//   before it returns, even after a failure, because the caller's buffers must outlive the IO.
// - Who may use a ring is decided by `RingPool` (one lessee at a time); this type does not lock.

#if canImport(Glibc)
import Glibc
#endif
import CURing
import ZonedCore

final class URing: @unchecked Sendable {
    /// Submission queue size: the most IOs one batch keeps in flight on this ring.
    let entries: Int
    private let ring: UnsafeMutablePointer<io_uring>

    init(entries: Int) throws(DeviceError) {
        precondition(entries > 0 && entries <= 4096, "ring size out of range")
        ring = .allocate(capacity: 1)
        ring.initialize(to: io_uring())
        let rc = io_uring_queue_init(UInt32(entries), ring, 0)
        guard rc == 0 else {
            ring.deallocate()
            throw DeviceError(errno: -rc, .open,
                              "io_uring_queue_init(\(entries)) failed; io_uring may be disabled "
                              + "(sysctl kernel.io_uring_disabled) or blocked by a seccomp filter")
        }
        self.entries = entries
    }

    deinit {
        io_uring_queue_exit(ring)
        ring.deinitialize(count: 1)
        ring.deallocate()
    }

    /// Queues one read or write; false when the submission queue is full (the caller keeps at
    /// most `entries` IOs outstanding, so that means a bookkeeping bug upstream).
    func prepare(write: Bool, fd: Int32, address: UnsafeMutableRawPointer, length: Int,
                 offset: UInt64, tag: UInt64) -> Bool {
        guard let sqe = io_uring_get_sqe(ring) else { return false }
        if write {
            io_uring_prep_write(sqe, fd, address, UInt32(length), offset)
        } else {
            io_uring_prep_read(sqe, fd, address, UInt32(length), offset)
        }
        io_uring_sqe_set_data64(sqe, tag)
        return true
    }

    /// Hands every queued SQE to the kernel. Returns how many it took, or -errno.
    func submit() -> Int32 {
        while true {
            let rc = io_uring_submit(ring)
            if rc != -EINTR { return rc }
        }
    }

    enum Reaped {
        case completion(tag: UInt64, res: Int32)
        /// Nothing ready (only when not waiting).
        case none
        /// Waiting itself failed with this errno.
        case failed(Int32)
    }

    /// Blocks until one completion is available (when `wait`), then takes it.
    func reap(wait: Bool) -> Reaped {
        var cqe: UnsafeMutablePointer<io_uring_cqe>? = nil
        while true {
            let rc = wait ? io_uring_wait_cqe(ring, &cqe) : io_uring_peek_cqe(ring, &cqe)
            if rc == -EINTR { continue }
            if rc == -EAGAIN && !wait { return .none }
            if rc < 0 { return .failed(-rc) }
            guard let c = cqe else { return .none }
            let out = Reaped.completion(tag: io_uring_cqe_get_data64(c), res: c.pointee.res)
            io_uring_cqe_seen(ring, c)
            return out
        }
    }
}
