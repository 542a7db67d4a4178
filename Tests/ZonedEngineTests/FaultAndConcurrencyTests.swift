// The engine under injected faults and under many concurrent writers.

import Dispatch
import Foundation
import Testing
import ZonedAllocator
import ZonedBackendFile
import ZonedCore
@testable import ZonedEngine

/// Every extent of every file lies below its zone's write pointer (or in a conventional zone).
func expectNothingMappedPastWritePointers(_ e: Engine, _ files: [InodeNumber], sourceLocation: SourceLocation = #_sourceLocation) throws {
    for f in files {
        for x in try e.extents(f) {
            let z = try e.device.zone(e.device.geometry.zone(containing: x.device)!)
            guard z.type.isSequential else { continue }
            #expect(x.deviceEnd <= (z.condition == .full ? z.capacityEnd : z.writePointer),
                    "file \(f) maps \(x) past the write pointer of \(z.id)", sourceLocation: sourceLocation)
        }
    }
}

@Suite("Engine faults and concurrency", .timeLimit(.minutes(10)))
struct FaultAndConcurrencyTests {
    @Test("random EIO on writes: errors or short writes, never unwritten data mapped", arguments: [UInt64(11), 12, 13])
    func writeErrors(seed: UInt64) throws {
        let s = Scratch()
        var big = zoned
        big.zoneCount = 256  // ~10 MB of writes, no reclaim yet
        let dev = try s.emulated(big, faults: FaultPlan(seed: seed, writeErrorProbability: 0.05))
        let e = try Engine(device: dev)
        let files = (0..<3).map { _ in e.createFile() }
        var model = FileModel(files: [[], [], []])
        var rng = SeededRandom(seed: seed)
        var errors = 0, short = 0
        for _ in 0..<400 {
            let f = Int(rng.next() % 3)
            let off = Int(rng.next() % 64) * 4096
            let len = (1 + Int(rng.next() % 12)) * 4096
            let data = rng.bytes(len)
            do {
                let n = try e.write(files[f], UInt64(off), data)
                if n < len { short += 1 }
                model.write(f, off, Array(data.prefix(n)))
            } catch let err as DeviceError {
                #expect(err.errno == EIO)
                errors += 1
            }
        }
        #expect(errors + short > 0, "the plan should have failed some writes")
        for (i, f) in files.enumerated() { #expect(try e.read(f, 0, model.files[i].count + 4096) == model.files[i]) }
        try expectNothingMappedPastWritePointers(e, files)
        #expect(e.allocator.problem() == nil)
    }

    @Test func aZoneTurningReadOnlyFailsWritesAndKeepsWhatWasWritten() throws {
        let s = Scratch()
        // Zone 0 is where the first file's data goes; it turns read-only before IO 5.
        let dev = try s.emulated(zoned, faults: FaultPlan(seed: 1, conditionChanges: [.init(atIO: 5, zone: 0, condition: .readOnly)]))
        let e = try Engine(device: dev)
        let f = e.createFile()
        let first = bytes(64 << 10, seed: 1)  // IOs 1-4 in zone 0
        #expect(try e.write(f, 0, first) == first.count)
        #expect(try e.extents(f).allSatisfy { zoned.zone(containing: $0.device) == ZoneID(0) })
        var failures = 0
        var model = FileModel(files: [first])
        for i in 0..<4 {
            let data = bytes(16 << 10, seed: 10 + UInt64(i))
            do {
                let n = try e.write(f, UInt64((64 + 16 * i) << 10), data)
                model.write(0, (64 + 16 * i) << 10, Array(data.prefix(n)))
            } catch { failures += 1 }
        }
        #expect(failures >= 1, "the write that met the read-only zone must fail")
        #expect(e.allocator.account(0).phase == .unavailable, "the allocator learned the zone is read-only")
        #expect(try e.write(f, 200 << 10, bytes(16 << 10, seed: 99)) == 16 << 10, "later writes go to other zones")
        model.write(0, 200 << 10, bytes(16 << 10, seed: 99))
        #expect(try e.read(f, 0, model.files[0].count) == model.files[0], "read-only data still reads back")
        try expectNothingMappedPastWritePointers(e, [f])
    }

    @Test("16 writers, max active 3, small zones: no deadlock, every byte verifies, zone-finish waits")
    func sixteenWriters() throws {
        let g = DeviceGeometry(zoneCount: 128, zoneSize: .kib(128), zoneCapacity: .kib(112), maxOpenZones: 3,
                               maxActiveZones: 3, maxWriteBytes: .kib(16))
        let s = Scratch()
        let e = try Engine(device: try s.emulated(g), config: EngineConfig(allocator: AllocatorConfig(reservedActiveZones: 1)))
        let writers = 16
        let files = (0..<writers).map { _ in e.createFile() }
        let shared = e.createFile()
        try e.truncate(shared, to: UInt64(writers) * (64 << 10))
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: writers) { w in
            var rng = SeededRandom(seed: UInt64(w))
            do {
                for r in 0..<16 {
                    let len = (1 + Int(rng.next() % 8)) * 4096
                    try e.write(files[w], UInt64(r) * (32 << 10), bytes(len, seed: UInt64(w << 8 | r)))
                }
                // Everyone also writes its own slice of one shared file (shared inode lock).
                try e.write(shared, UInt64(w) * (64 << 10), bytes(64 << 10, seed: UInt64(1000 + w)))
            } catch { failures.add("writer \(w): \(error)") }
        }
        #expect(failures.all.isEmpty, "\(failures.all)")
        for w in 0..<writers {
            var rng = SeededRandom(seed: UInt64(w))
            for r in 0..<16 {
                let len = (1 + Int(rng.next() % 8)) * 4096
                #expect(try e.read(files[w], UInt64(r) * (32 << 10), len) == bytes(len, seed: UInt64(w << 8 | r)))
            }
            #expect(try e.read(shared, UInt64(w) * (64 << 10), 64 << 10) == bytes(64 << 10, seed: UInt64(1000 + w)))
        }
        #expect(e.stats.zoneFinishWaits > 0, "2 data zones for 16 writers: some must wait for a zone finish")
        #expect(e.allocator.problem() == nil)
        try expectNothingMappedPastWritePointers(e, files + [shared])
    }
}

final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.withLock { items.append(s) } }
    var all: [String] { lock.withLock { items } }
}
