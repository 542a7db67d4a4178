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
// - Header (little endian): "ZBDFSEMU", u32 version (2; 1 is read and upgraded, below), u32 flags
//   (bit 0: zone append; must agree with maxAppendBytes; bit 1: discard data, see KeptBlocks.swift:
//   the data region then holds records of the non-zero blocks instead of the device's bytes),
//   u32 zoneCount, u32 logicalBlockSize, u64 zoneSize, u64 zoneCapacity, u32 maxOpenZones,
//   u32 maxActiveZones, u64 maxWriteBytes, u64 maxAppendBytes, u32 conventionalZoneCount,
//   u32 reserved (0), u64 tableOffset, u64 tableSlotBytes, u64 dataStart, zeros up to byte 124,
//   u32 crc32c of bytes 0..<124.
// - Version 2 zone table: two slots, each "ZBDFSZTB", u64 0, u32 zoneCount, u32 slot index, then
//   per zone a 16-byte entry {u8 condition code, u8 sequence, u8 tag 0xA5, u8 0, u32 crc32c of
//   (u32 zone index, u8 slot index, the entry's bytes 0..<4, the write pointer), u64 write pointer
//   (device offset)}, then 4 zero bytes; zero padding to the slot size. Every zone has a copy in
//   each slot; a copy of sequence q lives in slot q % 2, and the newer of two valid copies is the
//   one whose sequence is the other's plus one (mod 256). A change to a zone writes one entry: the
//   next sequence, over that zone's older copy. So a zone command costs 16 bytes whatever the zone
//   count, and a crash in the middle of an entry write leaves that zone's newer copy intact. The
//   slot header is for people reading a dump; entries stand on their own (the checksum names the
//   zone and the slot, so an entry in the wrong place is invalid).
// - Version 1 zone table (read only): per slot "ZBDFSZTB", u64 generation, u32 zoneCount,
//   u32 reserved (0), per zone {u8 condition code, 7 zero bytes, u64 write pointer}, then u32
//   crc32c of everything before it in the slot; open takes the valid slot with the higher
//   generation. The first change to a version 1 image upgrades it (EmulatedZonedDevice): it
//   writes the older slot whole in version 2 form, syncs, then writes the version 2 header and
//   syncs. A crash before the header leaves a valid version 1 image (its newer slot untouched);
//   after it, the older slot's version 1 entries carry no tag, so only the new slot counts.
// - Both versions lay the slots out at the same offsets and sizes, so dataStart does not change.

import ZonedCore

enum ImageFormat {
    static let magic: [UInt8] = Array("ZBDFSEMU".utf8)
    static let tableMagic: [UInt8] = Array("ZBDFSZTB".utf8)
    /// The version this build writes; it reads 1 too (and upgrades it on the first change).
    static let version: UInt32 = 2
    static let entryTag: UInt8 = 0xA5
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
        /// 1: one checksum over each whole table slot; 2: a checksum and a sequence per entry.
        var version: UInt32 = ImageFormat.version
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

    static func encodeHeader(_ g: DeviceGeometry, discardsData: Bool = false, version: UInt32 = version) -> [UInt8] {
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
        guard v == 1 || v == version else { throw DecodeError("unsupported format version \(v) (this build reads 1 and \(version))", at: 8) }
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
        return Header(geometry: g, discardsData: flags & flagDiscardData != 0, version: v)
    }

    // MARK: Zone table, version 1 (read, and written only by tests that make old images)

