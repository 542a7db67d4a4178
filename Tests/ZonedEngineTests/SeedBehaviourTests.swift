// One test per behaviour of the seed's direct IO path (shared/seed/direct-io.c); each fails if the
// behaviour is removed from the engine. Concurrency checks wait for events (a lock call that had
// to block, a wait counter, a thread that finished), never for a length of time: a watchdog only
// turns a missing event into a failure instead of a hang.

import Foundation
import Testing
import ZonedAllocator
import ZonedBackendFile
import ZonedCore
@testable import ZonedEngine

let zoned = DeviceGeometry(zoneCount: 32, zoneSize: .kib(256), zoneCapacity: .kib(192), maxOpenZones: 6,
                           maxActiveZones: 6, maxWriteBytes: .kib(16))

@Suite("Seed behaviours", .serialized, .timeLimit(.minutes(10)))
struct SeedBehaviourTests {
    @Test func unalignedDirectWriteFallsBackToBufferedAndDirectReadSeesIt() throws {
        let s = Scratch()
        let e = try Engine(device: try s.emulated(zoned))
        let f = e.createFile()
        try e.write(f, 0, bytes(8192, seed: 1))
        let patch = bytes(100, seed: 2)
        #expect(try e.write(f, 4000, patch) == 100)
        #expect(e.stats.bufferedFallbacks == 1)
        var expected = bytes(8192, seed: 1)
        expected.replaceSubrange(4000..<4100, with: patch)
        #expect(try e.read(f, 0, 8192) == expected, "a direct read after the buffered fallback returns the new bytes")
        #expect(try e.size(f) == 8192)
        try e.write(f, 8192 + 10, [7, 7, 7])
        #expect(try e.size(f) == 8192 + 13, "unaligned extension sets i_size to the last byte, not the block end")
        #expect(try e.read(f, 8192, 13) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 7, 7])
    }

    @Test func bufferedWritesAreCachedAndWrittenBackThroughTheAllocator() throws {
        let s = Scratch()
        let e = try Engine(device: try s.emulated(zoned))
        let f = e.createFile()
        try e.write(f, 0, bytes(16384, seed: 1))
        let onDevice = e.stats.deviceBytesWritten
        let patch = bytes(5000, seed: 2)
        #expect(try e.write(f, 3000, patch, []) == 5000)
        #expect(e.stats.deviceBytesWritten == onDevice, "a buffered write stays in the cache")
        var expected = bytes(16384, seed: 1)
        expected.replaceSubrange(3000..<8000, with: patch)
        #expect(try e.read(f, 0, 16384) == expected, "reads see the cached bytes")
        // A direct write elsewhere in the file first writes the cache back (the seed's range flush).
        let grantsBefore = e.allocator.stats.grants
        try e.write(f, 12288, bytes(4096, seed: 3))
        #expect(e.stats.writeBacks == 1 && e.allocator.stats.grants >= grantsBefore + 2, "write-back went through the allocator")
        #expect(e.stats.deviceBytesWritten == onDevice + 8192 + 4096, "two cached blocks and the direct block")
        expected.replaceSubrange(12288..<16384, with: bytes(4096, seed: 3))
        #expect(try e.read(f, 0, 16384) == expected)
        // A later direct write over a cached block wins over the cache.
        try e.write(f, 100, [1, 2, 3], [])
        try e.write(f, 0, bytes(4096, seed: 4))
        expected.replaceSubrange(0..<4096, with: bytes(4096, seed: 4))
        #expect(try e.read(f, 0, 16384) == expected)
        // fsync writes the cache back.
        try e.write(f, 20000, [9], [])
        #expect(try e.size(f) == 20001)
        let wb = e.stats.writeBacks
        try e.fsync(f)
        #expect(e.stats.writeBacks == wb + 1 && e.stats.deviceBytesWritten > onDevice + 16384)
        #expect(try e.read(f, 19999, 2) == [0, 9])
    }

