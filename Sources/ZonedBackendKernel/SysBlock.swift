// A block device as sysfs sees it, read without Foundation.
//
// Invariants:
// - A path is resolved through stat(2)'s st_rdev to /sys/dev/block/MAJ:MIN, never by parsing the
//   path: /dev/disk/by-id links, renamed nodes and mknod'ed copies all find the right device.
// - A partition has no queue/ directory of its own, so its attributes read as missing, and a
//   missing `queue/zoned` means "not zoned" (Linux 6.1 does not expose zoned partitions anyway).
// - Nothing here opens the device itself: probing must not disturb a device someone else uses.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ZonedCore

struct SysBlockDevice: Sendable {
    /// The kernel's name for the device: "nullb0", "nvme0n1", "sdb".
    let kernelName: String
    /// "/sys/dev/block/MAJ:MIN"; a symlink into /sys/devices, which is enough to read attributes.
    let sysPath: String

    enum Lookup {
        case found(SysBlockDevice)
        /// stat(2) failed with this errno (ENOENT, EACCES…).
        case statFailed(Int32)
        case notABlockDevice
    }

    static func lookUp(path: String) -> Lookup {
        var st = stat()
        guard stat(path, &st) == 0 else { return .statFailed(currentErrno()) }
        guard st.st_mode & S_IFMT == S_IFBLK else { return .notABlockDevice }
        let (maj, min) = splitDeviceNumber(UInt64(st.st_rdev))
        let sysPath = "/sys/dev/block/\(maj):\(min)"
        let name = linkTarget(sysPath).map(lastPathComponent) ?? "\(maj):\(min)"
        return .found(SysBlockDevice(kernelName: name, sysPath: sysPath))
    }

    /// `queue/zoned`: "none", "host-aware" or "host-managed"; nil when the attribute is missing.
    var zonedModel: String? { attribute("queue/zoned") }

    /// Whose zone state machine a zoned device follows. An NVMe namespace's block device (and an
    /// NVMe multipath head) has the namespace attributes (`nsid`, `wwid`…) next to `queue/`, and
    /// the only zoned NVMe command set is ZNS; every other zoned block device Linux 6.1 exposes
    /// (SCSI/ATA SMR, null_blk) follows ZBC. A device-mapper target stacked on a ZNS namespace is
    /// not recognised and reads as ZBC.
    var zoneCommandSet: ZoneCommandSet { attribute("nsid") != nil ? .zns : .zbc }

    /// `queue/max_sectors_kb` in bytes: the largest IO the kernel sends down unsplit.
    var maxIOBytes: UInt64? {
        guard let text = attribute("queue/max_sectors_kb"), let kib = UInt64(text) else { return nil }
        return kib * 1024
    }

    /// The attribute's first line without surrounding blanks, or nil when it cannot be read.
    func attribute(_ relative: String) -> String? {
        let fd = Glibc.open(sysPath + "/" + relative, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { _ = Glibc.close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else { return nil }
        let line = bytes[0..<n].prefix { $0 != UInt8(ascii: "\n") }
        let text = String(decoding: line, as: UTF8.self)
        return String(text.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}

/// glibc's dev_t layout (major: bits 8–19 and 32–43; minor: bits 0–7 and 12–31), computed here
/// because `major()`/`minor()` are macros Swift cannot call.
func splitDeviceNumber(_ dev: UInt64) -> (major: UInt64, minor: UInt64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff))
    let minor = (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff))
    return (major & 0xffff_ffff, minor & 0xffff_ffff)
}

private func linkTarget(_ path: String) -> String? {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = buf.withUnsafeMutableBufferPointer { readlink(path, $0.baseAddress!, $0.count - 1) }
    guard n > 0 else { return nil }
    return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

private func lastPathComponent(_ path: String) -> String {
    String(path.split(separator: "/").last ?? Substring(path))
}
