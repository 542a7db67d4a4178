// The rules of the ZonedDevice contract, one check each. See ZonedDevice.swift for the contract
// and Harness.swift for how a check runs. Every check starts with all sequential zones empty, and
// the harness resets whatever a check left written, open or closed.
//
// Where real devices differ among themselves the check accepts what the standards allow and says
// so in its rule text (e.g. a zone reopened after a power cycle may come back closed).
//
// Data checks write seeded random blocks (never all zeros) and conventional-random-writes also
// writes zeros over them, so a device that stores zero blocks differently (a discard-data image
// keeps only non-zero blocks) is judged on both; none of these checks is skipped for it.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import ZonedCore

private func needsSequential(_ n: Int) -> @Sendable (DeviceGeometry) -> String? {
    { g in g.sequentialZoneCount >= n ? nil : "needs \(n) sequential zone(s), the device has \(g.sequentialZoneCount)" }
}

public enum ConformanceSuite {
    public static let checks: [ConformanceCheck] = [
        geometry, reportRange, writeAtWritePointer, writeOffWritePointer, alignment, maxWriteSize,
        readPastWritePointer, fillToCapacity, writePastCapacity, finish, reset, explicitOpenClose,
        implicitOpenLimit, explicitOpenLimit, activeLimit, conventionalRandomWrites,
        conventionalManagementRefused, zoneAppend, batchAppend, batchSubmit, concurrentWriters, flushAndReopen,
    ]

    static let geometry = ConformanceCheck("geometry", "geometry is valid and the zone report matches it") { t in
        let d = t.device, g = d.geometry
        if let p = g.problem() { throw ConformanceFailure("invalid geometry: \(p)") }
        let zones = try d.reportAllZones()
        try expect(zones.count == g.zoneCount, "report has \(zones.count) zones, geometry says \(g.zoneCount)")
        for (i, z) in zones.enumerated() {
            try expect(z.id == ZoneID(i), "report entry \(i) is \(z.id)")
            try expect(z.start == g.zoneStart(z.id), "\(z.id) starts at \(z.start), expected \(g.zoneStart(z.id))")
            try expect(z.size == g.zoneSize, "\(z.id) size \(z.size) differs from the zone size \(g.zoneSize)")
            try expect(z.capacity <= z.size && z.capacity.bytes > 0, "\(z.id) capacity \(z.capacity) not in (0, size]")
            let conventional = i < g.conventionalZoneCount
            try expect((z.type == .conventional) == conventional, "\(z.id) type \(z.type.rawValue) contradicts \(g.conventionalZoneCount) leading conventional zones")
            if conventional {
                try expect(z.condition == .notWritePointer, "conventional \(z.id) has condition \(z.condition.rawValue)")
            } else {
                try expect(z.capacity == g.zoneCapacity, "\(z.id) capacity \(z.capacity) differs from \(g.zoneCapacity)")
                try expect(z.condition == .empty, "\(z.id) not empty after reset: \(z.condition.rawValue)")
                try expect(z.writePointer == z.start, "empty \(z.id) write pointer \(z.writePointer) is not its start")
            }
        }
    }

    static let reportRange = ConformanceCheck("report-range", "a report from zone k for n zones gives exactly those, clamped at the end") { t in
        let d = t.device, n = d.geometry.zoneCount
        let mid = ZoneID(n / 2)
        let some = try d.reportZones(from: mid, count: 2)
        try expect(some.map(\.id) == Array((mid.int..<min(n, mid.int + 2)).map { ZoneID($0) }), "report(from: \(mid), count: 2) gave \(some.map(\.id))")
        let tail = try d.reportZones(from: ZoneID(n - 1), count: 10)
        try expect(tail.count == 1 && tail[0].id == ZoneID(n - 1), "report past the end is not clamped: \(tail.map(\.id))")
    }