    @Test func writesInsideEOFShareTheInodeLockExtendingWritesExcludeThem() throws {
        let s = Scratch()
        let dev = GatedDevice(try s.emulated(zoned))
        let e = try Engine(device: dev)
        let f = e.createFile()
        try e.write(f, 0, bytes(64 << 10, seed: 1))
        // A: inside EOF (shared), parked mid-IO. B: another range inside EOF must finish meanwhile.
        dev.arm()
        let a = Background { try e.write(f, 0, bytes(4096, seed: 2)) }
        dev.waitParked()
        let b = Background { try e.write(f, 32 << 10, bytes(4096, seed: 3)) }
        #expect(b.finishes(), "a write inside EOF waited for another inside-EOF write: the inode lock was not shared")
        dev.release()
        try a.join(); try b.join()
        // A: extends the file (exclusive), parked. B inside EOF must wait for it.
        let lock = try e.inode(f).lock
        dev.arm()
        let a2 = Background { try e.write(f, 64 << 10, bytes(4096, seed: 4)) }
        dev.waitParked()
        let waitsBefore = lock.waits
        let b2 = Background { try e.write(f, 40 << 10, bytes(4096, seed: 5)) }
        #expect(waitUntil { lock.waits > waitsBefore || b2.isFinished })
        #expect(!b2.isFinished && lock.waits > waitsBefore, "a write ran while an extending write held the inode: the lock was not exclusive")
        dev.release()
        try a2.join(); try b2.join()
        #expect(try e.size(f) == 68 << 10)
    }

    @Test func spaceIsReservedBeforeTheRangeLock() throws {
        // Device with 2 data zones of 192 KiB. A holds an ordered extent over [0, 4K); B asks for
        // more space than there is over the same range: with the reservation first, B fails with
        // ENOSPC at once instead of waiting for A's range.
        let g = DeviceGeometry(zoneCount: 2, zoneSize: .kib(256), zoneCapacity: .kib(192), maxWriteBytes: .kib(16))
        let s = Scratch()
        let dev = GatedDevice(try s.emulated(g))
        let e = try Engine(device: dev)
        let f = e.createFile()
        try e.truncate(f, to: 1 << 20)  // both writes stay inside EOF: shared inode lock, as in the seed
        dev.arm()
        let a = Background { try e.write(f, 0, bytes(4096, seed: 1)) }
        dev.waitParked()
        let b = Background {
            do {
                try e.write(f, 0, bytes(512 << 10, seed: 2))
                Issue.record("a write larger than the device succeeded")
            } catch let err as DeviceError {
                #expect(err.errno == ENOSPC)
            }
        }
        #expect(b.finishes(), "ENOSPC waited for the range: space was not reserved before the range lock")
        dev.release()
        try a.join(); try b.join()
    }

    @Test func aWriteIntoAPendingOrderedExtentWaitsAndThenWins() throws {
        let s = Scratch()
        let dev = GatedDevice(try s.emulated(zoned))
        let e = try Engine(device: dev)
        let f = e.createFile()
        try e.write(f, 0, bytes(8192, seed: 0))
        dev.arm()
        let a = Background { try e.write(f, 0, bytes(8192, seed: 1)) }
        dev.waitParked()
        let b = Background { try e.write(f, 4096, bytes(4096, seed: 2)) }
        #expect(waitUntil { e.stats.orderedExtentWaits > 0 || b.isFinished })
        #expect(!b.isFinished && e.stats.orderedExtentWaits == 1, "a write overlapping a pending ordered extent did not wait for it")
        dev.release()
        try a.join(); try b.join()
        #expect(e.stats.orderedExtentWaits >= 1)
        #expect(try e.read(f, 0, 8192) == Array(bytes(8192, seed: 1).prefix(4096)) + bytes(4096, seed: 2))
    }

    @Test func nowaitAnswersEAGAINInsteadOfBlocking() throws {
        let s = Scratch()
        let dev = GatedDevice(try s.emulated(zoned))
        let e = try Engine(device: dev)
        let f = e.createFile()
        try e.write(f, 0, bytes(32 << 10, seed: 0))
        // Each runs on its own thread: without NOWAIT it would block behind the parked write, and
        // the watchdog turns that into a failure instead of a hung test.
        func expectEAGAIN(_ what: String, _ body: @escaping @Sendable () throws -> Void) {
            let t = Background {
                do { try body(); Issue.record("\(what): no EAGAIN") } catch let err as DeviceError {
                    #expect(err.errno == EAGAIN, "\(what): \(err)")
                }
            }
            #expect(t.finishes(), "\(what): blocked instead of answering EAGAIN")
        }
        // A pending ordered extent over [0, 8K).
        dev.arm()
        let a = Background { try e.write(f, 0, bytes(8192, seed: 1)) }
        dev.waitParked()
        expectEAGAIN("write into a pending ordered extent") { try e.write(f, 4096, bytes(4096, seed: 2), [.direct, .nowait]) }
        expectEAGAIN("read of a pending ordered extent") { _ = try e.read(f, 0, 4096, [.direct, .nowait]) }
        expectEAGAIN("unaligned write (needs the buffered path)") { try e.write(f, 20000, [1], [.direct, .nowait]) }
        dev.release()
        try a.join()
        // A read spanning two extents.
        try e.write(f, 16 << 10, bytes(4096, seed: 3))
        expectEAGAIN("read over several extents") { _ = try e.read(f, 12 << 10, 8192, [.direct, .nowait]) }
        #expect(try e.read(f, 16 << 10, 4096, [.direct, .nowait]) == bytes(4096, seed: 3), "one extent reads fine under NOWAIT")
        #expect(e.stats.eagainReturns >= 4)
    }

