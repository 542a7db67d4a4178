// Which backend serves a path, and opening it with errors that say what to do.
//
// Detection: an NVMe generic char device (/dev/ngXnY) is driven by the NVMe passthrough backend;
// a block device whose queue/zoned is not "none" is a kernel zoned device; any other block device
// is conventional; a regular file with the emulated-image magic is emulated; any other regular
// file is conventional. `--backend` overrides detection but is checked against the path, so
// asking for "kernel" on a regular file is a usage error, not a confusing IO failure.
// `--backend nvme` also takes a namespace's block device (/dev/nvmeXnY) and drives its char device.
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
import ZonedFUSE

enum BackendChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, emulated, conventional, kernel, nvme
}

struct DeviceOptions: ParsableArguments {
    @Argument(help: ArgumentHelp("The device: a zoned block device, an NVMe ZNS namespace's char device (/dev/ngXnY), an emulated image, or a file/block device for conventional mode.", valueName: "device"))
    var device: String

    @Option(help: "Backend to use instead of detecting it: \(BackendChoice.allCases.map(\.rawValue).joined(separator: ", ")).")
    var backend: BackendChoice = .auto

    @Option(help: ArgumentHelp("Zone size for conventional mode (a power of two).", valueName: "size"))
    var zoneSize: String = "64M"

    func validate() throws {
        guard FileManager.default.fileExists(atPath: device) else {
            throw ValidationError("\(device): no such file or device. Create an emulated device with `zbdfs emulate create \(device) --size 1G --zone-size 64M`, or check the path.")
        }
        guard let zs = ByteCount(parsing: zoneSize), zs.isPowerOfTwo else {
            throw ValidationError("--zone-size \(zoneSize) is not a power-of-two size; use e.g. 64M or 256M.")
        }
        _ = zs
    }

    /// Opens the device, detecting or checking its kind. `exclusive: false` is for read-only
    /// reports: a file-backed device is then opened without claiming it, even while mounted.
    func open(exclusive: Bool = true) throws -> any ZonedDevice {
        let kind = try resolveKind()
        // Typed, and no `catch let e as DeviceError`: that pattern crashes Swift 6.3's compiler.
        do throws(DeviceError) {
            switch kind {
            case .emulated: return try EmulatedZonedDevice.open(path: device, exclusive: exclusive)
            case .conventional:
                return try ConventionalDevice.open(path: device, zoneSize: ByteCount(parsing: zoneSize)!, exclusive: exclusive)
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