    static let writeAtWritePointer = ConformanceCheck(
        "write-at-write-pointer", "a write at the write pointer lands there, advances it and opens the zone implicitly",
        skipUnless: needsSequential(1)
    ) { t in
        let d = t.device, z = d.geometry.sequentialZones[0], bs = d.geometry.block
        let data = pattern(bs * 2, seed: 1)
        let start = try zoneState(d, z).start
        try d.write(data, at: start)
        let after = try zoneState(d, z)
        try expect(after.writePointer == start + bs * 2, "write pointer \(after.writePointer) after writing 2 blocks at \(start)")
        try expect(after.condition == .implicitlyOpen, "condition after a write is \(after.condition.rawValue), expected implicit-open")
        try expectBytes(d, at: start, equal: data, "read back")
        let more = pattern(bs, seed: 2)
        try d.write(more, at: after.writePointer)
        try expectBytes(d, at: after.writePointer, equal: more, "second write")
    }

    static let writeOffWritePointer = ConformanceCheck(
        "write-off-write-pointer", "a write anywhere but the write pointer fails with EIO and changes nothing",
        skipUnless: needsSequential(1)
    ) { t in
        let d = t.device, z = d.geometry.sequentialZones[0], bs = d.geometry.block
        let data = pattern(bs * 2, seed: 3)
        let start = try zoneState(d, z).start
        try d.write(data, at: start)
        let junk = pattern(bs, seed: 4)
        try expectError(EIO, "write one block past the write pointer") { try d.write(junk, at: start + bs * 3) }
        try expectError(EIO, "overwrite at the zone start") { try d.write(junk, at: start) }
        try expectError(EIO, "write one block behind the write pointer") { try d.write(junk, at: start + bs) }
        try expect(try zoneState(d, z).writePointer == start + bs * 2, "write pointer moved after refused writes")
        try expectBytes(d, at: start, equal: data, "data after refused writes")
    }

    static let alignment = ConformanceCheck("alignment", "unaligned offsets or lengths and IO crossing a zone boundary fail with EINVAL") { t in
        let d = t.device, g = d.geometry, bs = g.block
        let zone = try zoneState(d, ZoneID(0))
        let buf = AlignedBuffer(count: bs.int * 2)
        let target = zone.type.isSequential ? zone.writePointer : zone.start
        try expectError(EINVAL, "write at an offset that is not a block multiple") {
            try d.write(UnsafeRawBufferPointer(buf.slice(0, bs.int)), at: target + ByteCount(512 < bs.bytes ? 512 : 1))
        }
        try expectError(EINVAL, "write of a length that is not a block multiple") {
            try d.write(UnsafeRawBufferPointer(buf.slice(0, bs.int - 1)), at: target)
        }
        try expectError(EINVAL, "read of a length that is not a block multiple") {
            try d.read(into: buf.slice(0, bs.int + 1), at: zone.start)
        }
        if g.zoneCount > 1 {
            try expectError(EINVAL, "read crossing from zone 0 into zone 1") {
                try d.read(into: buf.slice(0, bs.int * 2), at: g.zoneStart(ZoneID(1)) - bs)
            }
        }
        try expectError(EINVAL, "read past the end of the device") {
            try d.read(into: buf.slice(0, bs.int), at: DeviceOffset(g.totalBytes.bytes))
        }
        if zone.type.isSequential {
            try expect(try zoneState(d, ZoneID(0)).writePointer == zone.writePointer, "refused IO moved the write pointer")
        }
    }

    static let maxWriteSize = ConformanceCheck(
        "max-write-size", "a write larger than maxWriteBytes fails with EINVAL; one of exactly maxWriteBytes succeeds",
        skipUnless: { g in
            if g.sequentialZoneCount < 1 { return "needs a sequential zone" }
            return g.maxWriteBytes + g.logicalBlockSize <= g.zoneCapacity ? nil : "max write size is not below zone capacity"
        }
    ) { t in
        let d = t.device, g = d.geometry, z = g.sequentialZones[0]
        let start = try zoneState(d, z).start
        let big = pattern(g.maxWriteBytes + g.block, seed: 5)
        try expectError(EINVAL, "write of maxWriteBytes + 1 block") { try d.write(big, at: start) }
        let exact = pattern(g.maxWriteBytes, seed: 6)
        try d.write(exact, at: start)
        try expectBytes(d, at: start, equal: exact, "write of exactly maxWriteBytes")
    }

