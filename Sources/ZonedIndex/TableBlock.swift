// The blocks a table is made of (docs/ON-DISK.md, "Entries and tables").
//
// Invariants:
// - A block is a 32-byte header, a payload, and zero padding up to a whole number of `unit`
//   (4 KiB). Header (little endian): "ZIDX", u8 kind, 3 zero bytes, u64 table id, u32 payload
//   length, u32 item count, u32 CRC-32C (over the header with this field zero, then the payload),
//   4 zero bytes.
// - `decode` never traps: bad magic, unknown kind, a length past the bytes, a checksum mismatch,
//   another table's id, non-zero reserved or padding bytes are typed errors. A decoded block
//   re-encodes byte for byte.
// - The table id is unique per file system and never reused, so a block left by an earlier table
//   in the same place (a conventional zone, or a reader given a stale address) fails the check,
//   and so does a torn write (the checksum).

import ZonedCore

public enum TableBlockKind: UInt8, Sendable {
    case data = 1
    case index = 2
    case footer = 3
}

public struct TableBlock: Equatable, Sendable {
    public static let unit = 4096
    public static let headerBytes = 32
    static let magic: [UInt8] = Array("ZIDX".utf8)

    public var kind: TableBlockKind
    public var tableID: UInt64
    /// Entries in a data block, data blocks named by an index block, 1 for a footer.
    public var count: UInt32
    public var payload: [UInt8]

    /// Bytes the block takes on the device: header and payload rounded up to whole units.
    public var encodedSize: Int { TableBlock.size(payload: payload.count) }

    public static func size(payload: Int) -> Int { (headerBytes + payload + unit - 1) / unit * unit }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: encodedSize)
        w.raw(TableBlock.magic)
        w.u8(kind.rawValue)
        w.zeros(3)
        w.u64(tableID)
        w.u32(UInt32(payload.count))
        w.u32(count)
        w.u32(0)  // checksum, filled below
        w.zeros(4)
        w.raw(payload)
        var bytes = w.bytes
        let crc = CRC32C.checksum(bytes)
        withUnsafeBytes(of: crc.littleEndian) { for (i, b) in $0.enumerated() { bytes[24 + i] = b } }
        bytes.append(contentsOf: repeatElement(0, count: encodedSize - bytes.count))
        return bytes
    }

    /// The block at the start of `bytes` (which may run past it); `tableID`, when given, must match.
    public static func decode(_ bytes: ArraySlice<UInt8>, tableID expected: UInt64? = nil) throws(DecodeError) -> TableBlock {
        var r = ByteReader(Array(bytes.prefix(headerBytes)))
        guard bytes.count >= headerBytes else { throw DecodeError("block header truncated (\(bytes.count) bytes)", at: 0) }
        guard try r.raw(4, "magic") == magic else { throw DecodeError("not an index block (bad magic)", at: 0) }
        guard let kind = TableBlockKind(rawValue: try r.u8("kind")) else { throw DecodeError("unknown block kind", at: 4) }
        try r.expectZeros(3, "reserved header bytes")
        let id = try r.u64("table id")
        let length = Int(try r.u32("payload length"))
        let count = try r.u32("count")
        let stored = try r.u32("checksum")
        try r.expectZeros(4, "reserved header bytes")
        let size = TableBlock.size(payload: length)
        guard length <= Int(Int32.max), size <= bytes.count else {
            throw DecodeError("a block of \(length) payload bytes runs past the \(bytes.count) given", at: 12)
        }
        let start = bytes.startIndex
        var whole = Array(bytes[start..<(start + headerBytes + length)])
        for i in 24..<28 { whole[i] = 0 }
        guard CRC32C.checksum(whole) == stored else { throw DecodeError("block checksum mismatch (torn or damaged)", at: 24) }
        if let expected, id != expected {
            throw DecodeError("block of table \(id) where table \(expected) was expected (stale)", at: 8)
        }
        guard bytes[(start + headerBytes + length)..<(start + size)].allSatisfy({ $0 == 0 }) else {
            throw DecodeError("non-zero block padding", at: headerBytes + length)
        }
        return TableBlock(kind: kind, tableID: id, count: count, payload: Array(whole[headerBytes...]))
    }
}