    @Test func nowaitAnswersEAGAINWhenAZoneFinishIsNeeded() throws {
        // max active 3, 2 reserved: one data zone. Fill it to 16 KiB short of capacity; a 32 KiB
        // write then needs a finish.
        let g = DeviceGeometry(zoneCount: 8, zoneSize: .kib(128), maxOpenZones: 3, maxActiveZones: 3, maxWriteBytes: .kib(16))
        let s = Scratch()
        let e = try Engine(device: try s.emulated(g))
        let f = e.createFile()
        try e.write(f, 0, bytes(112 << 10, seed: 1))
        do {
            try e.write(f, 200 << 10, bytes(32 << 10, seed: 2), [.direct, .nowait])
            Issue.record("a NOWAIT write that needs a zone finish succeeded")
        } catch let err as DeviceError { #expect(err.errno == EAGAIN) }
        #expect(try e.write(f, 200 << 10, bytes(32 << 10, seed: 2)) == 32 << 10, "without NOWAIT it waits for the finish")
        #expect(e.stats.zoneFinishWaits == 1)
    }

    @Test func nowaitWriteThatWouldSpanSeveralExtentsIsEAGAIN() throws {
        // No empty zone left to activate: a write larger than what the active zone has left would
        // get a short grant and need a second extent.
        let g = DeviceGeometry(zoneCount: 3, zoneSize: .kib(128), maxWriteBytes: .kib(16))
        let s = Scratch()
        let e = try Engine(device: try s.emulated(g))
        let f = e.createFile()
        try e.write(f, 0, bytes(128 << 10, seed: 1))          // zone 0 full
        try e.write(f, 128 << 10, bytes(80 << 10, seed: 2))   // zone 1: 48 KiB left
        try e.write(f, 256 << 10, bytes(96 << 10, seed: 3))   // zone 2: 32 KiB left; 80 KiB free in all
        let g2 = e.createFile()
        do {
            try e.write(g2, 0, bytes(64 << 10, seed: 4), [.direct, .nowait])
            Issue.record("a NOWAIT write spanning extents succeeded")
        } catch let err as DeviceError { #expect(err.errno == EAGAIN) }
        #expect(try e.size(g2) == 0, "nothing of the refused write is visible")
        #expect(try e.write(g2, 0, bytes(64 << 10, seed: 4)) == 64 << 10, "without NOWAIT it spans two extents")
        #expect(try e.extents(g2).count == 2)
        #expect(e.allocator.problem() == nil)
    }

    @Test func nocowAndPreallocOverwriteInPlaceOnlyInConventionalMode() throws {
        let s = Scratch()
        let conv = try Engine(device: try s.conventional(size: .mib(4), zoneSize: .mib(1)))
        let f = conv.createFile(nocow: true)
        try conv.write(f, 0, bytes(8192, seed: 1))
        let before = try conv.extents(f)
        #expect(before.allSatisfy { $0.kind == .unchecked }, "a NOCOW file's data has no checksums (nodatacow implies nodatasum)")
        try conv.write(f, 0, bytes(8192, seed: 2))
        #expect(try conv.extents(f).map(\.device) == before.map(\.device), "NOCOW file in conventional mode is overwritten in place")
        #expect(try conv.extents(f).allSatisfy { $0.kind == .unchecked }, "in-place data carries no checksums")
        #expect(try conv.read(f, 0, 8192) == bytes(8192, seed: 2))
        let p = conv.createFile()
        try conv.fallocate(p, at: 0, length: 16384)
        let pre = try conv.extents(p)
        #expect(pre.count == 1 && pre[0].kind == .prealloc)
        #expect(try conv.read(p, 0, 16384) == [UInt8](repeating: 0, count: 16384), "prealloc reads as zeros")
        try conv.write(p, 4096, bytes(4096, seed: 3))
        let after = try conv.extents(p)
        #expect(after.contains { $0.kind == .data && $0.device == pre[0].device + .kib(4) }, "prealloc written in place, with checksums")
        #expect(conv.stats.nocowWrites == 2)
        #expect(try conv.read(p, 4096, 4096) == bytes(4096, seed: 3), "the checksums taken in place verify")
        try conv.write(p, 4096, bytes(4096, seed: 4))
        #expect(try conv.extents(p).contains { $0.kind == .data && $0.fileOffset == 4096 && $0.device != pre[0].device + .kib(4) },
                "checksummed data is written copy-on-write, never over its old checksums")
        #expect(conv.stats.nocowWrites == 2)

        let z = try Engine(device: try s.emulated(zoned))
        let g = z.createFile(nocow: true)
        try z.write(g, 0, bytes(8192, seed: 1))
        let zb = try z.extents(g)
        try z.write(g, 0, bytes(8192, seed: 2))
        #expect(try z.extents(g) != zb, "zoned devices copy on write even for NOCOW files")
        #expect(z.stats.nocowWrites == 0)
        #expect(throws: DeviceError.self) { try z.fallocate(g, at: 0, length: 4096) }
    }

    @Test func checksummedDataIsNeverOverwrittenInPlaceEvenInANOCOWFile() throws {
        // Data written with checksums, then the file turned NOCOW: an in-place write would leave
        // new bytes under the old checksums until its record is durable (EIO after a power cut),
        // so the write goes copy-on-write, like btrfs where checksums exist.
        let s = Scratch()
        let conv = try Engine(device: try s.conventional(size: .mib(4), zoneSize: .mib(1)))
        let f = conv.createFile()
        try conv.write(f, 0, bytes(8192, seed: 1))
        let old = try conv.extents(f)
        #expect(old.count == 1 && old[0].kind == .data)
        try conv.setNoCOW(f, true)
        try conv.write(f, 0, bytes(8192, seed: 2))
        let new = try conv.extents(f)
        #expect(new.count == 1 && new[0].device != old[0].device, "checksummed data was overwritten in place")
        #expect(new[0].kind == .unchecked, "a NOCOW file's new data carries no checksums")
        #expect(conv.stats.nocowWrites == 0)
        // Its own unchecked extent is then overwritten in place.
        try conv.write(f, 0, bytes(8192, seed: 3))
        #expect(try conv.extents(f).map(\.device) == new.map(\.device) && conv.stats.nocowWrites == 1)
        #expect(try conv.read(f, 0, 8192) == bytes(8192, seed: 3))
    }

    @Test func nowaitInPlaceWriteOverSeveralExtentsIsEAGAINBeforeAnyIO() throws {
        // A NOCOW file: an extent written in place, then a hole that needs new space. The device
        // has one zone, and another writer is parked inside it (holding its sequencer), so the
        // second part would block. A NOWAIT write over both must not write the first part and
        // then stop with a short count: it is EAGAIN before any IO.
        let s = Scratch()
        let dev = GatedDevice(try s.conventional(size: .mib(1), zoneSize: .mib(1)))
        let conv = try Engine(device: dev)
        let f = conv.createFile(nocow: true), other = conv.createFile()
        try conv.write(f, 0, bytes(4096, seed: 1))
        try conv.truncate(f, to: 8192)
        dev.arm()
        let busy = Background { try conv.write(other, 0, bytes(4096, seed: 9)) }
        dev.waitParked()
        let nowait = Background {
            do {
                let n = try conv.write(f, 0, bytes(8192, seed: 4), [.direct, .nowait])
                Issue.record("a NOWAIT write that would block part-way returned \(n) instead of EAGAIN")
            } catch let err as DeviceError { #expect(err.errno == EAGAIN) }
        }
        #expect(nowait.finishes(), "the NOWAIT write blocked")
        dev.release()
        try busy.join(); try nowait.join()
        #expect(try conv.read(f, 0, 8192) == bytes(4096, seed: 1) + [UInt8](repeating: 0, count: 4096),
                "the refused NOWAIT write changed the file")
        #expect(conv.stats.nocowWrites == 0 && conv.allocator.problem() == nil)
    }

    @Test func nowaitWriteIntoAZoneBeingWrittenIsEAGAINInsteadOfWaitingForItsSequencer() throws {
        // One data zone may be active (max active 3, 2 kept back): a second writer's grant lands
        // in the zone the first one is writing at its pointer, behind that zone's sequencer.
        let g = DeviceGeometry(zoneCount: 8, zoneSize: .kib(256), zoneCapacity: .kib(192), maxOpenZones: 3,
                               maxActiveZones: 3, maxWriteBytes: .kib(16))
        let s = Scratch()
        let dev = GatedDevice(try s.emulated(g))
        let e = try Engine(device: dev)
        let f = e.createFile(), h = e.createFile()
        try e.write(f, 0, bytes(4096, seed: 1))
        dev.arm()
        let a = Background { try e.write(f, 4096, bytes(4096, seed: 2)) }
        dev.waitParked()
        let b = Background {
            do {
                try e.write(h, 0, bytes(4096, seed: 3), [.direct, .nowait])
                Issue.record("a NOWAIT write into a busy zone succeeded while its writer was parked")
            } catch let err as DeviceError { #expect(err.errno == EAGAIN, "\(err)") }
        }
        #expect(b.finishes(), "a NOWAIT write waited for another writer's zone sequencer")
        dev.release()
        try a.join(); try b.join()
        #expect(try e.size(h) == 0 && e.allocator.problem() == nil)
        #expect(try e.write(h, 0, bytes(4096, seed: 3), [.direct, .nowait]) == 4096, "with the zone idle, NOWAIT goes through")
    }

    @Test func anAllocationShorterThanAskedContinuesInANewExtent() throws {
        let s = Scratch()
        let e = try Engine(device: try s.emulated(zoned))
        let f = e.createFile()
        try e.write(f, 0, bytes(160 << 10, seed: 1))   // 32 KiB left in that zone
        let g = e.createFile()
        let data = bytes(96 << 10, seed: 2)
        // The hint only spans one write, so g's write starts in a zone where it fits whole…
        #expect(try e.write(g, 0, data) == data.count)
        // …but one write larger than a zone's capacity must be cut at the zone's end.
        let h = e.createFile()
        let big = bytes(300 << 10, seed: 3)
        #expect(try e.write(h, 0, big) == big.count)
        let ext = try e.extents(h)
        #expect(ext.count >= 2, "a 300 KiB write into 192 KiB zones spans several extents")
        let zones = Set(ext.map { zoned.zone(containing: $0.device)! })
        #expect(zones.count == ext.count, "each extent in its own zone")
        #expect(try e.read(h, 0, big.count) == big)
    }

    /// The seed extracts one ordered extent per submitted bio: while each 16 KiB piece is on its
    /// way to the device, its own ordered extent covers exactly its bytes and the rest of the write
    /// is one more; each piece is mapped by its own change at its own address, and the pieces,
    /// landed back to back, merge into one file extent whose bytes read back.
    @Test func eachSubmittedPieceSplitsItsOwnOrderedExtent() throws {
        let s = Scratch()
        let dev = OrderedAtSubmit(try s.emulated(zoned))
        let e = try Engine(device: dev)
        let changes = ChangeLog()
        e.recorder = changes
        let f = e.createFile()
        let inode = try e.inode(f)
        dev.watch = { inode.ordered.map { ($0.fileOffset, $0.length) }.sorted { $0.0 < $1.0 } }
        let piece: UInt64 = 16 << 10, total: UInt64 = 64 << 10
        let data = bytes(Int(total), seed: 1)
        #expect(try e.write(f, 0, data) == data.count)   // 4 pieces of 16 KiB
        #expect(e.stats.orderedExtentSplits == 3)
        let ext = try e.extents(f)
        try #require(ext.count == 1, "pieces landing back to back merge into one extent: \(ext)")
        let start = ext[0].device
        #expect(start == zoned.zoneStart(try #require(zoned.zone(containing: start))), "the write starts a zone")
        #expect(ext[0] == FileExtent(fileOffset: 0, length: total, device: start))
        // At each submission: the piece's own ordered extent, then the rest of the write.
        let seen = dev.seen
        try #require(seen.count == 4, "one submission per piece: \(seen.map(\.writes))")
        for (k, at) in seen.enumerated() {
            let off = UInt64(k) * piece
            #expect(at.writes.count == 1 && at.writes[0].at == start + ByteCount(off) && at.writes[0].length == Int(piece),
                    "piece \(k) goes to the device at its place: \(at.writes)")
            var expected: [(UInt64, UInt64)] = [(off, piece)]
            if off + piece < total { expected.append((off + piece, total - off - piece)) }
            #expect(at.ordered.map(\.0) == expected.map(\.0) && at.ordered.map(\.1) == expected.map(\.1),
                    "ordered extents while piece \(k) is in flight: \(at.ordered), expected \(expected)")
        }
        #expect(inode.state.withLock { inode.ordered.isEmpty }, "every ordered extent finished")
        // One mapping per piece, each at the address its piece landed at, with its blocks' checksums.
        let mapped = changes.mapped(f)
        try #require(mapped.count == 4, "one mapped change per piece: \(mapped.map(\.extent))")
        for (k, m) in mapped.enumerated() {
            let off = UInt64(k) * piece
            #expect(m.extent == FileExtent(fileOffset: off, length: piece, device: start + ByteCount(off)), "piece \(k): \(m.extent)")
            #expect(m.checksums.count == Int(piece / 4096) && m.sizeAtLeast == off + piece)
        }
        #expect(try e.read(f, 0, data.count) == data)
        #expect(try deviceBytes(dev, start, total) == data, "the device holds the bytes where the extent says")
    }

