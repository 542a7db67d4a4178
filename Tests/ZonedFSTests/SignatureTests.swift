// Signatures.detect finds zbdfs (label, generation; a damaged copy too) and the magic numbers of
// btrfs (primary superblock and the zoned superblock log), f2fs (both copies), ext2/3/4 and xfs,
// on conventional mode and on an emulated zoned device with 4096- and 512-byte blocks; it never
// writes; a zbdfs label cannot fake a foreign magic; erase clears what format leaves behind.

import Foundation
import Testing
import ZonedBackendFile
import ZonedCore
import ZonedEngine
@testable import ZonedFS

@Suite("Signatures", .timeLimit(.minutes(10)))
struct SignatureTests {
    /// A 4 MiB conventional-mode file in 256 KiB zones with `magic` written at `offset`.
    func conventional(_ s: Scratch, _ magic: [UInt8] = [], at offset: UInt64 = 0) throws -> ConventionalDevice {
        try ConventionalDevice.create(path: s.path("conv"), size: .mib(4), overwrite: true)
        let dev = try ConventionalDevice.open(path: s.path("conv"), zoneSize: .kib(256))
        if !magic.isEmpty { try put(magic, at: offset, on: dev) }
        return dev
    }

    /// Writes `bytes` at any byte offset of a conventional zone (read-modify-write of one block).
    func put(_ bytes: [UInt8], at offset: UInt64, on dev: any ZonedDevice) throws {
        let block = dev.geometry.logicalBlockSize.bytes
        let at = offset / block * block
        let buffer = AlignedBuffer(count: Int(block))
        try dev.read(into: buffer, at: DeviceOffset(at))
        for (i, b) in bytes.enumerated() { buffer.base.storeBytes(of: b, toByteOffset: Int(offset - at) + i, as: UInt8.self) }
        try dev.write(buffer, at: DeviceOffset(at))
    }

    static let cases: [(FoundSignature.Kind, UInt64, [UInt8])] = [
        (.btrfs, 65536 + 64, Array("_BHRfS_M".utf8)),
        (.btrfs, 64, Array("_BHRfS_M".utf8)),
        (.btrfs, (256 << 10) + 64, Array("_BHRfS_M".utf8)),
        (.f2fs, 1024, [0x10, 0x20, 0xF5, 0xF2]),
        (.f2fs, 4096 + 1024, [0x10, 0x20, 0xF5, 0xF2]),
        (.ext4, 1080, [0x53, 0xEF]),
        (.xfs, 0, Array("XFSB".utf8)),
    ]

    @Test(arguments: 0..<cases.count)
    func eachForeignMagicIsFound(_ i: Int) throws {
        let (kind, offset, magic) = SignatureTests.cases[i]
        let s = Scratch()
        let dev = try conventional(s, magic, at: offset)
        defer { dev.close() }
        let found = try Signatures.detect(device: dev)
        #expect(found.map(\.kind) == [kind], "\(found)")
        #expect(found.first?.offset == DeviceOffset(offset))
        #expect(found.first?.description.contains(kind.rawValue) == true)
    }

    @Test func nearMissesAreNotFound() throws {
        let s = Scratch()
        let dev = try conventional(s)
        defer { dev.close() }
        #expect(try Signatures.detect(device: dev).isEmpty, "a blank device holds nothing")
        try put(Array("_BHRfS_m".utf8), at: 65536 + 64, on: dev)  // one letter off
        try put([0x53, 0xEF], at: 1081, on: dev)  // one byte late
        try put(Array("XFSB".utf8), at: 512, on: dev)  // not at byte 0
        #expect(try Signatures.detect(device: dev).isEmpty)
    }

    @Test func severalAreAllReportedInAFixedOrder() throws {
        let s = Scratch()
        let dev = try conventional(s, Array("XFSB".utf8), at: 0)
        defer { dev.close() }
        try put([0x53, 0xEF], at: 1080, on: dev)
        try put(Array("_BHRfS_M".utf8), at: 65536 + 64, on: dev)
        #expect(try Signatures.detect(device: dev).map(\.kind) == [.btrfs, .ext4, .xfs])
    }

