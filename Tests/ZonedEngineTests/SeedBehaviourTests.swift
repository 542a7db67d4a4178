// One test per behaviour of the seed's direct IO path (shared/seed/direct-io.c); each fails if the
// behaviour is removed from the engine.

import Foundation
import Testing
import ZonedAllocator
import ZonedBackendFile
import ZonedCore
@testable import ZonedEngine

let zoned = DeviceGeometry(zoneCount: 32, zoneSize: .kib(256), zoneCapacity: .kib(192), maxOpenZones: 6,
                           maxActiveZones: 6, maxWriteBytes: .kib(16))

@Suite("Seed behaviours", .serialized)
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
        #expect(b.finishes(within: 5), "a write inside EOF waited for another inside-EOF write: the inode lock was not shared")
        dev.release()
        try a.join(); try b.join()
        // A: extends the file (exclusive), parked. B inside EOF must wait for it.
        dev.arm()
        let a2 = Background { try e.write(f, 64 << 10, bytes(4096, seed: 4)) }
        dev.waitParked()
        let b2 = Background { try e.write(f, 40 << 10, bytes(4096, seed: 5)) }
        #expect(!b2.finishes(within: 0.3), "a write ran while an extending write held the inode: the lock was not exclusive")
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
        #expect(b.finishes(within: 5), "ENOSPC waited for the range: space was not reserved before the range lock")
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
        #expect(!b.finishes(within: 0.3), "a write overlapping a pending ordered extent did not wait for it")
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
        func expectEAGAIN(_ what: String, _ body: () throws -> Void) {
            do { try body(); Issue.record("\(what): no EAGAIN") } catch let err as DeviceError {
                #expect(err.errno == EAGAIN, "\(what): \(err)")
            } catch { Issue.record("\(what): \(error)") }
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
        #expect(after.contains { $0.kind == .unchecked && $0.device == pre[0].device + .kib(4) }, "prealloc written in place")
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

    @Test func eachSubmittedPieceSplitsItsOwnOrderedExtent() throws {
        let s = Scratch()
        let e = try Engine(device: try s.emulated(zoned))
        let f = e.createFile()
        try e.write(f, 0, bytes(64 << 10, seed: 1))   // 4 pieces of 16 KiB
        #expect(e.stats.orderedExtentSplits == 3)
        #expect(try e.extents(f).count == 1, "pieces landing back to back merge into one extent")
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
        #expect(!sync.finishes(within: 0.3), "fsync returned while a write of the file was in flight")
        dev.release()
        try a.join(); try sync.join()
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