    @Test func aFailedPieceGivesAShortWriteAndMapsOnlyWhatWasWritten() throws {
        let s = Scratch()
        // IO 3 is the third 16 KiB piece.
        let dev = try s.emulated(zoned, faults: FaultPlan(seed: 1, failingIOs: [3]))
        let e = try Engine(device: dev)
        let f = e.createFile()
        let n = try e.write(f, 0, bytes(64 << 10, seed: 1))
        #expect(n == 32 << 10)
        #expect(e.stats.shortWrites == 1)
        #expect(try e.size(f) == 32 << 10)
        let ext = try e.extents(f)
        #expect(ext.reduce(0) { $0 + $1.length } == 32 << 10)
        for x in ext {
            let z = try dev.zone(zoned.zone(containing: x.device)!)
            #expect(x.deviceEnd <= z.writePointer, "extent \(x) points past the zone's write pointer")
        }
        #expect(try e.read(f, 0, 64 << 10) == Array(bytes(64 << 10, seed: 1).prefix(32 << 10)))
        #expect(e.allocator.problem() == nil)
    }

    @Test func holesReadAsZeros() throws {
        let s = Scratch()
        let e = try Engine(device: try s.emulated(zoned))
        let f = e.createFile()
        try e.write(f, 1 << 20, bytes(4096, seed: 1))
        #expect(try e.read(f, 0, 1 << 20) == [UInt8](repeating: 0, count: 1 << 20))
        try e.punchHole(f, at: (1 << 20) + 100, length: 200)
        var expected = bytes(4096, seed: 1)
        for i in 100..<300 { expected[i] = 0 }
        #expect(try e.read(f, 1 << 20, 4096) == expected)
    }

