// The emulated image as a file: creation, reopening, the durability model, and decoders that
// turn bad bytes into typed errors instead of traps.

import Foundation
import Testing
import ZonedCore
@testable import ZonedBackendFile

@Suite(.timeLimit(.minutes(10))) struct EmulatedImageTests {
    @Test func reopenKeepsGeometryWritePointersAndConditions() throws {
        let s = Scratch()
        let path = s.path("a.zimg")
        let dev = try EmulatedZonedDevice.create(path: path, geometry: testGeometry)
        #expect(dev.kind == .emulated)
        try dev.write(bytes: pattern(1), at: at(0, 5))          // conventional
        try dev.write(bytes: pattern(2, blocks: 3), at: at(2))  // implicitly open
        try dev.openZone(3)                                     // explicitly open, empty
        try dev.write(bytes: pattern(3), at: at(4))
        try dev.closeZone(4)                                    // closed
        try dev.finish(5)                                       // full
        try dev.write(bytes: pattern(4, blocks: 2), at: at(6))
        try dev.openZone(6)                                     // explicitly open, written
        try dev.setCondition(7, .readOnly)
        try dev.flush()
        dev.close()

        let again = try EmulatedZonedDevice.open(path: path)
        defer { again.close() }
        #expect(again.geometry == testGeometry)
        let zones = try again.reportAllZones()
        // Open zones stay open across a clean close: a process exit is not a power cycle.
        #expect(zones.map(\.condition) == [.notWritePointer, .notWritePointer, .implicitlyOpen, .explicitlyOpen, .closed, .full, .explicitlyOpen, .readOnly])
        #expect(zones[2].writePointer == at(2, 3))
        #expect(zones[4].writePointer == at(4, 1))
        #expect(zones[5].writePointer == at(5) + testGeometry.zoneCapacity)
        #expect(zones[6].writePointer == at(6, 2))
        #expect(try again.readBytes(bs, at: at(0, 5)) == pattern(1))
        #expect(try again.readBytes(3 * bs, at: at(2)) == pattern(2, blocks: 3))
        #expect(try again.readBytes(2 * bs, at: at(6)) == pattern(4, blocks: 2))
        // Past the write pointer: zeros, not whatever the file holds.
        #expect(try again.readBytes(bs, at: at(2, 3)) == [UInt8](repeating: 0, count: bs))
    }

    @Test func unflushedWritesAreNotInTheImageUntilFlush() throws {
        let s = Scratch()
        let path = s.path("a.zimg")
        let dev = try EmulatedZonedDevice.create(path: path, geometry: testGeometry)
        defer { dev.close() }
        try dev.write(bytes: pattern(1, blocks: 2), at: at(2))
        try dev.flush()
        try dev.write(bytes: pattern(2, blocks: 4), at: at(2, 2))
        try dev.write(bytes: pattern(3), at: at(3))
        // What a process that died now would find: the table of the last flush.
        let seen = try EmulatedZonedDevice.open(path: path, exclusive: false)  // a peek while dev holds the claim
        #expect(try seen.wp(2) == at(2, 2))
        #expect(try seen.condition(2) == .implicitlyOpen)
        #expect(try seen.condition(3) == .empty)
        seen.close()
        // A reset is durable at once, for its zone only.
        try dev.reset(2)
        let seen2 = try EmulatedZonedDevice.open(path: path, exclusive: false)
        #expect(try seen2.condition(2) == .empty)
        #expect(try seen2.condition(3) == .empty)
        seen2.close()
    }

    @Test func aResetZoneReadsZerosAfterAFinish() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("z"), geometry: testGeometry)
        let zone = ZoneID(testGeometry.conventionalZoneCount)
        let start = testGeometry.zoneStart(zone)
        let data = AlignedBuffer(count: 8192)
        var rng = SeededRandom(seed: 1)
        rng.fill(data.mutable)
        try dev.write(data.readOnly, at: start)
        try dev.reset(zone)
        try dev.finish(zone)
        let back = AlignedBuffer(count: 8192)
        try dev.read(into: back.mutable, at: start)
        #expect(Array(back.readOnly).allSatisfy { $0 == 0 }, "old bytes must not show through a reset and a finish")
    }

    @Test func createRefusesAnExistingFileUnlessOverwrite() throws {
        let s = Scratch()
        let path = s.path("a.zimg")
        try EmulatedZonedDevice.create(path: path, geometry: testGeometry).close()
        let e = failure { _ = try EmulatedZonedDevice.create(path: path, geometry: testGeometry) }
        #expect(e?.errno == EEXIST)
        #expect(e?.detail.contains("overwrite") == true)
        let g2 = DeviceGeometry(zoneCount: 4, zoneSize: .mib(1))
        let dev = try EmulatedZonedDevice.create(path: path, geometry: g2, overwrite: true)
        #expect(dev.geometry == g2)
        dev.close()
        let bad = DeviceGeometry(zoneCount: 4, zoneSize: ByteCount(3 << 20))
        #expect(failure { _ = try EmulatedZonedDevice.create(path: s.path("b.zimg"), geometry: bad) }?.kind == .invalidArgument)
        // It follows ZBC (as null_blk does); it cannot pretend to be a ZNS namespace.
        var zns = testGeometry
        zns.commandSet = .zns
        #expect(failure { _ = try EmulatedZonedDevice.create(path: s.path("c.zimg"), geometry: zns) }?.kind == .invalidArgument)
    }

    @Test func imageIsSparse() throws {
        let s = Scratch()
        let path = s.path("a.zimg")
        let big = DeviceGeometry(zoneCount: 64, zoneSize: .mib(64))
        try EmulatedZonedDevice.create(path: path, geometry: big).close()
        var st = stat()
        #expect(stat(path, &st) == 0)
        #expect(UInt64(st.st_size) > big.totalBytes.bytes)
        #expect(UInt64(st.st_blocks) * 512 < 1 << 20)
    }

    @Test func probeRecognisesOnlyImages() throws {
        let s = Scratch()
        let path = s.path("a.zimg")
        try EmulatedZonedDevice.create(path: path, geometry: testGeometry).close()
        #expect(EmulatedZonedDevice.isEmulatedImage(path: path))
        let other = s.path("plain")
        _ = FileManager.default.createFile(atPath: other, contents: Data(repeating: 7, count: 8192))
        #expect(!EmulatedZonedDevice.isEmulatedImage(path: other))
        #expect(!EmulatedZonedDevice.isEmulatedImage(path: s.path("missing")))
    }

    // MARK: Corruption

    private func image(_ s: Scratch) throws -> String {
        let path = s.path("a.zimg")
        let dev = try EmulatedZonedDevice.create(path: path, geometry: testGeometry)
        try dev.write(bytes: pattern(1), at: at(2))
        dev.close()
        return path
    }

    @Test func badMagicIsATypedError() throws {
        let s = Scratch()
        let path = try image(s)
        try corrupt(path, at: 0)
        let e = failure { _ = try EmulatedZonedDevice.open(path: path) }
        #expect(e?.kind == .invalidArgument)
        #expect(e?.detail.contains("bad magic") == true)
        #expect(!EmulatedZonedDevice.isEmulatedImage(path: path))
    }

    @Test func headerChecksumMismatchIsATypedError() throws {
        let s = Scratch()
        let path = try image(s)
        try corrupt(path, at: 20, xor: 0x01)  // the block size field
        let e = failure { _ = try EmulatedZonedDevice.open(path: path) }
        #expect(e?.kind == .io)
        #expect(e?.detail.contains("header checksum mismatch") == true)
    }

    @Test func wellSealedButInvalidHeaderIsATypedError() throws {
        let s = Scratch()
        let path = s.path("a.zimg")
        var g = testGeometry
        g.zoneCapacity = .mib(2)  // larger than the zone
        try Data(ImageFormat.encodeHeader(g)).write(to: URL(fileURLWithPath: path))
        let e = failure { _ = try EmulatedZonedDevice.open(path: path) }
        #expect(e?.kind == .io)
        #expect(e?.detail.contains("zone capacity") == true)
    }

    @Test func headerRoundTripsByteForByte() throws {
        for discards in [false, true] {
            for version: UInt32 in [1, 2] {
                let bytes = ImageFormat.encodeHeader(testGeometry, discardsData: discards, version: version)
                let h = try ImageFormat.decodeHeader(bytes, path: "x")
                #expect(h == ImageFormat.Header(geometry: testGeometry, discardsData: discards, version: version))
                #expect(ImageFormat.encodeHeader(h.geometry, discardsData: h.discardsData, version: h.version) == bytes)
            }
        }
        let table = ZoneTable(geometry: testGeometry).states
        let encoded = ImageFormat.encodeTableV1(table, generation: 9)
        let decoded = try ImageFormat.decodeTableV1(encoded, geometry: testGeometry)
        #expect(decoded.generation == 9 && decoded.states == table)
        #expect(ImageFormat.encodeTableV1(decoded.states, generation: 9) == encoded)
        // Version 2: an entry, and a pair of slots, re-encode exactly; the newer copy wins across
        // the sequence wrap.
        var used = table
        used[3] = ZoneState(condition: .closed, writePointer: testGeometry.zoneStart(3) + .kib(8))
        for sequence: UInt8 in [0, 1, 200, 255] {
            let entry = ImageFormat.encodeEntry(used[3], zone: 3, sequence: sequence)
            let back = try ImageFormat.decodeEntry(entry[...], zone: 3, slot: ImageFormat.slot(of: sequence), geometry: testGeometry)
            #expect(back.sequence == sequence && back.state == used[3])
            #expect(ImageFormat.encodeEntry(back.state, zone: 3, sequence: back.sequence) == entry)
        }
        let pair = try ImageFormat.decodeSlots([ImageFormat.encodeSlot(used, sequence: 0), ImageFormat.encodeSlot(table, sequence: 255)], geometry: testGeometry)
        #expect(pair.states == used && pair.sequences.allSatisfy { $0 == 0 }, "0 follows 255")
    }

    /// An entry is valid only for its own zone and slot: copied elsewhere it is refused.
    @Test func anEntryInTheWrongPlaceIsRefused() throws {
        let state = ZoneState(condition: .closed, writePointer: testGeometry.zoneStart(3) + .kib(8))
        let entry = ImageFormat.encodeEntry(state, zone: 3, sequence: 4)
        #expect(throws: DecodeError.self) { try ImageFormat.decodeEntry(entry[...], zone: 4, slot: 0, geometry: testGeometry) }
        #expect(throws: DecodeError.self) { try ImageFormat.decodeEntry(entry[...], zone: 3, slot: 1, geometry: testGeometry) }
    }

    @Test func truncatedImagesAreTypedErrors() throws {
        let s = Scratch()
        let path = try image(s)
        #expect(truncate(path, 40_000) == 0)  // inside the data region
        let e1 = failure { _ = try EmulatedZonedDevice.open(path: path) }
        #expect(e1?.kind == .io)
        #expect(e1?.detail.contains("truncated") == true)
        #expect(truncate(path, 100) == 0)  // inside the header
        let e2 = failure { _ = try EmulatedZonedDevice.open(path: path) }
        #expect(e2?.detail.contains("truncated") == true)
        #expect(truncate(path, 3) == 0)
        #expect(failure { _ = try EmulatedZonedDevice.open(path: path) }?.detail.contains("bad magic") == true)
    }

    @Test func aBadCopyOfAZoneFallsBackToItsOtherCopyAndTwoAreAnError() throws {
        let s = Scratch()
        // create wrote sequence 0 into slot 0 and 1 into slot 1; close wrote zone 2's sequence 2
        // into slot 0.
        let path = try image(s)
        let n = testGeometry.zoneCount
        try corrupt(path, at: ImageFormat.entryOffset(slot: 0, zone: 2, zoneCount: n) + 9)
        let dev = try EmulatedZonedDevice.open(path: path)
        #expect(try dev.condition(2) == .empty, "slot 1 holds zone 2 from before the write")
        dev.close()  // nothing changed, so nothing is written: the bad copy stays
        try corrupt(path, at: ImageFormat.entryOffset(slot: 1, zone: 2, zoneCount: n) + 9)
        let e = failure { _ = try EmulatedZonedDevice.open(path: path) }
        #expect(e?.kind == .io)
        #expect(e?.detail.contains("zone 2 has no valid table entry") == true)
        #expect(e?.detail.contains("checksum mismatch") == true)
    }

    /// An image of version 1 (one checksum per table slot) opens, reads as it was written, is
    /// left byte for byte alone when only looked at, and is upgraded by its first change.
    @Test func aVersionOneImageOpensAndItsFirstChangeUpgradesIt() throws {
        let s = Scratch()
        let path = s.path("old.zimg")
        var old = ZoneTable(geometry: testGeometry).states
        old[2] = ZoneState(condition: .closed, writePointer: testGeometry.zoneStart(2) + ByteCount(UInt64(bs)))
        // What a build of version 1 left: generation 6 in slot 0 (newer), 5 in slot 1 (older, fresh).
        try versionOneImage(path, slots: [ImageFormat.encodeTableV1(old, generation: 6),
                                          ImageFormat.encodeTableV1(ZoneTable(geometry: testGeometry).states, generation: 5)])
        let pristine = try Data(contentsOf: URL(fileURLWithPath: path))
        let look = try EmulatedZonedDevice.open(path: path)
        #expect(try look.condition(2) == .closed && look.wp(2) == at(2, 1))
        look.close()
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == pristine, "looking does not upgrade")
        let dev = try EmulatedZonedDevice.open(path: path)
        try dev.finish(5)
        dev.close()
        let header = try ImageFormat.decodeHeader(Array(try Data(contentsOf: URL(fileURLWithPath: path)).prefix(128)), path: path)
        #expect(header.version == 2)
        let again = try EmulatedZonedDevice.open(path: path)
        defer { again.close() }
        #expect(try again.condition(2) == .closed && again.wp(2) == at(2, 1), "kept across the upgrade")
        #expect(try again.condition(5) == .full)
        #expect(try again.condition(3) == .empty)
    }

    /// A crash in the middle of the upgrade (older slot written, header not yet) leaves the
    /// version 1 image as it was: its newer slot is untouched.
    @Test func anUpgradeCutBeforeItsHeaderLeavesTheOldImage() throws {
        let s = Scratch()
        let path = s.path("old.zimg")
        var old = ZoneTable(geometry: testGeometry).states
        old[2] = ZoneState(condition: .full, writePointer: testGeometry.zoneStart(2) + testGeometry.zoneCapacity)
        // Generation 3 in slot 1; slot 0 already holds the upgrade's first write (version 2 form).
        try versionOneImage(path, slots: [ImageFormat.encodeSlot(old, sequence: 0), ImageFormat.encodeTableV1(old, generation: 3)])
        let dev = try EmulatedZonedDevice.open(path: path)
        defer { dev.close() }
        #expect(try dev.condition(2) == .full && dev.condition(3) == .empty)
    }

    /// An image with a version 1 header and the given bytes in table slots 0 and 1.
    private func versionOneImage(_ path: String, slots: [[UInt8]]) throws {
        try EmulatedZonedDevice.create(path: path, geometry: testGeometry).close()
        let h = try #require(FileHandle(forUpdatingAtPath: path))
        defer { try? h.close() }
        try h.seek(toOffset: 0)
        try h.write(contentsOf: ImageFormat.encodeHeader(testGeometry, version: 1))
        for (slot, bytes) in slots.enumerated() {
            try h.seek(toOffset: ImageFormat.tableOffset(slot: slot, zoneCount: testGeometry.zoneCount))
            try h.write(contentsOf: bytes)
        }
    }

    @Test func randomCorruptionNeverTraps() throws {
        let s = Scratch()
        let path = try image(s)
        let metadataBytes = Int(ImageFormat.dataStart(zoneCount: testGeometry.zoneCount))
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        defer { try? handle.close() }
        let pristine = try #require(try handle.read(upToCount: metadataBytes))
        var rng = SeededRandom(seed: 42)
        var refused = 0
        for _ in 0..<150 {
            var bytes = pristine
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let i = Int(rng.next() % UInt64(rng.chance(0.5) ? 128 : metadataBytes))
                bytes[i] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
            }
            try handle.seek(toOffset: 0)
            try handle.write(contentsOf: bytes)
            do {
                let dev = try EmulatedZonedDevice.open(path: path)
                _ = try dev.reportAllZones()
                dev.close()
            } catch {
                refused += 1
            }
        }
        #expect(refused > 0)
    }
}

@Suite(.timeLimit(.minutes(10))) struct EmulatedImageQuietOpenTests {
    @Test func lookingAtAnImageDoesNotChangeItsBytes() throws {
        let s = Scratch()
        let path = s.path("quiet.zimg")
        let dev = try EmulatedZonedDevice.create(path: path, geometry: testGeometry)
        try dev.write(bytes: pattern(1, blocks: 2), at: at(2))
        try dev.openZone(3)
        dev.close()
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let again = try EmulatedZonedDevice.open(path: path)
        _ = try again.reportAllZones()
        _ = try again.readBytes(bs, at: at(2))
        again.close()
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before, "open, report, read and close must not write the image")
    }

    @Test func aPowerCutClosesOpenZones() throws {
        let s = Scratch()
        let path = s.path("cycle.zimg")
        let dev = try EmulatedZonedDevice.create(path: path, geometry: testGeometry)
        try dev.write(bytes: pattern(1, blocks: 2), at: at(2))
        try dev.openZone(3)
        try dev.flush()
        try dev.powerCut(seed: 1)
        dev.close()
        let again = try EmulatedZonedDevice.open(path: path)
        defer { again.close() }
        #expect(try again.condition(2) == .closed)
        #expect(try again.condition(3) == .empty)
    }
}
