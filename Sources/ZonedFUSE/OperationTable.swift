// The libfuse low-level operations table: C entry points that find the adapter through the
// session's userdata and call its method; plus the requests that are about the whole mount
// (init, statfs, the sync ioctl).
//
// Invariants:
// - The closures capture nothing (C function pointers cannot); all state is in the adapter.
// - Operations left nil are answered by libfuse: ENOSYS for xattrs, locks (the kernel then locks
//   locally), copy_file_range and lseek (the kernel falls back to its generic code), and nothing
//   for FORGET (see FUSEAdapter's invariants).
// - init turns off two defaults whose contract zbdfs does not take on: atomic O_TRUNC (the kernel
//   truncates with a SETATTR instead) and "handle killpriv" (the kernel clears setuid/setgid
//   bits itself, with a SETATTR of the mode).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CFUSE3
import ZonedCore
import ZonedEngine
import ZonedFS

extension FUSEAdapter {
    static func operations() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, conn in
            Unmanaged<FUSEAdapter>.fromOpaque(userdata!).takeUnretainedValue().initialize(conn)
        }
        ops.lookup = { req, parent, name in
            let a = FUSEAdapter.of(req)
            if a.isControl(parent: parent, name) { a.controlLookup(req) } else { a.lookup(req, parent, name) }
        }
        ops.getattr = { req, ino, _ in
            let a = FUSEAdapter.of(req)
            if a.isControl(ino) { a.controlGetattr(req) } else { a.getattr(req, ino) }
        }
        // A SETATTR of the control file (the size 0 of `echo reclaim > .zbdfs-control`) changes nothing.
        ops.setattr = { req, ino, attr, toSet, _ in
            let a = FUSEAdapter.of(req)
            if a.isControl(ino) { a.controlGetattr(req) } else { a.setattr(req, ino, attr, toSet) }
        }
        ops.readlink = { req, ino in FUSEAdapter.of(req).readlink(req, ino) }
        ops.mknod = { req, parent, name, mode, _ in
            let a = FUSEAdapter.of(req)
            if a.isControl(parent: parent, name) { _ = fuse_reply_err(req, EEXIST) } else { a.mknod(req, parent, name, mode) }
        }
        ops.mkdir = { req, parent, name, mode in
            let a = FUSEAdapter.of(req)
            if a.isControl(parent: parent, name) { _ = fuse_reply_err(req, EEXIST) } else { a.mkdir(req, parent, name, mode) }
        }
        ops.unlink = { req, parent, name in
            let a = FUSEAdapter.of(req)
            if a.isControl(parent: parent, name) { _ = fuse_reply_err(req, EPERM) } else { a.unlink(req, parent, name) }
        }
        ops.rmdir = { req, parent, name in FUSEAdapter.of(req).rmdir(req, parent, name) }
        ops.symlink = { req, target, parent, name in
            let a = FUSEAdapter.of(req)
            if a.isControl(parent: parent, name) { _ = fuse_reply_err(req, EEXIST) } else { a.symlink(req, target, parent, name) }
        }
        ops.rename = { req, parent, name, newParent, newName, flags in
            let a = FUSEAdapter.of(req)
            if a.isControl(parent: parent, name) || a.isControl(parent: newParent, newName) { _ = fuse_reply_err(req, EPERM); return }
            a.rename(req, parent, name, newParent, newName, UInt32(flags))
        }
        ops.link = { req, ino, parent, name in
            let a = FUSEAdapter.of(req)
            if a.isControl(ino) || a.isControl(parent: parent, name) { _ = fuse_reply_err(req, EPERM) } else { a.link(req, ino, parent, name) }
        }
        ops.open = { req, ino, fi in
            let a = FUSEAdapter.of(req)
            if a.isControl(ino) { a.controlOpen(req, fi) } else { a.open(req, ino, fi) }
        }
        ops.read = { req, ino, size, off, fi in
            let a = FUSEAdapter.of(req)
            if a.isControl(ino) { a.controlRead(req, size, off, fi) } else { a.read(req, ino, size, off, fi) }
        }
        ops.write = { req, ino, buf, size, off, fi in
            let a = FUSEAdapter.of(req)
            if a.isControl(ino) { a.controlWrite(req, buf, size, fi) } else { a.write(req, ino, buf, size, off, fi) }
        }
        ops.flush = { req, _, _ in FUSEAdapter.of(req).flush(req) }
        ops.release = { req, ino, fi in
            let a = FUSEAdapter.of(req)
            if a.isControl(ino) { a.controlRelease(req, fi) } else { a.release(req, fi) }
        }
        ops.fsync = { req, ino, _, _ in
            let a = FUSEAdapter.of(req)
            if a.isControl(ino) { _ = fuse_reply_err(req, 0) } else { a.fsync(req, ino) }
        }
        ops.opendir = { req, ino, fi in FUSEAdapter.of(req).opendir(req, ino, fi) }
        ops.readdir = { req, ino, size, off, fi in FUSEAdapter.of(req).readdir(req, ino, size, off, fi, plus: false) }
        ops.readdirplus = { req, ino, size, off, fi in FUSEAdapter.of(req).readdir(req, ino, size, off, fi, plus: true) }
        ops.releasedir = { req, _, fi in FUSEAdapter.of(req).releasedir(req, fi) }
        ops.fsyncdir = { req, ino, _, _ in FUSEAdapter.of(req).fsyncdir(req, ino) }
        ops.statfs = { req, _ in FUSEAdapter.of(req).statfs(req) }
        ops.create = { req, parent, name, mode, fi in
            let a = FUSEAdapter.of(req)
            if a.isControl(parent: parent, name) { _ = fuse_reply_err(req, EEXIST) } else { a.create(req, parent, name, mode, fi) }
        }
        ops.fallocate = { req, ino, mode, off, length, _ in FUSEAdapter.of(req).fallocate(req, ino, mode, off, length) }
        ops.ioctl = { req, ino, cmd, _, _, _, _, _, _ in FUSEAdapter.of(req).ioctl(req, ino, UInt32(truncatingIfNeeded: cmd)) }
        return ops
    }

    func initialize(_ conn: UnsafeMutablePointer<fuse_conn_info>?) {
        guard let conn else { return }
        conn.pointee.want &= ~UInt32(FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_HANDLE_KILLPRIV)
    }

    func statfs(_ req: fuse_req_t?) {
        let totals = fs.engine.allocator.totals
        var s = statvfs()
        s.f_bsize = UInt(blockSize)
        s.f_frsize = UInt(blockSize)
        s.f_blocks = fsblkcnt_t(totals.capacity.bytes / blockSize)
        s.f_bfree = fsblkcnt_t(totals.free.bytes / blockSize)
        // What a writer can still get: free space minus the zones kept for the metadata log.
        s.f_bavail = fsblkcnt_t(fs.engine.allocator.reservable.bytes / blockSize)
        s.f_namemax = UInt(EntryName.maxBytes)
        // Inodes are not a fixed table: like btrfs, report no inode counts.
        _ = fuse_reply_statfs(req, &s)
    }

    /// The sync request (`FUSEControl.sync`), on the root directory only.
    func ioctl(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ cmd: UInt32) {
        answer(req, "sync") { () throws(DeviceError) in
            guard cmd == zbdfs_fuse_sync_request(), InodeNumber(ino) == rootInode else {
                throw DeviceError(errno: ENOTTY, .flush, "unknown ioctl \(cmd)")
            }
            try fs.sync()
            _ = fuse_reply_ioctl(req, 0, nil, 0)
        }
    }
}
