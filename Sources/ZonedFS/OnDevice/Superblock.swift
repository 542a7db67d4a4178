// The superblock: where the file system starts. One copy per write, in a ring over two zones.
//
// Invariants:
// - A copy is `Superblock.copySize` bytes (4 KiB, or one block when blocks are larger): the fields,
//   a CRC-32C over them, then zeros. Every copy is whole and self-checking; the newest valid copy
//   (highest generation) wins.
// - The two superblock zones hold at most one copy each, at their start: a new copy goes to the
//   zone not holding the newest one (reset, write, finish on sequential zones, so the ring never
//   keeps a zone active), so a torn write only ever costs the copy being written.
// - `decode` never traps and accepts only canonical bytes (known version and flags, a label of at
//   most 64 bytes, zero padding), so a valid decode re-encodes byte for byte.
// - Geometry fields record the device the file system was made on; mount refuses a device whose
//   geometry differs.

import ZonedCore

public struct Superblock: Sendable, Equatable {
    public static let magic: [UInt8] = Array("ZBDFS-SB".utf8)
    /// The on-device format version (docs/ON-DISK.md). 2: data checksums live in the metadata
    /// index and checkpoints list extents without them; 1 (every checksum in the log) is refused.
    public static let version: UInt32 = 2
    public static let maxLabelBytes = 64
    /// Where the CRC-32C over the fields sits (the fields are fixed-size).
    public static let checksumOffset = 181

    public var generation: UInt64
    public var uuid: [UInt8]
    public var label: String
    public var zoneSize: UInt64
    public var zoneCapacity: UInt64
    public var zoneCount: UInt32
    public var blockSize: UInt32
    public var conventionalZones: UInt32
    public var superblockZones: (ZoneID, ZoneID)
    /// The metadata log starts here: the zone's first frame (sequence `logStartSequence`) is its
    /// header, followed by a checkpoint.
    public var logStartZone: ZoneID
    public var logStartSequence: UInt64
    public var createdNanoseconds: UInt64
    public var device: UInt64 { zoneSize * UInt64(zoneCount) }

