// The requests, one method each: namespace, attributes, open files, data, directories, space.
//
// Invariants:
// - Each method replies exactly once, through `answer` on failure.
// - A handle that the kernel never learns about (its reply failed: the request was interrupted)
//   is undone at once, or its `retain` would keep an unlinked inode forever.
// - O_DIRECT is recorded per handle at open/create; reads and writes through that handle use
//   the engine's direct path (unaligned requests take its buffered fallback, because FUSE passes
//   O_DIRECT IO of any alignment). Other handles use the engine's buffered path, which the
//   kernel's page cache sits on top of (buffered IO and shared mmap).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CFUSE3
import ZonedCore
import ZonedEngine
import ZonedFS

// Linux constants the Glibc module does not export everywhere (uapi values, stable ABI).
let renameNoReplace: UInt32 = 1      // RENAME_NOREPLACE
let renameExchange: UInt32 = 2       // RENAME_EXCHANGE
let fallocKeepSize: Int32 = 1        // FALLOC_FL_KEEP_SIZE
let fallocPunchHole: Int32 = 2       // FALLOC_FL_PUNCH_HOLE

extension FUSEAdapter {
    // MARK: Namespace

    func lookup(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?) {
        answer(req, "lookup in \(parent)") { () throws(DeviceError) in
            _ = replyEntry(req, try fs.lookup(InodeNumber(parent), try FUSEAdapter.name(name)))
        }
    }

    func mknod(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?, _ mode: mode_t) {
        answer(req, "mknod in \(parent)") { () throws(DeviceError) in
            let type = UInt32(mode) & UInt32(Glibc.S_IFMT)
            // Like a local file system without special files (vfat): only regular files.
            guard type == 0 || type == UInt32(Glibc.S_IFREG) else {
                throw DeviceError(errno: EPERM, .create, "zbdfs holds regular files, directories and symlinks only")
            }
            _ = replyEntry(req, try make(req, parent, name, .file, mode))
        }
    }

    func mkdir(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?, _ mode: mode_t) {
        answer(req, "mkdir in \(parent)") { () throws(DeviceError) in
            _ = replyEntry(req, try make(req, parent, name, .directory, mode))
        }
    }

    func symlink(_ req: fuse_req_t?, _ target: UnsafePointer<CChar>?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?) {
        answer(req, "symlink in \(parent)") { () throws(DeviceError) in
            guard let target else { throw DeviceError(errno: EINVAL, .create, "no symlink target") }
            let bytes = Array(UnsafeRawBufferPointer(start: target, count: strlen(target)))
            let ctx = fuse_req_ctx(req)!.pointee
            let st = try fs.create(InodeNumber(parent), try FUSEAdapter.name(name), kind: .symlink, mode: 0o777,
                                   uid: ctx.uid, gid: try owner(req, parent: InodeNumber(parent), mode: 0, directory: false).gid,
                                   target: bytes)
            _ = replyEntry(req, st)
        }
    }

    /// Creates a file or directory owned by the caller.
    func make(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?, _ kind: InodeKind,
              _ mode: mode_t) throws(DeviceError) -> FileStat {
        let p = InodeNumber(parent)
        let o = try owner(req, parent: p, mode: mode, directory: kind == .directory)
        return try fs.create(p, try FUSEAdapter.name(name), kind: kind, mode: o.mode, uid: o.uid, gid: o.gid)
    }

    func link(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?) {
        answer(req, "link of \(ino)") { () throws(DeviceError) in
            _ = replyEntry(req, try fs.link(InodeNumber(ino), into: InodeNumber(parent), as: try FUSEAdapter.name(name)))
        }
    }

    func unlink(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?) {
        answer(req, "unlink in \(parent)") { () throws(DeviceError) in
            try fs.unlink(InodeNumber(parent), try FUSEAdapter.name(name))
            _ = fuse_reply_err(req, 0)
        }
    }

    func rmdir(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?) {
        answer(req, "rmdir in \(parent)") { () throws(DeviceError) in
            try fs.removeDirectory(InodeNumber(parent), try FUSEAdapter.name(name))
            _ = fuse_reply_err(req, 0)
        }
    }

