// One io_uring instance set up for NVMe passthrough (128-byte SQEs, 32-byte CQEs), used by one
// thread at a time.
//
// Invariants:
// - The ring is created with IORING_SETUP_SQE128 | IORING_SETUP_CQE32: Linux refuses NVMe
//   uring commands (EOPNOTSUPP) on a ring without both, because the command does not fit a
//   64-byte SQE and its 64-bit result (a zone append's LBA) does not fit a 16-byte CQE.
// - The `io_uring` struct lives at one heap address for the ring's whole life (liburing and the
//   kernel's mmaps point into it): allocated in init, torn down and freed exactly once in deinit.
// - A ring is dropped only with no command in flight: NVMeBatch reaps every SQE the kernel
//   accepted before it returns, because the caller's buffers must outlive the IO.
// - liburing steps over 128-byte SQEs and 32-byte CQEs itself (it knows the ring's flags); the
//   only bytes we place ourselves are the SQE's command area (C shim) and the CQE's extra 16
//   bytes (`big_cqe`, read at byte 16 of the CQE: its first 8 bytes are the command's result).

#if canImport(Glibc)
import Glibc
#endif
import CURing
import CZonedShim
import ZonedCore

/// Where NVMeBatch sends commands: an io_uring on the char device, or the host tests' fake.
protocol NVMeQueue: AnyObject, Sendable {
    /// The most commands in flight at once.
    var entries: Int { get }
    /// Queues one command; false when the queue is full.
    func prepare(_ command: NVMeIOCommand, tag: UInt64) -> Bool
    /// Hands the queued commands over; how many were taken, or -errno.
    func submit() -> Int32
    func reap(wait: Bool) -> NVMeReaped
}

enum NVMeReaped {
    /// `res`: -errno, 0 or the NVMe status; `result`: the command's DW0-DW1.
    case completion(tag: UInt64, res: Int32, result: UInt64)
    /// Nothing ready (only when not waiting).
    case none
    /// Waiting itself failed with this errno.
    case failed(Int32)
}

final class NVMeRing: NVMeQueue, @unchecked Sendable {
    /// Submission queue size: the most commands one batch keeps in flight on this ring.
    let entries: Int
    private let ring: UnsafeMutablePointer<io_uring>
    /// The NVMe generic char device every command goes to.
    private let fd: Int32

    init(entries: Int, fd: Int32) throws(DeviceError) {
        precondition(entries > 0 && entries <= 4096, "ring size out of range")
        ring = .allocate(capacity: 1)
        ring.initialize(to: io_uring())
        let rc = io_uring_queue_init(UInt32(entries), ring, UInt32(IORING_SETUP_SQE128 | IORING_SETUP_CQE32))
        guard rc == 0 else {
            ring.deinitialize(count: 1)
            ring.deallocate()
            throw DeviceError(errno: -rc, .open,
                              "io_uring_queue_init(\(entries), SQE128|CQE32) failed; NVMe passthrough needs "
                              + "Linux 5.19 or later with io_uring enabled (sysctl kernel.io_uring_disabled)")
        }
        self.entries = entries
        self.fd = fd
    }

    deinit {
        io_uring_queue_exit(ring)
        ring.deinitialize(count: 1)
        ring.deallocate()
    }

    /// Queues one passthrough command; false when the submission queue is full (callers keep at
    /// most `entries` outstanding, so that is a bookkeeping bug upstream).
    func prepare(_ command: NVMeIOCommand, tag: UInt64) -> Bool {
        guard let sqe = io_uring_get_sqe(ring) else { return false }
        var c = command.shim
        zbdfs_nvme_prep_io(UnsafeMutableRawPointer(sqe), fd, tag, &c)
        return true
    }

    /// Hands every queued SQE to the kernel. Returns how many it took, or -errno.
    func submit() -> Int32 {
        while true {
            let rc = io_uring_submit(ring)
            if rc != -EINTR { return rc }
        }
    }

    /// Blocks until one completion is available (when `wait`), then takes it.
    func reap(wait: Bool) -> NVMeReaped {
        var cqe: UnsafeMutablePointer<io_uring_cqe>? = nil
        while true {
            let rc = wait ? io_uring_wait_cqe(ring, &cqe) : io_uring_peek_cqe(ring, &cqe)
            if rc == -EINTR { continue }
            if rc == -EAGAIN && !wait { return .none }
            if rc < 0 { return .failed(-rc) }
            guard let c = cqe else { return .none }
            let result = UnsafeRawPointer(c).loadUnaligned(fromByteOffset: 16, as: UInt64.self)
            let out = NVMeReaped.completion(tag: io_uring_cqe_get_data64(c), res: c.pointee.res, result: result)
            io_uring_cqe_seen(ring, c)
            return out
        }
    }
}
