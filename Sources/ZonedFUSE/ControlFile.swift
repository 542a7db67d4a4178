// The mount's control file, `MOUNTPOINT/.zbdfs-control`: how monitoring tools and `zbdfs reclaim`
// talk to a running mount without opening its device.
//
// Protocol: reading the file from offset 0 gives the mount's live status as JSON (a fresh snapshot
// per open). Writing a command line to it ("reclaim") runs the command; reading the same open file
// afterwards gives the command's result as JSON. Unknown commands fail the write with EINVAL.
//
// Invariants:
// - The file is not in the namespace: it is found only by name in the root directory (lookup),
//   never listed (readdir), never written to the device, and its name cannot be created, removed
//   or replaced there (EEXIST/EPERM), so `find`, `tar` and `cp -a` never see it.
// - Its inode number, `ControlFile.inode`, is far above any inode the file system hands out (they
//   count up from 2), and its handles live in their own table.
// - It is opened with direct IO, so the kernel never caches its contents: every read reaches us.
// - Only the mount's owner (and root) may write it (mode 0644, owned by the daemon's uid); anyone
//   who can see the mount may read it.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CFUSE3
import ZonedCore
import ZonedEngine
import ZonedFS

/// What the control file serves; given by whoever mounts (the CLI daemon), so ZonedFUSE needs no
/// knowledge of the status format.
public struct ControlFile: Sendable {
    public static let name = ".zbdfs-control"
    public static let inode: InodeNumber = 1 << 62

    /// The live status, as the bytes a read returns.
    public var status: @Sendable () -> [UInt8]
    /// Runs a command line; returns the result bytes, or an error for a bad command.
    public var command: @Sendable (String) -> Result<[UInt8], DeviceError>

    public init(status: @escaping @Sendable () -> [UInt8], command: @escaping @Sendable (String) -> Result<[UInt8], DeviceError>) {
        self.status = status
        self.command = command
    }

    static func isName(_ c: UnsafePointer<CChar>?) -> Bool {
        guard let c else { return false }
        return String(cString: c) == name
    }
}

/// One open of the control file: what a read returns.
struct ControlHandle: Sendable {
    var contents: [UInt8]
}

extension FUSEAdapter {
    func isControl(_ ino: fuse_ino_t) -> Bool { control != nil && InodeNumber(ino) == ControlFile.inode }

    func isControl(parent: fuse_ino_t, _ name: UnsafePointer<CChar>?) -> Bool {
        control != nil && InodeNumber(parent) == rootInode && ControlFile.isName(name)
    }

    func controlStat() -> stat {
        var s = Glibc.stat()
        s.st_ino = ino_t(ControlFile.inode)
        s.st_mode = mode_t(UInt32(Glibc.S_IFREG) | 0o644)
        s.st_nlink = 1
        s.st_uid = getuid()
        s.st_gid = getgid()
        s.st_blksize = blksize_t(blockSize)
        let now = FUSEAdapter.timespec(Timestamp(truncatingIfNeeded: WallClock().nowNanoseconds))
        s.st_atim = now; s.st_mtim = now; s.st_ctim = now
        return s
    }

    func controlLookup(_ req: fuse_req_t?) {
        var e = fuse_entry_param()
        e.ino = fuse_ino_t(ControlFile.inode)
        e.generation = 1
        e.attr = controlStat()
        e.attr_timeout = FUSEAdapter.timeout
        e.entry_timeout = FUSEAdapter.timeout
        _ = fuse_reply_entry(req, &e)
    }

    func controlGetattr(_ req: fuse_req_t?) {
        var s = controlStat()
        _ = fuse_reply_attr(req, &s, FUSEAdapter.timeout)
    }

    func controlOpen(_ req: fuse_req_t?, _ fi: UnsafeMutablePointer<fuse_file_info>?) {
        guard let control else { _ = fuse_reply_err(req, ENOENT); return }
        let h = controls.insert(ControlHandle(contents: control.status()))
        fi?.pointee.fh = h
        fi?.pointee.direct_io = 1
        if fuse_reply_open(req, fi) != 0 { _ = controls.remove(h) }
    }

    func controlRead(_ req: fuse_req_t?, _ size: Int, _ off: off_t, _ fi: UnsafeMutablePointer<fuse_file_info>?) {
        guard let h = fi?.pointee.fh, let c = controls.get(h) else { _ = fuse_reply_err(req, EBADF); return }
        let start = min(c.contents.count, Int(max(0, off)))
        let end = min(c.contents.count, start + size)
        _ = c.contents[start..<end].withUnsafeBytes { b in
            fuse_reply_buf(req, b.baseAddress?.assumingMemoryBound(to: CChar.self), b.count)
        }
    }

    func controlWrite(_ req: fuse_req_t?, _ data: UnsafePointer<CChar>?, _ size: Int, _ fi: UnsafeMutablePointer<fuse_file_info>?) {
        answer(req, "control command") { () throws(DeviceError) in
            guard let control, let h = fi?.pointee.fh, controls.get(h) != nil else { throw DeviceError(errno: EBADF, .write, "no open control file") }
            // One command per write; words separated by any whitespace (`echo reclaim >` adds a newline).
            let text = String(decoding: UnsafeRawBufferPointer(start: data, count: size), as: UTF8.self)
            let line = text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            let result = try control.command(line).get()
            controls.update(h) { $0.contents = result }
            _ = fuse_reply_write(req, size)
        }
    }

    func controlRelease(_ req: fuse_req_t?, _ fi: UnsafeMutablePointer<fuse_file_info>?) {
        if let h = fi?.pointee.fh { _ = controls.remove(h) }
        _ = fuse_reply_err(req, 0)
    }
}

// MARK: The client side (monitoring commands, tests, library users)

extension ControlFile {
    /// The control file's path under a mount point.
    public static func path(mountPoint: String) -> String {
        (mountPoint.hasSuffix("/") ? mountPoint : mountPoint + "/") + name
    }

    /// Reads the mount's live status bytes (one open, read to the end).
    public static func readStatus(mountPoint: String) throws(DeviceError) -> [UInt8] {
        let fd = try openControl(mountPoint, O_RDONLY)
        defer { close(fd) }
        return try readAll(fd)
    }

    /// Sends a command and returns its result bytes.
    public static func run(_ command: String, mountPoint: String) throws(DeviceError) -> [UInt8] {
        let fd = try openControl(mountPoint, O_RDWR)
        defer { close(fd) }
        let line = Array((command + "\n").utf8)
        let n = line.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard n == line.count else {
            throw DeviceError(errno: n < 0 ? errno : EIO, .write, "the mount at \(mountPoint) refused `\(command)`")
        }
        return try readAll(fd)
    }

    private static func openControl(_ mountPoint: String, _ flags: Int32) throws(DeviceError) -> Int32 {
        let p = path(mountPoint: mountPoint)
        let fd = open(p, flags | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            throw DeviceError(errno: e, .open, e == ENOENT ? "\(p) is missing: \(mountPoint) is not served by a zbdfs mount of this version" : "cannot open \(p)")
        }
        return fd
    }

    private static func readAll(_ fd: Int32) throws(DeviceError) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 128 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(out.count)) }
            if n < 0, errno == EINTR { continue }
            if n < 0 { throw DeviceError(errno: errno, .read, "reading the control file") }
            if n == 0 { return out }
            out += chunk[0..<n]
        }
    }
}
