// What programs see through the mount besides bytes: the errno a local file system gives,
// rename flags, fallocate per device kind, shared mmap, unlinked open files, ownership of new
// files and the kernel's permission checks.

import Foundation
import Testing

/// Python, for the system calls the shell cannot make (renameat2, fallocate modes, mmap).
let syscallChecks = #"""
import ctypes, errno, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
root, kind = sys.argv[1], sys.argv[2]
os.chdir(root)
failures = []
def expect_errno(what, code, fn):
    try:
        fn()
        failures.append(f"{what}: succeeded, expected {errno.errorcode[code]}")
    except OSError as e:
        if e.errno != code:
            failures.append(f"{what}: {errno.errorcode.get(e.errno, e.errno)}, expected {errno.errorcode[code]}")
def renameat2(a, b, flags):
    if libc.renameat2(-100, a.encode(), -100, b.encode(), flags) != 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
def fallocate(fd, mode, off, length):
    if libc.fallocate(fd, mode, ctypes.c_long(off), ctypes.c_long(length)) != 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))

open("a", "w").write("A"); open("b", "w").write("B"); os.mkdir("d"); open("d/x", "w").close()
expect_errno("open missing", errno.ENOENT, lambda: open("missing"))
expect_errno("mkdir existing", errno.EEXIST, lambda: os.mkdir("d"))
expect_errno("rmdir non-empty", errno.ENOTEMPTY, lambda: os.rmdir("d"))
expect_errno("unlink directory", errno.EISDIR, lambda: os.unlink("d"))
expect_errno("rmdir file", errno.ENOTDIR, lambda: os.rmdir("a"))
expect_errno("hard link to directory", errno.EPERM, lambda: os.link("d", "dl"))
expect_errno("rename dir over file", errno.ENOTDIR, lambda: os.rename("d", "a"))
expect_errno("mknod fifo", errno.EPERM, lambda: os.mkfifo("fifo"))
expect_errno("name too long", errno.ENAMETOOLONG, lambda: open("n" * 256, "w"))
expect_errno("noreplace onto existing", errno.EEXIST, lambda: renameat2("a", "b", 1))
renameat2("a", "c", 1)
renameat2("c", "b", 2)  # exchange
if open("b").read() != "A" or open("c").read() != "B": failures.append("RENAME_EXCHANGE did not swap")
expect_errno("exchange with missing", errno.ENOENT, lambda: renameat2("b", "missing", 2))

fd = os.open("prealloc", os.O_CREAT | os.O_RDWR, 0o644)
if kind == "zoned":
    expect_errno("fallocate on zoned", errno.EOPNOTSUPP, lambda: fallocate(fd, 0, 0, 1 << 20))
else:
    fallocate(fd, 0, 0, 1 << 20)
    st = os.fstat(fd)
    if st.st_size != 1 << 20 or st.st_blocks * 512 < 1 << 20: failures.append(f"fallocate: size {st.st_size} blocks {st.st_blocks}")
    if os.pread(fd, 16, 4096) != bytes(16): failures.append("preallocated range does not read as zeros")
expect_errno("fallocate zero-range", errno.EOPNOTSUPP, lambda: fallocate(fd, 0x10, 0, 4096))
os.pwrite(fd, b"x" * 65536, 0)
fallocate(fd, 3, 8192, 8192)  # punch hole, keep size
data = os.pread(fd, 65536, 0)
if data[8192:16384] != bytes(8192) or data[:8192] != b"x" * 8192: failures.append("punched hole does not read as zeros")
os.close(fd)

# Shared mmap writes reach the file (and the device, checked after remount by the caller).
with open("mapped", "wb") as f: f.write(bytes(3 * 4096))
with open("mapped", "r+b") as f:
    m = mmap.mmap(f.fileno(), 0)
    m[100:105] = b"mmap!"; m[8190:8194] = b"edge"
    m.flush(); m.close()
if open("mapped", "rb").read()[100:105] != b"mmap!": failures.append("mmap write not visible to read")

# An unlinked open file lives until closed.
f = open("doomed", "w+b"); f.write(b"still here"); f.flush()
os.unlink("doomed")
f.seek(0)
if f.read() != b"still here": failures.append("unlinked open file lost its data")
if os.fstat(f.fileno()).st_nlink != 0: failures.append("unlinked open file has links")
f.close()
if os.path.exists("doomed"): failures.append("unlinked file still has a name")

