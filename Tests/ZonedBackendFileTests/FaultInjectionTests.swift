// Every fault of FaultPlan, each in a test that fails when the fault is not injected: the same
// calls on a device without the plan (or with the fault switched off) behave normally.

import Foundation
import Testing
import ZonedCore
@testable import ZonedBackendFile

@Suite(.timeLimit(.minutes(10))) struct FaultInjectionTests {
    private func device(_ s: Scratch, _ name: String = "a.zimg", faults: FaultPlan? = nil) throws -> EmulatedZonedDevice {
        try EmulatedZonedDevice.create(path: s.path(name), geometry: testGeometry, faults: faults)
    }

    // MARK: EIO

    @Test func scheduledIOFailsWithEIOAndNothingElseDoes() throws {
        let s = Scratch()
        for armed in [false, true] {
            let plan = armed ? FaultPlan(seed: 1, failingIOs: [2, 4]) : nil
            let dev = try device(s, "\(armed).zimg", faults: plan)
            defer { dev.close() }
            let w1 = failure { try dev.write(bytes: pattern(1), at: at(2)) }              // IO 1
            let w2 = failure { try dev.write(bytes: pattern(2), at: at(2, 1)) }           // IO 2
            let r3 = failure { _ = try dev.readBytes(bs, at: at(2)) }                      // IO 3
            let r4 = failure { _ = try dev.readBytes(bs, at: at(2)) }                      // IO 4
            #expect(w1 == nil && r3 == nil)
            #expect(dev.ioCount == 4)
            if armed {
                #expect(w2?.errno == EIO && w2?.detail.contains("injected") == true)
                #expect(r4?.errno == EIO)
                #expect(try dev.wp(2) == at(2, 1))  // the failed write changed nothing
            } else {
                #expect(w2 == nil && r4 == nil)
                #expect(try dev.wp(2) == at(2, 2))
            }
        }
    }

    @Test func readErrorProbabilityIsSeededAndReplayable() throws {
        let s = Scratch()
        func run(_ name: String, _ p: Double) throws -> [Bool] {
            let dev = try device(s, name, faults: FaultPlan(seed: 7, readErrorProbability: p))
            defer { dev.close() }
            try dev.write(bytes: pattern(1), at: at(2))
            return (0..<64).map { _ in failure { _ = try dev.readBytes(bs, at: at(2)) }?.errno == EIO }
        }
        let a = try run("a", 0.5), b = try run("b", 0.5), off = try run("c", 0)
        #expect(a == b)
        #expect(a.contains(true) && a.contains(false))
        #expect(!off.contains(true))
    }

    @Test func writeAndAppendErrorsLeaveTheZoneUnchanged() throws {
        let s = Scratch()
        let dev = try device(s, faults: FaultPlan(seed: 3, writeErrorProbability: 1))
        defer { dev.close() }
        #expect(failure { try dev.write(bytes: pattern(1), at: at(2)) }?.errno == EIO)
        #expect(failure { _ = try dev.append(bytes: pattern(1), to: 3) }?.errno == EIO)
        #expect(try dev.condition(2) == .empty && dev.condition(3) == .empty)
        #expect(try dev.readBytes(bs, at: at(0)) == [UInt8](repeating: 0, count: bs))  // reads unaffected
        dev.setFaultPlan(nil)
        try dev.write(bytes: pattern(1), at: at(2))
        #expect(try dev.wp(2) == at(2, 1))
    }

    @Test func flushErrorMakesNothingDurable() throws {
        let s = Scratch()
        let dev = try device(s, faults: FaultPlan(seed: 3, flushErrorProbability: 1))
        defer { dev.close() }
        try dev.write(bytes: pattern(1), at: at(2))
        #expect(failure { try dev.flush() }?.errno == EIO)
        let seen = try EmulatedZonedDevice.open(path: s.path("a.zimg"), exclusive: false)  // a peek while dev holds the claim
        #expect(try seen.condition(2) == .empty)
        seen.close()
        dev.setFaultPlan(nil)
        try dev.flush()
        let seen2 = try EmulatedZonedDevice.open(path: s.path("a.zimg"), exclusive: false)
        #expect(try seen2.wp(2) == at(2, 1))
        seen2.close()
    }

    // MARK: Zone conditions

    @Test func scheduledReadOnlyZoneRefusesWritesButReads() throws {
        let s = Scratch()
        let plan = FaultPlan(seed: 1, conditionChanges: [.init(atIO: 2, zone: 2, condition: .readOnly)])
        let dev = try device(s, faults: plan)
        try dev.write(bytes: pattern(1), at: at(2))                                      // IO 1
        let e = failure { try dev.write(bytes: pattern(2), at: at(2, 1)) }               // IO 2
        #expect(e?.errno == EIO)
        #expect(try dev.condition(2) == .readOnly)
        #expect(try dev.readBytes(bs, at: at(2)) == pattern(1))
        #expect(failure { try dev.reset(2) }?.errno == EIO)
        #expect(failure { try dev.finish(2) }?.errno == EIO)
        dev.close()
        let again = try EmulatedZonedDevice.open(path: s.path("a.zimg"))
        #expect(try again.condition(2) == .readOnly)
        #expect(try again.wp(2) == at(2, 1))
        again.close()
    }

    @Test func offlineZoneRefusesReadsAndWrites() throws {
        let s = Scratch()
        let dev = try device(s)
        defer { dev.close() }
        try dev.write(bytes: pattern(1), at: at(3))
        try dev.write(bytes: pattern(1), at: at(0))
        #expect(try dev.readBytes(bs, at: at(3)) == pattern(1))
        try dev.setCondition(3, .offline)
        try dev.setCondition(0, .offline)
        #expect(try dev.condition(3) == .offline)
        #expect(failure { _ = try dev.readBytes(bs, at: at(3)) }?.errno == EIO)
        #expect(failure { _ = try dev.readBytes(bs, at: at(0)) }?.errno == EIO)
        #expect(failure { try dev.write(bytes: pattern(2), at: at(3, 1)) }?.errno == EIO)
        #expect(failure { try dev.write(bytes: pattern(2), at: at(0)) }?.errno == EIO)
        #expect(failure { try dev.reset(3) }?.errno == EIO)
        #expect(try dev.readBytes(bs, at: at(4)) == [UInt8](repeating: 0, count: bs))  // other zones fine
        // The open zone went offline, so it no longer counts against the limits.
        #expect(ZoneSummary(zones: try dev.reportAllZones(), geometry: testGeometry).open == 0)
        #expect(failure { try dev.setCondition(4, .full) }?.errno == EINVAL)
    }

    // MARK: Bit rot

    @Test func bitRotFlipsOneBitOfTheReturnedBytesOnly() throws {
        let s = Scratch()
        let dev = try device(s, faults: FaultPlan(seed: 11, bitRotProbability: 1))
        defer { dev.close() }
        let data = pattern(5, blocks: 2)
        try dev.write(bytes: data, at: at(2))
        let rotten = try dev.readBytes(2 * bs, at: at(2))
        let flipped = zip(rotten, data).map { ($0 ^ $1).nonzeroBitCount }.reduce(0, +)
        #expect(flipped == 1)
        dev.setFaultPlan(nil)
        let original = try dev.readBytes(2 * bs, at: at(2)) == data
        #expect(original)
    }

    // MARK: Out-of-order appends

    private func appendBatch(_ dev: EmulatedZonedDevice, count: Int) throws -> (order: [Int], landed: [DeviceOffset]) {
        let buffers = (0..<count).map { AlignedBuffer(copying: pattern(UInt8(40 + $0))) }
        let batch = buffers.map { DeviceIO.append($0.readOnly, zone: 4) }
        let done = dev.submit(batch)
        var landed = [DeviceOffset](repeating: .zero, count: count)
        for c in done { landed[c.index] = try c.result.get() }
        for (i, offset) in landed.enumerated() {
            #expect(try dev.readBytes(bs, at: offset) == pattern(UInt8(40 + i)))
        }
        return (done.map(\.index), landed)
    }

    @Test func outOfOrderAppendsLandPermutedAndEachAtItsReportedOffset() throws {
        let s = Scratch()
        let plain = try device(s, "plain")
        let inOrder = try appendBatch(plain, count: 8)
        plain.close()
        #expect(inOrder.order == Array(0..<8))
        #expect(inOrder.landed == (0..<8).map { at(4, $0) })

        var results: [[Int]] = []
        for name in ["a", "b"] {
            let dev = try device(s, name, faults: FaultPlan(seed: 99, outOfOrderAppends: true))
            let permuted = try appendBatch(dev, count: 8)
            dev.close()
            #expect(permuted.order != Array(0..<8))
            #expect(Set(permuted.landed) == Set((0..<8).map { at(4, $0) }))
            // Landing addresses follow completion order.
            #expect(permuted.order.map { permuted.landed[$0] } == (0..<8).map { at(4, $0) })
            results.append(permuted.order)
        }
        #expect(results[0] == results[1])
    }

    @Test func outOfOrderAppendsKeepWritesInBatchOrder() throws {
        let s = Scratch()
        let dev = try device(s, faults: FaultPlan(seed: 5, outOfOrderAppends: true))
        defer { dev.close() }
        let bufs = (0..<4).map { AlignedBuffer(copying: pattern(UInt8($0))) }
        let batch: [DeviceIO] = [.write(bufs[0].readOnly, at: at(2)), .append(bufs[1].readOnly, zone: 4),
                                 .write(bufs[2].readOnly, at: at(2, 1)), .append(bufs[3].readOnly, zone: 4)]
        let done = dev.submit(batch)
        #expect(done.map(\.index) == [0, 3, 2, 1])
        #expect(done.allSatisfy { (try? $0.result.get()) != nil })
        #expect(try dev.readBytes(2 * bs, at: at(2)) == pattern(0) + pattern(2))
    }

    // MARK: Power cut

    /// Flushes 2 blocks into zones 2...5, then sends 40 more to each without a flush and cuts.
    private func cutScenario(_ s: Scratch, _ name: String, seed: UInt64, torn: Bool) throws -> [[UInt8]] {
        let g = testGeometry
        let dev = try device(s, name, faults: FaultPlan(seed: seed))
        for z in 2...5 { try dev.write(bytes: pattern(UInt8(z), blocks: 2), at: at(z)) }
        try dev.flush()
        for z in 2...5 {
            for chunk in 0..<4 { try dev.write(bytes: pattern(UInt8(z * 10 + chunk), blocks: 10), at: at(z, 2 + chunk * 10)) }
        }
        #expect(!dev.isDead)
        try dev.powerCut(tornLastBlock: torn)
        #expect(dev.isDead)
        #expect(failure { _ = try dev.readBytes(bs, at: at(2)) }?.errno == EIO)
        #expect(failure { _ = try dev.reportAllZones() }?.errno == EIO)
        #expect(failure { try dev.write(bytes: pattern(1), at: at(0)) }?.errno == EIO)
        dev.close()
        let again = try EmulatedZonedDevice.open(path: s.path(name))
        defer { again.close() }
        var zones: [[UInt8]] = []
        for z in 2...5 {
            let wp = try again.wp(z)
            #expect(wp >= at(z, 2) && wp <= at(z, 42))
            zones.append(try again.readBytes(g.zoneCapacity.int, at: at(z)))
        }
        return zones
    }

    /// What zone `z` was sent, block by block.
    private func sent(_ z: Int) -> [UInt8] {
        pattern(UInt8(z), blocks: 2) + (0..<4).flatMap { pattern(UInt8(z * 10 + $0), blocks: 10) }
    }

    private func keptBlocks(_ zone: [UInt8]) -> Int {
        let zero = [UInt8](repeating: 0, count: bs)
        return (0..<(zone.count / bs)).last { Array(zone[($0 * bs)..<(($0 + 1) * bs)]) != zero }.map { $0 + 1 } ?? 0
    }

    @Test func powerCutKeepsAPrefixOfUnflushedWritesAndIsReplayable() throws {
        let s = Scratch()
        let a = try cutScenario(s, "a", seed: 2024, torn: false)
        var shorter = 0
        for (i, zone) in a.enumerated() {
            let kept = keptBlocks(zone)
            let expected = sent(i + 2)
            #expect(kept >= 2 && kept <= 42)
            if kept < 42 { shorter += 1 }
            let prefixIsWhatWasSent = zone[0..<(kept * bs)] == expected[0..<(kept * bs)]
            #expect(prefixIsWhatWasSent)
        }
        #expect(shorter > 0)
        // Compared as Bools: a failure should not print megabytes of zone contents.
        let sameSeedSameOutcome = try cutScenario(s, "b", seed: 2024, torn: false) == a
        #expect(sameSeedSameOutcome)
        let otherSeedOtherOutcome = try cutScenario(s, "c", seed: 2025, torn: false) != a
        #expect(otherSeedOtherOutcome)
    }

    @Test func tornLastBlockIsNeitherOldNorNewData() throws {
        let s = Scratch()
        let zones = try cutScenario(s, "a", seed: 31, torn: true)
        var torn = 0
        for (i, zone) in zones.enumerated() {
            let kept = keptBlocks(zone)
            guard kept > 2 else { continue }  // kept nothing new: nothing to tear
            let expected = sent(i + 2)
            let last = Array(zone[((kept - 1) * bs)..<(kept * bs)])
            let new = Array(expected[((kept - 1) * bs)..<(kept * bs)])
            let differsFromNew = last != new, differsFromOld = last != [UInt8](repeating: 0, count: bs)
            #expect(differsFromNew && differsFromOld)
            #expect(last[0] == new[0])  // it starts with the new data
            let restIntact = zone[0..<((kept - 1) * bs)] == expected[0..<((kept - 1) * bs)]
            #expect(restIntact)
            torn += 1
        }
        #expect(torn > 0)
        let replayed = try cutScenario(s, "b", seed: 31, torn: true) == zones
        #expect(replayed)
    }

    @Test func scheduledPowerCutFailsThatIOAndKillsTheDevice() throws {
        let s = Scratch()
        let dev = try device(s, faults: FaultPlan(seed: 8, powerCut: .init(atIO: 3)))
        try dev.write(bytes: pattern(1), at: at(2))
        try dev.write(bytes: pattern(2), at: at(2, 1))
        let e = failure { try dev.write(bytes: pattern(3), at: at(2, 2)) }
        #expect(e?.errno == EIO && e?.detail.contains("power cut") == true)
        #expect(dev.isDead && dev.ioCount == 3)
        #expect(failure { try dev.flush() }?.errno == EIO)
        dev.close()
        let again = try EmulatedZonedDevice.open(path: s.path("a.zimg"))
        defer { again.close() }
        #expect(try again.wp(2) <= at(2, 2))
        #expect(try again.condition(2) != .implicitlyOpen)
        try again.write(bytes: pattern(4), at: again.wp(2))  // alive again after reopen
    }

    @Test func powerCutKeepsASubsetOfUnflushedConventionalWrites() throws {
        let s = Scratch()
        let old = pattern(1, blocks: 16)
        func run(_ name: String, _ plan: FaultPlan?) throws -> [UInt8] {
            let dev = try device(s, name, faults: plan)
            try dev.write(bytes: old, at: at(0))
            try dev.flush()
            for b in 0..<16 { try dev.write(bytes: pattern(UInt8(100 + b)), at: at(0, b)) }
            try dev.powerCut(seed: 77)
            dev.close()
            let again = try EmulatedZonedDevice.open(path: s.path(name))
            defer { again.close() }
            return try again.readBytes(16 * bs, at: at(0))
        }
        let armed = try run("a", FaultPlan(seed: 77))
        var reverted = 0, kept = 0
        for b in 0..<16 {
            let block = Array(armed[(b * bs)..<((b + 1) * bs)])
            if block == Array(old[(b * bs)..<((b + 1) * bs)]) { reverted += 1 }
            if block == pattern(UInt8(100 + b)) { kept += 1 }
        }
        #expect(reverted + kept == 16)
        #expect(reverted > 0 && kept > 0)
        let replayed = try run("b", FaultPlan(seed: 77)) == armed
        #expect(replayed)
        // Without a plan no old bytes were recorded: every write stays.
        let unarmed = try run("c", nil)
        let allKept = unarmed == (0..<16).flatMap { pattern(UInt8(100 + $0)) }
        #expect(allKept)
    }

    @Test func overlappingConventionalWritesRevertToAConsistentHistory() throws {
        let s = Scratch()
        // Three writes over the same two blocks; whatever subset is kept, each block shows the
        // newest kept write or the flushed bytes, never a mix from before a kept write.
        for seed in UInt64(0)..<12 {
            let dev = try device(s, "s\(seed)", faults: FaultPlan(seed: seed))
            try dev.write(bytes: pattern(1, blocks: 2), at: at(1))
            try dev.flush()
            try dev.write(bytes: pattern(2, blocks: 2), at: at(1))
            try dev.write(bytes: pattern(3), at: at(1, 1))
            try dev.write(bytes: pattern(4), at: at(1))
            try dev.powerCut()
            dev.close()
            let again = try EmulatedZonedDevice.open(path: s.path("s\(seed)"))
            let got = try again.readBytes(2 * bs, at: at(1))
            again.close()
            let b0 = Array(got[0..<bs]), b1 = Array(got[bs...])
            let p1 = pattern(1, blocks: 2), p2 = pattern(2, blocks: 2)
            #expect([Array(p1[0..<bs]), Array(p2[0..<bs]), pattern(4)].contains(b0))
            #expect([Array(p1[bs...]), Array(p2[bs...]), pattern(3)].contains(b1))
        }
    }

    /// The calls of a scenario with writes to sequential and conventional zones, a flush, a reset
    /// and more unflushed writes; `before` runs before each IO with its number.
    private func crashScenario(_ dev: EmulatedZonedDevice, before: (UInt64) throws -> Void) throws {
        var io: UInt64 = 0
        func next() throws { io += 1; try before(io) }
        for b in 0..<4 { try next(); try dev.write(bytes: pattern(UInt8(b)), at: at(2, b)) }
        try next(); try dev.write(bytes: pattern(9, blocks: 2), at: at(0, 1))
        try next(); try dev.flush()
        try dev.reset(ZoneID(3))
        for b in 0..<6 { try next(); try dev.write(bytes: pattern(UInt8(20 + b)), at: at(2, 4 + b)) }
        try next(); try dev.write(bytes: pattern(40, blocks: 3), at: at(0))
        try next(); _ = try dev.readBytes(bs, at: at(2))
        try next(); try dev.write(bytes: pattern(41), at: at(1, 3))
    }

    @Test func crashImageEqualsTheImageOfARealPowerCut() throws {
        let s = Scratch()
        for torn in [false, true] {
            // One uncut run takes the crash image before every IO.
            let dev = try device(s, "live\(torn)", faults: FaultPlan(seed: 5))
            try crashScenario(dev) { io in
                #expect(dev.ioCount == io - 1)
                try dev.crashImage(to: s.path("snap\(torn)-\(io)"), tornLastBlock: torn)
            }
            let count = dev.ioCount
            dev.close()
            var differs = 0
            for k in 1...count {
                let cut = try device(s, "cut\(torn)-\(k)", faults: FaultPlan(seed: 5, powerCut: .init(atIO: k, tornLastBlock: torn)))
                try? crashScenario(cut) { _ in }
                #expect(cut.isDead)
                cut.close()
                let real = try Data(contentsOf: URL(fileURLWithPath: s.path("cut\(torn)-\(k)")))
                let snap = try Data(contentsOf: URL(fileURLWithPath: s.path("snap\(torn)-\(k)")))
                #expect(real == snap, "cut at IO \(k), torn \(torn): the crash image differs from the real cut")
                if k > 1, try Data(contentsOf: URL(fileURLWithPath: s.path("snap\(torn)-\(k - 1)"))) != snap { differs += 1 }
                // The image opens (the claim was released) and is dead no more.
                let again = try EmulatedZonedDevice.open(path: s.path("snap\(torn)-\(k)"))
                #expect(!again.isDead)
                again.close()
            }
            #expect(differs > 4)  // the images follow the IOs, they are not all one image
        }
    }

    /// A drive-sized zone count: the crash image takes every zone lock (it once did so by
    /// recursion, a stack frame per zone) and copies only the sparse image's data.
    @Test func crashImageOfAnEightyThousandZoneDevice() throws {
        let s = Scratch()
        let g = DeviceGeometry(zoneCount: 80_000, zoneSize: .kib(64), zoneCapacity: .kib(64),
                               logicalBlockSize: ByteCount(bs), maxOpenZones: 128, maxActiveZones: 128,
                               maxWriteBytes: .kib(64), maxAppendBytes: .kib(64), conventionalZoneCount: 0)
        let dev = try EmulatedZonedDevice.create(path: s.path("big"), geometry: g, faults: FaultPlan(seed: 3))
        defer { dev.close() }
        let last = DeviceOffset(UInt64(79_999) * UInt64(64 << 10))
        try dev.write(bytes: pattern(7), at: last)
        try dev.flush()
        try dev.crashImage(to: s.path("snap"))
        let snap = try EmulatedZonedDevice.open(path: s.path("snap"))
        defer { snap.close() }
        #expect(try snap.readBytes(bs, at: last) == pattern(7))
        var st = stat()
        #expect(stat(s.path("snap"), &st) == 0)
        #expect(st.st_size > 5_000_000_000 && Int(st.st_blocks) * 512 < 64 << 20, "the copy is not sparse: \(st.st_blocks) blocks")
    }
}
