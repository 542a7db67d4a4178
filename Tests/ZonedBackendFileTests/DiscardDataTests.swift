// The discard-data image (KeptBlocks.swift): a drive-sized zoned device in a small file. Zeros
// are never stored, other blocks are kept and survive a reopen, resets drop them, a torn tail
// is cut, and the zone table behaves exactly as in a full image.

import Foundation
import Testing
import ZonedCore
@testable import ZonedBackendFile

@Suite(.timeLimit(.minutes(10))) struct DiscardDataTests {
    /// 80,000 zones of 256 MiB: a 20 TiB host-managed SMR drive, 128 open/active.
    static let drive = DeviceGeometry(zoneCount: 80_000, zoneSize: .mib(256), logicalBlockSize: ByteCount(bs),
                                      maxOpenZones: 128, maxActiveZones: 128, maxWriteBytes: .mib(1),
                                      maxAppendBytes: .kib(512), conventionalZoneCount: 0)

    private func allocated(_ path: String) throws -> UInt64 {
        var st = stat()
        #expect(stat(path, &st) == 0)
        return UInt64(st.st_blocks) * 512
    }

    private func size(_ path: String) throws -> UInt64 {
        try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber).uint64Value
    }

    @Test func aTwentyTebibyteDeviceFitsInASmallFileAndItsZerosCostNothing() throws {
        let s = Scratch()
        let path = s.path("drive.zimg")
        let dev = try EmulatedZonedDevice.create(path: path, geometry: Self.drive, discardData: true)
        defer { dev.close() }
        #expect(dev.discardsData)
        #expect(dev.geometry.totalBytes == ByteCount(UInt64(80_000) << 28))
        let before = try allocated(path)
        #expect(before < 8 << 20, "the fresh image holds only header and zone tables")
        let sizeBefore = try size(path)
        // 64 MiB of zeros into each of three zones far apart: nothing is kept.
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        for zone in [0, 40_000, 79_999] {
            for i in 0..<64 { try dev.write(bytes: zeros, at: at(zone, i * 256, Self.drive)) }
            #expect(try dev.wp(zone) == at(zone, 64 * 256, Self.drive))
        }
        try dev.flush()
        #expect(dev.keptBytes == .zero)
        #expect(try allocated(path) < before + (1 << 20))
        #expect(try size(path) == sizeBefore, "zeros over zeros add no record")
        #expect(try dev.readBytes(bs, at: at(40_000, 100, Self.drive)) == [UInt8](repeating: 0, count: bs))
    }

    /// A zone command and a flush write the table entries of the zones they changed, not the
    /// whole table: at 80,000 zones a table is 1.25 MiB, and formatting a used drive resets every
    /// zone (quadratic when each reset rewrote the table: over 12 minutes measured).
    @Test func zoneCommandsAndFlushesWriteOnlyTheEntriesTheyChange() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("drive.zimg"), geometry: Self.drive, discardData: true)
        defer { dev.close() }
        let entry = UInt64(ImageFormat.zoneEntryBytes)
        let zones = [0, 1, 2, 39_999, 79_999]
        var before = dev.tableBytesWritten
        for z in zones { try dev.finish(ZoneID(z)) }
        #expect(dev.tableBytesWritten - before == UInt64(zones.count) * entry, "one entry per finish")
        before = dev.tableBytesWritten
        for z in zones { try dev.reset(ZoneID(z)) }
        #expect(dev.tableBytesWritten - before == UInt64(zones.count) * entry, "one entry per reset")
        before = dev.tableBytesWritten
        for z in [5, 50_000, 70_000] { try dev.write(bytes: [UInt8](repeating: 0, count: bs), at: at(z, 0, Self.drive)) }
        try dev.flush()
        #expect(dev.tableBytesWritten - before == 3 * entry, "a flush writes the zones written since the last one")
        before = dev.tableBytesWritten
        try dev.flush()
        #expect(dev.tableBytesWritten == before, "nothing changed, nothing written")
    }

    @Test func nonZeroBlocksAreKeptAndSurviveAReopen() throws {
        let s = Scratch()
        let path = s.path("drive.zimg")
        let dev = try EmulatedZonedDevice.create(path: path, geometry: Self.drive, discardData: true)
        // A write that mixes zero and non-zero blocks keeps the non-zero ones only.
        var mixed = pattern(7, blocks: 4)
        mixed.replaceSubrange(bs..<(2 * bs), with: [UInt8](repeating: 0, count: bs))
        try dev.write(bytes: mixed, at: at(12_345, 0, Self.drive))
        try dev.write(bytes: pattern(9, blocks: 2), at: at(70_000, 0, Self.drive))
        #expect(dev.keptBytes == ByteCount(UInt64(5 * bs)))
        try dev.flush()
        dev.close()

        let again = try EmulatedZonedDevice.open(path: path)
        defer { again.close() }
        #expect(again.discardsData)
        #expect(again.keptBytes == ByteCount(UInt64(5 * bs)))
        #expect(try again.readBytes(4 * bs, at: at(12_345, 0, Self.drive)) == mixed)
        #expect(try again.readBytes(2 * bs, at: at(70_000, 0, Self.drive)) == pattern(9, blocks: 2))
        #expect(try again.wp(12_345) == at(12_345, 4, Self.drive))
        #expect(try again.condition(70_000) == .implicitlyOpen)
    }

    @Test func aResetDropsTheZonesKeptBlocksAndTheDropSurvivesAReopen() throws {
        let s = Scratch()
        let path = s.path("drive.zimg")
        let dev = try EmulatedZonedDevice.create(path: path, geometry: Self.drive, discardData: true)
        try dev.write(bytes: pattern(1, blocks: 3), at: at(5, 0, Self.drive))
        try dev.write(bytes: pattern(2, blocks: 1), at: at(6, 0, Self.drive))
        try dev.reset(5)
        #expect(dev.keptBytes == ByteCount(UInt64(bs)))
        // Rewritten after the reset, zeros first: still nothing kept for zone 5.
        try dev.write(bytes: [UInt8](repeating: 0, count: bs), at: at(5, 0, Self.drive))
        try dev.flush()
        dev.close()
        let again = try EmulatedZonedDevice.open(path: path)
        defer { again.close() }
        #expect(again.keptBytes == ByteCount(UInt64(bs)))
        #expect(try again.readBytes(bs, at: at(5, 0, Self.drive)) == [UInt8](repeating: 0, count: bs))
        #expect(try again.readBytes(bs, at: at(6, 0, Self.drive)) == pattern(2))
    }

    @Test func aTornRecordAtTheEndIsCutAndLaterWritesAreKept() throws {
        let s = Scratch()
        let path = s.path("drive.zimg")
        let dev = try EmulatedZonedDevice.create(path: path, geometry: Self.drive, discardData: true)
        try dev.write(bytes: pattern(1), at: at(3, 0, Self.drive))
        try dev.write(bytes: pattern(2, blocks: 2), at: at(4, 0, Self.drive))
        try dev.flush()
        dev.close()
        // Tear the last record: drop its final byte.
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber).uint64Value
        #expect(truncate(path, off_t(size - 1)) == 0)
        let again = try EmulatedZonedDevice.open(path: path)
        #expect(again.keptBytes == ByteCount(UInt64(bs)), "the torn record is not replayed")
        #expect(try again.readBytes(bs, at: at(3, 0, Self.drive)) == pattern(1))
        // The zone table still says two blocks were written to zone 4; they now read as zeros.
        #expect(try again.readBytes(bs, at: at(4, 0, Self.drive)) == [UInt8](repeating: 0, count: bs))
        try again.write(bytes: pattern(3), at: at(3, 1, Self.drive))
        try again.flush()
        again.close()
        let third = try EmulatedZonedDevice.open(path: path)
        defer { third.close() }
        #expect(try third.readBytes(2 * bs, at: at(3, 0, Self.drive)) == pattern(1) + pattern(3))
    }

    @Test func aDamagedRecordEndsTheReplay() throws {
        let s = Scratch()
        let path = s.path("drive.zimg")
        let small = testGeometry
        let dev = try EmulatedZonedDevice.create(path: path, geometry: small, discardData: true)
        try dev.write(bytes: pattern(1), at: at(2))
        try dev.write(bytes: pattern(2), at: at(3))
        try dev.flush()
        dev.close()
        // The second record's payload starts 16 + 4096 + 16 bytes into the record area.
        try corrupt(path, at: ImageFormat.dataStart(zoneCount: small.zoneCount) + UInt64(2 * KeptBlocks.headerBytes + bs) + 10)
        let again = try EmulatedZonedDevice.open(path: path)
        defer { again.close() }
        #expect(again.keptBytes == ByteCount(UInt64(bs)))
        #expect(try again.readBytes(bs, at: at(3)) == [UInt8](repeating: 0, count: bs))
    }

    @Test func theZoneLimitsHoldExactlyAsInAFullImage() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("a.zimg"), geometry: testGeometry, discardData: true)
        defer { dev.close() }
        for z in 2..<6 { try dev.write(bytes: pattern(UInt8(z)), at: at(z)) }
        // Zones 2-4 are open (3 of 3), zone 5's write closed one; a fifth active zone is refused.
        let refused = failure { try dev.write(bytes: pattern(9), at: at(6)) }
        #expect(refused != nil)
        let gap = failure { try dev.write(bytes: pattern(9), at: at(2, 5)) }
        #expect(gap != nil, "a write off the write pointer is refused")
    }

    @Test func aDiscardImageTakesNoFaultPlanAndGivesNoCrashImage() throws {
        let s = Scratch()
        let plan = FaultPlan(seed: 1)
        #expect(failure { _ = try EmulatedZonedDevice.create(path: s.path("a.zimg"), geometry: testGeometry, faults: plan, discardData: true) } != nil)
        let dev = try EmulatedZonedDevice.create(path: s.path("b.zimg"), geometry: testGeometry, discardData: true)
        #expect(failure { try dev.crashImage(to: s.path("c.zimg")) } != nil)
        dev.close()
        #expect(failure { _ = try EmulatedZonedDevice.open(path: s.path("b.zimg"), faults: plan) } != nil)
        // A full image is not mistaken for one.
        let full = try EmulatedZonedDevice.create(path: s.path("d.zimg"), geometry: testGeometry)
        defer { full.close() }
        #expect(!full.discardsData)
        #expect(full.keptBytes == nil)
    }
}