    func rename(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?, _ newParent: fuse_ino_t,
                _ newName: UnsafePointer<CChar>?, _ flags: UInt32) {
        answer(req, "rename in \(parent)") { () throws(DeviceError) in
            guard flags & ~(renameNoReplace | renameExchange) == 0 else {
                throw DeviceError(errno: EINVAL, .namespace, "rename flags \(flags) (only NOREPLACE and EXCHANGE)")
            }
            var f: RenameFlags = []
            if flags & renameNoReplace != 0 { f.insert(.noReplace) }
            if flags & renameExchange != 0 { f.insert(.exchange) }
            try fs.rename(InodeNumber(parent), try FUSEAdapter.name(name), to: InodeNumber(newParent),
                          try FUSEAdapter.name(newName), flags: f)
            _ = fuse_reply_err(req, 0)
        }
    }

    func readlink(_ req: fuse_req_t?, _ ino: fuse_ino_t) {
        answer(req, "readlink of \(ino)") { () throws(DeviceError) in
            let target = try fs.readLink(InodeNumber(ino)) + [0]
            _ = target.withUnsafeBufferPointer { b in
                b.withMemoryRebound(to: CChar.self) { fuse_reply_readlink(req, $0.baseAddress) }
            }
        }
    }

    // MARK: Attributes

    func getattr(_ req: fuse_req_t?, _ ino: fuse_ino_t) {
        answer(req, "getattr of \(ino)") { () throws(DeviceError) in
            var s = cStat(try fs.stat(InodeNumber(ino)))
            _ = fuse_reply_attr(req, &s, FUSEAdapter.timeout)
        }
    }

    func setattr(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ attr: UnsafeMutablePointer<stat>?, _ toSet: Int32) {
        answer(req, "setattr of \(ino)") { () throws(DeviceError) in
            guard let a = attr?.pointee else { throw DeviceError(errno: EINVAL, .namespace, "no attributes") }
            var s = cStat(try fs.setAttributes(InodeNumber(ino), changes(a, toSet)))
            _ = fuse_reply_attr(req, &s, FUSEAdapter.timeout)
        }
    }

    /// The changes a SETATTR asks for; `*_NOW` times are the wall clock's now.
    func changes(_ a: stat, _ toSet: Int32) -> AttributeChanges {
        var c = AttributeChanges()
        let now = Timestamp(truncatingIfNeeded: WallClock().nowNanoseconds)
        if toSet & FUSE_SET_ATTR_MODE != 0 { c.mode = UInt32(a.st_mode) & 0o7777 }
        if toSet & FUSE_SET_ATTR_UID != 0 { c.uid = a.st_uid }
        if toSet & FUSE_SET_ATTR_GID != 0 { c.gid = a.st_gid }
        if toSet & FUSE_SET_ATTR_SIZE != 0 { c.size = UInt64(max(0, a.st_size)) }
        if toSet & FUSE_SET_ATTR_ATIME_NOW != 0 { c.atime = now }
        else if toSet & FUSE_SET_ATTR_ATIME != 0 { c.atime = FUSEAdapter.nanoseconds(a.st_atim) }
        if toSet & FUSE_SET_ATTR_MTIME_NOW != 0 { c.mtime = now }
        else if toSet & FUSE_SET_ATTR_MTIME != 0 { c.mtime = FUSEAdapter.nanoseconds(a.st_mtim) }
        return c
    }

    // MARK: Open files

    func create(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?, _ mode: mode_t,
                _ fi: UnsafeMutablePointer<fuse_file_info>?) {
        answer(req, "create in \(parent)") { () throws(DeviceError) in
            let st = try make(req, parent, name, .file, mode)
            let h = openHandle(st.number, fi)
            var e = entryParam(st)
            if fuse_reply_create(req, &e, fi) != 0 { closeHandle(h) }
        }
    }

    func open(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>?) {
        answer(req, "open of \(ino)") { () throws(DeviceError) in
            let kind = try fs.stat(InodeNumber(ino)).kind
            guard kind == .file else { throw DeviceError(errno: kind == .directory ? EISDIR : ELOOP, .open, "inode \(ino) is not a regular file") }
            let h = openHandle(InodeNumber(ino), fi)
            if fuse_reply_open(req, fi) != 0 { closeHandle(h) }
        }
    }

