// A frame of the metadata log: what one log write puts on the device.
//
// Layout: a 40-byte header, the records, zero padding to the next block boundary.
//   magic u32 "ZLOG" | version u16 | flags u16 | fsid u64 | sequence u64 | payload length u32 |
//   payload CRC-32C u32 | header CRC-32C u32 (over the 36 bytes before it) | reserved u32
//
// Invariants:
// - Frames start on block boundaries and are written whole: a frame is the unit of atomicity, so
//   every batch of records (one file system operation) is in exactly one frame.
// - Sequence numbers go up by one from frame to frame across zones; `fsid` names the file system,
//   so bytes left by an earlier file system or an earlier use of a zone never continue the log.
// - A frame whose header or payload does not check out ends the log when it is the last thing
//   written (a torn write at the write pointer); anything after it would make it corruption.
// - `decodeHeader` and `decodePayload` never trap and accept only canonical bytes.

import ZonedCore

public struct LogFrameHeader: Sendable, Equatable {
    public static let magic: UInt32 = 0x474F_4C5A  // "ZLOG"
    public static let version: UInt16 = 1
    public static let size = 40

    public var fsid: UInt64
    public var sequence: UInt64
    public var payloadLength: UInt32
    public var payloadCRC: UInt32

    /// Bytes the whole frame takes on a device with `block`-byte blocks.
    public func frameBytes(block: Int) -> Int { (LogFrameHeader.size + Int(payloadLength) + block - 1) / block * block }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: LogFrameHeader.size)
        w.u32(LogFrameHeader.magic)
        w.u16(LogFrameHeader.version)
        w.u16(0)
        w.u64(fsid)
        w.u64(sequence)
        w.u32(payloadLength)
        w.u32(payloadCRC)
        w.u32(CRC32C.checksum(w.bytes))
        w.u32(0)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> LogFrameHeader {
        var r = ByteReader(bytes)
        guard try r.u32("frame magic") == magic else { throw DecodeError("no log frame magic", at: 0) }
        let v = try r.u16("frame version")
        guard v == version else { throw DecodeError("log frame version \(v)", at: 4) }
        guard try r.u16("frame flags") == 0 else { throw DecodeError("unknown frame flags", at: 6) }
        let h = LogFrameHeader(fsid: try r.u64("fsid"), sequence: try r.u64("sequence"),
                               payloadLength: try r.u32("payload length"), payloadCRC: try r.u32("payload checksum"))
        let crc = try r.u32("header checksum")
        guard crc == CRC32C.checksum(Array(bytes[0..<32])) else { throw DecodeError("log frame header checksum mismatch", at: 32) }
        try r.expectZeros(4)
        guard r.remaining == 0 else { throw DecodeError("log frame header of \(bytes.count) bytes", at: 0) }
        return h
    }
}

public enum LogFrame {
    /// A whole frame (header, records, padding) ready to write.
    public static func encode(fsid: UInt64, sequence: UInt64, payload: [UInt8], block: Int) -> [UInt8] {
        let h = LogFrameHeader(fsid: fsid, sequence: sequence, payloadLength: UInt32(payload.count),
                               payloadCRC: CRC32C.checksum(payload))
        var w = ByteWriter(capacity: h.frameBytes(block: block))
        w.raw(h.encode())
        w.raw(payload)
        w.pad(to: h.frameBytes(block: block))
        return w.bytes
    }

    public static func payload(_ records: [LogRecord]) -> [UInt8] {
        var w = ByteWriter()
        for r in records { r.encode(into: &w) }
        return w.bytes
    }

    /// Decodes a whole frame (exactly `frameBytes` long): header, checksums, records, padding.
    public static func decode(_ bytes: [UInt8], block: Int) throws(DecodeError) -> (LogFrameHeader, [LogRecord]) {
        guard bytes.count >= LogFrameHeader.size else { throw DecodeError("frame shorter than its header", at: 0) }
        let h = try LogFrameHeader.decode(Array(bytes[0..<LogFrameHeader.size]))
        guard bytes.count == h.frameBytes(block: block) else {
            throw DecodeError("frame of \(bytes.count) bytes, header says \(h.frameBytes(block: block))", at: 0)
        }
        let end = LogFrameHeader.size + Int(h.payloadLength)
        let payload = Array(bytes[LogFrameHeader.size..<end])
        guard CRC32C.checksum(payload) == h.payloadCRC else { throw DecodeError("log frame payload checksum mismatch", at: LogFrameHeader.size) }
        guard bytes[end...].allSatisfy({ $0 == 0 }) else { throw DecodeError("non-zero frame padding", at: end) }
        return (h, try decodePayload(payload))
    }

    public static func decodePayload(_ payload: [UInt8]) throws(DecodeError) -> [LogRecord] {
        var r = ByteReader(payload)
        var out: [LogRecord] = []
        while r.remaining > 0 { out.append(try LogRecord.decode(&r)) }
        return out
    }
}
