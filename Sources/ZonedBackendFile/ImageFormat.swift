// The on-disk layout of an emulated zoned image, and its codecs.
//
// Invariants:
// - Decoding never traps: every malformed input (wrong magic, unknown version, checksum mismatch,
//   truncation, out-of-range field, non-zero reserved bytes) gives a `DeviceError` whose detail
//   names the problem. A valid structure re-encodes byte for byte.
// - The image is one regular file:
//
//     file offset 0            header, 128 bytes used, zero-padded to 4096
//     file offset 4096         zone table slot 0   (tableSlotBytes, a 4096 multiple)
//     4096 + tableSlotBytes    zone table slot 1
//     dataStart                device offset 0; device offset X lives at dataStart + X.
//                              dataStart = 4096 + 2 * tableSlotBytes, so it is 4096-aligned and
//                              direct IO to the data region stays aligned.
//     dataStart + zoneCount * zoneSize   end of file (sized with ftruncate: sparse).
//
// - Header (little endian): "ZBDFSEMU", u32 version (1), u32 flags (bit 0: zone append; must
//   agree with maxAppendBytes; bit 1: discard data, see KeptBlocks.swift: the data region then
//   holds records of the non-zero blocks instead of the device's bytes), u32 zoneCount, u32 logicalBlockSize, u64 zoneSize,
//   u64 zoneCapacity, u32 maxOpenZones, u32 maxActiveZones, u64 maxWriteBytes,
//   u64 maxAppendBytes, u32 conventionalZoneCount, u32 reserved (0), u64 tableOffset,
//   u64 tableSlotBytes, u64 dataStart, zeros up to byte 124, u32 crc32c of bytes 0..<124.
// - Zone table slot: "ZBDFSZTB", u64 generation, u32 zoneCount, u32 reserved (0), then per zone
//   16 bytes {u8 condition code, 7 zero bytes, u64 write pointer (device offset)}, then u32
//   crc32c of everything before it in the slot; zero padding to the slot size.
// - Two table slots alternate (generation g goes to slot g % 2), so a crash while the table is
//   rewritten leaves the previous table intact; open takes the valid slot with the higher
//   generation and fails only when neither slot is valid.

import ZonedCore

enum ImageFormat {
    static let magic: [UInt8] = Array("ZBDFSEMU".utf8)
    static let tableMagic: [UInt8] = Array("ZBDFSZTB".utf8)
    static let version: UInt32 = 1
    static let headerBytes = 128
    static let headerBlock: UInt64 = 4096
    static let zoneEntryBytes = 16
    static let tableHeaderBytes = 24
    static let flagZoneAppend: UInt32 = 1 << 0
    static let flagDiscardData: UInt32 = 1 << 1

    /// What the header says: the device's geometry and how its data is kept.
    struct Header: Equatable {
        var geometry: DeviceGeometry
        /// Blocks of zeros are never stored (reads give zeros); see KeptBlocks.swift.
        var discardsData = false
    }

    /// Bytes of one table slot for `zoneCount` zones, rounded up to 4096.
    static func tableSlotBytes(zoneCount: Int) -> UInt64 {
        let used = UInt64(tableHeaderBytes + zoneEntryBytes * zoneCount + 4)
        return (used + 4095) / 4096 * 4096
    }

    static func dataStart(zoneCount: Int) -> UInt64 {
        headerBlock + 2 * tableSlotBytes(zoneCount: zoneCount)
    }

    static func tableOffset(slot: Int, zoneCount: Int) -> UInt64 {
        headerBlock + UInt64(slot) * tableSlotBytes(zoneCount: zoneCount)
    }

    // MARK: Header

