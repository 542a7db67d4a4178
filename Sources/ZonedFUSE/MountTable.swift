// The kernel's mount table as /proc/self/mountinfo shows it: who has a device mounted, and
// whether a mount point is ready.
//
// Invariants:
// - Parsing never traps: a line that does not have the documented shape is skipped.
// - Fields come back unescaped (the kernel writes space, tab, newline and backslash as \ooo).
// - A zbdfs mount has the file system type "fuse.zbdfs" and its absolute device path as source
//   (the mount sets `fsname=` to it), so "which mount holds this device" is a lookup by source.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public struct MountEntry: Sendable, Equatable {
    public var mountPoint: String
    public var fileSystemType: String
    public var source: String
    public var options: String

    public var isZBDFS: Bool { fileSystemType == MountTable.fileSystemType }
}

public enum MountTable {
    /// The type /proc/self/mountinfo shows for our mounts (FUSE's "fuse." + our subtype).
    public static let fileSystemType = "fuse.zbdfs"

    /// The current mounts; empty when /proc is not there.
    public static func read(path: String = "/proc/self/mountinfo") -> [MountEntry] {
        guard let text = readText(path) else { return [] }
        return parse(text)
    }

    /// Parses mountinfo text: `id parent major:minor root mountpoint options [optional...] - type source superoptions`.
    public static func parse(_ text: String) -> [MountEntry] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard fields.count > 8, let dash = fields[6...].firstIndex(of: "-"), dash + 2 < fields.count else { return nil }
            return MountEntry(mountPoint: unescape(fields[4]), fileSystemType: unescape(fields[dash + 1]),
                              source: unescape(fields[dash + 2]), options: fields[5])
        }
    }

    /// zbdfs mounts of `device`, newest last: by path, or by identity (another name of the same
    /// file or device node: a hard link, a bind mount).
    public static func mounts(ofDevice device: String, in entries: [MountEntry] = read()) -> [MountEntry] {
        let id = identity(device)
        return entries.filter { $0.isZBDFS && ($0.source == device || (id != nil && identity($0.source) == id)) }
    }

    /// What names a file or device: (st_dev, st_ino), and st_rdev for device nodes.
    static func identity(_ path: String) -> [UInt64]? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return (st.st_mode & S_IFMT) == S_IFBLK ? [UInt64(st.st_rdev)] : [UInt64(st.st_dev), UInt64(st.st_ino)]
    }

    /// The mount whose mount point is `path` (an absolute, resolved path), topmost if stacked.
    public static func mount(at path: String, in entries: [MountEntry] = read()) -> MountEntry? {
        entries.last { $0.mountPoint == path }
    }

    /// Undoes the kernel's octal escapes (\040 space, \011 tab, \012 newline, \134 backslash).
    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count, let v = octal(b[(i + 1)...(i + 3)]) {
                out.append(v)
                i += 4
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func octal(_ digits: ArraySlice<UInt8>) -> UInt8? {
        guard digits.count == 3 else { return nil }
        var v = 0
        for d in digits {
            guard d >= UInt8(ascii: "0"), d <= UInt8(ascii: "7") else { return nil }
            v = v * 8 + Int(d - UInt8(ascii: "0"))
        }
        return v <= 255 ? UInt8(v) : nil
    }

    private static func readText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            out += chunk[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }
}