    /// Registers an open handle (retaining the inode) and stores it in `fi.fh`.
    func openHandle(_ n: InodeNumber, _ fi: UnsafeMutablePointer<fuse_file_info>?) -> UInt64 {
        let direct = (fi?.pointee.flags ?? 0) & __O_DIRECT != 0  // O_DIRECT (Glibc exports it under this name)
        fs.retain(n)
        let h = files.insert(OpenFile(inode: n, direct: direct))
        fi?.pointee.fh = h
        return h
    }

    /// Drops a handle and its retain; an unlinked inode whose last handle this was goes away.
    func closeHandle(_ h: UInt64) {
        guard let f = files.remove(h) else { return }
        do { try fs.release(f.inode) } catch {
            log.write("release of inode \(f.inode) failed: \(error)")
        }
    }

    func release(_ req: fuse_req_t?, _ fi: UnsafeMutablePointer<fuse_file_info>?) {
        if let h = fi?.pointee.fh { closeHandle(h) }
        _ = fuse_reply_err(req, 0)
    }

    /// close(2) of one descriptor: nothing to do, data reaches the device at fsync or write-back.
    func flush(_ req: fuse_req_t?) { _ = fuse_reply_err(req, 0) }

    func fsync(_ req: fuse_req_t?, _ ino: fuse_ino_t) {
        answer(req, "fsync of \(ino)") { () throws(DeviceError) in
            try fs.fsync(InodeNumber(ino))
            _ = fuse_reply_err(req, 0)
        }
    }

    // MARK: Data

    func ioFlags(_ fi: UnsafeMutablePointer<fuse_file_info>?) -> IOFlags {
        guard let fh = fi?.pointee.fh, let f = files.get(fh) else { return [] }
        return f.direct ? [.direct] : []
    }

    func read(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ size: Int, _ off: off_t, _ fi: UnsafeMutablePointer<fuse_file_info>?) {
        answer(req, "read of \(ino) at \(off)") { () throws(DeviceError) in
            let buffer = AlignedBuffer(count: size, zeroed: false)
            let n = try fs.read(InodeNumber(ino), at: UInt64(max(0, off)), into: buffer.mutable, flags: ioFlags(fi))
            _ = fuse_reply_buf(req, buffer.base.assumingMemoryBound(to: CChar.self), n)
        }
    }

    func write(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ data: UnsafePointer<CChar>?, _ size: Int, _ off: off_t,
               _ fi: UnsafeMutablePointer<fuse_file_info>?) {
        answer(req, "write of \(ino) at \(off)") { () throws(DeviceError) in
            guard let data, size > 0 else { _ = fuse_reply_write(req, 0); return }
            let flags = ioFlags(fi)
            var done = 0
            // The engine writes less than asked only when the device failed part-way; what did
            // land is reported (a short write), as a local file system would.
            while done < size {
                let rest = UnsafeRawBufferPointer(start: UnsafeRawPointer(data) + done, count: size - done)
                let w: Int
                do throws(DeviceError) { w = try fs.write(InodeNumber(ino), at: UInt64(off) + UInt64(done), rest, flags: flags) } catch {
                    if done == 0 { throw error }
                    log.write("write of inode \(ino) stopped after \(done) of \(size) bytes: \(error)")
                    break
                }
                if w == 0 { break }
                done += w
            }
            if done == 0 { throw DeviceError.io(.write, "no progress writing inode \(ino) at \(off)") }
            _ = fuse_reply_write(req, done)
        }
    }

    func fallocate(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ mode: Int32, _ off: off_t, _ length: off_t) {
        answer(req, "fallocate of \(ino)") { () throws(DeviceError) in
            let n = InodeNumber(ino), at = UInt64(max(0, off)), len = UInt64(max(0, length))
            switch mode {
            case 0: try fs.fallocate(n, at: at, length: len)  // EOPNOTSUPP on zoned devices
            case fallocPunchHole | fallocKeepSize: try fs.punchHole(n, at: at, length: len)
            default: throw DeviceError.notSupported(.write, "fallocate mode \(mode): zbdfs supports 0 (conventional mode) and PUNCH_HOLE|KEEP_SIZE")
            }
            _ = fuse_reply_err(req, 0)
        }
    }

