// The allocator against the strict emulated device: grants, short grants at a zone's end, the
// active budget and zone-finish waiting, NOWAIT, ENOSPC, garbage and reset, faults, concurrency.

import Dispatch
import Foundation
import Testing
import ZonedAllocator
import ZonedBackendFile
import ZonedCore

func tempPath(_ tag: String) -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zbdfs-alloc-\(getpid())")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent("\(tag)-\(UUID().uuidString).zimg").path
}

func device(_ g: DeviceGeometry, faults: FaultPlan? = nil) throws -> (EmulatedZonedDevice, String) {
    let path = tempPath("dev")
    try EmulatedZonedDevice.create(path: path, geometry: g, overwrite: true).close()
    return (try EmulatedZonedDevice.open(path: path, faults: faults), path)
}

func block(_ n: Int, _ byte: UInt8) -> AlignedBuffer {
    let b = AlignedBuffer(count: n * 4096)
    b.fill(byte)
    return b
}

/// Writes `data` through one grant in max-write pieces; returns (offset, length) of each piece.
@discardableResult
func writeGrant(_ a: ZoneAllocator, _ g: ZoneGrant, _ data: AlignedBuffer) throws -> [(DeviceOffset, Int)] {
    var pieces: [(DeviceOffset, Int)] = []
    var done = 0
    let maxPiece = a.device.geometry.maxWriteBytes.int
    while done < data.count {
        let n = min(maxPiece, data.count - done)
        let at = try a.append(g, UnsafeRawBufferPointer(data.slice(done, n)))
        pieces.append((at, n))
        done += n
    }
    a.complete(g, written: ByteCount(done))
    return pieces
}

/// Holds the first batch after the device took it and before the allocator hears back: its bytes
/// are on the device (its write pointer moved) but still in flight for the allocator.
final class ParkAfterSubmit: ForwardingDevice, @unchecked Sendable {
    private let cond = ConditionLock()
    private var armed = false, parked = false, open = true

    func arm() { cond.withLock { armed = true; open = false } }
    func waitParked() { cond.withLock { while !parked { cond.wait() } } }
    func release() { cond.withLock { open = true; cond.broadcast() } }

    override func submit(_ batch: [DeviceIO]) -> [IOCompletion] {
        let completions = inner.submit(batch)
        cond.withLock {
            guard armed else { return }
            armed = false
            parked = true
            cond.broadcast()
            while !open { cond.wait() }
        }
        return completions
    }
}