    @Test func readsAreNeverShortExceptAtEOF() throws {
        let s = Scratch()
        let e = try Engine(device: try s.emulated(zoned), config: EngineConfig(maxReadChunk: .kib(8)))
        let f = e.createFile()
        let data = bytes(100_000, seed: 9)
        try e.write(f, 0, data, [])
        #expect(try e.read(f, 0, 200_000) == data, "capped chunks loop until EOF")
        #expect(try e.read(f, 99_990, 100).count == 10)
        #expect(try e.read(f, 100_000, 10).isEmpty)
    }

    @Test func fsyncWaitsForOrderedExtents() throws {
        let s = Scratch()
        let dev = GatedDevice(try s.emulated(zoned))
        let e = try Engine(device: dev)
        let f = e.createFile()
        dev.arm()
        let a = Background { try e.write(f, 0, bytes(8192, seed: 1)) }
        dev.waitParked()
        let sync = Background { try e.fsync(f) }
        #expect(waitUntil { e.stats.fsyncWaits > 0 || sync.isFinished })
        #expect(!sync.isFinished && e.stats.fsyncWaits == 1, "fsync returned while a write of the file was in flight")
        dev.release()
        try a.join(); try sync.join()
    }

    @Test func fsyncDoesNotWaitForWritesStartedAfterIt() throws {
        // A write is in flight when fsync starts; a second write starts while fsync waits and
        // stays in flight. fsync must return once the first is done: waiting for every ordered
        // extent of the file, later ones included, lets a stream of writes starve it.
        let s = Scratch()
        let dev = GatedDevice(try s.emulated(zoned))
        let e = try Engine(device: dev)
        let f = e.createFile()
        try e.write(f, 0, bytes(64 << 10, seed: 0))
        dev.arm()
        let first = Background { try e.write(f, 0, bytes(4096, seed: 1)) }
        dev.waitParked()
        let sync = Background { try e.fsync(f) }
        #expect(waitUntil { e.stats.fsyncWaits > 0 }, "fsync did not wait for the write in flight")
        // The second write parks at the next gate, after the first is let go.
        let later = dev.armNext()
        let second = Background { try e.write(f, 32 << 10, bytes(4096, seed: 2)) }
        dev.release()
        #expect(dev.waitParked(later), "the second write never reached the device")
        #expect(sync.finishes(), "fsync waited for a write that started after it")
        #expect(first.finishes() && !second.isFinished)
        dev.release(later)
        try first.join(); try second.join(); try sync.join()
        #expect(try e.read(f, 32 << 10, 4096) == bytes(4096, seed: 2))
    }