    static let readPastWritePointer = ConformanceCheck(
        "read-past-write-pointer", "reading a sequential zone past its write pointer returns zeros",
        skipUnless: needsSequential(1)
    ) { t in
        let d = t.device, z = d.geometry.sequentialZones[0], bs = d.geometry.block
        let start = try zoneState(d, z).start
        try d.write(pattern(bs, seed: 7), at: start)
        try expectZeros(d, at: start + bs, bs * 2, "blocks past the write pointer")
    }

    static let fillToCapacity = ConformanceCheck(
        "fill-to-capacity", "writing a zone up to its capacity makes it full (neither open nor active); a full zone refuses writes with EIO",
        skipUnless: needsSequential(1)
    ) { t in
        let d = t.device, z = d.geometry.sequentialZones[0], bs = d.geometry.block
        let cap = try zoneState(d, z).capacity
        let data = try fill(d, z, cap, seed: 8)
        let s = try zoneState(d, z)
        try expect(s.condition == .full, "condition after filling to capacity is \(s.condition.rawValue)")
        let sum = try summary(d)
        try expect(sum.open == 0 && sum.active == 0, "a full zone still counts as open/active (open \(sum.open), active \(sum.active))")
        // Aim inside the zone (its last writable block): past capacity may be past the zone itself.
        try expectError(EIO, "write to a full zone") { try d.write(pattern(bs, seed: 9), at: s.start + cap - bs) }
        try expectBytes(d, at: s.start, equal: data, "full zone contents")
    }

    static let writePastCapacity = ConformanceCheck(
        "write-past-capacity", "a write that would cross the zone capacity fails with EIO (EINVAL when capacity is the zone size: it would cross the zone) and writes nothing",
        skipUnless: { g in
            if g.sequentialZoneCount < 1 { return "needs a sequential zone" }
            return g.maxWriteBytes >= g.logicalBlockSize * 2 ? nil : "max write size is one block"
        }
    ) { t in
        let d = t.device, z = d.geometry.sequentialZones[0], bs = d.geometry.block
        let s0 = try zoneState(d, z)
        try fill(d, z, s0.capacity - bs, seed: 10)
        let wp = try zoneState(d, z).writePointer
        let code = s0.capacity == s0.size ? EINVAL : EIO
        try expectError(code, "two-block write with one block of capacity left") { try d.write(pattern(bs * 2, seed: 11), at: wp) }
        let s = try zoneState(d, z)
        try expect(s.writePointer == wp && s.condition != .full, "refused write changed the zone: wp \(s.writePointer), \(s.condition.rawValue)")
        let last = pattern(bs, seed: 12)
        try d.write(last, at: wp)
        try expect(try zoneState(d, z).condition == .full, "zone not full after its last block")
    }

    static let finish = ConformanceCheck(
        "finish", "finish makes a written or empty zone full; a finished zone refuses writes",
        skipUnless: needsSequential(2)
    ) { t in
        let d = t.device, zs = d.geometry.sequentialZones, bs = d.geometry.block
        let s = try zoneState(d, zs[0])
        try d.write(pattern(bs, seed: 13), at: s.start)
        try d.finish(zs[0])
        try expect(try zoneState(d, zs[0]).condition == .full, "written zone not full after finish")
        try expectError(EIO, "write to a finished zone") { try d.write(pattern(bs, seed: 14), at: s.start + bs) }
        try d.finish(zs[1])
        try expect(try zoneState(d, zs[1]).condition == .full, "empty zone not full after finish")
        let sum = try summary(d)
        try expect(sum.active == 0, "finished zones still count as active (\(sum.active))")
    }

