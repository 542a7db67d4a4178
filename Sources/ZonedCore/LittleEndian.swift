// Little-endian encoding for on-device structures.
//
// Invariants: `ByteReader` never traps on any input: every read past the end, or of a value the
// caller rejects, throws `DecodeError`. Encoders and decoders are exact inverses, so a valid
// structure re-encodes byte for byte.

public struct DecodeError: Error, Sendable, Equatable, CustomStringConvertible {
    public var what: String
    public var offset: Int
    public init(_ what: String, at offset: Int) { self.what = what; self.offset = offset }
    public var description: String { "\(what) (at byte \(offset))" }
}

public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8] = []
    public init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func raw<C: Collection>(_ b: C) where C.Element == UInt8 { bytes.append(contentsOf: b) }
    public mutating func zeros(_ n: Int) {
        guard n > 0 else { return }
        bytes += [UInt8](repeating: 0, count: n)  // one optimized stdlib call, also in debug builds
    }
    /// Pads with zeros up to `length` total bytes (no-op when already that long or longer).
    public mutating func pad(to length: Int) { if bytes.count < length { zeros(length - bytes.count) } }
    public var count: Int { bytes.count }
}

public struct ByteReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var offset: Int = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public init(_ buffer: UnsafeRawBufferPointer) { self.bytes = Array(buffer) }

    public var remaining: Int { bytes.count - offset }

    private mutating func take(_ n: Int, _ what: String) throws(DecodeError) -> ArraySlice<UInt8> {
        guard n >= 0, n <= remaining else { throw DecodeError("truncated \(what)", at: offset) }
        let s = bytes[offset..<(offset + n)]
        offset += n
        return s
    }

    private mutating func uint<T: FixedWidthInteger & UnsignedInteger>(_: T.Type, _ what: String) throws(DecodeError) -> T {
        let s = try take(MemoryLayout<T>.size, what)
        var v: T = 0
        for (i, b) in s.enumerated() { v |= T(b) << (8 * i) }
        return v
    }

    public mutating func u8(_ what: String = "u8") throws(DecodeError) -> UInt8 { try uint(UInt8.self, what) }
    public mutating func u16(_ what: String = "u16") throws(DecodeError) -> UInt16 { try uint(UInt16.self, what) }
    public mutating func u32(_ what: String = "u32") throws(DecodeError) -> UInt32 { try uint(UInt32.self, what) }
    public mutating func u64(_ what: String = "u64") throws(DecodeError) -> UInt64 { try uint(UInt64.self, what) }
    public mutating func raw(_ n: Int, _ what: String = "bytes") throws(DecodeError) -> [UInt8] { Array(try take(n, what)) }
    public mutating func skip(_ n: Int, _ what: String = "padding") throws(DecodeError) { _ = try take(n, what) }
    /// Fails unless the next `n` bytes are all zero (reserved fields must stay zero to round-trip).
    public mutating func expectZeros(_ n: Int, _ what: String = "reserved bytes") throws(DecodeError) {
        let at = offset
        guard try take(n, what).allSatisfy({ $0 == 0 }) else { throw DecodeError("non-zero \(what)", at: at) }
    }
}