    @Test func zbdfsIsFoundWithLabelAndGeneration() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: smallZoned())
        try FileSystem.format(device: dev, options: FormatOptions(label: "archive", uuid: testUUID))
        let found = try Signatures.detect(device: dev)
        #expect(found.count == 1)
        #expect(found.first?.kind == .zbdfs && found.first?.label == "archive" && found.first?.generation != nil, "\(found)")
        // After a mount cycle the newest copy (higher generation) is reported.
        let fs = try FileSystem.mount(device: dev)
        let generation = fs.superblock.generation
        try fs.unmount()
        let again = try EmulatedZonedDevice.open(path: s.path("img"))
        defer { again.close() }
        #expect(try Signatures.detect(device: again).first?.generation == generation)
    }

    @Test func aDamagedZbdfsSuperblockIsStillZbdfs() throws {
        let s = Scratch()
        let dev = try conventional(s)
        defer { dev.close() }
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        for zone in [UInt64(0), 256 << 10] { try put([0xFF, 0xFF, 0xFF, 0xFF], at: zone + 20, on: dev) }
        let found = try Signatures.detect(device: dev)
        #expect(found.map(\.kind) == [.zbdfs] && found.first?.generation == nil, "\(found)")
        #expect(found.first?.detail.contains("damaged") == true)
    }

    @Test func aLabelCannotFakeBtrfs() throws {
        // The label starts at byte 41 of the superblock copy; byte 64 is label byte 23.
        let s = Scratch()
        let dev = try conventional(s)
        defer { dev.close() }
        let label = String(repeating: "x", count: 23) + "_BHRfS_M"
        try FileSystem.format(device: dev, options: FormatOptions(label: label, uuid: testUUID))
        let head = try #require(try Signatures.read(dev, at: 64, count: 8))
        #expect(head == Array("_BHRfS_M".utf8), "the label does put the magic at byte 64")
        #expect(try Signatures.detect(device: dev).map(\.kind) == [.zbdfs])
    }

    @Test(arguments: [4096, 512])
    func zonedBtrfsLogAndSmallBlocksOnAnEmulatedDevice(block: Int) throws {
        let s = Scratch()
        let g = DeviceGeometry(zoneCount: 8, zoneSize: .kib(256), logicalBlockSize: ByteCount(block),
                               maxWriteBytes: ByteCount(block * 2), conventionalZoneCount: 0)
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: g)
        // A zoned btrfs superblock log entry at the start of zone 1: 4 KiB written at the pointer.
        let sb = AlignedBuffer(count: 4096)
        for (i, b) in Array("_BHRfS_M".utf8).enumerated() { sb.base.storeBytes(of: b, toByteOffset: 64 + i, as: UInt8.self) }
        var done = 0
        while done < 4096 {
            let n = min(block * 2, 4096 - done)
            try dev.write(UnsafeRawBufferPointer(sb.slice(done, n)), at: g.zoneStart(ZoneID(1)) + ByteCount(done))
            done += n
        }
        // And ext4's magic in zone 0 (not block-aligned on either block size: 1080).
        let first = AlignedBuffer(count: 4096)
        first.base.storeBytes(of: 0x53, toByteOffset: 1080, as: UInt8.self)
        first.base.storeBytes(of: 0xEF, toByteOffset: 1081, as: UInt8.self)
        for at in stride(from: 0, to: 4096, by: block) { try dev.write(UnsafeRawBufferPointer(first.slice(at, block)), at: DeviceOffset(UInt64(at))) }
        try dev.flush()
        let zonesBefore = try dev.reportAllZones()
        let found = try Signatures.detect(device: dev)
        #expect(found.map(\.kind) == [.btrfs, .ext4], "\(found)")
        #expect(found.first?.offset == g.zoneStart(ZoneID(1)) + ByteCount(64))
        #expect(try dev.reportAllZones() == zonesBefore, "detect changes no zone")
        dev.close()
    }

    @Test func detectNeverWritesTheImage() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: smallZoned(conventional: 2))
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        dev.close()
        let before = try Data(contentsOf: URL(fileURLWithPath: s.path("img")))
        let again = try EmulatedZonedDevice.open(path: s.path("img"))
        _ = try Signatures.detect(device: again)
        again.close()
        #expect(try Data(contentsOf: URL(fileURLWithPath: s.path("img"))) == before)
    }

    @Test func eraseClearsWhatFormatLeavesInConventionalSuperblockZones() throws {
        let s = Scratch()
        let dev = try conventional(s, Array("_BHRfS_M".utf8), at: 65536 + 64)
        defer { dev.close() }
        try put([0x10, 0x20, 0xF5, 0xF2], at: 4096 + 1024, on: dev)
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let left = try Signatures.detect(device: dev)
        #expect(left.map(\.kind) == [.zbdfs, .btrfs, .f2fs], "format writes only the first 4 KiB: \(left)")
        #expect(try Signatures.erase(left, device: dev).isEmpty)
        #expect(try Signatures.detect(device: dev).map(\.kind) == [.zbdfs])
        let fs = try FileSystem.mount(device: dev)
        try fs.unmount()
    }
}

extension SignatureTests {
    /// The emulated device keeps a zone's old bytes across a reset, and the superblock ring
    /// finishes its zone after one copy: stale magic behind the copy belongs to zbdfs, not btrfs.
    @Test func staleBytesInASequentialSuperblockZoneAreNotForeign() throws {
        let s = Scratch()
        let img = s.path("img")
        let dev = try EmulatedZonedDevice.create(path: img, geometry: smallZoned())
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        dev.close()
        // Old btrfs magic under both superblock zones, as a reset zone's earlier data would be.
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: img))
        let dataStart: UInt64 = 4096 + 2 * 4096  // 16 zones: one 4 KiB table slot each
        for zone in [UInt64(0), 1] {
            try h.seek(toOffset: dataStart + zone * (256 << 10) + 65536 + 64)
            try h.write(contentsOf: Data("_BHRfS_M".utf8))
        }
        try h.close()
        let again = try EmulatedZonedDevice.open(path: img)
        defer { again.close() }
        let visible = try [UInt64(0), 256 << 10].filter { try Signatures.read(again, at: $0 + 65536 + 64, count: 8) == Array("_BHRfS_M".utf8) }
        #expect(visible.count == 1, "the finished superblock zone shows the stale magic; the empty one reads zeros")
        #expect(try Signatures.detect(device: again).map(\.kind) == [.zbdfs])
    }
}