    static let reset = ConformanceCheck(
        "reset", "reset empties a zone: write pointer back at its start, old data reads as zeros, writes start over",
        skipUnless: needsSequential(1)
    ) { t in
        let d = t.device, z = d.geometry.sequentialZones[0], bs = d.geometry.block
        let s = try zoneState(d, z)
        try d.write(pattern(bs * 4, seed: 15), at: s.start)
        try d.reset(z)
        let after = try zoneState(d, z)
        try expect(after.condition == .empty && after.writePointer == s.start, "after reset: \(after.condition.rawValue), wp \(after.writePointer)")
        try expectZeros(d, at: s.start, bs * 4, "data after reset")
        try d.reset(z)  // reset of an empty zone is a no-op
        let again = pattern(bs, seed: 16)
        try d.write(again, at: s.start)
        try expectBytes(d, at: s.start, equal: again, "write after reset")
    }

    static let explicitOpenClose = ConformanceCheck(
        "explicit-open-close", "open makes a zone explicitly open; close makes it closed and still active (when nothing was written: empty on ZBC, closed on NVMe ZNS); a write reopens a closed zone",
        skipUnless: needsSequential(1)
    ) { t in
        let d = t.device, g = d.geometry, z = g.sequentialZones[0], bs = g.block
        let start = try zoneState(d, z).start
        try d.openZone(z)
        let opened = try zoneState(d, z).condition
        try expect(opened == .explicitlyOpen, "after open: \(opened.rawValue)")
        try d.closeZone(z)
        let unwritten = try zoneState(d, z)
        let wanted = g.commandSet.conditionAfterClosingUnwrittenZone
        try expect(unwritten.condition == wanted && unwritten.writePointer == start,
                   "closing an unwritten open zone on a \(g.commandSet.rawValue) device should leave it \(wanted.rawValue), got \(unwritten.condition.rawValue), wp \(unwritten.writePointer)")
        let afterEmptyClose = try summary(d)
        try expect(afterEmptyClose.open == 0 && afterEmptyClose.active == (wanted == .closed ? 1 : 0),
                   "after closing an unwritten open zone: \(afterEmptyClose.open) open, \(afterEmptyClose.active) active")
        try d.write(pattern(bs, seed: 17), at: start)
        try d.closeZone(z)
        let closed = try zoneState(d, z)
        try expect(closed.condition == .closed && closed.writePointer == start + bs, "after close: \(closed.condition.rawValue), wp \(closed.writePointer)")
        try expect(try summary(d).active == 1 && (try summary(d)).open == 0, "a closed zone must count as active but not open")
        try d.write(pattern(bs, seed: 18), at: start + bs)
        try expect(try zoneState(d, z).condition == .implicitlyOpen, "a write to a closed zone should open it implicitly")
        try d.closeZone(z)
        try d.closeZone(z)  // closing a closed zone is a no-op
    }

    static let implicitOpenLimit = ConformanceCheck(
        "implicit-open-limit", "writing to more zones than max open implicitly closes an implicitly open zone instead of failing",
        skipUnless: { g in
            guard g.maxOpenZones > 0 else { return "no max open zones limit" }
            if g.maxActiveZones > 0, g.maxActiveZones <= g.maxOpenZones { return "max active (\(g.maxActiveZones)) leaves no room past max open" }
            return g.sequentialZoneCount > g.maxOpenZones ? nil : "needs more sequential zones than max open"
        }
    ) { t in
        let d = t.device, g = d.geometry, bs = g.block
        let zs = Array(g.sequentialZones.prefix(g.maxOpenZones + 1))
        for (i, z) in zs.enumerated() { try d.write(pattern(bs, seed: 100 + UInt64(i)), at: try zoneState(d, z).start) }
        let sum = try summary(d)
        try expect(sum.open <= g.maxOpenZones, "\(sum.open) zones open, limit \(g.maxOpenZones)")
        try expect(sum.active == zs.count, "\(sum.active) active zones, expected \(zs.count)")
        try expect((sum.byCondition[.closed] ?? 0) >= 1, "no zone was implicitly closed")
    }