    static func encodeHeader(_ g: DeviceGeometry, discardsData: Bool = false) -> [UInt8] {
        var w = ByteWriter(capacity: headerBytes)
        w.raw(magic)
        w.u32(version)
        w.u32((g.supportsZoneAppend ? flagZoneAppend : 0) | (discardsData ? flagDiscardData : 0))
        w.u32(UInt32(g.zoneCount))
        w.u32(UInt32(g.logicalBlockSize.bytes))
        w.u64(g.zoneSize.bytes)
        w.u64(g.zoneCapacity.bytes)
        w.u32(UInt32(g.maxOpenZones))
        w.u32(UInt32(g.maxActiveZones))
        w.u64(g.maxWriteBytes.bytes)
        w.u64(g.maxAppendBytes.bytes)
        w.u32(UInt32(g.conventionalZoneCount))
        w.u32(0)
        w.u64(headerBlock)
        w.u64(tableSlotBytes(zoneCount: g.zoneCount))
        w.u64(dataStart(zoneCount: g.zoneCount))
        w.pad(to: headerBytes - 4)
        w.u32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    static func decodeHeader(_ bytes: [UInt8], path: String) throws(DeviceError) -> Header {
        guard bytes.count >= magic.count, Array(bytes[0..<magic.count]) == magic else {
            throw .invalid(.open, "\(path) is not an emulated zoned image (bad magic)")
        }
        guard bytes.count >= headerBytes else {
            throw .io(.open, "\(path): header truncated (\(bytes.count) of \(headerBytes) bytes)")
        }
        let stored = UInt32(bytes[124]) | UInt32(bytes[125]) << 8 | UInt32(bytes[126]) << 16 | UInt32(bytes[127]) << 24
        guard CRC32C.checksum(Array(bytes[0..<(headerBytes - 4)])) == stored else {
            throw .io(.open, "\(path): header checksum mismatch (the image header is corrupt)")
        }
        do throws(DecodeError) {
            return try decodeHeaderFields(ByteReader(Array(bytes[0..<headerBytes])), path: path)
        } catch {
            throw .io(.open, "\(path): bad header: \(error)")
        }
    }

    private static func decodeHeaderFields(_ reader: ByteReader, path: String) throws(DecodeError) -> Header {
        var r = reader
        try r.skip(magic.count, "magic")
        let v = try r.u32("version")
        guard v == version else { throw DecodeError("unsupported format version \(v) (this build reads \(version))", at: 8) }
        let flags = try r.u32("flags")
        guard flags & ~(flagZoneAppend | flagDiscardData) == 0 else { throw DecodeError("unknown flags 0x\(String(flags, radix: 16))", at: 12) }
        let zoneCount = Int(try r.u32("zone count"))
        let blockSize = ByteCount(UInt64(try r.u32("block size")))
        let zoneSize = ByteCount(try r.u64("zone size"))
        let zoneCapacity = ByteCount(try r.u64("zone capacity"))
        let maxOpen = Int(try r.u32("max open zones"))
        let maxActive = Int(try r.u32("max active zones"))
        let maxWrite = ByteCount(try r.u64("max write bytes"))
        let maxAppend = ByteCount(try r.u64("max append bytes"))
        let conventional = Int(try r.u32("conventional zone count"))
        try r.expectZeros(4, "reserved header field")
        let g = DeviceGeometry(zoneCount: zoneCount, zoneSize: zoneSize, zoneCapacity: zoneCapacity,
                               logicalBlockSize: blockSize, maxOpenZones: maxOpen, maxActiveZones: maxActive,
                               maxWriteBytes: maxWrite, maxAppendBytes: maxAppend,
                               conventionalZoneCount: conventional)
        if let problem = g.problem() { throw DecodeError("invalid geometry: \(problem)", at: 16) }
        guard (flags & flagZoneAppend != 0) == g.supportsZoneAppend else {
            throw DecodeError("zone-append flag disagrees with max append bytes", at: 12)
        }
        guard g.zoneSize.bytes <= UInt64.max / UInt64(zoneCount) / 2 else {
            throw DecodeError("device size overflows", at: 16)
        }
        let at = r.offset
        guard try r.u64("table offset") == headerBlock,
              try r.u64("table slot size") == tableSlotBytes(zoneCount: zoneCount),
              try r.u64("data start") == dataStart(zoneCount: zoneCount) else {
            throw DecodeError("table or data offsets disagree with the zone count", at: at)
        }
        try r.expectZeros(headerBytes - 4 - r.offset, "reserved header bytes")
        return Header(geometry: g, discardsData: flags & flagDiscardData != 0)
    }

    // MARK: Zone table

    static func encodeTable(_ states: [ZoneState], generation: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: Int(tableSlotBytes(zoneCount: states.count)))
        w.raw(tableMagic)
        w.u64(generation)
        w.u32(UInt32(states.count))
        w.u32(0)
        for s in states {
            w.u8(s.condition.code)
            w.zeros(7)
            w.u64(s.writePointer.bytes)
        }
        w.u32(CRC32C.checksum(w.bytes))
        w.pad(to: Int(tableSlotBytes(zoneCount: states.count)))
        return w.bytes
    }

