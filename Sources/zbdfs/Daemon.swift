// Starting the mount process in the background, and taking a mount down.
//
// Invariants:
// - The daemon is a fresh process image (posix_spawn of /proc/self/exe), never a fork of this
//   one: a forked Swift process may hold locks of threads that do not exist in the child.
// - The child starts in its own session with default handlers for SIGINT, SIGTERM and SIGHUP and
//   no blocked signals, whatever the caller had, so the signals that end a mount always reach it.
// - The child inherits stdin, stdout and stderr only (/dev/null, /dev/null, the pipe).
// - The parent holds no descriptor of the child's pipe but the read end, so "the pipe closed"
//   means "the child exited or announced readiness and closed its stderr".

import Foundation
import ZonedBackendFile
import ZonedCore
import ZonedFUSE

enum Daemon {
    /// POSIX_SPAWN_SETSID (glibc 2.26+; a GNU extension the Glibc module does not export).
    static let spawnSetSID: Int32 = 0x80

    /// Spawns `zbdfs ARGUMENTS` detached; returns once it is mounted. If it fails, prints what
    /// it said and exits with its status.
    static func start(arguments: [String]) throws {
        let exe = selfExecutable()
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw CLIError.runtime("cannot create a pipe: \(DeviceError.lastErrno(.open))") }
        // Close-on-exec, so only the dup2 onto the child's stderr crosses the spawn (pipe2 is not
        // exported; no other thread spawns meanwhile).
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let pid: pid_t
        do {
            pid = try spawn(exe, arguments, stderrTo: fds[1])
        } catch {
            close(fds[0]); close(fds[1])
            throw error
        }
        close(fds[1])
        let (ready, said) = readUntilReady(fds[0])
        close(fds[0])
        if !said.isEmpty { FileHandle.standardError.write(Data(said.utf8)) }
        if ready { return }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        // WIFEXITED/WEXITSTATUS are macros: low 7 bits 0 means a normal exit, the code above them.
        let code: Int32 = status & 0x7f == 0 ? (status >> 8) & 0xff : 1
        if said.isEmpty {
            FileHandle.standardError.write(Data("zbdfs: the mount process ended (status \(status)) before the mount was ready\n".utf8))
        }
        Foundation.exit(code == 0 ? 1 : code)
    }

    private static func spawn(_ exe: String, _ arguments: [String], stderrTo fd: Int32) throws -> pid_t {
        keepDescriptorsFromChildren()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fd, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t(), ending = sigset_t()
        sigemptyset(&none)
        sigemptyset(&ending)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&ending, s) }
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setsigdefault(&attr, &ending)
        posix_spawnattr_setflags(&attr, Int16(spawnSetSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([exe] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, exe, &actions, &attr, argv, environ)
        guard rc == 0 else {
            throw CLIError.runtime("cannot start the mount process \(exe): \(DeviceError.message(ofErrno: rc))")
        }
        return pid
    }

    /// Marks every inherited descriptor above stderr close-on-exec. A daemon that kept one (the
    /// pipe a test harness or CI runner reads our output from, a terminal) would keep its reader
    /// waiting for an end of file until the file system is unmounted. This process execs nothing
    /// else, so it loses nothing by it.
    private static func keepDescriptorsFromChildren() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return }
        for fd in names.compactMap({ Int32($0) }) where fd > 2 {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
    }

    /// Reads the child's stderr until the ready line or the end; returns whether it came and the
    /// other text.
    private static func readUntilReady(_ fd: Int32) -> (Bool, String) {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        let marker = Array((Mount.readyLine + "\n").utf8)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += chunk[0..<n]
            if let r = bytes.firstRange(of: marker) {
                bytes.removeSubrange(r)
                return (true, String(decoding: bytes, as: UTF8.self))
            }
        }
        return (false, String(decoding: bytes, as: UTF8.self))
    }

    private static func selfExecutable() -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    }

    /// In the child: tell the parent the mount is ready, then let go of the pipe and the
    /// working directory (the daemon must not keep the caller's directory busy).
    static func announceReady() {
        FileHandle.standardError.write(Data((Mount.readyLine + "\n").utf8))
        let null = open("/dev/null", O_WRONLY | O_CLOEXEC)
        if null >= 0 {
            dup2(null, 2)
            close(null)
        }
        _ = chdir("/")
    }

    /// The background daemon's log: syslog, tagged `zbdfs[PID]`.
    static func syslogLog() -> FUSELog {
        openlog(ident, LOG_PID, LOG_DAEMON)
        return FUSELog { line in
            line.withCString { c in withVaList([c]) { vsyslog(LOG_NOTICE, "%s", $0) } }
        }
    }

    /// openlog keeps the pointer: it must live as long as the process.
    nonisolated(unsafe) private static let ident = strdup("zbdfs")
}

enum Unmounting {
    /// Unmounts `mnt`: umount2 as root, fusermount3 otherwise.
    static func unmount(_ mnt: String) throws {
        if geteuid() == 0 {
            while umount2(mnt, 0) != 0 {
                let e = errno
                if e == EINTR { continue }
                if e == EBUSY {
                    throw CLIError.runtime("\(mnt) is busy: a process has a file open or its working directory in it; find it with `fuser -vm \(mnt)`, close it and retry")
                }
                throw CLIError.runtime("cannot unmount \(mnt): \(DeviceError(errno: e, .close))")
            }
            return
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["fusermount3", "-u", mnt]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw CLIError.runtime("fusermount3 -u \(mnt) failed (see above); close files open in it and retry")
        }
    }

    /// Waits until no process holds `device` (the daemon closed it after its last flush).
    static func waitForRelease(of device: String, seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while isHeld(device) {
            if Date() > deadline { return false }
            usleep(20_000)
        }
        return true
    }

    /// File-backed devices and NVMe char devices are claimed with flock; kernel block devices
    /// with O_EXCL.
    static func isHeld(_ device: String) -> Bool {
        if DeviceClaim.isHeld(path: device) { return true }
        guard PathKind.isBlockDevice(device) else { return false }
        let fd = open(device, O_RDONLY | O_EXCL | O_CLOEXEC)
        if fd >= 0 { close(fd); return false }
        return errno == EBUSY
    }
}