    static let explicitOpenLimit = ConformanceCheck(
        "explicit-open-limit", "with max open zones explicitly open, opening another fails (ETOOMANYREFS, or EOVERFLOW when the active limit is reached first); closing one makes room (on ZNS with max active = max open, only after it is also reset)",
        skipUnless: { g in
            guard g.maxOpenZones > 0 else { return "no max open zones limit" }
            return g.sequentialZoneCount > g.maxOpenZones ? nil : "needs more sequential zones than max open"
        }
    ) { t in
        let d = t.device, g = d.geometry, bs = g.block
        let zs = g.sequentialZones
        for z in zs.prefix(g.maxOpenZones) { try d.openZone(z) }
        let extra = zs[g.maxOpenZones]
        // An empty zone needs an active resource first and an open one second (ZBC, null_blk,
        // and QEMU's NVMe ZNS namespace).
        let expected = (g.maxActiveZones > 0 && g.maxActiveZones <= g.maxOpenZones) ? EOVERFLOW : ETOOMANYREFS
        try expectError(expected, "write to one more zone with every open zone explicitly open") {
            try d.write(pattern(bs, seed: 20), at: try zoneState(d, extra).start)
        }
        try expectError(expected, "explicit open of one more zone") { try d.openZone(extra) }
        try expect(try zoneState(d, extra).condition == .empty, "refused zone is no longer empty")
        // Closing an unwritten zone frees its open resource; only on ZBC does it free the active
        // one too (it becomes empty). On ZNS it stays closed and active, so when the active limit
        // is the open limit the device is still out of active resources until it is reset.
        try d.closeZone(zs[0])
        let closedCondition = g.commandSet.conditionAfterClosingUnwrittenZone
        let closed = try zoneState(d, zs[0]).condition
        try expect(closed == closedCondition, "closing unwritten \(zs[0]) left it \(closed.rawValue), expected \(closedCondition.rawValue) (\(g.commandSet.rawValue))")
        let stillActive = g.maxOpenZones - (closedCondition == .empty ? 1 : 0)
        if g.maxActiveZones > 0, stillActive >= g.maxActiveZones {
            try expectError(EOVERFLOW, "write to one more zone after closing an unwritten zone that stays active") {
                try d.write(pattern(bs, seed: 22), at: try zoneState(d, extra).start)
            }
            try d.reset(zs[0])
        }
        try d.write(pattern(bs, seed: 21), at: try zoneState(d, extra).start)
        try expect(try zoneState(d, extra).condition == .implicitlyOpen, "write after making room did not open the zone")
    }

    static let activeLimit = ConformanceCheck(
        "active-limit", "activating more zones than max active fails with EOVERFLOW; finishing or resetting an active zone makes room",
        skipUnless: { g in
            guard g.maxActiveZones > 0 else { return "no max active zones limit" }
            return g.sequentialZoneCount > g.maxActiveZones + 1 ? nil : "needs more sequential zones than max active + 1"
        }
    ) { t in
        let d = t.device, g = d.geometry, bs = g.block
        let zs = g.sequentialZones
        for (i, z) in zs.prefix(g.maxActiveZones).enumerated() {
            try d.write(pattern(bs, seed: 200 + UInt64(i)), at: try zoneState(d, z).start)
            if g.maxOpenZones > 0, i >= g.maxOpenZones - 1 { try d.closeZone(z) }
        }
        let active = try summary(d).active
        try expect(active == g.maxActiveZones, "expected \(g.maxActiveZones) active zones, have \(active)")
        let extra = zs[g.maxActiveZones]
        try expectError(EOVERFLOW, "write to an empty zone with max active zones active") {
            try d.write(pattern(bs, seed: 30), at: try zoneState(d, extra).start)
        }
        try expectError(EOVERFLOW, "explicit open of an empty zone with max active zones active") { try d.openZone(extra) }
        try d.finish(zs[0])
        try d.write(pattern(bs, seed: 31), at: try zoneState(d, extra).start)
        let extra2 = zs[g.maxActiveZones + 1]
        try expectError(EOVERFLOW, "write to another empty zone, limit reached again") {
            try d.write(pattern(bs, seed: 32), at: try zoneState(d, extra2).start)
        }
        try d.reset(zs[1])
        try d.write(pattern(bs, seed: 33), at: try zoneState(d, extra2).start)
        try expect(try summary(d).active <= g.maxActiveZones, "more zones active than the limit")
    }

