// Keys of the metadata index (docs/ON-DISK.md, "Keys").
//
// Invariants:
// - A key is a non-empty byte string of at most `maxBytes`, compared bytewise; numbers in it are
//   big-endian, so byte order is numeric order and every kind's keys form one contiguous range
//   (the first byte is the kind).
// - The constructors here are the only way the file system makes keys, so a prefix scan
//   (`IndexKey.prefix`) covers exactly the keys of one inode, directory or kind.

import ZonedCore

/// What a key names; its first byte.
public enum IndexKeyKind: UInt8, Sendable, CaseIterable {
    case inode = 1
    case entry = 2
    case extent = 3
    case checksums = 4
    case xattr = 5
}

public struct IndexKey: Comparable, Hashable, Sendable, CustomStringConvertible {
    public static let maxBytes = 1_024
    public let bytes: [UInt8]

    /// Bytes already checked to be a key (1...maxBytes of them); decoders check before calling.
    init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    /// A key read back from elsewhere (a log record): nil unless 1...maxBytes bytes.
    public init?(validating bytes: [UInt8]) {
        guard !bytes.isEmpty, bytes.count <= IndexKey.maxBytes else { return nil }
        self.bytes = bytes
    }

    public static func < (a: IndexKey, b: IndexKey) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }

    public var kind: IndexKeyKind? { bytes.first.flatMap(IndexKeyKind.init(rawValue:)) }

    public var description: String {
        let kind = self.kind.map { "\($0)" } ?? "?"
        return "\(kind):" + bytes.dropFirst().map { b in String(b, radix: 16).count == 1 ? "0" + String(b, radix: 16) : String(b, radix: 16) }.joined()
    }

    // MARK: Constructors

    public static func inode(_ n: UInt64) -> IndexKey { make(.inode) { $0.bigEndian(n) } }

    /// A directory entry: `name` is 1–255 bytes (EntryName's rule; checked by the caller's type).
    public static func entry(parent: UInt64, name: [UInt8]) -> IndexKey {
        make(.entry) { $0.bigEndian(parent); $0.bytes.append(contentsOf: name) }
    }

    public static func extent(inode: UInt64, fileOffset: UInt64) -> IndexKey {
        make(.extent) { $0.bigEndian(inode); $0.bigEndian(fileOffset) }
    }

    public static func checksums(address: UInt64) -> IndexKey { make(.checksums) { $0.bigEndian(address) } }

    public static func xattr(inode: UInt64, name: [UInt8]) -> IndexKey {
        make(.xattr) { $0.bigEndian(inode); $0.bytes.append(contentsOf: name) }
    }

    /// The smallest key of `kind`, optionally followed by `id` (an inode or parent): every key of
    /// that kind (and id) starts with these bytes.
    public static func prefix(_ kind: IndexKeyKind, _ id: UInt64? = nil) -> [UInt8] {
        var w = KeyWriter(kind)
        if let id { w.bigEndian(id) }
        return w.bytes
    }

    private static func make(_ kind: IndexKeyKind, _ body: (inout KeyWriter) -> Void) -> IndexKey {
        var w = KeyWriter(kind)
        body(&w)
        precondition(w.bytes.count <= maxBytes, "an index key of \(w.bytes.count) bytes")
        return IndexKey(unchecked: w.bytes)
    }

    /// Whether this key starts with `prefix`.
    public func hasPrefix(_ prefix: [UInt8]) -> Bool { bytes.starts(with: prefix) }

    /// The big-endian u64 at byte `at` (after the kind byte, at 1 for the first field), when the
    /// key is long enough.
    public func field(at: Int) -> UInt64? {
        guard at >= 0, at + 8 <= bytes.count else { return nil }
        return bytes[at..<(at + 8)].reduce(0) { $0 << 8 | UInt64($1) }
    }
}

private struct KeyWriter {
    var bytes: [UInt8]
    init(_ kind: IndexKeyKind) { bytes = [kind.rawValue] }
    mutating func bigEndian(_ v: UInt64) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
}