@Suite("Zone allocator", .timeLimit(.minutes(10)))
struct ZoneAllocatorTests {
    @Test func appendsInFlightAreNotTakenForGarbageWhenAnotherGrantResyncs() throws {
        var g = small
        g.maxAppendBytes = .kib(16)
        // IO 1: grant A's append (lands, then parks); IO 2: grant B's append fails.
        let (emu, path) = try device(g, faults: FaultPlan(seed: 1, failingIOs: [2]))
        defer { emu.close(); try? FileManager.default.removeItem(atPath: path) }
        let dev = ParkAfterSubmit(emu)
        let a = try ZoneAllocator(device: dev)
        let ga = try a.grant(.kib(16))
        let gb = try a.grant(.kib(16), hint: ga.zone)
        #expect(gb.zone == ga.zone)
        dev.arm()
        let dataA = block(4, 1), dataB = block(4, 2)
        let landedA = ConditionLock()
        nonisolated(unsafe) var resultA: Result<DeviceOffset, DeviceError>?
        let done = DispatchGroup()
        DispatchQueue.global().async(group: done) {
            let r = a.submit(ga, [dataA.readOnly])[0]
            landedA.withLock { resultA = r }
        }
        dev.waitParked()
        #expect(a.account(ga.zone).inFlight == .kib(16))
        // B fails; the allocator asks the device, whose pointer already counts A's bytes.
        let rb = a.submit(gb, [dataB.readOnly])[0]
        if case .success = rb { Issue.record("the injected failure did not happen") }
        a.complete(gb, written: .zero)
        var acct = a.account(ga.zone)
        #expect(acct.garbage == .zero && acct.written == .zero && acct.reserved == .kib(16) && acct.inFlight == .kib(16),
                "A's bytes in flight were taken for garbage: \(acct)")
        dev.release()
        done.wait()
        let atA = try #require(landedA.withLock { resultA }).get()
        #expect(atA == g.zoneStart(ga.zone))
        a.complete(ga, written: .kib(16))
        acct = a.account(ga.zone)
        #expect(acct.written == .kib(16) && acct.live == .kib(16) && acct.garbage == .zero && acct.reserved == .zero && acct.inFlight == .zero)
        #expect(try dev.zone(ga.zone).writePointer == acct.writePointer)
        #expect(a.problem() == nil)
    }

    let small = DeviceGeometry(zoneCount: 8, zoneSize: .kib(256), zoneCapacity: .kib(192), maxOpenZones: 4,
                               maxActiveZones: 4, maxWriteBytes: .kib(64))

    @Test func grantsLandAtTheWritePointerAndAreAccounted() throws {
        let (dev, path) = try device(small)
        defer { dev.close(); try? FileManager.default.removeItem(atPath: path) }
        let a = try ZoneAllocator(device: dev)
        let g = try a.grant(.kib(128))
        #expect(g.length == .kib(128))
        let pieces = try writeGrant(a, g, block(32, 7))
        #expect(pieces.count == 2, "128 KiB in 64 KiB pieces")
        #expect(pieces[0].0 == dev.geometry.zoneStart(g.zone) && pieces[1].0 == pieces[0].0 + .kib(64))
        let acct = a.account(g.zone)
        #expect(acct.written == .kib(128) && acct.live == .kib(128) && acct.reserved == .zero && acct.phase == .active)
        #expect(try dev.zone(g.zone).writePointer == acct.writePointer, "tracked write pointer matches the device")
        let t = a.totals
        #expect(t.capacity == t.free + t.live + t.garbage + t.unusable + t.reserved)
        #expect(a.problem() == nil)
    }

    @Test func grantIsShorterAtTheEndOfTheHintZone() throws {
        let (dev, path) = try device(small)
        defer { dev.close(); try? FileManager.default.removeItem(atPath: path) }
        let a = try ZoneAllocator(device: dev)
        let first = try a.grant(.kib(160))
        try writeGrant(a, first, block(40, 1))
        let second = try a.grant(.kib(64), hint: first.zone)
        #expect(second.zone == first.zone && second.length == .kib(32), "only 32 KiB left in the hint zone")
        try writeGrant(a, second, block(8, 2))
        #expect(a.account(first.zone).phase == .full, "writing the last byte of capacity makes the zone full")
        #expect(try dev.zone(first.zone).condition == .full)
        #expect(a.stats.zonesFinishedEarly == 0)
    }

    /// The zone finished to free an active slot is the fullest one (least free; the seed finishes
    /// the block group with the least unused space). The zones are unequal, and the fullest has
    /// the higher index, so picking the lowest index (or the emptiest) would fail here.
    @Test func budgetSpentMeansZoneFinishThenRetry() throws {
        let (dev, path) = try device(small)  // max active 4, 2 reserved: data may use 2
        defer { dev.close(); try? FileManager.default.removeItem(atPath: path) }
        let a = try ZoneAllocator(device: dev)
        let g1 = try a.grant(.kib(128)); try writeGrant(a, g1, block(32, 1))  // 64 KiB left
        let g2 = try a.grant(.kib(160)); try writeGrant(a, g2, block(40, 2))  // 32 KiB left: the fullest
        #expect(g1.zone != g2.zone)
        #expect(g1.zone.int < g2.zone.int, "the fullest zone must not be the lowest index, or that policy would pass too")
        #expect(a.tryGrant(.kib(96)) == .needsZoneFinish, "neither active data zone has 96 KiB, no zone may be activated")
        #expect(throws: DeviceError.self) { _ = try a.grant(.kib(96), nowait: true) }
        do { _ = try a.grant(.kib(96), nowait: true) } catch { #expect(error.errno == EAGAIN) }
        let g3 = try a.grant(.kib(96))
        #expect(a.stats.zoneFinishWaits == 1 && a.stats.zonesFinished == 1 && a.stats.zonesFinishedEarly == 1)
        let finished = a.account(g2.zone)
        #expect(finished.phase == .full && finished.unusable == .kib(32), "the fullest zone was finished: \(finished)")
        #expect(try dev.zone(g2.zone).condition == .full)
        let kept = a.account(g1.zone)
        #expect(kept.phase == .active && kept.free == .kib(64) && kept.unusable == .zero, "the emptier zone stays active: \(kept)")
        #expect(try dev.zone(g1.zone).condition != .full)
        #expect(g3.zone != g1.zone && g3.zone != g2.zone && g3.length == .kib(96))
        try writeGrant(a, g3, block(24, 3))
        #expect(a.activeZoneCount <= 2)
        // The zone left active still takes what fits in it.
        let g4 = try a.grant(.kib(64), hint: g1.zone)
        #expect(g4.zone == g1.zone && g4.length == .kib(64))
        try writeGrant(a, g4, block(16, 4))
        #expect(a.problem() == nil)
    }

    @Test func metadataKeepsItsActiveReserve() throws {
        let (dev, path) = try device(small)
        defer { dev.close(); try? FileManager.default.removeItem(atPath: path) }
        let a = try ZoneAllocator(device: dev)
        for _ in 0..<2 { let g = try a.grant(.kib(160)); try writeGrant(a, g, block(40, 1)) }
        #expect(a.tryGrant(.kib(64)) == .needsZoneFinish)
        let m = try a.grant(.kib(4), role: .metadata)
        #expect(a.account(m.zone).role == .metadata, "metadata activates a zone while data is out of budget")
        try writeGrant(a, m, block(1, 9))
    }

    @Test func reservationAndGrantsEndInENOSPC() throws {
        let g = DeviceGeometry(zoneCount: 2, zoneSize: .kib(64), maxWriteBytes: .kib(64))
        let (dev, path) = try device(g)
        defer { dev.close(); try? FileManager.default.removeItem(atPath: path) }
        let a = try ZoneAllocator(device: dev)
        var r = try a.reserve(.kib(96))
        #expect(throws: DeviceError.self) { _ = try a.reserve(.kib(64)) }
        let g1 = try a.grant(.kib(64)); r.use(g1.length); try writeGrant(a, g1, block(16, 1))
        let g2 = try a.grant(.kib(64)); r.use(g2.length); try writeGrant(a, g2, block(16, 2))
        do {
            _ = try a.grant(.kib(4))
            Issue.record("grant on a full device succeeded")
        } catch { #expect(error.errno == ENOSPC) }
        #expect(a.totals.free == .zero && a.totals.live == .kib(128))
    }

    @Test func garbageThenResetFreesTheZone() throws {
        let (dev, path) = try device(small)
        defer { dev.close(); try? FileManager.default.removeItem(atPath: path) }
        let a = try ZoneAllocator(device: dev)
        let g = try a.grant(.kib(192))
        try writeGrant(a, g, block(48, 5))
        a.discard(g.zone, .kib(100))
        #expect(a.account(g.zone).garbage == .kib(100) && a.account(g.zone).live == .kib(92))
        a.discard(g.zone, .kib(92))
        try a.reset(g.zone)
        let z = a.account(g.zone)
        #expect(z.phase == .empty && z.free == .kib(192) && z.garbage == .zero && z.role == .free)
        #expect(try dev.zone(g.zone).condition == .empty)
        #expect(a.stats.zonesReset == 1)
    }

    @Test func deviceZoneAppendIsUsedWhenOffered() throws {
        var g = small
        g.maxAppendBytes = .kib(32)
        let (dev, path) = try device(g)
        defer { dev.close(); try? FileManager.default.removeItem(atPath: path) }
        let a = try ZoneAllocator(device: dev)
        let gr = try a.grant(.kib(64))
        let at1 = try a.append(gr, block(8, 1).readOnly)
        let at2 = try a.append(gr, block(8, 2).readOnly)
        a.complete(gr, written: .kib(64))
        #expect(at2 == at1 + .kib(32))
        #expect(a.stats.deviceAppends == 2)
    }

    @Test func writeErrorResyncsAndLeavesNoPhantomSpace() throws {
        let (dev, path) = try device(small, faults: FaultPlan(seed: 1, failingIOs: [2]))
        defer { dev.close(); try? FileManager.default.removeItem(atPath: path) }
        let a = try ZoneAllocator(device: dev)
        let g = try a.grant(.kib(128))
        _ = try a.append(g, block(16, 1).readOnly)  // IO 1
        #expect(throws: DeviceError.self) { _ = try a.append(g, block(16, 2).readOnly) }  // IO 2 fails
        a.complete(g, written: .kib(64))
        let acct = a.account(g.zone)
        #expect(acct.written == .kib(64) && acct.reserved == .zero)
        #expect(try dev.zone(g.zone).writePointer == acct.writePointer)
        let next = try a.grant(.kib(64), hint: g.zone)
        let at = try a.append(next, block(16, 3).readOnly)
        a.complete(next, written: .kib(64))
        #expect(at == acct.writePointer, "the next write lands where the failed one did not")
        #expect(a.problem() == nil)
    }

    @Test func conventionalZonesNeedNoDeviceFinish() throws {
        let path = tempPath("conv")
        try ConventionalDevice.create(path: path, size: .mib(1))
        let dev = try ConventionalDevice.open(path: path, zoneSize: .kib(256))
        defer { dev.close(); try? FileManager.default.removeItem(atPath: path) }
        let a = try ZoneAllocator(device: dev)
        let g = try a.grant(.kib(256))
        try writeGrant(a, g, block(64, 4))
        #expect(a.account(g.zone).free == .zero)
        a.discard(g.zone, .kib(256))
        try a.reset(g.zone)
        #expect(a.account(g.zone).free == .kib(256))
    }

    @Test("16 writers, max active 3, small zones: no deadlock, every byte verifies, finish waits happen")
    func concurrentWritersWaitForFinishes() throws {
        let g = DeviceGeometry(zoneCount: 64, zoneSize: .kib(128), zoneCapacity: .kib(120), maxOpenZones: 3,
                               maxActiveZones: 3, maxWriteBytes: .kib(16))
        let (dev, path) = try device(g)
        defer { dev.close(); try? FileManager.default.removeItem(atPath: path) }
        let a = try ZoneAllocator(device: dev, config: AllocatorConfig(reservedActiveZones: 1))
        let writers = 16, rounds = 12
        let results = Results()
        DispatchQueue.concurrentPerform(iterations: writers) { w in
            for r in 0..<rounds {
                // The hint carries one write past a zone's end; a new write asks afresh.
                var hint: ZoneID?
                let tag = UInt8(truncatingIfNeeded: w * rounds + r + 1)
                let want = ByteCount(UInt64(4096 * (1 + (w + r) % 6)))
                var left = want
                do {
                    while left.bytes > 0 {
                        let gr = try a.grant(left, hint: hint)
                        let data = block(gr.length.int / 4096, tag)
                        for (at, n) in try writeGrant(a, gr, data) { results.add(at, n, tag) }
                        hint = gr.zone
                        left = left - gr.length
                    }
                } catch { results.fail("writer \(w): \(error)") }
            }
        }
        #expect(results.failures.isEmpty, "\(results.failures)")
        #expect(a.stats.zoneFinishWaits > 0, "with 2 data zones for 16 writers some must wait for a finish")
        #expect(a.problem() == nil)
        let pieces = results.pieces.sorted { $0.0 < $1.0 }
        for (x, y) in zip(pieces, pieces.dropFirst()) {
            #expect(x.0 + ByteCount(x.1) <= y.0, "pieces overlap at \(y.0)")
        }
        for (at, n, tag) in pieces {
            let b = AlignedBuffer(count: n)
            try dev.read(into: b, at: at)
            #expect(b.bytes.allSatisfy { $0 == tag }, "piece at \(at) does not hold its writer's bytes")
        }
        #expect(a.totals.live.bytes == UInt64(pieces.reduce(0) { $0 + $1.1 }))
    }
}

final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var pieces: [(DeviceOffset, Int, UInt8)] = []
    private(set) var failures: [String] = []
    func add(_ at: DeviceOffset, _ n: Int, _ tag: UInt8) { lock.withLock { pieces.append((at, n, tag)) } }
    func fail(_ s: String) { lock.withLock { failures.append(s) } }
}
