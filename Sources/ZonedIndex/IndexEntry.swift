// One entry of the metadata index: a key, the log sequence that made it, and a put or a delete.
//
// Invariants:
// - Encoded as u16 key length, key, u64 sequence, u8 operation, u32 value length, value (little
//   endian, as the rest of the format). A delete has an empty value.
// - `decode` never traps and accepts only canonical bytes (key 1...IndexKey.maxBytes, known
//   operation, value at most `maxValueBytes`, empty for a delete), so a decoded entry re-encodes
//   byte for byte.
// - Of two entries for one key the higher sequence wins; a delete hides every older put.

import ZonedCore

public enum IndexOperation: UInt8, Sendable {
    case put = 1
    case delete = 2
}

public struct IndexEntry: Equatable, Sendable {
    public static let maxValueBytes = 1 << 20
    public var key: IndexKey
    public var sequence: UInt64
    public var operation: IndexOperation
    public var value: [UInt8]

    public static func put(_ key: IndexKey, _ value: [UInt8], sequence: UInt64) -> IndexEntry {
        precondition(value.count <= maxValueBytes, "an index value of \(value.count) bytes")
        return IndexEntry(key: key, sequence: sequence, operation: .put, value: value)
    }

    public static func delete(_ key: IndexKey, sequence: UInt64) -> IndexEntry {
        IndexEntry(key: key, sequence: sequence, operation: .delete, value: [])
    }

    /// Bytes this entry takes encoded.
    public var encodedSize: Int { 2 + key.bytes.count + 8 + 1 + 4 + value.count }

    public func encode(into w: inout ByteWriter) {
        w.u16(UInt16(key.bytes.count))
        w.raw(key.bytes)
        w.u64(sequence)
        w.u8(operation.rawValue)
        w.u32(UInt32(value.count))
        w.raw(value)
    }

    public static func decode(_ r: inout ByteReader) throws(DecodeError) -> IndexEntry {
        let at = r.offset
        let keyLength = Int(try r.u16("key length"))
        guard keyLength > 0, keyLength <= IndexKey.maxBytes else { throw DecodeError("key of \(keyLength) bytes", at: at) }
        let key = IndexKey(unchecked: try r.raw(keyLength, "key"))
        let sequence = try r.u64("sequence")
        let opAt = r.offset
        guard let op = IndexOperation(rawValue: try r.u8("operation")) else { throw DecodeError("unknown operation", at: opAt) }
        let valueAt = r.offset
        let valueLength = Int(try r.u32("value length"))
        guard valueLength <= maxValueBytes else { throw DecodeError("value of \(valueLength) bytes", at: valueAt) }
        guard op == .put || valueLength == 0 else { throw DecodeError("a delete with a value", at: valueAt) }
        return IndexEntry(key: key, sequence: sequence, operation: op, value: try r.raw(valueLength, "value"))
    }
}
