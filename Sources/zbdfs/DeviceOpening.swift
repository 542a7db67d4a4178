// Which backend serves a path, and opening it with errors that say what to do.
//
// Detection: an NVMe generic char device (/dev/ngXnY) is driven by the NVMe passthrough backend;
// a block device whose queue/zoned is not "none" is a kernel zoned device; any other block device
// is conventional; a regular file with the emulated-image magic is emulated; any other regular
// file is conventional. `--backend` overrides detection but is checked against the path, so
// asking for "kernel" on a regular file is a usage error, not a confusing IO failure.
// `--backend nvme` also takes a namespace's block device (/dev/nvmeXnY) and drives its char device.
//
// Conventional mode's zone size: a device holding a zbdfs file system is cut into the zones its
// superblock records (any other size reads it wrongly and makes it look damaged), so no command
// needs --zone-size after format; a --zone-size that contradicts the superblock is a usage error
// naming both. Only format, which replaces the file system, cuts by --zone-size (default 64M).
//
// Exclusive open: every command that may write claims the device (file-backed devices take an
// flock, kernel devices open with O_EXCL, NVMe namespaces take both), so a device is driven by one mount or command at a
// time. When the claim fails because the device is mounted, the error names the mount point (the
// mount table lists zbdfs mounts with the absolute device path as their source).

import ArgumentParser
import Foundation
import ZonedBackendFile
import ZonedBackendKernel
import ZonedBackendNVMe
import ZonedCore
import ZonedFS
import ZonedFUSE

enum BackendChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, emulated, conventional, kernel, nvme
}

struct DeviceOptions: ParsableArguments {
    @Argument(help: ArgumentHelp("The device: a zoned block device, an NVMe ZNS namespace's char device (/dev/ngXnY), an emulated image, or a file/block device for conventional mode.", valueName: "device"))
    var device: String

    @Option(help: "Backend to use instead of detecting it: \(BackendChoice.allCases.map(\.rawValue).joined(separator: ", ")).")
    var backend: BackendChoice = .auto

    @Option(help: ArgumentHelp("Zone size for conventional mode (a power of two). Default: the size the device's zbdfs file system was formatted with, else 64M.", valueName: "size"))
    var zoneSize: String?

    /// Conventional mode's zone size when neither --zone-size nor a superblock gives one.
    static let defaultZoneSize = ByteCount.mib(64)

    func validate() throws {
        guard FileManager.default.fileExists(atPath: device) else {
            throw ValidationError("\(device): no such file or device. Create an emulated device with `zbdfs emulate create \(device) --size 1G --zone-size 64M`, or check the path.")
        }
        if let zoneSize, ByteCount(parsing: zoneSize)?.isPowerOfTwo != true {
            throw ValidationError("--zone-size \(zoneSize) is not a power-of-two size; use e.g. 64M or 256M.")
        }
    }

    /// Opens the device, detecting or checking its kind. `exclusive: false` is for read-only
    /// reports: a file-backed device is then opened without claiming it, even while mounted.
    /// `formatting`: conventional mode cuts by --zone-size, not by the superblock about to go.
    func open(exclusive: Bool = true, formatting: Bool = false) throws -> any ZonedDevice {
        let kind = try resolveKind()
        let conventionalZones = kind == .conventional ? try conventionalZoneSize(formatting: formatting) : DeviceOptions.defaultZoneSize
        // Typed, and no `catch let e as DeviceError`: that pattern crashes Swift 6.3's compiler.
        do throws(DeviceError) {
            switch kind {
            case .emulated: return try EmulatedZonedDevice.open(path: device, exclusive: exclusive)
            case .conventional:
                return try ConventionalDevice.open(path: device, zoneSize: conventionalZones, exclusive: exclusive)
            case .kernel: return try KernelZonedDevice.open(path: device, exclusive: exclusive)
            case .nvme: return try NVMeZonedDevice.open(path: device, exclusive: exclusive)
            }
        } catch {
            throw CLIError.runtime("cannot open \(device) as \(kind.rawValue): \(error). \(hint(for: error, kind: kind))")
        }
    }

    func resolveKind() throws -> DeviceKind {
        let isBlock = PathKind.isBlockDevice(device)
        let isZoned = isBlock && KernelZonedDevice.isZonedBlockDevice(path: device)
        let isNVMeChar = !isBlock && NVMeZonedDevice.isPassthroughDevice(path: device)
        let isImage = !isBlock && !isNVMeChar && EmulatedZonedDevice.isEmulatedImage(path: device)
        switch backend {
        case .auto:
            if isNVMeChar { return .nvme }
            if isZoned { return .kernel }
            if isImage { return .emulated }
            return .conventional
        case .kernel:
            guard isZoned else {
                throw CLIError.usage("\(device) is not a zoned block device; drop --backend to detect the kind, or use --backend \(isNVMeChar ? "nvme" : isImage ? "emulated" : "conventional")")
            }
            return .kernel
        case .nvme:
            guard NVMeZonedDevice.passthroughPath(for: device) != nil else {
                throw CLIError.usage("\(device) is not an NVMe namespace: give its generic char device (/dev/ngXnY) or its block device (/dev/nvmeXnY, whose /dev/ngXnY must exist); drop --backend to detect the kind")
            }
            return .nvme
        case .emulated:
            guard isImage else {
                throw CLIError.usage("\(device) is not an emulated zoned image; create one with `zbdfs emulate create`, or use --backend \(isZoned ? "kernel" : "conventional")")
            }
            return .emulated
        case .conventional:
            return .conventional
        }
    }

