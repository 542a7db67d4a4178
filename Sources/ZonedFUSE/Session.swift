// One FUSE mount: the libfuse session, its mount point, the request loop and the way out.
//
// Lifetime, in order: `init` (session + signal handlers: SIGINT, SIGTERM and SIGHUP end the loop,
// SIGPIPE is ignored) → `mount` (the kernel mount exists; requests queue until the loop runs) →
// `serve` (worker threads answer requests until the file system is unmounted — umount(8),
// fusermount3 -u, `zbdfs umount` — or a signal arrives) → `close` (the kernel mount goes, if a
// signal ended the loop, then the session). The caller flushes the file system after `close`:
// by then no request is running and none can arrive.
//
// Invariants:
// - the workers run a request to its end before they stop (no thread is cancelled), so after
//   `serve` returns no operation is half done.
// - The adapter outlives the session (the session's userdata points at it, unretained).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CFUSE3
import ZonedCore

public struct FUSEError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public final class FUSESession {
    public let adapter: FUSEAdapter
    private var session: OpaquePointer?
    private var mounted = false

    /// Creates the session; libfuse checks the options (it prints what it refuses on stderr).
    public init(adapter: FUSEAdapter, options: FUSEMountOptions, fsname: String) throws(FUSEError) {
        self.adapter = adapter
        var ops = FUSEAdapter.operations()
        let argv = options.fuseArguments(fsname: fsname).map { strdup($0) }
        defer { argv.forEach { free($0) } }
        var cargs: [UnsafeMutablePointer<CChar>?] = argv + [nil]
        let userdata = Unmanaged.passUnretained(adapter).toOpaque()
        session = cargs.withUnsafeMutableBufferPointer { p in
            var args = fuse_args(argc: Int32(argv.count), argv: p.baseAddress, allocated: 0)
            defer { fuse_opt_free_args(&args) }
            return fuse_session_new(&args, &ops, MemoryLayout<fuse_lowlevel_ops>.size, userdata)
        }
        guard let session else { throw FUSEError("libfuse refused the session (options: \(options.passThrough.joined(separator: ",")))") }
        guard fuse_set_signal_handlers(session) == 0 else {
            fuse_session_destroy(session)
            self.session = nil
            throw FUSEError("cannot install the signal handlers")
        }
    }

    /// Mounts at `mountPoint` (an existing directory).
    public func mount(at mountPoint: String) throws(FUSEError) {
        guard let session else { throw FUSEError("the session is closed") }
        guard fuse_session_mount(session, mountPoint) == 0 else {
            throw FUSEError("cannot mount at \(mountPoint) (see the message above); check that it is an empty directory you may mount on and that /dev/fuse exists")
        }
        mounted = true
    }

    /// Answers requests on `threads` workers until unmounted or signalled (RequestLoop.swift).
    /// Returns 0, a negative errno, or the signal that ended it. The ending signals are blocked
    /// in the calling thread; threads started earlier must have them blocked too
    /// (`EndingSignals.block()` first thing), or a signal may reach one of them and be lost.
    public func serve(threads: Int = 8) -> Int32 {
        guard let session else { return -EBADF }
        do {
            return try RequestLoop(session: session, threads: threads).run().code
        } catch {
            return -error.errno
        }
    }

    /// Unmounts (when a signal ended the loop, the mount is still there) and ends the session.
    public func close() {
        guard let session else { return }
        fuse_remove_signal_handlers(session)
        if mounted { fuse_session_unmount(session) }
        fuse_session_destroy(session)
        self.session = nil
    }

    deinit { close() }
}

/// What `zbdfs umount` asks of a running mount.
public enum FUSEControl {
    /// Flushes everything the mount at `mountPoint` holds (buffered data and the metadata log);
    /// the error says what failed. Only a zbdfs mount answers; others give ENOTTY.
    public static func sync(mountPoint: String) throws(DeviceError) {
        let fd = open(mountPoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw DeviceError.lastErrno(.flush, "cannot open \(mountPoint)") }
        defer { Glibc.close(fd) }
        while zbdfs_ioctl_none(fd, zbdfs_fuse_sync_request()) != 0 {
            if currentErrno() != EINTR { throw DeviceError.lastErrno(.flush, "flush of the mount at \(mountPoint)") }
        }
    }
}