# O_DIRECT opens at unaligned offsets and sizes work (buffered fallback).
fd = os.open("odirect", os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o644)
os.pwrite(fd, b"0123456789", 3)
os.close(fd)
if open("odirect", "rb").read() != b"\0\0\x000123456789": failures.append("unaligned O_DIRECT write")
os.unlink("b"); os.unlink("c"); os.unlink("d/x"); os.rmdir("d")
print("\n".join(failures))
sys.exit(1 if failures else 0)
"""#

@Suite("FUSE semantics", .serialized, .enabled(if: fuseUnavailable == nil, "\(fuseUnavailable ?? "")"), .timeLimit(.minutes(15)))
struct SemanticsTests {
    @Test(arguments: [Backing.emulated, .conventional])
    func errnosRenameFlagsFallocateMmap(_ kind: Backing) throws {
        let s = Scratch("sem")
        let dev = s.path("dev.img")
        try makeDevice(dev, kind)
        try mount(dev, s.mnt, kind)
        let r = try sh("python3 -c \"$PY\" \"$1\" \"$2\"", env: ["PY": syscallChecks],
                       argsScript: [s.mnt, kind == .emulated ? "zoned" : "conventional"])
        #expect(r.status == 0, "\(r.out)\(r.err)")
        try umount(s.mnt)
        try mount(dev, s.mnt, kind)
        let m = try sh("od -An -c -j 100 -N 5 \(quote(s.mnt))/mapped; ls \(quote(s.mnt))")
        #expect(m.out.contains("m   m   a   p   !"), "mmap write after remount: \(m.out)")
        #expect(!m.out.contains("doomed"))
        try umount(s.mnt)
        #expect(try fsck(dev, kind).clean)
    }

    @Test(.enabled(if: getuid() == 0, "acting as another user (setpriv) needs root"))
    func ownershipAndPermissionsAreTheKernelsWithAllowOther() throws {
        let s = Scratch("perm")
        let dev = s.path("dev.img")
        try makeDevice(dev, .emulated)
        try mount(dev, s.mnt, .emulated, options: ["allow_other"])
        // Tests run as root; setpriv gives a process of user/group 65534 (nobody).
        let r = try sh("""
            cd \(quote(s.mnt))
            mkdir shared && chmod 777 shared
            echo root > rootfile && chmod 644 rootfile
            mkdir sgid && chgrp 123 sgid && chmod 2777 sgid
            as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
            as_nobody sh -c 'echo mine > shared/nobody.txt && mkdir shared/nd'
            stat -c '%u:%g %a' shared/nobody.txt shared/nd
            as_nobody sh -c 'echo x >> rootfile' 2>&1 || echo denied-write
            as_nobody sh -c 'rm rootfile' 2>&1 || echo denied-unlink
            as_nobody sh -c 'chmod 777 rootfile' 2>&1 || echo denied-chmod
            as_nobody sh -c 'touch sgid/f && mkdir sgid/sub'
            stat -c '%g %a' sgid/f sgid/sub
            chown 65534:65534 rootfile && stat -c '%u:%g' rootfile
            """)
        #expect(r.status == 0, "\(r.err)")
        let lines = r.out.split(separator: "\n").map(String.init)
        #expect(lines.contains("65534:65534 644") && lines.contains("65534:65534 755"), "\(r.out)")
        #expect(r.out.contains("denied-write") && r.out.contains("denied-unlink") && r.out.contains("denied-chmod"), "\(r.out)")
        #expect(lines.contains("123 644") && lines.contains("123 2755"), "setgid directory: \(r.out)")
        #expect(lines.last == "65534:65534")
        try umount(s.mnt)
    }

    @Test(.enabled(if: getuid() == 0, "acting as another user (setpriv) needs root"))
    func otherUsersAreKeptOutByDefault() throws {
        let s = Scratch("private")
        let dev = s.path("dev.img")
        try makeDevice(dev, .emulated)
        try mount(dev, s.mnt, .emulated)
        let r = try sh("chmod 777 \(quote(s.mnt)); setpriv --reuid=65534 --regid=65534 --clear-groups ls \(quote(s.mnt)) 2>&1 || echo refused")
        #expect(r.out.contains("refused"), "\(r.out)")
        try umount(s.mnt)
    }

    @Test func readOnlyMountRefusesWritesWithEROFS() throws {
        let s = Scratch("ro")
        let dev = s.path("dev.img")
        try makeDevice(dev, .emulated)
        try mount(dev, s.mnt, .emulated)
        try sh("echo kept > \(quote(s.mnt))/f")
        try umount(s.mnt)
        try mount(dev, s.mnt, .emulated, options: ["ro"])
        let r = try sh("cat \(quote(s.mnt))/f; touch \(quote(s.mnt))/new 2>&1 || true; grep ' \(s.mnt) ' /proc/self/mountinfo")
        #expect(r.out.hasPrefix("kept\n"))
        #expect(r.out.contains("Read-only file system"), "\(r.out)")
        #expect(r.out.contains(" ro,") || r.out.contains(" ro "), "\(r.out)")
        try umount(s.mnt)
    }
}