    /// The generation and zone states of one slot; entries are checked against the geometry.
    static func decodeTable(_ bytes: [UInt8], geometry g: DeviceGeometry) throws(DecodeError) -> (generation: UInt64, states: [ZoneState]) {
        let crcAt = tableHeaderBytes + zoneEntryBytes * g.zoneCount
        guard bytes.count >= crcAt + 4 else { throw DecodeError("truncated zone table", at: bytes.count) }
        var r = ByteReader(Array(bytes[0..<(crcAt + 4)]))
        guard try r.raw(tableMagic.count, "table magic") == tableMagic else { throw DecodeError("bad zone table magic", at: 0) }
        let stored = UInt32(bytes[crcAt]) | UInt32(bytes[crcAt + 1]) << 8 | UInt32(bytes[crcAt + 2]) << 16 | UInt32(bytes[crcAt + 3]) << 24
        guard CRC32C.checksum(Array(bytes[0..<crcAt])) == stored else { throw DecodeError("zone table checksum mismatch", at: crcAt) }
        let generation = try r.u64("generation")
        let count = try r.u32("zone count")
        guard count == UInt32(g.zoneCount) else { throw DecodeError("zone table holds \(count) zones, header says \(g.zoneCount)", at: 16) }
        try r.expectZeros(4, "reserved table field")
        var states: [ZoneState] = []
        states.reserveCapacity(g.zoneCount)
        for i in 0..<g.zoneCount {
            let at = r.offset
            let code = try r.u8("condition")
            try r.expectZeros(7, "reserved zone entry bytes")
            let wp = DeviceOffset(try r.u64("write pointer"))
            guard let condition = ZoneCondition(code: code) else { throw DecodeError("zone \(i): unknown condition code \(code)", at: at) }
            let s = ZoneState(condition: condition, writePointer: wp)
            if let problem = s.problem(zone: ZoneID(i), geometry: g) { throw DecodeError(problem, at: at) }
            states.append(s)
        }
        return (generation, states)
    }
}

extension ZoneState {
    /// Why this persisted state cannot belong to zone `id`, or nil when it can.
    func problem(zone id: ZoneID, geometry g: DeviceGeometry) -> String? {
        let start = g.zoneStart(id)
        let capEnd = start + g.zoneCapacity
        if g.isConventional(id) {
            switch condition {
            case .notWritePointer, .readOnly, .offline: break
            default: return "\(id) is conventional but has condition \(condition.rawValue)"
            }
            return writePointer == start ? nil : "\(id): conventional zone with a write pointer \(writePointer)"
        }
        if condition == .notWritePointer { return "\(id) is sequential but has condition not-wp" }
        if writePointer < start || writePointer > capEnd {
            return "\(id): write pointer \(writePointer) outside [\(start), \(capEnd)]"
        }
        if !writePointer.isAligned(to: g.logicalBlockSize) { return "\(id): unaligned write pointer \(writePointer)" }
        switch condition {
        case .empty where writePointer != start: return "\(id): empty zone with write pointer \(writePointer)"
        case .full where writePointer != capEnd: return "\(id): full zone with write pointer \(writePointer)"
        case .closed where writePointer == start: return "\(id): closed zone with nothing written"
        case .implicitlyOpen where writePointer == capEnd, .explicitlyOpen where writePointer == capEnd,
             .closed where writePointer == capEnd:
            return "\(id): \(condition.rawValue) zone with its write pointer at capacity"
        default: return nil
        }
    }
}
