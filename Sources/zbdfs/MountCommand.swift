// `zbdfs mount DEVICE MOUNTPOINT`: the file system through FUSE; `zbdfs umount MOUNTPOINT`.
//
// Without --foreground the command does not fork (a Swift process must not fork after starting
// threads): it spawns itself with --foreground as a detached child (a new session, stdin and
// stdout on /dev/null, stderr on a pipe) and waits. The child mounts and then writes the ready
// line on that pipe; anything else it writes there before (its error, libfuse's complaint) is
// the parent's to print. Ready: the parent exits 0 and the child serves on, logging to syslog.
// The pipe closing without the ready line: the child failed; the parent prints what it said and
// exits with the child's status.
//
// The daemon ends when the mount goes (umount(8), fusermount3 -u, `zbdfs umount`) or on SIGTERM,
// SIGINT or SIGHUP; either way it unmounts, flushes everything and closes the device, which
// releases its claim. `zbdfs umount` flushes first (an ioctl the mount answers with the flush's
// outcome, so a failure is reported while the data is still there), unmounts, then waits until
// the daemon has released the device, so a remount or fsck right after it finds it free.

import ArgumentParser
import Foundation
import ZonedBackendFile
import ZonedCore
import ZonedFS
import ZonedFUSE
import ZonedMonitor

