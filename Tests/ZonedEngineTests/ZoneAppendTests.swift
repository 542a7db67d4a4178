// The write path on a device with zone append: several appends of one write in flight together,
// addresses recorded at completion, ordered extents split where pieces landed apart, checksums at
// the landed addresses, the allocator's accounting with bytes in flight. The seeded fault plan's
// out-of-order append completions make piece 2 land before piece 1; every test then checks, on
// the device itself, that each extent holds exactly the file's bytes (an extent that claimed a
// contiguous range its pieces did not land in would read other bytes there).

import Foundation
import Testing
import ZonedAllocator
import ZonedBackendFile
import ZonedCore
@testable import ZonedEngine

/// 32 zones of 256 KiB (192 KiB capacity), 6 open/active, 64 KiB writes, 16 KiB appends.
let appendGeometry = DeviceGeometry(zoneCount: 32, zoneSize: .kib(256), zoneCapacity: .kib(192), maxOpenZones: 6,
                                    maxActiveZones: 6, maxWriteBytes: .kib(64), maxAppendBytes: .kib(16))

/// Records every batch the engine submits.
final class BatchLog: ForwardingDevice, @unchecked Sendable {
    private let lock = ConditionLock()
    private var batches: [[DeviceIO]] = []

    override func submit(_ batch: [DeviceIO]) -> [IOCompletion] {
        lock.withLock { batches.append(batch) }
        return inner.submit(batch)
    }

    /// Per batch that writes: (appends, writes at the pointer).
    var writeBatches: [(appends: Int, writes: Int)] {
        lock.withLock {
            batches.map { b in
                (b.filter { if case .append = $0 { true } else { false } }.count,
                 b.filter { if case .write = $0 { true } else { false } }.count)
            }.filter { $0.appends + $0.writes > 0 }
        }
    }
}

/// Reads `length` bytes straight from the device (not through the engine), in device-sized reads.
func deviceBytes(_ dev: any ZonedDevice, _ at: DeviceOffset, _ length: UInt64) throws -> [UInt8] {
    let buffer = AlignedBuffer(count: Int(length))
    let piece = dev.geometry.maxWriteBytes.bytes
    var done: UInt64 = 0
    while done < length {
        let n = min(piece, length - done)
        try dev.read(into: buffer.slice(Int(done), Int(n)), at: at + ByteCount(done))
        done += n
    }
    return Array(buffer.readOnly)
}

/// Every extent of every file lies in one zone below its write pointer and holds, on the device,
/// exactly the file's bytes; `extents(in:)` over all zones finds exactly the files' extents; the
/// allocator's accounts agree with the device and with the maps.
func expectExtentsMatchDevice(_ e: Engine, _ dev: any ZonedDevice, _ files: [InodeNumber: [UInt8]],
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
    let g = dev.geometry
    var mapped: [String] = []
    var livePerZone: [Int: UInt64] = [:]
    for (f, want) in files.sorted(by: { $0.key < $1.key }) {
        for x in try e.extents(f) {
            let z = try #require(g.zone(containing: x.device))
            #expect(g.zone(containing: x.deviceEnd - ByteCount(1)) == z, "extent \(x) of file \(f) crosses a zone", sourceLocation: sourceLocation)
            #expect(x.deviceEnd <= (try dev.zone(z)).writePointer, "extent \(x) of file \(f) lies past the write pointer", sourceLocation: sourceLocation)
            let expected = Array(want[Int(x.fileOffset)..<Int(x.fileEnd)])
            let onDevice = try deviceBytes(dev, x.device, x.length)
            if onDevice != expected {
                let at = zip(onDevice, expected).enumerated().first { $0.element.0 != $0.element.1 }!.offset
                Issue.record("extent \(x) of file \(f) is not the file's bytes on the device (first difference at +\(at))", sourceLocation: sourceLocation)
            }
            mapped.append("\(f) \(x)")
            livePerZone[z.int, default: 0] += x.length
        }
    }
    var inZones: [String] = []
    for z in 0..<g.zoneCount { inZones += e.extents(in: ZoneID(UInt32(z))).map { "\($0.0) \($0.1)" } }
    #expect(inZones.sorted() == mapped.sorted(), "extents(in:) disagrees with the maps", sourceLocation: sourceLocation)
    for a in e.allocator.accounts where !a.isConventional {
        let dz = try dev.zone(a.id)
        #expect(a.written == dz.writePointer - dz.start || dz.condition == .full,
                "\(a.id): allocator counts \(a.written.bytes) written, the device's pointer says \((dz.writePointer - dz.start).bytes)",
                sourceLocation: sourceLocation)
        #expect(a.live.bytes == livePerZone[a.id.int, default: 0], "\(a.id): live \(a.live.bytes) but files map \(livePerZone[a.id.int, default: 0])",
                sourceLocation: sourceLocation)
        #expect(a.inFlight == .zero, sourceLocation: sourceLocation)
    }
    #expect(e.allocator.problem() == nil, "\(e.allocator.problem() ?? "")", sourceLocation: sourceLocation)
}