    /// The file system id every log frame carries (stale frames of an earlier format differ).
    public var fsid: UInt64 { uuid.prefix(8).enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) } }

    public init(generation: UInt64, uuid: [UInt8], label: String, geometry: DeviceGeometry,
                superblockZones: (ZoneID, ZoneID), logStartZone: ZoneID, logStartSequence: UInt64, createdNanoseconds: UInt64) {
        self.init(generation: generation, uuid: uuid, label: label, zoneSize: geometry.zoneSize.bytes,
                  zoneCapacity: geometry.zoneCapacity.bytes, zoneCount: UInt32(geometry.zoneCount),
                  blockSize: UInt32(geometry.logicalBlockSize.bytes), conventionalZones: UInt32(geometry.conventionalZoneCount),
                  superblockZones: superblockZones, logStartZone: logStartZone, logStartSequence: logStartSequence,
                  createdNanoseconds: createdNanoseconds)
    }

    init(generation: UInt64, uuid: [UInt8], label: String, zoneSize: UInt64, zoneCapacity: UInt64, zoneCount: UInt32,
         blockSize: UInt32, conventionalZones: UInt32, superblockZones: (ZoneID, ZoneID), logStartZone: ZoneID,
         logStartSequence: UInt64, createdNanoseconds: UInt64) {
        self.generation = generation
        self.uuid = uuid
        self.label = label
        self.zoneSize = zoneSize
        self.zoneCapacity = zoneCapacity
        self.zoneCount = zoneCount
        self.blockSize = blockSize
        self.conventionalZones = conventionalZones
        self.superblockZones = superblockZones
        self.logStartZone = logStartZone
        self.logStartSequence = logStartSequence
        self.createdNanoseconds = createdNanoseconds
    }

    public static func == (a: Superblock, b: Superblock) -> Bool { a.encode(copySize: 4096) == b.encode(copySize: 4096) }

    /// The size of one copy on a device with `block`-byte blocks.
    public static func copySize(block: UInt64) -> Int { Int(max(4096, block)) }

    /// First difference between the recorded geometry and `g`, for a clear mount error.
    public func geometryMismatch(_ g: DeviceGeometry) -> String? {
        if zoneSize != g.zoneSize.bytes { return "zone size \(g.zoneSize) (the file system was made with \(ByteCount(zoneSize)))" }
        if zoneCapacity != g.zoneCapacity.bytes { return "zone capacity \(g.zoneCapacity) (made with \(ByteCount(zoneCapacity)))" }
        if zoneCount != UInt32(g.zoneCount) { return "\(g.zoneCount) zones (made with \(zoneCount))" }
        if blockSize != UInt32(g.logicalBlockSize.bytes) { return "block size \(g.logicalBlockSize) (made with \(blockSize) B)" }
        if conventionalZones != UInt32(g.conventionalZoneCount) { return "\(g.conventionalZoneCount) conventional zones (made with \(conventionalZones))" }
        return nil
    }

    public func encode(copySize: Int) -> [UInt8] {
        var w = ByteWriter(capacity: copySize)
        w.raw(Superblock.magic)
        w.u32(Superblock.version)
        w.u32(0)  // flags
        w.u64(generation)
        w.raw(uuid)
        let l = Array(label.utf8.prefix(Superblock.maxLabelBytes))
        w.u8(UInt8(l.count))
        w.raw(l)
        w.zeros(Superblock.maxLabelBytes - l.count)
        w.u64(zoneSize)
        w.u64(zoneCapacity)
        w.u64(createdNanoseconds)
        w.u32(zoneCount)
        w.u32(blockSize)
        w.u32(conventionalZones)
        w.u32(UInt32(superblockZones.0.int))
        w.u32(UInt32(superblockZones.1.int))
        w.u32(UInt32(logStartZone.int))
        w.u32(0)  // reserved
        w.u64(logStartSequence)
        w.u64(0)  // reserved
        w.u64(0)  // reserved
        assert(w.count == Superblock.checksumOffset, "superblock fields moved: update checksumOffset")
        let crc = CRC32C.checksum(w.bytes)
        w.u32(crc)
        w.pad(to: copySize)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> Superblock {
        var r = ByteReader(bytes)
        guard try r.raw(8, "magic") == magic else { throw DecodeError("no zbdfs superblock magic", at: 0) }
        let version = try r.u32("version")
        guard version == Superblock.version else { throw DecodeError("superblock version \(version) (this zbdfs reads \(Superblock.version))", at: 8) }
        guard try r.u32("flags") == 0 else { throw DecodeError("unknown superblock flags", at: 12) }
        let generation = try r.u64("generation")
        let uuid = try r.raw(16, "uuid")
        let labelLength = Int(try r.u8("label length"))
        guard labelLength <= maxLabelBytes else { throw DecodeError("label of \(labelLength) bytes", at: r.offset - 1) }
        let labelBytes = try r.raw(labelLength, "label")
        guard let label = String(validating: labelBytes, as: UTF8.self), Array(label.utf8) == labelBytes else {
            throw DecodeError("label is not UTF-8", at: r.offset - labelLength)
        }
        try r.expectZeros(maxLabelBytes - labelLength, "label padding")
        let zoneSize = try r.u64("zone size"), zoneCapacity = try r.u64("zone capacity"), created = try r.u64("created")
        let zoneCount = try r.u32("zone count"), blockSize = try r.u32("block size"), conventional = try r.u32("conventional zones")
        let sbA = try r.u32("superblock zone"), sbB = try r.u32("superblock zone"), logZone = try r.u32("log start zone")
        try r.expectZeros(4)
        let logSeq = try r.u64("log start sequence")
        try r.expectZeros(16)
        let fieldsEnd = r.offset
        let crc = try r.u32("checksum")
        guard crc == CRC32C.checksum(Array(bytes[0..<fieldsEnd])) else { throw DecodeError("superblock checksum mismatch", at: fieldsEnd) }
        try r.expectZeros(r.remaining, "superblock padding")
        guard zoneSize > 0, zoneCapacity > 0, zoneCapacity <= zoneSize, blockSize > 0, zoneSize % UInt64(blockSize) == 0,
              sbA < zoneCount, sbB < zoneCount, sbA != sbB, logZone < zoneCount, conventional <= zoneCount,
              bytes.count == copySize(block: UInt64(blockSize)) else {
            throw DecodeError("superblock fields are inconsistent", at: 0)
        }
        return Superblock(generation: generation, uuid: uuid, label: label, zoneSize: zoneSize, zoneCapacity: zoneCapacity,
                          zoneCount: zoneCount, blockSize: blockSize, conventionalZones: conventional,
                          superblockZones: (ZoneID(sbA), ZoneID(sbB)), logStartZone: ZoneID(logZone),
                          logStartSequence: logSeq, createdNanoseconds: created)
    }
}