    // MARK: Directories

    func opendir(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>?) {
        answer(req, "opendir of \(ino)") { () throws(DeviceError) in
            let n = InodeNumber(ino)
            guard try fs.stat(n).kind == .directory else { throw DeviceError(errno: ENOTDIR, .lookup, "inode \(ino) is not a directory") }
            let h = dirs.insert(OpenDirectory(inode: n, parent: fs.parent(of: n) ?? n))
            fi?.pointee.fh = h
            if fuse_reply_open(req, fi) != 0 { _ = dirs.remove(h) }
        }
    }

    func releasedir(_ req: fuse_req_t?, _ fi: UnsafeMutablePointer<fuse_file_info>?) {
        if let h = fi?.pointee.fh { _ = dirs.remove(h) }
        _ = fuse_reply_err(req, 0)
    }

    func fsyncdir(_ req: fuse_req_t?, _ ino: fuse_ino_t) {
        answer(req, "fsyncdir of \(ino)") { () throws(DeviceError) in
            try fs.fsync(InodeNumber(ino))
            _ = fuse_reply_err(req, 0)
        }
    }

    /// READDIR and READDIRPLUS. Offsets: 0 is the start, entry i (".", "..", then the snapshot's
    /// entries) is followed by offset i + 1. Reading from offset 0 takes a fresh snapshot (rewinddir).
    func readdir(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ size: Int, _ off: off_t,
                 _ fi: UnsafeMutablePointer<fuse_file_info>?, plus: Bool) {
        answer(req, "readdir of \(ino)") { () throws(DeviceError) in
            guard let h = fi?.pointee.fh, var d = dirs.get(h) else { throw DeviceError(errno: EBADF, .lookup, "no open directory") }
            if off == 0 {
                d.entries = try fs.readDirectory(d.inode)
                let fresh = d.entries
                dirs.update(h) { $0.entries = fresh }
            }
            var buffer = [CChar](repeating: 0, count: size)
            let used = buffer.withUnsafeMutableBufferPointer { fill(req, $0, d, from: Int(max(0, off)), plus: plus) }
            _ = fuse_reply_buf(req, buffer, used)
        }
    }

    /// Packs entries from index `start` until the buffer is full; returns the bytes used.
    private func fill(_ req: fuse_req_t?, _ buf: UnsafeMutableBufferPointer<CChar>, _ d: OpenDirectory, from start: Int, plus: Bool) -> Int {
        var used = 0
        var i = start
        while i < d.entries.count + 2 {
            let (name, n, kind) = entry(i, d)
            i += 1
            let room = buf.count - used
            let need: Int
            if plus {
                // Gone since the snapshot: READDIRPLUS needs its attributes, so it is left out.
                guard let st = try? fs.stat(n) else { continue }
                var e = entryParam(st)
                if i <= 2 { e.ino = 0 }  // "." and "..": the kernel takes no lookup reference on them
                need = name.withUnsafeBufferPointer { fuse_add_direntry_plus(req, buf.baseAddress! + used, room, $0.baseAddress, &e, off_t(i)) }
            } else {
                // READDIR uses only the inode number and the type bits.
                var s = Glibc.stat()
                s.st_ino = ino_t(n)
                s.st_mode = mode_t(FUSEAdapter.typeBits(kind))
                need = name.withUnsafeBufferPointer { fuse_add_direntry(req, buf.baseAddress! + used, room, $0.baseAddress, &s, off_t(i)) }
            }
            if need > room { break }
            used += need
        }
        return used
    }

    /// Entry `i` of a directory listing: its NUL-terminated name, inode and kind.
    private func entry(_ i: Int, _ d: OpenDirectory) -> ([CChar], InodeNumber, InodeKind) {
        switch i {
        case 0: return ([46, 0], d.inode, .directory)
        case 1: return ([46, 46, 0], d.parent, .directory)
        default:
            let e = d.entries[i - 2]
            return (e.name.bytes.map { CChar(bitPattern: $0) } + [0], e.inode, e.kind)
        }
    }
}
