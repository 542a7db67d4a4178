// The request loop: worker threads that read requests from the FUSE device and answer them, and
// the calling thread, which waits for the end and stops the workers.
//
// Why not libfuse's own multi-threaded loop: it stops its workers with pthread_cancel while they
// block in read(2), and a cancelled thread ends inside libc with ThreadSanitizer's ignores still
// enabled — every FUSE test under TSan failed for it. Here no thread is cancelled: each worker
// leaves its loop by itself and is joined.
//
// How the loop ends, in every case through `finish`:
// - unmount (umount(8), fusermount3 -u, `zbdfs umount`): the kernel aborts the connection, every
//   blocked read fails with ENODEV (libfuse returns 0 and marks the session exited); the first
//   worker to see it tells the waiter;
// - an ending signal (SIGINT, SIGTERM, SIGHUP): blocked in every thread of the process and taken
//   by the waiter from a signalfd, so no handler races with a worker's check of the session;
// - a read error other than EINTR/EAGAIN: the worker records it and tells the waiter.
// The waiter then marks the session exited and kicks the workers still blocked in read(2) with
// SIGUSR2 (a handler that does nothing, installed without SA_RESTART, so the read fails with
// EINTR and the worker sees the session exited). A kick can land just before a worker enters
// read(2) — after its check, before the call — and be lost, so the waiter repeats the kicks
// every few milliseconds until every worker has left; only that race ever needs a second kick.
//
// Invariants:
// - a worker runs a request to its end before it looks at the session again, so when `run`
//   returns no operation is half done;
// - the ending signals are blocked in every worker (they inherit the waiter's mask); SIGUSR2 is
//   blocked too except while the worker waits for a request, and only the waiter sends it.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CFUSE3
import ZonedCore

/// The signals that end a mount. `block()` must run before the process starts any thread, so
/// that every thread inherits them blocked and they reach only the request loop's signalfd.
public enum EndingSignals {
    public static var set: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&set, s) }
        return set
    }

    /// Blocks them in the calling thread (and every thread it starts afterwards).
    public static func block() {
        var s = set
        pthread_sigmask(SIG_BLOCK, &s, nil)
    }
}

final class RequestLoop: @unchecked Sendable {
    /// How the loop ended: `run`'s result.
    enum Outcome: Equatable {
        case unmounted
        case signal(Int32)
        case failed(errno: Int32)

        /// 0, the signal number, or a negative errno (FUSESession.serve's contract).
        var code: Int32 {
            switch self {
            case .unmounted: return 0
            case .signal(let s): return s
            case .failed(let e): return -e
            }
        }
    }

    private let session: OpaquePointer
    private let threads: Int
    /// Written once (by `finish`) to wake the waiter; never drained.
    private let ended: Int32
    private let state = ConditionLock()
    private var outcome: Outcome?
    private var running = 0

    init(session: OpaquePointer, threads: Int) throws(DeviceError) {
        self.session = session
        self.threads = max(1, threads)
        ended = eventfd(0, Int32(EFD_CLOEXEC))
        guard ended >= 0 else { throw DeviceError.lastErrno(.mount, "eventfd for the request loop") }
    }

    deinit { close(ended) }

    /// Serves until the end; returns how it ended.
    func run() -> Outcome {
        EndingSignals.block()
        Kick.install()
        var ending = EndingSignals.set
        let signals = signalfd(-1, &ending, Int32(SFD_CLOEXEC | SFD_NONBLOCK))
        defer { if signals >= 0 { close(signals) } }
        var workers: [pthread_t] = []
        for _ in 0..<threads {
            guard let t = startWorker() else { break }
            workers.append(t)
        }
        if workers.isEmpty { return .failed(errno: EAGAIN) }
        waitForEnd(signals: signals)
        fuse_session_exit(session)
        stop(workers)
        for t in workers { pthread_join(t, nil) }
        return state.withLock { outcome ?? .unmounted }
    }

    // MARK: the waiter

    /// Sleeps until a worker reports the end or an ending signal arrives.
    private func waitForEnd(signals: Int32) {
        var fds = [pollfd(fd: ended, events: Int16(POLLIN), revents: 0)]
        if signals >= 0 { fds.append(pollfd(fd: signals, events: Int16(POLLIN), revents: 0)) }
        while true {
            let n = poll(&fds, nfds_t(fds.count), -1)
            if n < 0 {
                if errno == EINTR { continue }
                finish(.failed(errno: errno))
                return
            }
            if fds[0].revents != 0 { return }
            if fds.count > 1, fds[1].revents != 0, let s = takeSignal(signals) {
                finish(.signal(s))
                return
            }
        }
    }

    private func takeSignal(_ fd: Int32) -> Int32? {
        var info = signalfd_siginfo()
        let n = withUnsafeMutableBytes(of: &info) { read(fd, $0.baseAddress, $0.count) }
        return n == MemoryLayout<signalfd_siginfo>.size ? Int32(bitPattern: info.ssi_signo) : nil
    }

    /// Kicks the workers until every one has left its loop.
    private func stop(_ workers: [pthread_t]) {
        state.withLock {
            while running > 0 {
                for t in workers { pthread_kill(t, SIGUSR2) }
                // Only a kick lost to the check-then-read race needs another (see the header).
                state.wait(nanoseconds: 5_000_000)
            }
        }
    }

    // MARK: the workers

    private func startWorker() -> pthread_t? {
        state.withLock { running += 1 }
        var t = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&t, nil, { raw in
            let loop = Unmanaged<RequestLoop>.fromOpaque(raw!).takeRetainedValue()
            loop.work()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<RequestLoop>.fromOpaque(context).release()
            state.withLock { running -= 1 }
            return nil
        }
        return t
    }

    private func work() {
        Kick.block()
        var buf = fuse_buf()
        defer {
            free(buf.mem)
            state.withLock {
                running -= 1
                state.broadcast()
            }
        }
        while fuse_session_exited(session) == 0 {
            // A kick may interrupt the wait for a request, never the request itself.
            Kick.unblock()
            let n = fuse_session_receive_buf(session, &buf)
            Kick.block()
            if n == -EINTR || n == -EAGAIN { continue }
            if n == 0 {
                finish(.unmounted)
                return
            }
            if n < 0 {
                finish(.failed(errno: -n))
                return
            }
            fuse_session_process_buf(session, &buf)
        }
    }

    /// Records the first way the loop ended and wakes the waiter.
    private func finish(_ how: Outcome) {
        let first = state.withLock { () -> Bool in
            guard outcome == nil else { return false }
            outcome = how
            return true
        }
        guard first else { return }
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(ended, $0.baseAddress, $0.count) }
    }
}

/// SIGUSR2 with a handler that does nothing: its only effect is that the worker's read(2) fails
/// with EINTR (no SA_RESTART). Workers keep it blocked while they answer a request, so it never
/// interrupts the engine's own system calls; one that arrives then waits for the next read.
private enum Kick {
    static func install() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(SIGUSR2, &action, nil)
    }

    private static var set: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGUSR2)
        return set
    }

    static func block() {
        var s = set
        pthread_sigmask(SIG_BLOCK, &s, nil)
    }

    static func unblock() {
        var s = set
        pthread_sigmask(SIG_UNBLOCK, &s, nil)
    }
}
