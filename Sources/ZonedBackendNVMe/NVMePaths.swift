// Finding an NVMe namespace's generic char device (/dev/ngXnY) and its block device
// (/dev/nvmeXnY) from either, and the block queue limits passthrough commands obey.
//
// Invariants:
// - A path is resolved through stat(2)'s st_rdev to /sys/dev/{char,block}/MAJ:MIN, never by
//   trusting the path's name: renamed nodes and links find the right device.
// - The char device and the block device of one namespace are siblings in sysfs (children of the
//   same controller, or of the same multipath head): a candidate is accepted only when its
//   sysfs parent is the other's. Names (ngXnY ↔ nvmeXnY) only propose candidates.
// - Passthrough commands go through the namespace's block request queue, so they obey its
//   `max_hw_sectors_kb` and `max_segments` (not `max_sectors_kb`, which only splits block IO);
//   those are read from the sibling block device when there is one.
// - Nothing here opens a device: probing must not disturb a device someone else uses.

#if canImport(Glibc)
import Glibc
#endif
import ZonedCore

/// What sysfs says about a device node.
public struct NVMeSysfsNode: Sendable, Equatable {
    public enum Kind: Sendable { case char, block }
    public let kind: Kind
    /// The kernel's name: "ng0n1", "nvme0n1".
    public let name: String
    /// The device's real sysfs directory.
    public let sysPath: String

    /// The sysfs directory holding this device (the controller or multipath head).
    var parent: String { NVMePaths.dirname(sysPath) }

    /// The first line of an attribute, trimmed; nil when it cannot be read.
    func attribute(_ relative: String) -> String? { NVMePaths.readLine(sysPath + "/" + relative) }
}

/// The queue limits of the namespace's block device that bound one passthrough command.
public struct NVMeQueueLimits: Sendable, Equatable {
    public var maxHardwareBytes: UInt64?
    public var maxSegments: Int?
    public init(maxHardwareBytes: UInt64? = nil, maxSegments: Int? = nil) {
        self.maxHardwareBytes = maxHardwareBytes
        self.maxSegments = maxSegments
    }
}

public enum NVMePaths {
    /// The sysfs node of `path`, or nil when it is not a char or block device.
    public static func node(_ path: String) -> NVMeSysfsNode? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        let kind: NVMeSysfsNode.Kind
        switch st.st_mode & S_IFMT {
        case S_IFCHR: kind = .char
        case S_IFBLK: kind = .block
        default: return nil
        }
        let (maj, min) = splitDeviceNumber(UInt64(st.st_rdev))
        guard let real = realPath("/sys/dev/\(kind == .char ? "char" : "block")/\(maj):\(min)") else { return nil }
        return NVMeSysfsNode(kind: kind, name: basename(real), sysPath: real)
    }

    /// True for an NVMe generic char device (ngXnY).
    public static func isGenericCharDevice(_ path: String) -> Bool {
        guard let n = node(path), n.kind == .char else { return false }
        return parseName(n.name, prefix: "ng") != nil
    }

    /// The generic char device to drive `path` with: `path` itself when it is one, the sibling
    /// ngXnY of an nvmeXnY block device, else nil.
    public static func genericCharDevice(for path: String) -> String? {
        guard let n = node(path) else { return nil }
        if n.kind == .char { return parseName(n.name, prefix: "ng") != nil ? path : nil }
        guard let (ctrl, ns) = parseName(n.name, prefix: "nvme") else { return nil }
        let candidate = "/dev/ng\(ctrl)n\(ns)"
        guard let c = node(candidate), c.kind == .char, c.parent == n.parent else { return nil }
        return candidate
    }

    /// The block device node of the namespace `char` is the generic device of, if sysfs has one.
    static func blockSibling(of char: NVMeSysfsNode) -> NVMeSysfsNode? {
        guard let (ctrl, ns) = parseName(char.name, prefix: "ng") else { return nil }
        var names = ["nvme\(ctrl)n\(ns)"]
        // With multipath the block device is named after the subsystem: look among the siblings.
        names += listDirectory(char.parent).filter { $0.hasPrefix("nvme") && $0.hasSuffix("n\(ns)") && $0 != names[0] }
        for name in names {
            guard let real = realPath("/sys/block/\(name)"), dirname(real) == char.parent else { continue }
            return NVMeSysfsNode(kind: .block, name: name, sysPath: real)
        }
        return nil
    }

    /// The limits of `block`'s request queue.
    static func queueLimits(_ block: NVMeSysfsNode?) -> NVMeQueueLimits {
        guard let block else { return NVMeQueueLimits() }
        let kib = block.attribute("queue/max_hw_sectors_kb").flatMap { UInt64($0) }
        let segments = block.attribute("queue/max_segments").flatMap { Int($0) }
        return NVMeQueueLimits(maxHardwareBytes: kib.map { $0 * 1024 }, maxSegments: segments)
    }

    /// "ng3n12" with prefix "ng" → (3, 12); nil for anything else ("nvme0c1n2", "ng0n1p1"…).
    static func parseName(_ name: String, prefix: String) -> (UInt32, UInt32)? {
        guard name.hasPrefix(prefix) else { return nil }
        let rest = name.dropFirst(prefix.count).split(separator: "n", omittingEmptySubsequences: false)
        guard rest.count == 2, let a = UInt32(rest[0]), let b = UInt32(rest[1]) else { return nil }
        return (a, b)
    }

    // MARK: small file system helpers (no Foundation in backends)

    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    static func basename(_ path: String) -> String { String(path.split(separator: "/").last ?? Substring(path)) }

    static func dirname(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func listDirectory(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var out: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { out.append(name) }
        }
        return out
    }

    static func readLine(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { _ = Glibc.close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else { return nil }
        let line = String(decoding: bytes[0..<n].prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        return line.trimmingBlanks
    }
}

extension String {
    fileprivate var trimmingBlanks: String {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        return String(drop(while: isBlank).reversed().drop(while: isBlank).reversed())
    }
}

/// glibc's dev_t layout (major: bits 8–19 and 32–43; minor: bits 0–7 and 12–31); `major()` and
/// `minor()` are macros Swift cannot call.
func splitDeviceNumber(_ dev: UInt64) -> (major: UInt64, minor: UInt64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff))
    let minor = (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff))
    return (major & 0xffff_ffff, minor & 0xffff_ffff)
}