@Suite("Zone append write path", .serialized, .timeLimit(.minutes(10)))
struct ZoneAppendTests {
    @Test func theAppendsOfOneWriteAreSubmittedTogether() throws {
        let s = Scratch()
        let dev = BatchLog(try s.emulated(appendGeometry))
        let e = try Engine(device: dev)
        #expect(e.allocator.usesZoneAppend)
        let f = e.createFile()
        let data = bytes(256 << 10, seed: 1)
        #expect(try e.write(f, 0, data) == data.count)
        // 256 KiB: a 192 KiB grant (a whole zone) in 2 batches of 8 and 4 appends, then 64 KiB in a second zone.
        #expect(dev.writeBatches.map(\.appends) == [8, 4, 4] && dev.writeBatches.allSatisfy { $0.writes == 0 })
        #expect(e.allocator.stats.deviceAppends == 16)
        #expect(e.stats.orderedExtentSplits == 1, "one split per submitted batch after the first of a grant")
        #expect(e.stats.landedApartSplits == 0, "in-order completions land back to back")
        #expect(try e.extents(f).count == 2, "one extent per zone")
        let readBack = try e.read(f, 0, data.count) == data  // a Bool: a failure must not print megabytes
        #expect(readBack)
        try expectExtentsMatchDevice(e, dev, [f: data])
    }

    @Test func writeAtThePointerCanBeForcedOnADeviceWithAppend() throws {
        let s = Scratch()
        let dev = BatchLog(try s.emulated(appendGeometry))
        let e = try Engine(device: dev, config: EngineConfig(allocator: AllocatorConfig(zoneAppend: false)))
        #expect(!e.allocator.usesZoneAppend)
        let f = e.createFile()
        let data = bytes(128 << 10, seed: 2)
        #expect(try e.write(f, 0, data) == data.count)
        #expect(dev.writeBatches.map(\.writes) == [1, 1], "one max-write piece at a time, at the pointer")
        #expect(dev.writeBatches.allSatisfy { $0.appends == 0 } && e.allocator.stats.deviceAppends == 0)
        let readBack = try e.read(f, 0, data.count) == data  // a Bool: a failure must not print megabytes
        #expect(readBack)
        try expectExtentsMatchDevice(e, dev, [f: data])
    }