    static func encodeTableV1(_ states: [ZoneState], generation: UInt64) -> [UInt8] {
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
    static func decodeTableV1(_ bytes: [UInt8], geometry g: DeviceGeometry) throws(DecodeError) -> (generation: UInt64, states: [ZoneState]) {
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

    // MARK: Zone table, version 2

    /// Where zone `zone`'s copy in `slot` lives in the file.
    static func entryOffset(slot: Int, zone: Int, zoneCount: Int) -> UInt64 {
        tableOffset(slot: slot, zoneCount: zoneCount) + UInt64(tableHeaderBytes + zoneEntryBytes * zone)
    }

    /// The slot a copy of sequence `sequence` lives in.
    static func slot(of sequence: UInt8) -> Int { Int(sequence % 2) }

    private static func entryCRC(zone: Int, slot: Int, head: [UInt8], writePointer: UInt64) -> UInt32 {
        var w = ByteWriter(capacity: 17)
        w.u32(UInt32(zone))
        w.u8(UInt8(slot))
        w.raw(head)
        w.u64(writePointer)
        return CRC32C.checksum(w.bytes)
    }

    /// One zone's copy of sequence `sequence` (it belongs in slot `slot(of: sequence)`).
    static func encodeEntry(_ state: ZoneState, zone: Int, sequence: UInt8) -> [UInt8] {
        let head: [UInt8] = [state.condition.code, sequence, entryTag, 0]
        var w = ByteWriter(capacity: zoneEntryBytes)
        w.raw(head)
        w.u32(entryCRC(zone: zone, slot: slot(of: sequence), head: head, writePointer: state.writePointer.bytes))
        w.u64(state.writePointer.bytes)
        return w.bytes
    }

    /// Zone `zone`'s copy in `slot`: its sequence and state, checked against the geometry.
    static func decodeEntry(_ bytes: ArraySlice<UInt8>, zone: Int, slot: Int, geometry g: DeviceGeometry) throws(DecodeError) -> (sequence: UInt8, state: ZoneState) {
        var r = ByteReader(Array(bytes))
        let head = try r.raw(4, "entry head")
        let stored = try r.u32("entry checksum")
        let wp = try r.u64("write pointer")
        guard head[2] == entryTag else { throw DecodeError("zone \(zone), slot \(slot): no entry (tag \(head[2]))", at: 2) }
        guard stored == entryCRC(zone: zone, slot: slot, head: head, writePointer: wp) else {
            throw DecodeError("zone \(zone), slot \(slot): entry checksum mismatch", at: 4)
        }
        guard head[3] == 0 else { throw DecodeError("zone \(zone), slot \(slot): reserved entry byte \(head[3])", at: 3) }
        guard Self.slot(of: head[1]) == slot else { throw DecodeError("zone \(zone): sequence \(head[1]) in slot \(slot)", at: 1) }
        guard let condition = ZoneCondition(code: head[0]) else { throw DecodeError("zone \(zone): unknown condition code \(head[0])", at: 0) }
        let s = ZoneState(condition: condition, writePointer: DeviceOffset(wp))
        if let problem = s.problem(zone: ZoneID(zone), geometry: g) { throw DecodeError(problem, at: 8) }
        return (head[1], s)
    }

    /// A whole slot: every zone's copy of sequence `sequence` (create, and the version 1 upgrade).
    static func encodeSlot(_ states: [ZoneState], sequence: UInt8) -> [UInt8] {
        var w = ByteWriter(capacity: Int(tableSlotBytes(zoneCount: states.count)))
        w.raw(tableMagic)
        w.u64(0)
        w.u32(UInt32(states.count))
        w.u32(UInt32(slot(of: sequence)))
        for (i, s) in states.enumerated() { w.raw(encodeEntry(s, zone: i, sequence: sequence)) }
        w.pad(to: Int(tableSlotBytes(zoneCount: states.count)))
        return w.bytes
    }

    /// Every zone's newest valid copy from the two slots, and its sequence. A zone with no valid
    /// copy, or two valid copies that are not one sequence apart, is an error naming the zone.
    static func decodeSlots(_ slots: [[UInt8]], geometry g: DeviceGeometry) throws(DecodeError) -> (states: [ZoneState], sequences: [UInt8]) {
        let needed = tableHeaderBytes + zoneEntryBytes * g.zoneCount
        for (i, b) in slots.enumerated() where b.count < needed {
            throw DecodeError("zone table slot \(i) truncated (\(b.count) of \(needed) bytes)", at: b.count)
        }
        var states: [ZoneState] = []
        var sequences: [UInt8] = []
        states.reserveCapacity(g.zoneCount)
        sequences.reserveCapacity(g.zoneCount)
        for z in 0..<g.zoneCount {
            let at = tableHeaderBytes + zoneEntryBytes * z
            var copies: [(sequence: UInt8, state: ZoneState)] = []
            var problems: [String] = []
            for slot in 0..<2 {
                do throws(DecodeError) {
                    copies.append(try decodeEntry(slots[slot][at..<(at + zoneEntryBytes)], zone: z, slot: slot, geometry: g))
                } catch { problems.append(error.description) }
            }
            let newest: (sequence: UInt8, state: ZoneState)
            switch copies.count {
            case 2:
                if copies[0].sequence &+ 1 == copies[1].sequence { newest = copies[1] }
                else if copies[1].sequence &+ 1 == copies[0].sequence { newest = copies[0] }
                else { throw DecodeError("zone \(z): its two copies have sequences \(copies[0].sequence) and \(copies[1].sequence), not one apart", at: at) }
            case 1: newest = copies[0]
            default: throw DecodeError("zone \(z) has no valid table entry (\(problems.joined(separator: "; ")))", at: at)
            }
            states.append(newest.state)
            sequences.append(newest.sequence)
        }
        return (states, sequences)
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