    static let conventionalRandomWrites = ConformanceCheck(
        "conventional-random-writes", "conventional zones take block-aligned writes anywhere, in any order, and overwrite in place, with zeros too",
        skipUnless: { g in g.conventionalZoneCount > 0 ? nil : "no conventional zones" }
    ) { t in
        let d = t.device, g = d.geometry, bs = g.block
        let z = ZoneID(g.conventionalZoneCount - 1)
        let start = g.zoneStart(z)
        let blocks = min(UInt64(16), g.zoneSize.quotient(dividingBy: bs))
        var expected = [[UInt8]](repeating: [], count: Int(blocks))
        var rng = SeededRandom(seed: 40)
        for step in 0..<(blocks * 2) {
            let k = rng.next() % blocks
            // Every fourth block is zeros: a device that stores zero blocks differently (a
            // discard-data image drops them) must forget the data they overwrite.
            let data = step % 4 == 3 ? AlignedBuffer(count: bs.int) : pattern(bs, seed: 1000 + step)
            try d.write(data, at: start + bs * k)
            expected[Int(k)] = data.bytes
        }
        for k in 0..<blocks where !expected[Int(k)].isEmpty {
            let got = try readBack(d, start + bs * k, bs)
            try expect(got == expected[Int(k)], "conventional block \(k) of \(z) holds stale data")
        }
        try expect(try zoneState(d, z).condition == .notWritePointer, "conventional zone condition changed")
    }

    static let conventionalManagementRefused = ConformanceCheck(
        "conventional-management", "reset, open, close and finish of a conventional zone fail",
        skipUnless: { g in g.conventionalZoneCount > 0 ? nil : "no conventional zones" }
    ) { t in
        let d = t.device, z = ZoneID(0)
        try expectSomeError("reset of a conventional zone") { try d.reset(z) }
        try expectSomeError("open of a conventional zone") { try d.openZone(z) }
        try expectSomeError("close of a conventional zone") { try d.closeZone(z) }
        try expectSomeError("finish of a conventional zone") { try d.finish(z) }
    }

    static let zoneAppend = ConformanceCheck(
        "zone-append", "zone append writes at the write pointer and reports where; over the append limit is EINVAL; without append support it is EOPNOTSUPP",
        skipUnless: needsSequential(1)
    ) { t in
        let d = t.device, g = d.geometry, z = g.sequentialZones[0], bs = g.block
        let start = try zoneState(d, z).start
        guard g.supportsZoneAppend else {
            try expectError(EOPNOTSUPP, "append on a device without zone append") { _ = try d.append(pattern(bs, seed: 50).readOnly, to: z) }
            return
        }
        let a = pattern(bs, seed: 51), b = pattern(bs * 2, seed: 52)
        let at1 = try d.append(a.readOnly, to: z)
        let at2 = try d.append(b.readOnly, to: z)
        try expect(at1 == start && at2 == start + bs, "appends landed at \(at1), \(at2); expected \(start), \(start + bs)")
        try expectBytes(d, at: at1, equal: a, "first append")
        try expectBytes(d, at: at2, equal: b, "second append")
        if g.maxAppendBytes + bs <= g.zoneCapacity - bs * 3 {
            try expectError(EINVAL, "append larger than maxAppendBytes") { _ = try d.append(pattern(g.maxAppendBytes + bs, seed: 53).readOnly, to: z) }
        }
    }

