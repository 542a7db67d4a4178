// NVMeZonedDevice on the fake ZNS controller (FakeZNS.swift): the whole conformance suite, and the
// batch rules — a zone's appends in flight together, its writes one at a time, completions in
// the controller's order — that the guest can only show by not failing.

import Dispatch
import Foundation
import Testing
import ZonedConformance
import ZonedCore
@testable import ZonedBackendNVMe

@Suite("NVMe backend on a fake ZNS controller", .timeLimit(.minutes(10)))
struct FakeDeviceTests {
    static func open(_ fake: FakeZNS) throws -> NVMeZonedDevice {
        try NVMeZonedDevice.make(path: "/dev/fake-ng0n1", charPath: "/dev/fake-ng0n1", controller: fake,
                                 limits: NVMeQueueLimits(), blockClaimFD: -1)
    }

    @Test func geometryFromTheFake() throws {
        let d = try Self.open(FakeZNS())
        defer { d.close() }
        let g = d.geometry
        #expect(g.zoneCount == 16 && g.zoneSize == .mib(1) && g.zoneCapacity == .kib(768))
        #expect(g.maxOpenZones == 4 && g.maxActiveZones == 6 && g.commandSet == .zns)
        #expect(g.maxWriteBytes == .kib(64) && g.maxAppendBytes == .kib(16))
        #expect(d.kind == .nvme && d.namespaceID == 1)
    }

    @Test(arguments: [UInt64(1), 2, 3])
    func conformanceSuite(seed: UInt64) throws {
        var p = FakeZNS.Params()
        p.seed = seed
        let fake = FakeZNS(p)
        let target = ConformanceTarget(device: try Self.open(fake), reopen: { try Self.open(fake) })
        var failures: [String] = []
        for check in ConformanceSuite.checks {
            if case .failed(let why) = check.run(on: target) { failures.append("\(check.name): \(why)") }
        }
        target.device.close()
        #expect(failures.isEmpty, "\(failures)")
        // The suite's batches and concurrent writers never put two writes to one zone in flight.
        #expect(fake.maxWritesInFlightPerZone <= 1)
    }

    @Test func appendsOfOneZoneAreInFlightTogetherAndLandApart() throws {
        let fake = FakeZNS()
        let d = try Self.open(fake)
        defer { d.close() }
        let bs = d.geometry.logicalBlockSize.int
        var rng = SeededRandom(seed: 9)
        let buffers = (0..<24).map { i in AlignedBuffer(copying: rng.bytes(bs * (1 + i % 4))) }
        let zone = ZoneID(2)
        let done = d.submit(buffers.map { .append($0.readOnly, zone: zone) })
        #expect(done.map(\.index).sorted() == Array(0..<24))
        #expect(fake.maxAppendsInFlightPerZone > 1)
        var landed: [(DeviceOffset, Int)] = []
        for c in done {
            let at = try c.result.get()
            landed.append((at, c.index))
            let back = AlignedBuffer(count: buffers[c.index].count)
            try d.read(into: back, at: at)
            #expect(back.bytes == buffers[c.index].bytes)
        }
        // The appends tile the zone from its start without gaps or overlaps.
        landed.sort { $0.0 < $1.0 }
        var next = d.geometry.zoneStart(zone)
        for (at, i) in landed {
            #expect(at == next)
            next = at + ByteCount(buffers[i].count)
        }
        #expect(try d.zone(zone).writePointer == next)
    }

    @Test func aWriteAfterAppendsWaitsForThemAndAfterAFailureLaterWritesAreNotSent() throws {
        let fake = FakeZNS()
        let d = try Self.open(fake)
        defer { d.close() }
        let bs = d.geometry.logicalBlockSize
        let z = ZoneID(1), start = d.geometry.zoneStart(z)
        let a = (0..<6).map { _ in AlignedBuffer(count: bs.int) }
        // Six appends, then a write aimed at where they end, then two more writes in order.
        let w = (0..<3).map { _ in AlignedBuffer(count: bs.int) }
        var batch: [DeviceIO] = a.map { .append($0.readOnly, zone: z) }
        batch += w.enumerated().map { k, b in .write(b.readOnly, at: start + bs * UInt64(6 + k)) }
        let done = d.submit(batch)
        #expect(done.allSatisfy { if case .success = $0.result { true } else { false } })
        #expect(fake.maxWritesInFlightPerZone == 1)
        #expect(try d.zone(z).writePointer == start + bs * 9)

        // A write off the write pointer fails; the zone's later writes are not sent, its later
        // appends still go.
        let bad: [DeviceIO] = [.write(w[0].readOnly, at: start), .write(w[1].readOnly, at: start + bs * 9),
                               .append(a[0].readOnly, zone: z)]
        let after = d.submit(bad).sorted { $0.index < $1.index }
        guard case .failure(let e0) = after[0].result, case .failure(let e1) = after[1].result else {
            Issue.record("the off-pointer write and the one after it should fail: \(after)")
            return
        }
        #expect(e0.kind == .io && e0.detail.contains("Zone Invalid Write"))
        #expect(e1.kind == .io && e1.detail.contains("not sent"))
        #expect(try after[2].result.get() == start + bs * 9)
    }