    @Test func truncateAndPunchAccountGarbage() throws {
        let s = Scratch()
        let e = try Engine(device: try s.emulated(zoned))
        let f = e.createFile()
        try e.write(f, 0, bytes(64 << 10, seed: 1))
        try e.write(f, 0, bytes(16 << 10, seed: 2))
        #expect(e.allocator.totals.garbage == .kib(16), "an overwrite turns the replaced bytes into garbage")
        try e.punchHole(f, at: 16 << 10, length: 16 << 10)
        #expect(e.allocator.totals.garbage == .kib(32))
        try e.truncate(f, to: 40 << 10)
        #expect(e.allocator.totals.garbage == .kib(56))
        #expect(try e.size(f) == 40 << 10)
        try e.truncate(f, to: 5000)
        #expect(try e.read(f, 0, 8192) == Array(bytes(16 << 10, seed: 2).prefix(5000)))
        try e.truncate(f, to: 8192)
        #expect(try e.read(f, 5000, 3192) == [UInt8](repeating: 0, count: 3192), "bytes past an old EOF read as zeros")
        let t = e.allocator.totals
        #expect(t.capacity == t.free + t.live + t.garbage + t.unusable + t.reserved)
    }
}

/// Sees, at each device submission that writes, the ordered extents then pending on one inode.
/// `watch` reads them without the inode's state lock: it runs on the writer's own thread inside
/// its device IO, where the zone sequencer is held and the state lock (ranked above it) may not be
/// taken; nothing else touches that inode meanwhile.
final class OrderedAtSubmit: ForwardingDevice, @unchecked Sendable {
    nonisolated(unsafe) var watch: (() -> [(UInt64, UInt64)])?
    private let lock = ConditionLock()
    private var log: [(writes: [(at: DeviceOffset, length: Int)], ordered: [(UInt64, UInt64)])] = []