    private func hint(for e: DeviceError, kind: DeviceKind) -> String {
        switch e.kind {
        case .permissionDenied: return "Run as root or get read-write access to \(device)."
        case .busy:
            if let m = mountOfDevice() {
                return "It is mounted at \(m.mountPoint); unmount it first with `zbdfs umount \(m.mountPoint)`."
            }
            return "Another program holds \(device) open exclusively; unmount it or stop that program."
        case .notFound: return "Check the path."
        case .invalidArgument where kind == .emulated: return "The image header is damaged; recreate it with `zbdfs emulate create --force`."
        default: return "Check that \(device) is the device you meant."
        }
    }
}

extension DeviceOptions {
    /// The zone size conventional mode cuts this device into: the one its zbdfs superblock
    /// records, else --zone-size, else 64 MiB. When formatting, only --zone-size counts.
    func conventionalZoneSize(formatting: Bool) throws -> ByteCount {
        let given = zoneSize.flatMap { ByteCount(parsing: $0) }
        guard !formatting, let recorded = RecordedZoneSize.read(device) else { return given ?? DeviceOptions.defaultZoneSize }
        if let given, given != recorded {
            throw CLIError.usage("\(device) holds a zbdfs file system with \(recorded) zones, not --zone-size \(given): drop --zone-size (the superblock's size is used), or run `zbdfs format \(device) --zone-size \(zoneSize!) --force` to replace the file system")
        }
        return recorded
    }

    /// The device as an absolute path: what a mount records as its source (`fsname=`).
    var absolutePath: String { PathKind.absolute(device) }

    /// The zbdfs mount of this device, if there is one.
    func mountOfDevice() -> MountEntry? { MountTable.mounts(ofDevice: absolutePath).last }
}

enum PathKind {
    /// `path` made absolute against the working directory, symlinks resolved. When `path` itself
    /// cannot be resolved (a dead FUSE mount answers ENOTCONN), its folder is, and its name kept.
    static func absolute(_ path: String) -> String {
        if let r = resolved(path) { return r }
        let url = URL(fileURLWithPath: path)
        if let dir = resolved(url.deletingLastPathComponent().path) {
            return (dir == "/" ? "" : dir) + "/" + url.lastPathComponent
        }
        return url.standardizedFileURL.path
    }

    private static func resolved(_ path: String) -> String? {
        guard let r = realpath(path, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        return (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func isBlockDevice(_ path: String) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        return (st.st_mode & S_IFMT) == S_IFBLK
    }
}

/// Turns a device error during an operation into a runtime CLI error that names a fix.
func runtimeFailure(_ what: String, _ e: DeviceError) -> CLIError {
    let fix: String
    switch e.kind {
    case .tooManyOpenZones: fix = "Close or finish an open zone first (`zbdfs zone close|finish`)."
    case .tooManyActiveZones: fix = "Finish or reset an active zone first (`zbdfs zone finish|reset`)."
    case .io: fix = "The zone may be read-only, offline or full; check `zbdfs zones`."
    case .invalidArgument: fix = "Zone management applies to sequential zones only; check the zone's type with `zbdfs zones`."
    default: fix = "Check `zbdfs zones` for the zone's state."
    }
    return .runtime("\(what) failed: \(e). \(fix)")
}

/// The zone size recorded in the zbdfs superblock of a conventional device (a file or a block
/// device read as bytes, before it is cut into zones).
///
/// The superblock ring is zones 0 and 1: the copy at offset 0 names the zone size; when it is
/// torn or damaged (a crash while it was rewritten), zone 1's copy does, and it is found where
/// its own zone size says zone 1 starts. A copy elsewhere that merely decodes does not count.
enum RecordedZoneSize {
    /// Smallest and largest zone sizes probed for zone 1's copy.
    static let probed = (smallest: ByteCount.kib(64), largest: ByteCount(UInt64(1) << 40))

    static func read(_ path: String) -> ByteCount? {
        guard let h = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? h.close() }
        if let sb = superblock(h, at: 0) { return ByteCount(sb.zoneSize) }
        var zone = probed.smallest
        while zone <= probed.largest {
            if let sb = superblock(h, at: zone.bytes), sb.zoneSize == zone.bytes { return zone }
            zone = ByteCount(zone.bytes << 1)
        }
        return nil
    }

    /// The superblock copy at `offset`, if a valid one is there (reads past the end find none).
    private static func superblock(_ h: FileHandle, at offset: UInt64) -> Superblock? {
        guard (try? h.seek(toOffset: offset)) != nil,
              let data = try? h.read(upToCount: Superblock.copySize(block: 4096)) else { return nil }
        return try? Superblock.decode(Array(data))
    }
}