    /// Threads appending to one zone at once (each call leases its own queue, as FUSE workers
    /// do): every append lands once, the zone is tiled, every thread reads its own bytes back.
    @Test func concurrentAppendersShareAZone() throws {
        let fake = FakeZNS()
        let d = try Self.open(fake)
        defer { d.close() }
        let bs = d.geometry.logicalBlockSize.int, z = ZoneID(4)
        let perThread = 8, threads = 4
        let lock = NSLock()
        nonisolated(unsafe) var landed: [(DeviceOffset, Int, [UInt8])] = []
        nonisolated(unsafe) var errors: [String] = []
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            var rng = SeededRandom(seed: UInt64(100 + t))
            for k in 0..<perThread {
                let bytes = rng.bytes(bs * (1 + (t + k) % 4))
                let b = AlignedBuffer(copying: bytes)
                do throws(DeviceError) {
                    let at = try d.append(b.readOnly, to: z)
                    lock.lock(); landed.append((at, bytes.count, bytes)); lock.unlock()
                } catch {
                    lock.lock(); errors.append("\(error)"); lock.unlock()
                }
            }
        }
        #expect(errors.isEmpty, "\(errors)")
        landed.sort { $0.0 < $1.0 }
        var next = d.geometry.zoneStart(z)
        for (at, n, bytes) in landed {
            #expect(at == next)
            let back = AlignedBuffer(count: n)
            try d.read(into: back, at: at)
            #expect(back.bytes == bytes)
            next = at + ByteCount(n)
        }
        #expect(landed.count == threads * perThread)
        #expect(try d.zone(z).writePointer == next)
    }

    @Test func aWildAppendLandingIsAnErrorNotAnOffset() throws {
        let fake = FakeZNS()
        let d = try Self.open(fake)
        defer { d.close() }
        fake.appendResultSkew = 1 << 20
        let b = AlignedBuffer(count: d.geometry.logicalBlockSize.int)
        #expect(throws: DeviceError.self) { _ = try d.append(b.readOnly, to: ZoneID(0)) }
        fake.appendResultSkew = -1
        do {
            _ = try d.append(b.readOnly, to: ZoneID(3))
            Issue.record("an append reported one block before its zone must fail")
        } catch {
            #expect(error.kind == .io && error.detail.contains("outside the zone"))
        }
    }

    @Test func deviceStatusesBecomeTheKernelsErrno() throws {
        var p = FakeZNS.Params()
        p.maxOpen = 2
        p.maxActive = 2
        let d = try Self.open(FakeZNS(p))
        defer { d.close() }
        try d.openZone(ZoneID(0))
        try d.openZone(ZoneID(1))
        do throws(DeviceError) {
            try d.openZone(ZoneID(2))
            Issue.record("a third open must fail")
        } catch {
            #expect(error.kind == .tooManyActiveZones && error.detail.contains("Too Many Active Zones"))
        }
        do throws(DeviceError) {
            try d.closeZone(ZoneID(5))  // close of an empty zone: Invalid Zone State Transition
            Issue.record("close of an empty zone must fail on this controller")
        } catch {
            #expect(error.kind == .io && error.detail.contains("Invalid Zone State Transition"))
        }
        #expect(throws: DeviceError.self) { try d.reset(ZoneID(16)) }
    }

    @Test func closedDeviceRefusesCalls() throws {
        let d = try Self.open(FakeZNS())
        d.close()
        d.close()
        #expect(throws: DeviceError.self) { _ = try d.reportAllZones() }
        let b = AlignedBuffer(count: 4096)
        #expect(throws: DeviceError.self) { try d.write(b, at: .zero) }
    }
}