struct Mount: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mount a zbdfs file system through FUSE.",
        discussion: """
        Returns once the mount is ready; a background process serves it until `zbdfs umount`,
        umount(8) or `fusermount3 -u`, or SIGTERM/SIGINT, which flush everything and unmount.
        The device is opened exclusively: a second mount or a format of a mounted device fails
        and names the mount. Options (-o, comma-separated, repeatable): ro, rw, noappend (write
        at the write pointer even when the device has zone append), append (the default),
        commit=SECONDS (every SECONDS, if anything changed, write back all buffered data and
        commit the metadata log durably, so a crash loses at most that much work nobody
        fsync'd; default 5 as on ext4, 0 turns it off, at most 3600; sync(1) does not reach a
        FUSE mount, so this is what bounds the loss), cache=SIZE (how much of the on-device
        metadata index stays in memory, 128M by default, 1M to 1T), allow_other
        (other users may enter; off by default), allow_root, auto_unmount, debug (implies a
        FUSE request trace on stderr with --foreground), max_read=N, and the generic flags
        nosuid, nodev, noexec, noatime, sync, dirsync. Permissions are checked by the kernel
        (default_permissions); new files belong to the calling user. In conventional mode the
        zone size comes from the file system's superblock (--zone-size is not needed).

        Files opened with O_DIRECT go down the engine's direct path; FUSE does not enforce
        alignment, so unaligned O_DIRECT requests take the buffered fallback. Examples:
          zbdfs mount dev.zimg /mnt/zb
          zbdfs mount dev.zimg /mnt/zb -o ro,allow_other
          zbdfs mount dev.zimg /mnt/zb --foreground
          zbdfs mount dev.zimg /mnt/zb --metrics 127.0.0.1:9464

        While mounted, `zbdfs df|zones|zonemap|top MOUNTPOINT` show live figures and
        `zbdfs reclaim MOUNTPOINT` runs a reclaim pass; they talk to the mount through the
        hidden control file MOUNTPOINT/.zbdfs-control (never listed, never on the device).
        """
    )

    @OptionGroup var target: DeviceOptions

    @Argument(help: ArgumentHelp("The directory to mount on.", valueName: "mountpoint"))
    var mountpoint: String

    @Flag(name: [.customShort("f"), .long], help: "Stay attached and log to stderr until unmounted.")
    var foreground = false

    @Option(name: .customShort("o"), help: ArgumentHelp("Mount options, comma-separated (see above).", valueName: "options"))
    var options: [String] = []

    @Option(help: ArgumentHelp("Serve Prometheus metrics at http://ADDRESS:PORT/metrics (IPv4, e.g. 127.0.0.1:9464).", valueName: "address:port"))
    var metrics: String?

    @Flag(help: "Serve the per-zone metrics series (zbdfs_zone_...) whatever the zone count; by default they are served up to 1,024 zones only (the aggregates always).")
    var metricsPerZone = false

    @Flag(help: .private)
    var daemonChild = false

    static let readyLine = "zbdfs-mount-ready"

    func validate() throws {
        guard PathKind.isDirectory(mountpoint) else {
            throw ValidationError("\(mountpoint) is not a directory; create it with `mkdir -p \(mountpoint)` or give the directory to mount on.")
        }
        do { _ = try FUSEMountOptions(parsing: options) } catch { throw ValidationError(error.message) }
        if let m = metrics, Mount.endpoint(m) == nil {
            throw ValidationError("--metrics \(m): give ADDRESS:PORT with an IPv4 address and a port, e.g. 127.0.0.1:9464")
        }
        if metricsPerZone && metrics == nil {
            throw ValidationError("--metrics-per-zone shapes the metrics endpoint; give --metrics ADDRESS:PORT too, e.g. --metrics 127.0.0.1:9464")
        }
    }

    /// "ADDRESS:PORT" split, or nil when it is not that shape.
    static func endpoint(_ s: String) -> (address: String, port: UInt16)? {
        guard let colon = s.lastIndex(of: ":"), let port = UInt16(s[s.index(after: colon)...]) else { return nil }
        let address = String(s[..<colon])
        let parts = address.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts.allSatisfy({ UInt8($0) != nil }) else { return nil }
        return (address, port)
    }

    func run() throws {
        let opts = try FUSEMountOptions(parsing: options)
        if let m = target.mountOfDevice() {
            throw CLIError.runtime("\(target.absolutePath) is already mounted at \(m.mountPoint); unmount it first with `zbdfs umount \(m.mountPoint)`, or use that mount.")
        }
        guard FileManager.default.fileExists(atPath: "/dev/fuse") else {
            throw CLIError.runtime("/dev/fuse is missing: load the fuse kernel module (`modprobe fuse`) or install fuse3.")
        }
        if !daemonChild { warnIfDataIsDiscarded() }
        if foreground || daemonChild {
            try serve(opts)
        } else {
            try Daemon.start(arguments: childArguments())
        }
    }

    /// A discard-data image keeps no file contents: say so before the mount is used for anything
    /// else than scale and speed work. Said by the process the user started (a daemon's stderr is
    /// its log), and before mounting, so the warning comes even when the mount fails.
    func warnIfDataIsDiscarded() {
        guard let dev = try? target.open(exclusive: false) else { return }  // mounting names the error
        defer { dev.close() }
        if (dev as? EmulatedZonedDevice)?.discardsData == true {
            FileHandle.standardError.write(Data("zbdfs: warning: \(target.device) is a discard-data image: only blocks that are not all zeros are stored, in a record area that never shrinks; use it for scale and speed work, not for files you need\n".utf8))
        }
    }

    /// The child's command line: this one with absolute paths and the daemon flag.
    func childArguments() -> [String] {
        var args = ["mount", target.absolutePath, PathKind.absolute(mountpoint), "--daemon-child",
                    "--backend", target.backend.rawValue]
        if let zoneSize = target.zoneSize { args += ["--zone-size", zoneSize] }
        for o in options { args += ["-o", o] }
        if let metrics { args += ["--metrics", metrics] }
        if metricsPerZone { args.append("--metrics-per-zone") }
        return args
    }

    /// Mounts and serves until unmounted or signalled, then flushes and closes the device.
    func serve(_ opts: FUSEMountOptions) throws {
        let device = target.absolutePath, mnt = PathKind.absolute(mountpoint)
        let log = daemonChild ? Daemon.syslogLog() : FUSELog { line in FileHandle.standardError.write(Data("zbdfs: \(line)\n".utf8)) }
        // The signals that end the mount reach only the request loop's signalfd: blocked here,
        // before the file system starts its threads (background reclaim, the flusher), they stay
        // blocked in every thread. One that arrives before the loop runs waits for it.
        EndingSignals.block()
        let fs = try openFileSystem(opts, log: log)
        let session: FUSESession
        do {
            let control = MountService.controlFile(fs: fs, device: device, mountPoint: mnt, log: log)
            session = try FUSESession(adapter: FUSEAdapter(fs: fs, log: log, control: control), options: opts, fsname: device)
            try session.mount(at: mnt)
        } catch {
            try? fs.unmount()
            throw CLIError.runtime("cannot mount \(device) at \(mnt): \(error.message)")
        }
        let exporter: MetricsServer?
        do { exporter = try startMetrics(fs: fs, device: device, mountPoint: mnt, log: log) } catch {
            session.close()
            try? fs.unmount()
            throw error
        }
        defer { exporter?.stop() }
        let mode = (opts.readOnly ? "read-only" : "read-write") + (fs.engine.allocator.usesZoneAppend ? ", zone append" : "")
        if daemonChild {
            Daemon.announceReady()
        }
        log.write("\(device) mounted at \(mnt) (\(fs.device.kind.rawValue), \(mode))")
        let ended = session.serve()
        session.close()
        if ended > 0 { log.write("signal \(ended): unmounting \(mnt)") }
        if ended < 0 { log.write("the request loop stopped: \(DeviceError(errno: -ended, .mount))") }
        do {
            try fs.unmount()
        } catch {
            log.write("flushing \(device) failed: \(error); what was not flushed is lost, run `zbdfs fsck \(device)`")
            throw CLIError.runtime("flushing \(device) after unmounting \(mnt) failed: \(error)")
        }
        let st = fs.engine.stats
        log.write("\(device) unmounted from \(mnt), everything flushed; written \(ByteCount(st.userBytesWritten)), of it \(ByteCount(st.bufferedBytesCached)) through the page cache; \(st.bufferedFallbacks) unaligned O_DIRECT writes took the buffered fallback")
    }

    /// The Prometheus endpoint, when --metrics asks for one.
    func startMetrics(fs: FileSystem, device: String, mountPoint: String, log: FUSELog) throws -> MetricsServer? {
        guard let m = metrics, let (address, port) = Mount.endpoint(m) else { return nil }
        let figures = FileSystemMetrics(perZone: metricsPerZone ? .always : .automatic) { try FileSystemStatus.live(fs, path: device, mountPoint: mountPoint) }
        do {
            let server = try MetricsServer(address: address, port: port) { figures.render() }
            server.start()
            log.write("Prometheus metrics at http://\(address):\(server.port)/metrics")
            return server
        } catch {
            throw CLIError.runtime("cannot serve metrics at \(m): \(error)")
        }
    }

    func openFileSystem(_ opts: FUSEMountOptions, log: FUSELog) throws -> FileSystem {
        // Conventional mode: opening takes the zone size from the superblock (DeviceOpening.swift),
        // so fstab lines need no option.
        let dev = try target.open()
        do {
            var options = MountOptions(readOnly: opts.readOnly, commitInterval: .seconds(opts.commitSeconds))
            options.engine.zoneAppend = opts.zoneAppend
            options.cacheSize = ByteCount(opts.cacheBytes)
            options.errorLog = { log.write($0) }
            return try FileSystem.mount(device: dev, options: options)
        } catch {
            dev.close()
            let fix = error.errno == EINVAL || error.errno == EUCLEAN
                ? "Check that it was formatted with `zbdfs format`\(dev.kind == .conventional ? " with the same --zone-size" : ""), or run `zbdfs fsck \(target.device)`."
                : "Check `zbdfs zones \(target.device)`."
            throw CLIError.runtime("cannot mount \(target.device): \(error). \(fix)")
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP, held back from threads that cannot act on them.
struct Umount: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Flush and unmount a zbdfs mount.",
        discussion: """
        Flushes everything (buffered data and metadata) and reports a failure while the data is
        still there, then unmounts and waits until the mount's process has released the device.
        A mount whose process was killed is unmounted too (what it had not flushed is lost).
        """
    )

    @Argument(help: ArgumentHelp("The mount point.", valueName: "mountpoint"))
    var mountpoint: String

    @Option(help: "Seconds to wait for the mount's process to release the device.")
    var timeout: Double = 60

    func run() throws {
        let mnt = PathKind.absolute(mountpoint)
        guard let m = MountTable.mount(at: mnt) else {
            throw CLIError.usage("\(mnt) is not a mount point; `grep zbdfs /proc/self/mounts` lists the zbdfs mounts.")
        }
        guard m.isZBDFS else {
            throw CLIError.usage("\(mnt) is a \(m.fileSystemType) mount, not zbdfs; unmount it with umount(8).")
        }
        try flush(m)
        try Unmounting.unmount(mnt)
        if !Unmounting.waitForRelease(of: m.source, seconds: timeout) {
            throw CLIError.runtime("unmounted \(mnt), but \(m.source) is still held after \(Int(timeout)) s: the mount's process is still flushing or stuck; check `ps ax | grep 'zbdfs mount'`.")
        }
    }

    /// Asks the mount to flush; a mount whose process is gone has nothing left to flush.
    func flush(_ m: MountEntry) throws {
        do {
            try FUSEControl.sync(mountPoint: m.mountPoint)
        } catch where error.errno == ENOTCONN {
            FileHandle.standardError.write(Data("zbdfs: the process serving \(m.mountPoint) is gone; unmounting (what it had not flushed is lost)\n".utf8))
        } catch {
            throw CLIError.runtime("flushing \(m.mountPoint) failed: \(error). It stays mounted and nothing is lost yet; check `zbdfs zones \(m.source)`, or force with `fusermount3 -u \(m.mountPoint)` (unflushed data is then lost).")
        }
    }
}