    @Test("out-of-order append completions: ordered extents split where pieces landed apart, every byte verifies",
          arguments: [UInt64(1), 2, 3, 4])
    func outOfOrderCompletionsSplitOrderedExtents(seed: UInt64) throws {
        let s = Scratch()
        let dev = try s.emulated(appendGeometry, faults: FaultPlan(seed: seed, outOfOrderAppends: true))
        let e = try Engine(device: dev)
        var files: [InodeNumber: [UInt8]] = [:]
        var rng = SeededRandom(seed: seed)
        for i in 0..<3 {
            let f = e.createFile()
            let size = (1 + Int(rng.below(96))) * 4096
            files[f] = bytes(size, seed: seed * 100 + UInt64(i))
            #expect(try e.write(f, 0, files[f]!) == size)
        }
        // Overwrites inside the files (garbage behind them) from memory that is not block aligned,
        // so the copy path is taken too.
        for (f, var content) in files.sorted(by: { $0.key < $1.key }) {
            let at = Int(rng.below(UInt64(content.count / 4096))) * 4096
            let n = min(content.count - at, (1 + Int(rng.below(24))) * 4096)
            let patch = bytes(n + 1, seed: seed &* 7 &+ f)
            let written = try patch.withUnsafeBytes { p in
                try e.write(f, at: UInt64(at), UnsafeRawBufferPointer(rebasing: p[1...]))
            }
            #expect(written == n)
            content.replaceSubrange(at..<(at + n), with: patch[1...])
            files[f] = content
        }
        #expect(e.stats.landedApartSplits > 0, "the permuted completions must make pieces land apart")
        // The device first (this check does not rely on the engine's checksums), then the engine.
        try expectExtentsMatchDevice(e, dev, files)
        for (f, want) in files { let same = try e.read(f, 0, want.count + 4096) == want; #expect(same, "file \(f)") }
    }

    @Test("concurrent writers appending into one zone: interleaved pieces, accounts stay right")
    func concurrentWritersShareAZone() throws {
        let s = Scratch()
        // Max active 3 less 2 kept for metadata and reclaim: every writer appends into one data zone.
        var g = appendGeometry
        g.maxOpenZones = 3
        g.maxActiveZones = 3
        let dev = try s.emulated(g, faults: FaultPlan(seed: 9, outOfOrderAppends: true))
        let e = try Engine(device: dev)
        let writers = 4, writes = 6, size = 48 << 10
        let inodes = (0..<writers).map { _ in e.createFile() }
        let runs = (0..<writers).map { w in
            Background {
                for k in 0..<writes {
                    let n = try e.write(inodes[w], UInt64(k * size), bytes(size, seed: UInt64(w * 100 + k)))
                    if n != size { throw DeviceError.io(.write, "short write \(n)") }
                }
            }
        }
        for r in runs { try r.join() }
        var files: [InodeNumber: [UInt8]] = [:]
        for (w, f) in inodes.enumerated() {
            files[f] = (0..<writes).flatMap { bytes(size, seed: UInt64(w * 100 + $0)) }
            let same = try e.read(f, 0, writes * size) == files[f]!
            #expect(same, "file \(f)")
        }
        try expectExtentsMatchDevice(e, dev, files)
    }

    @Test func aFailedAppendGivesAShortWriteAndTheAppendsThatLandedAfterItAreGarbage() throws {
        let s = Scratch()
        // IO 3 is the third of the batch's eight 16 KiB appends; the five after it land anyway.
        let dev = try s.emulated(appendGeometry, faults: FaultPlan(seed: 1, failingIOs: [3]))
        let e = try Engine(device: dev)
        let f = e.createFile()
        let data = bytes(128 << 10, seed: 3)
        #expect(try e.write(f, 0, data) == 32 << 10, "a short write is the prefix before the failed piece")
        #expect(try e.size(f) == 32 << 10 && e.stats.shortWrites == 1)
        let zone = try #require(appendGeometry.zone(containing: try e.extents(f)[0].device))
        let a = e.allocator.account(zone)
        #expect(a.live == .kib(32) && a.garbage == .kib(80) && a.written == .kib(112) && a.reserved == .zero)
        // The zone goes on taking appends after the failure.
        let more = bytes(64 << 10, seed: 4)
        #expect(try e.write(f, 32 << 10, more) == more.count)
        let want = Array(data.prefix(32 << 10)) + more
        let same = try e.read(f, 0, want.count) == want
        #expect(same)
        try expectExtentsMatchDevice(e, dev, [f: want])
    }

    @Test func relocationAppendsAndMapsEachRunWhereItLanded() throws {
        let s = Scratch()
        let dev = try s.emulated(appendGeometry, faults: FaultPlan(seed: 5, outOfOrderAppends: true))
        let e = try Engine(device: dev)
        let f = e.createFile()
        let data = bytes(160 << 10, seed: 5)
        #expect(try e.write(f, 0, data) == data.count)
        let before = try e.extents(f)
        var moved: UInt64 = 0
        for x in before { moved += try e.relocate(f, x) }
        #expect(moved == UInt64(data.count))
        #expect(Set(try e.extents(f).map(\.device)).isDisjoint(with: before.map(\.device)), "every extent moved")
        let readBack = try e.read(f, 0, data.count) == data  // a Bool: a failure must not print megabytes
        #expect(readBack)
        try expectExtentsMatchDevice(e, dev, [f: data])
    }

    @Test func landedPiecesMakeRunsContiguousOnTheDevice() {
        let z = DeviceOffset(1 << 20)
        func p(_ file: UInt64, _ dev: UInt64, _ crc: UInt32) -> LandedPiece {
            LandedPiece(fileOffset: file, length: 4096, device: z + ByteCount(dev), checksums: [crc])
        }
        // Completion order 2, 3, 1: piece 2 took the first address, piece 1 the last.
        let runs = LandedPiece.contiguousRuns([p(4096, 0, 2), p(8192, 4096, 3), p(0, 8192, 1)])
        #expect(runs.map(\.fileOffset) == [0, 4096] && runs.map(\.length) == [4096, 8192])
        #expect(runs.map(\.device) == [z + ByteCount(8192), z] && runs.map(\.checksums) == [[1], [2, 3]])
        #expect(LandedPiece.contiguousRuns([p(0, 0, 1), p(4096, 4096, 2)]).count == 1)
    }
}