    static let batchSubmit = ConformanceCheck(
        "batch-submit", "a submitted batch completes every IO exactly once; writes to one zone apply in batch order",
        skipUnless: needsSequential(3)
    ) { t in
        let d = t.device, g = d.geometry, bs = g.block
        let zs = Array(g.sequentialZones.prefix(3))
        var buffers: [AlignedBuffer] = []
        var ios: [DeviceIO] = []
        var expectedAt: [DeviceOffset] = []
        for step in 0..<4 {
            for (k, z) in zs.enumerated() {
                let b = pattern(bs * 2, seed: 300 + UInt64(step * 3 + k))
                buffers.append(b)
                let at = g.zoneStart(z) + bs * UInt64(2 * step)
                ios.append(.write(b.readOnly, at: at))
                expectedAt.append(at)
            }
        }
        let done = d.submit(ios)
        try expect(done.map(\.index).sorted() == Array(0..<ios.count), "completions \(done.map(\.index).sorted()) do not cover the batch once each")
        for c in done {
            switch c.result {
            case .success(let at): try expect(at == expectedAt[c.index], "IO \(c.index) landed at \(at), expected \(expectedAt[c.index])")
            case .failure(let e): throw ConformanceFailure("IO \(c.index) failed: \(e)")
            }
        }
        for (i, b) in buffers.enumerated() { try expectBytes(d, at: expectedAt[i], equal: b, "batch write \(i)") }
        let reads = (0..<3).map { _ in AlignedBuffer(count: bs.int * 2) }
        let readDone = d.submit(reads.enumerated().map { i, r in .read(r.mutable, at: expectedAt[i]) })
        try expect(readDone.allSatisfy { if case .success = $0.result { true } else { false } }, "batch reads failed")
        for i in 0..<3 { try expect(reads[i].bytes == buffers[i].bytes, "batch read \(i) differs") }
    }

    static let concurrentWriters = ConformanceCheck(
        "concurrent-writers", "threads writing different zones at once each see their own data, in order",
        skipUnless: needsSequential(4)
    ) { t in
        let d = t.device, g = d.geometry, bs = g.block
        let zs = Array(g.sequentialZones.prefix(g.maxOpenZones > 0 ? min(4, g.maxOpenZones) : 4))
        let blocks = min(UInt64(32), g.zoneCapacity.quotient(dividingBy: bs))
        let failures = FailureList()
        DispatchQueue.concurrentPerform(iterations: zs.count) { k in
            let z = zs[k]
            do {
                for i in 0..<blocks {
                    try d.write(pattern(bs, seed: UInt64(k) << 32 | i), at: g.zoneStart(z) + bs * i)
                }
            } catch { failures.add("writer \(k): \(error)") }
        }
        if let f = failures.first { throw ConformanceFailure(f) }
        for (k, z) in zs.enumerated() {
            for i in 0..<blocks {
                try expectBytes(d, at: g.zoneStart(z) + bs * i, equal: pattern(bs, seed: UInt64(k) << 32 | i), "writer \(k) block \(i)")
            }
        }
    }

    static let flushAndReopen = ConformanceCheck(
        "flush-and-reopen", "after flush and reopen, write pointers, conditions (open zones may come back closed) and data are kept",
        skipUnless: needsSequential(2)
    ) { t in
        guard t.canReopen else { return }
        let g = t.device.geometry, bs = g.block, zs = g.sequentialZones
        let a = try fill(t.device, zs[0], bs * 3, seed: 60)
        try t.device.finish(zs[1])
        try t.device.flush()
        try t.reopen()
        let d = t.device
        try expect(d.geometry == g, "geometry changed across reopen")
        let z0 = try zoneState(d, zs[0])
        try expect(z0.writePointer == z0.start + bs * 3, "write pointer after reopen is \(z0.writePointer)")
        try expect(z0.condition == .implicitlyOpen || z0.condition == .closed, "written zone came back \(z0.condition.rawValue)")
        try expect(try zoneState(d, zs[1]).condition == .full, "finished zone did not stay full")
        try expectBytes(d, at: z0.start, equal: a, "data after reopen")
    }
}

/// Collects failures from concurrent workers.
final class FailureList: @unchecked Sendable {
    private var items: [String] = []
    private let lock = NSLockish()
    func add(_ s: String) { lock.withLock { items.append(s) } }
    var first: String? { lock.withLock { items.first } }
}

/// A tiny pthread mutex (ZonedConformance avoids Foundation so it links small in the guest).
final class NSLockish: @unchecked Sendable {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    deinit { pthread_mutex_destroy(&m) }
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        return try body()
    }
}
