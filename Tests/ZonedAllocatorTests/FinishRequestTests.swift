// A zone chosen to be finished must not stay marked when the finish becomes moot: when its only
// grant ends with nothing written (the zone drops back to empty) or when the device reports it
// full after a failed write. A mark left behind keeps the zone from ever being reused, set aside
// or reset until the next mount.

import Foundation
import Testing
import ZonedAllocator
import ZonedBackendFile
import ZonedCore
import ZonedTestSupport

/// Parks the first armed batch inside the device; on release the batch fails, and with
/// `finishOnRelease` the zone is finished on the device first (full behind the allocator's back).
final class ParkThenFail: ForwardingDevice, @unchecked Sendable {
    private let cond = NSCondition()
    private var armed = false, parked = false, open = true
    var finishOnRelease = false

    func arm() { cond.lock(); armed = true; open = false; cond.unlock() }
    func waitParked() -> Bool {
        waitUntil { cond.lock(); defer { cond.unlock() }; return parked }
    }
    func release() { cond.lock(); open = true; cond.broadcast(); cond.unlock() }

    override func submit(_ batch: [DeviceIO]) -> [IOCompletion] {
        cond.lock()
        guard armed else { cond.unlock(); return inner.submit(batch) }
        armed = false
        parked = true
        cond.broadcast()
        while !open { cond.wait() }
        cond.unlock()
        if finishOnRelease, case .write(_, let at)? = batch.first, let z = geometry.zone(containing: at) {
            try? inner.finish(z)
        }
        return batch.indices.map { IOCompletion(index: $0, result: .failure(.io(.write, "injected failure"))) }
    }
}

/// A value two threads share.
final class Shared<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ v: T) { stored = v }
    var value: T {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

@Suite("Finish requests", .timeLimit(.minutes(10)))
struct FinishRequestTests {
    // One data zone may be active (max active 4, 3 kept for metadata and reclaim).
    let g = DeviceGeometry(zoneCount: 8, zoneSize: .kib(256), zoneCapacity: .kib(192), maxOpenZones: 4,
                           maxActiveZones: 4, maxWriteBytes: .kib(64))

    /// Writer 1 holds a grant in zone A and parks inside the device; writer 2 needs more than A
    /// has left, so it marks A to be finished and waits for writer 1's grant to end.
    private func markWhileParked(_ dev: ParkThenFail, _ a: ZoneAllocator, _ secondZone: Shared<ZoneID?>) throws -> (ZoneGrant, Background, Background) {
        let g1 = try a.grant(.kib(64))
        dev.arm()
        let w1 = Background {
            let r = a.submit(g1, [block(16, 1).readOnly])
            if case .success = r[0] { Issue.record("the parked write was meant to fail") }
            a.complete(g1, written: .zero)
        }
        #expect(dev.waitParked(), "writer 1 never reached the device")
        let w2 = Background {
            let g2 = try a.grant(.kib(192))
            secondZone.value = g2.zone
            try writeGrant(a, g2, block(48, 2))
        }
        #expect(waitUntil { a.account(g1.zone).finishRequested }, "writer 2 never chose zone A to finish")
        return (g1, w1, w2)
    }

    @Test func aZoneThatDropsBackToEmptyIsNotLeftMarked() throws {
        let (emu, path) = try device(g)
        defer { emu.close(); try? FileManager.default.removeItem(atPath: path) }
        let dev = ParkThenFail(emu)
        let a = try ZoneAllocator(device: dev, config: AllocatorConfig(reservedActiveZones: 3))
        let second = Shared<ZoneID?>(nil)
        let (g1, w1, w2) = try markWhileParked(dev, a, second)
        dev.release()
        try w1.join(); try w2.join()
        // Nothing landed in A, so it went back to empty; the lowest empty zone, it is where
        // writer 2's grant goes — unless the stale mark keeps it out.
        #expect(second.value == g1.zone, "writer 2 did not reuse the empty zone A")
        #expect(!a.account(g1.zone).finishRequested, "A dropped back to empty but is still marked to be finished: never reused")
        #expect(a.problem() == nil)
    }

    @Test func aZoneTheDeviceReportsFullAfterAnErrorIsNotLeftMarked() throws {
        let (emu, path) = try device(g)
        defer { emu.close(); try? FileManager.default.removeItem(atPath: path) }
        let dev = ParkThenFail(emu)
        dev.finishOnRelease = true
        let a = try ZoneAllocator(device: dev, config: AllocatorConfig(reservedActiveZones: 3))
        let (g1, w1, w2) = try markWhileParked(dev, a, Shared<ZoneID?>(nil))
        dev.release()
        try w1.join(); try w2.join()
        let acct = a.account(g1.zone)
        #expect(acct.phase == .full && acct.live == .zero, "the device finished A: \(acct)")
        #expect(!acct.finishRequested, "A is full but still marked to be finished: it can never be reset")
        #expect(try a.resetIfUnused(g1.zone), "A holds nothing live and must be reset")
        #expect(a.account(g1.zone).phase == .empty)
        #expect(a.problem() == nil)
    }
}