    var seen: [(writes: [(at: DeviceOffset, length: Int)], ordered: [(UInt64, UInt64)])] { lock.withLock { log } }

    override func submit(_ batch: [DeviceIO]) -> [IOCompletion] {
        let writes = batch.compactMap { io -> (at: DeviceOffset, length: Int)? in
            if case .write(let b, let at) = io { return (at, b.count) }
            return nil
        }
        if !writes.isEmpty, let watch {
            let ordered = watch()
            lock.withLock { log.append((writes, ordered)) }
        }
        return inner.submit(batch)
    }
}

/// The engine's layout changes, in order (a stand-in for the metadata log).
final class ChangeLog: ChangeRecorder, @unchecked Sendable {
    private let lock = ConditionLock()
    private var changes: [(InodeNumber, FileChange)] = []

    func record(_ inode: InodeNumber, _ change: FileChange) { lock.withLock { changes.append((inode, change)) } }

    func mapped(_ n: InodeNumber) -> [(extent: FileExtent, checksums: [UInt32], sizeAtLeast: UInt64)] {
        lock.withLock {
            changes.compactMap { c in
                guard c.0 == n, case .mapped(let e, let sums, let atLeast) = c.1 else { return nil }
                return (e, sums, atLeast)
            }
        }
    }
}
