// The file system as FUSE low-level requests see it: one method per request, each answering
// its request exactly once (a reply or an errno).
//
// Invariants:
// - FUSE inode numbers are our inode numbers; FUSE_ROOT_ID (1) is `rootInode` (1).
// - Errors are the `DeviceError`'s errno, unchanged: the file system already gives the errno a
//   local file system would (ENOENT, EEXIST, ENOTEMPTY, EISDIR, EXDEV never, EOPNOTSUPP for a
//   fallocate mode it lacks). Only failures that are not the caller's doing (EIO, EUCLEAN, zone
//   limits) are logged.
// - Permissions are the kernel's (`default_permissions`); new inodes get the caller's uid and gid,
//   or the parent's gid and setgid bit when the parent directory is setgid, as on ext4/btrfs.
// - Lookup counts are not kept: an inode's life is its link count plus open handles
//   (`FileSystem.retain`), and the kernel reaches an unlinked inode only through an open file.
//   So FORGET needs no work and libfuse answers it for us (no forget callback).
// - Attribute and entry timeouts are long enough to spare round trips but short, because another
//   process's change through the same mount is the only way things change, and the kernel
//   already updates its own cache for those.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CFUSE3
import ZonedCore
import ZonedEngine
import ZonedFS

/// Where the daemon's messages go (stderr in the foreground, syslog in the background).
public struct FUSELog: Sendable {
    public var write: @Sendable (String) -> Void
    public init(_ write: @escaping @Sendable (String) -> Void) { self.write = write }
}

public final class FUSEAdapter: @unchecked Sendable {
    public let fs: FileSystem
    let log: FUSELog
    let files = HandleTable<OpenFile>()
    let dirs = HandleTable<OpenDirectory>()
    let controls = HandleTable<ControlHandle>()
    /// The control file (`ControlFile`), when the mount serves one.
    let control: ControlFile?
    let blockSize: UInt64
    static let timeout = 1.0

    public init(fs: FileSystem, log: FUSELog, control: ControlFile? = nil) {
        self.fs = fs
        self.log = log
        self.control = control
        self.blockSize = fs.device.geometry.logicalBlockSize.bytes
    }

    /// Open file and directory handles (for tests and the shutdown log).
    public var openHandles: Int { files.count + dirs.count }

    static func of(_ req: fuse_req_t?) -> FUSEAdapter {
        Unmanaged<FUSEAdapter>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }

    // MARK: Answering

    /// Runs `body`, which replies on success; a thrown error becomes the errno reply.
    func answer(_ req: fuse_req_t?, _ what: @autoclosure () -> String, _ body: () throws(DeviceError) -> Void) {
        do {
            try body()
        } catch {
            if FUSEAdapter.isUnexpected(error) { log.write("\(what()) failed: \(error)") }
            _ = fuse_reply_err(req, error.errno)
        }
    }

    static func isUnexpected(_ e: DeviceError) -> Bool {
        switch e.kind {
        case .io, .corrupted, .other, .tooManyOpenZones, .tooManyActiveZones: return true
        default: return false
        }
    }

    func replyEntry(_ req: fuse_req_t?, _ st: FileStat) -> Int32 {
        var e = entryParam(st)
        return fuse_reply_entry(req, &e)
    }

    func entryParam(_ st: FileStat) -> fuse_entry_param {
        var e = fuse_entry_param()
        e.ino = fuse_ino_t(st.number)
        e.generation = 1
        e.attr = cStat(st)
        e.attr_timeout = FUSEAdapter.timeout
        e.entry_timeout = FUSEAdapter.timeout
        return e
    }

    func cStat(_ st: FileStat) -> stat {
        var s = Glibc.stat()
        let a = st.attributes
        s.st_ino = ino_t(st.number)
        s.st_mode = mode_t(FUSEAdapter.typeBits(a.kind) | (a.mode & 0o7777))
        s.st_nlink = nlink_t(a.nlink)
        s.st_uid = a.uid
        s.st_gid = a.gid
        s.st_size = off_t(clamping: st.size)
        s.st_blksize = blksize_t(blockSize)
        s.st_blocks = blkcnt_t(clamping: (st.allocated + 511) / 512)
        s.st_atim = FUSEAdapter.timespec(a.atime)
        s.st_mtim = FUSEAdapter.timespec(a.mtime)
        s.st_ctim = FUSEAdapter.timespec(a.ctime)
        return s
    }

    static func typeBits(_ k: InodeKind) -> UInt32 {
        switch k {
        case .file: return UInt32(Glibc.S_IFREG)
        case .directory: return UInt32(Glibc.S_IFDIR)
        case .symlink: return UInt32(Glibc.S_IFLNK)
        }
    }

    static func timespec(_ ns: Timestamp) -> Glibc.timespec {
        let (s, r) = ns.quotientAndRemainder(dividingBy: 1_000_000_000)
        // Times before 1970 keep a non-negative nanosecond field, as the kernel wants.
        return r < 0 ? Glibc.timespec(tv_sec: Int(s - 1), tv_nsec: Int(r + 1_000_000_000))
                     : Glibc.timespec(tv_sec: Int(s), tv_nsec: Int(r))
    }

    static func nanoseconds(_ t: Glibc.timespec) -> Timestamp {
        Timestamp(t.tv_sec).multipliedReportingOverflow(by: 1_000_000_000).partialValue + Timestamp(t.tv_nsec)
    }

    static func name(_ c: UnsafePointer<CChar>?) throws(DeviceError) -> EntryName {
        guard let c else { throw DeviceError(errno: EINVAL, .lookup, "no name") }
        return try EntryName(validating: Array(UnsafeRawBufferPointer(start: c, count: strlen(c))))
    }

    /// Who owns a new inode in `parent`: the caller, or the parent's group when it is setgid
    /// (a new directory then inherits the setgid bit).
    func owner(_ req: fuse_req_t?, parent: InodeNumber, mode: mode_t, directory: Bool) throws(DeviceError) -> (mode: UInt32, uid: UInt32, gid: UInt32) {
        let ctx = fuse_req_ctx(req)!.pointee
        var bits = UInt32(mode) & 0o7777
        var gid = ctx.gid
        let p = try fs.stat(parent).attributes
        if p.mode & UInt32(Glibc.S_ISGID) != 0 {
            gid = p.gid
            if directory { bits |= UInt32(Glibc.S_ISGID) }
        }
        return (bits, ctx.uid, gid)
    }
}
