// The engine's write path on the NVMe backend over the fake ZNS controller, which completes the
// commands in flight in a seeded random order as a real controller may: a write's zone appends go
// out together, land wherever the controller puts them, and every extent must still hold exactly
// its file's bytes on the device (read back through the device, not the engine). With zone append
// turned off the same writes go one at a time per zone at the write pointer.

import Dispatch
import Foundation
import Testing
import ZonedAllocator
import ZonedCore
import ZonedEngine
@testable import ZonedBackendNVMe

@Suite("The engine on the NVMe backend (fake ZNS controller)", .timeLimit(.minutes(10)))
struct EngineOnNVMeTests {
    /// Every extent of every file lies in one zone and holds the file's bytes on the device.
    func expectExtentsOnDevice(_ e: Engine, _ d: NVMeZonedDevice, _ files: [InodeNumber: [UInt8]],
                               sourceLocation: SourceLocation = #_sourceLocation) throws {
        let g = d.geometry
        for (f, want) in files.sorted(by: { $0.key < $1.key }) {
            for x in try e.extents(f) {
                #expect(g.zone(containing: x.device) == g.zone(containing: x.deviceEnd - ByteCount(1)), "\(x) crosses a zone",
                        sourceLocation: sourceLocation)
                let back = AlignedBuffer(count: Int(x.length))
                var done = 0
                while done < back.count {
                    let n = min(g.maxWriteBytes.int, back.count - done)
                    try d.read(into: back.slice(done, n), at: x.device + ByteCount(UInt64(done)))
                    done += n
                }
                // A Bool, not the arrays: a failure must not print megabytes.
                let same = Array(back.readOnly) == Array(want[Int(x.fileOffset)..<Int(x.fileEnd)])
                #expect(same, "extent \(x) of file \(f) does not hold the file's bytes on the device", sourceLocation: sourceLocation)
            }
        }
        #expect(e.allocator.problem() == nil, sourceLocation: sourceLocation)
    }

    /// Two writers at once, three files, overwrites: the bytes each file must hold.
    func workload(_ e: Engine, seed: UInt64) throws -> [InodeNumber: [UInt8]] {
        let sizes = [640 << 10, 400 << 10, 256 << 10]
        let inodes = sizes.map { _ in e.createFile() }
        var files: [InodeNumber: [UInt8]] = [:]
        for (i, n) in sizes.enumerated() { files[inodes[i]] = SeededRandom.bytes(n, seed: seed * 10 + UInt64(i)) }
        let snapshot = files
        let failure = NSLock()
        nonisolated(unsafe) var error: (any Error)?
        DispatchQueue.concurrentPerform(iterations: 2) { w in
            do {
                for (i, f) in inodes.enumerated() where i % 2 == w {
                    let data = snapshot[f]!
                    let n = try data.withUnsafeBytes { try e.write(f, at: 0, $0) }
                    if n != data.count { throw DeviceError.io(.write, "short write \(n) of \(data.count)") }
                }
            } catch let e { failure.withLock { error = e } }
        }
        if let error { throw error }
        let patch = SeededRandom.bytes(96 << 10, seed: seed + 99)
        let f = inodes[0]
        #expect(try patch.withUnsafeBytes { try e.write(f, at: 128 << 10, $0) } == patch.count)
        files[f]!.replaceSubrange((128 << 10)..<(224 << 10), with: patch)
        return files
    }

    @Test("zone appends in flight together, landing in the controller's order", arguments: [UInt64(1), 2, 3])
    func appendsLandWhereTheControllerPutsThem(seed: UInt64) throws {
        var p = FakeZNS.Params()
        p.seed = seed
        let fake = FakeZNS(p)
        let d = try FakeDeviceTests.open(fake)
        defer { d.close() }
        let e = try Engine(device: d)
        #expect(e.allocator.usesZoneAppend)
        let files = try workload(e, seed: seed)
        #expect(fake.maxAppendsInFlightPerZone > 1, "a write's appends go out together")
        #expect(fake.withLock { fake.executed[.zoneAppend] ?? 0 } > 0 && fake.maxWritesInFlightPerZone == 0)
        #expect(e.stats.landedApartSplits > 0, "the controller's order must make pieces land apart")
        try expectExtentsOnDevice(e, d, files)
        for (f, want) in files {
            var got = [UInt8](repeating: 0, count: want.count)
            _ = try got.withUnsafeMutableBytes { try e.read(f, at: 0, into: $0) }
            let same = got == want
            #expect(same, "file \(f) reads back other bytes")
        }
    }

    @Test func writeAtThePointerWhenAppendIsTurnedOff() throws {
        let fake = FakeZNS()
        let d = try FakeDeviceTests.open(fake)
        defer { d.close() }
        let e = try Engine(device: d, config: EngineConfig(allocator: AllocatorConfig(zoneAppend: false)))
        let files = try workload(e, seed: 7)
        #expect(fake.withLock { fake.executed[.zoneAppend] ?? 0 } == 0)
        #expect(fake.maxWritesInFlightPerZone == 1, "one write per zone at a time")
        try expectExtentsOnDevice(e, d, files)
    }
}

extension SeededRandom {
    static func bytes(_ n: Int, seed: UInt64) -> [UInt8] {
        var r = SeededRandom(seed: seed)
        return r.bytes(n)
    }
}
