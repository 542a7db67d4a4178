// zbdfs-kernel-smoke DEVICE: checks KernelZonedDevice on a real kernel zoned device (null_blk
// zoned in the QEMU guest), then records what the kernel itself answers for each zone rule.
//
// Invariants:
// - Destructive: it resets every sequential zone of DEVICE. Run it only on a scratch device.
// - Part 1 ("SMOKE" lines) uses the contract checks and fails the run when a check fails.
// - Part 2 ("KERNEL" lines) opens the device with `.kernelOnly` checks, so what it prints is the
//   kernel's own errno (or "ok"); it records facts and fails nothing.
// - It needs at least 13 sequential zones, max open < max active, and zone capacity below
//   the zone size to cover every rule; rules it cannot cover print "SKIP".
// - Last line: "ZBDFS-SMOKE: PASS n checks" or "ZBDFS-SMOKE: FAIL k of n checks"; exit 0 or 1.

#if canImport(Glibc)
import Glibc
#endif
import ZonedBackendKernel
import ZonedCore

// Single-threaded tool: the tallies are only touched from the main thread.
nonisolated(unsafe) var failures = 0
nonisolated(unsafe) var checks = 0

func say(_ s: String) {
    print(s)
    fflush(nil)  // the serial console must show progress even if the guest dies next
}

func check(_ name: String, _ ok: Bool, _ detail: @autoclosure () -> String = "") {
    checks += 1
    if ok {
        say("SMOKE PASS \(name)")
    } else {
        failures += 1
        say("SMOKE FAIL \(name)\(detail().isEmpty ? "" : ": " + detail())")
    }
}

/// "ok" or the errno name of what `body` threw.
func outcome(_ body: () throws(DeviceError) -> Void) -> String {
    do throws(DeviceError) {
        try body()
        return "ok"
    } catch {
        return error.errnoName
    }
}

func expect(_ name: String, _ want: String, _ body: () throws(DeviceError) -> Void) {
    do throws(DeviceError) {
        try body()
        check(name, want == "ok", "want \(want), got ok")
    } catch {
        check(name, error.errnoName == want, "want \(want), got \(error)")
    }
}

func pattern(_ count: Int, seed: UInt64) -> AlignedBuffer {
    let b = AlignedBuffer(count: count)
    var rng = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    for i in 0..<count {
        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
        b.base.storeBytes(of: UInt8(truncatingIfNeeded: rng), toByteOffset: i, as: UInt8.self)
    }
    return b
}

func same(_ a: AlignedBuffer, _ b: AlignedBuffer) -> Bool {
    a.count == b.count && memcmp(a.base, b.base, a.count) == 0
}

func isZero(_ b: AlignedBuffer) -> Bool { b.readOnly.allSatisfy { $0 == 0 } }

func resetAll(_ dev: KernelZonedDevice) throws(DeviceError) {
    let g = dev.geometry
    for i in g.conventionalZoneCount..<g.zoneCount { try dev.reset(ZoneID(i)) }
}

// MARK: part 1: the contract

func contractChecks(_ dev: KernelZonedDevice) throws(DeviceError) {
    let g = dev.geometry
    let bs = g.logicalBlockSize.int
    let seq = { (k: Int) in ZoneID(g.conventionalZoneCount + k) }
    try resetAll(dev)

    let zones = try dev.reportAllZones()
    check("report: one entry per zone", zones.count == g.zoneCount, "\(zones.count) of \(g.zoneCount)")
    check("report: leading conventional zones are not-wp",
          zones.prefix(g.conventionalZoneCount).allSatisfy { $0.type == .conventional && $0.condition == .notWritePointer })
    check("report: sequential zones empty after reset, wp at start, capacity from geometry",
          zones.dropFirst(g.conventionalZoneCount).allSatisfy {
              $0.condition == .empty && $0.writePointer == $0.start && $0.capacity == g.zoneCapacity })

    // Write at the write pointer, read back.
    let z = seq(0)
    let start = g.zoneStart(z)
    let data = pattern(64 << 10, seed: 1)
    expect("write 64 KiB at the write pointer", "ok") { () throws(DeviceError) in try dev.write(data, at: start) }
    let back = AlignedBuffer(count: data.count)
    expect("read it back", "ok") { () throws(DeviceError) in try dev.read(into: back, at: start) }
    check("read-back bytes equal written bytes", same(data, back))
    var zone = try dev.zone(z)
    check("write opens the zone implicitly and moves the wp",
          zone.condition == .implicitlyOpen && zone.writePointer == start + ByteCount(data.count), "\(zone)")

    // Contract refusals.
    let small = pattern(bs, seed: 2)
    let wp = zone.writePointer
    expect("write past the write pointer fails EIO", "EIO") { () throws(DeviceError) in try dev.write(small, at: wp + ByteCount(bs)) }
    expect("write behind the write pointer fails EIO", "EIO") { () throws(DeviceError) in try dev.write(small, at: start) }
    expect("unaligned offset fails EINVAL", "EINVAL") { () throws(DeviceError) in try dev.write(small, at: wp + ByteCount(bs / 2)) }
    let odd = AlignedBuffer(count: bs + bs / 2)
    expect("unaligned length fails EINVAL", "EINVAL") { () throws(DeviceError) in try dev.write(odd, at: wp) }
    let huge = AlignedBuffer(count: g.maxWriteBytes.int + bs)
    expect("write above maxWriteBytes fails EINVAL", "EINVAL") { () throws(DeviceError) in try dev.write(huge, at: wp) }
    let two = AlignedBuffer(count: 2 * bs)
    expect("write crossing a zone end fails EINVAL", "EINVAL") { () throws(DeviceError) in
        try dev.write(two, at: g.zoneStart(seq(1)) - ByteCount(bs))
    }
    expect("read past the device end fails EINVAL", "EINVAL") { () throws(DeviceError) in
        try dev.read(into: two, at: DeviceOffset.zero + g.totalBytes)
    }
    expect("zone append is not supported (EOPNOTSUPP)", "EOPNOTSUPP") { () throws(DeviceError) in
        _ = try dev.append(small.readOnly, to: z)
    }
    if g.conventionalZoneCount > 0 {
        expect("reset of a conventional zone fails EINVAL", "EINVAL") { () throws(DeviceError) in try dev.reset(ZoneID(0)) }
        expect("open of a conventional zone fails EINVAL", "EINVAL") { () throws(DeviceError) in try dev.openZone(ZoneID(0)) }
    }
    expect("finish of a zone past the end fails EINVAL", "EINVAL") { () throws(DeviceError) in try dev.finish(ZoneID(g.zoneCount)) }

    // Reads past the write pointer are zeros.
    let beyond = AlignedBuffer(count: 2 * bs)
    beyond.fill(0xAB)
    expect("read past the write pointer succeeds", "ok") { () throws(DeviceError) in try dev.read(into: beyond, at: wp) }
    check("read past the write pointer gives zeros", isZero(beyond))

    // Unaligned caller memory goes through a bounce buffer.
    var raw = [UInt8](repeating: 0x5A, count: bs + 1)
    expect("write from unaligned memory", "ok") { () throws(DeviceError) in
        try raw.withUnsafeBytes { p in
            Result { () throws(DeviceError) in try dev.write(UnsafeRawBufferPointer(rebasing: p[1...]), at: wp) }
        }.get()
    }
    expect("read into unaligned memory", "ok") { () throws(DeviceError) in
        for i in raw.indices { raw[i] = 0 }
        try raw.withUnsafeMutableBytes { p in
            Result { () throws(DeviceError) in try dev.read(into: UnsafeMutableRawBufferPointer(rebasing: p[1...]), at: wp) }
        }.get()
    }
    check("unaligned memory round-trips", raw.dropFirst().allSatisfy { $0 == 0x5A })

    // Conventional zones take writes anywhere.
    let conv = g.conventionalZoneCount > 0 ? g.zoneStart(ZoneID(0)) + ByteCount(8 * bs) : nil
    if let at = conv {
        let c = pattern(4 * bs, seed: 3)
        let cb = AlignedBuffer(count: c.count)
        expect("conventional zone: write at any offset", "ok") { () throws(DeviceError) in
            try dev.write(c, at: at); try dev.write(c, at: at - ByteCount(4 * bs)); try dev.read(into: cb, at: at - ByteCount(4 * bs))
        }
        check("conventional zone: overwrite reads back", same(c, cb))
    }

    // Finish, then writes fail; reset empties.
    expect("finish", "ok") { () throws(DeviceError) in try dev.finish(z) }
    zone = try dev.zone(z)
    check("finished zone is full with wp at capacity end",
          zone.condition == .full && zone.writePointer == zone.capacityEnd, "\(zone)")
    expect("write to a full zone fails EIO", "EIO") { () throws(DeviceError) in try dev.write(small, at: zone.capacityEnd - ByteCount(bs)) }
    expect("reset", "ok") { () throws(DeviceError) in try dev.reset(z) }
    zone = try dev.zone(z)
    check("reset zone is empty with wp at start", zone.condition == .empty && zone.writePointer == start, "\(zone)")
    let gone = AlignedBuffer(count: bs)
    gone.fill(1)
    expect("read of a reset zone", "ok") { () throws(DeviceError) in try dev.read(into: gone, at: start) }
    check("reset zone reads zeros", isZero(gone))

    try limitChecks(dev)
    try resetAll(dev)
    try capacityChecks(dev)
    try resetAll(dev)
    try batchChecks(dev)
    try resetAll(dev)

    expect("flush", "ok") { () throws(DeviceError) in try dev.flush() }
}

/// Max open (ETOOMANYREFS) and max active (EOVERFLOW), explicit and implicit.
func limitChecks(_ dev: KernelZonedDevice) throws(DeviceError) {
    let g = dev.geometry
    let seqCount = g.sequentialZoneCount
    let seq = { (k: Int) in ZoneID(g.conventionalZoneCount + k) }
    let small = pattern(g.logicalBlockSize.int, seed: 4)
    guard g.maxOpenZones > 0, seqCount > g.maxOpenZones + 1 else {
        say("SMOKE SKIP max open: no limit or too few zones"); return
    }
    try resetAll(dev)
    for k in 0..<g.maxOpenZones {
        expect("explicit open \(k + 1) of \(g.maxOpenZones)", "ok") { () throws(DeviceError) in try dev.openZone(seq(k)) }
    }
    let extra = seq(g.maxOpenZones)
    expect("explicit open past max open fails ETOOMANYREFS", "ETOOMANYREFS") { () throws(DeviceError) in try dev.openZone(extra) }
    expect("implicit open (write) with every open zone explicit fails ETOOMANYREFS", "ETOOMANYREFS") { () throws(DeviceError) in
        try dev.write(small, at: g.zoneStart(extra))
    }
    expect("close of an explicitly open zone", "ok") { () throws(DeviceError) in try dev.closeZone(seq(0)) }
    let closedEmpty = try dev.zone(seq(0))
    check("closing an open zone with nothing written leaves it empty", closedEmpty.condition == .empty, "\(closedEmpty)")
    expect("write after a close frees an open slot", "ok") { () throws(DeviceError) in try dev.write(small, at: g.zoneStart(extra)) }

    guard g.maxActiveZones > g.maxOpenZones, seqCount > g.maxActiveZones + 1 else {
        say("SMOKE SKIP max active: no limit above max open or too few zones"); return
    }
    try resetAll(dev)
    // Writing to more zones than max open closes implicitly open zones (they stay active).
    for k in 0..<g.maxActiveZones {
        expect("implicit open of zone \(k + 1) of \(g.maxActiveZones) active", "ok") { () throws(DeviceError) in
            try dev.write(small, at: g.zoneStart(seq(k)))
        }
    }
    let s = ZoneSummary(zones: try dev.reportAllZones(), geometry: g)
    check("device closed implicit zones to stay within max open",
          s.open == g.maxOpenZones && s.active == g.maxActiveZones, "open \(s.open), active \(s.active)")
    let next = seq(g.maxActiveZones)
    expect("write activating one zone past max active fails EOVERFLOW", "EOVERFLOW") { () throws(DeviceError) in
        try dev.write(small, at: g.zoneStart(next))
    }
    expect("explicit open past max active fails EOVERFLOW", "EOVERFLOW") { () throws(DeviceError) in try dev.openZone(next) }
    let closedZones = try dev.reportAllZones().filter { $0.condition == .closed }
    if closedZones.count >= 2 {
        expect("write to a closed zone at both limits (an implicit zone is closed for it)", "ok") { () throws(DeviceError) in
            try dev.write(small, at: closedZones[0].writePointer)
        }
        expect("explicit open of a closed zone at both limits", "ok") { () throws(DeviceError) in try dev.openZone(closedZones[1].id) }
        let after = ZoneSummary(zones: try dev.reportAllZones(), geometry: g)
        check("limits still hold after that", after.open <= g.maxOpenZones && after.active <= g.maxActiveZones,
              "open \(after.open), active \(after.active)")
    }
    expect("finish frees an active slot", "ok") { () throws(DeviceError) in try dev.finish(seq(0)) }
    expect("write after the finish", "ok") { () throws(DeviceError) in try dev.write(small, at: g.zoneStart(next)) }
}

/// Capacity below zone size: a zone fills at capacity; a write past it fails EIO.
/// Also a batch of max-size writes into one zone, which must land in batch order.
func capacityChecks(_ dev: KernelZonedDevice) throws(DeviceError) {
    let g = dev.geometry
    let z = ZoneID(g.conventionalZoneCount)
    let start = g.zoneStart(z)
    let chunk = g.maxWriteBytes.int
    let fill = g.zoneCapacity.int - g.logicalBlockSize.int
    var bufs: [AlignedBuffer] = []
    var batch: [DeviceIO] = []
    var at = 0
    while at < fill {
        let n = min(chunk, fill - at)
        let b = pattern(n, seed: UInt64(100 + bufs.count))
        bufs.append(b)
        batch.append(.write(b.readOnly, at: start + ByteCount(at)))
        at += n
    }
    let done = dev.submit(batch)
    let bad = done.filter { if case .failure = $0.result { return true } else { return false } }
    check("batch of \(batch.count) writes into one zone all succeed", bad.isEmpty && done.count == batch.count,
          "\(bad.first.map { "\($0.index): \($0.result)" } ?? "count \(done.count)")")
    var zone = try dev.zone(z)
    check("wp after the batch", zone.writePointer == start + ByteCount(fill), "\(zone)")
    let two = AlignedBuffer(count: 2 * g.logicalBlockSize.int)
    // Inside the zone the device refuses (EIO); at the zone end the contract refuses first (EINVAL).
    expect("write crossing the zone capacity fails", g.zoneCapacity < g.zoneSize ? "EIO" : "EINVAL") { () throws(DeviceError) in
        try dev.write(two, at: start + ByteCount(fill))
    }
    let last = pattern(g.logicalBlockSize.int, seed: 9)
    expect("write of the last block before capacity", "ok") { () throws(DeviceError) in try dev.write(last, at: start + ByteCount(fill)) }
    zone = try dev.zone(z)
    check("zone written to capacity is full", zone.condition == .full && zone.writePointer == zone.capacityEnd, "\(zone)")
    // A read larger than maxWriteBytes is split by the backend.
    let big = 2 * chunk + g.logicalBlockSize.int
    let rb = AlignedBuffer(count: big)
    expect("read of \(ByteCount(big)) (split)", "ok") { () throws(DeviceError) in try dev.read(into: rb, at: start) }
    let expected = AlignedBuffer(count: big)
    var o = 0
    for b in bufs where o < big {
        let n = min(b.count, big - o)
        (expected.base + o).copyMemory(from: b.base, byteCount: n)
        o += n
    }
    check("split read returns the batch's bytes in order", same(rb, expected))
    if g.zoneCapacity < g.zoneSize {
        let gap = AlignedBuffer(count: g.logicalBlockSize.int)
        gap.fill(7)
        expect("read between capacity and zone end", "ok") { () throws(DeviceError) in try dev.read(into: gap, at: zone.capacityEnd) }
        check("bytes between capacity and zone end read as zeros", isZero(gap))
    }
}

/// Several zones in one batch, interleaved, with reads; and a failed write stopping its zone.
func batchChecks(_ dev: KernelZonedDevice) throws(DeviceError) {
    let g = dev.geometry
    let zoneCount = min(4, g.sequentialZoneCount, g.maxOpenZones == 0 ? 4 : g.maxOpenZones)
    let per = 8
    let size = 64 << 10
    var bufs: [[AlignedBuffer]] = []
    var batch: [DeviceIO] = []
    for z in 0..<zoneCount { bufs.append((0..<per).map { pattern(size, seed: UInt64(1000 + z * per + $0)) }) }
    for i in 0..<per {
        for z in 0..<zoneCount {
            let start = g.zoneStart(ZoneID(g.conventionalZoneCount + z))
            batch.append(.write(bufs[z][i].readOnly, at: start + ByteCount(i * size)))
        }
    }
    let done = dev.submit(batch)
    let failed = done.filter { if case .failure = $0.result { return true } else { return false } }
    check("batch over \(zoneCount) zones × \(per) writes succeeds", failed.isEmpty && done.count == batch.count,
          "\(failed.count) failed: \(failed.first.map { "\($0.result)" } ?? "")")
    // Read everything back in one batch (reads run in parallel).
    var reads: [AlignedBuffer] = []
    var rbatch: [DeviceIO] = []
    for z in 0..<zoneCount {
        let start = g.zoneStart(ZoneID(g.conventionalZoneCount + z))
        for i in 0..<per {
            let b = AlignedBuffer(count: size)
            reads.append(b)
            rbatch.append(.read(b.mutable, at: start + ByteCount(i * size)))
        }
    }
    let rdone = dev.submit(rbatch)
    check("read batch succeeds", rdone.allSatisfy { if case .success = $0.result { return true } else { return false } })
    var allSame = true
    for z in 0..<zoneCount { for i in 0..<per where !same(reads[z * per + i], bufs[z][i]) { allSame = false } }
    check("every zone holds its writes in batch order", allSame)

    // A bad write in the middle of one zone's run: the rest of that zone is not sent.
    let z = ZoneID(g.conventionalZoneCount + zoneCount)
    let start = g.zoneStart(z)
    let b = pattern(size, seed: 77)
    let other = ZoneID(g.conventionalZoneCount + zoneCount + 1)
    let mixed: [DeviceIO] = [
        .write(b.readOnly, at: start),
        .write(b.readOnly, at: start + ByteCount(2 * size)),      // off the wp: EIO
        .write(b.readOnly, at: start + ByteCount(size)),          // would land, but is after a failure
        .write(b.readOnly, at: g.zoneStart(other)),               // another zone: unaffected
    ]
    let m = dev.submit(mixed).sorted { $0.index < $1.index }
    func errnoOf(_ c: IOCompletion) -> String {
        switch c.result { case .success: return "ok"; case .failure(let e): return e.errnoName }
    }
    check("batch: first write ok, off-wp write EIO, later write to that zone EIO, other zone ok",
          m.map(errnoOf) == ["ok", "EIO", "EIO", "ok"], m.map(errnoOf).joined(separator: ","))
}

// MARK: part 2: what the kernel says

func kernelProbe(path: String) {
    let dev: KernelZonedDevice
    do throws(DeviceError) {
        dev = try KernelZonedDevice.open(path: path, checks: .kernelOnly)
    } catch {
        say("KERNEL probe: cannot open: \(error)"); return
    }
    defer { dev.close() }
    let g = dev.geometry
    let bs = g.logicalBlockSize.int
    let seq = { (k: Int) in ZoneID(g.conventionalZoneCount + k) }
    let small = pattern(bs, seed: 5)
    func record(_ rule: String, _ body: () throws(DeviceError) -> Void) {
        say("KERNEL \(rule): \(outcome(body))")
    }
    do throws(DeviceError) { try resetAll(dev) } catch { say("KERNEL probe: reset failed: \(error)"); return }
    if g.conventionalZoneCount > 0 {
        record("reset of a conventional zone") { () throws(DeviceError) in try dev.reset(ZoneID(0)) }
        record("open of a conventional zone") { () throws(DeviceError) in try dev.openZone(ZoneID(0)) }
        record("close of a conventional zone") { () throws(DeviceError) in try dev.closeZone(ZoneID(0)) }
        record("finish of a conventional zone") { () throws(DeviceError) in try dev.finish(ZoneID(0)) }
        let two = AlignedBuffer(count: 2 * bs)
        record("write crossing from the last conventional zone into the first sequential zone (empty)") { () throws(DeviceError) in
            try dev.write(two, at: g.zoneStart(seq(0)) - ByteCount(bs))
        }
    }
    record("reset of a zone past the end") { () throws(DeviceError) in try dev.reset(ZoneID(g.zoneCount)) }
    record("close of an empty zone") { () throws(DeviceError) in try dev.closeZone(seq(0)) }
    record("finish of an empty zone") { () throws(DeviceError) in try dev.finish(seq(1)) }
    record("open of a full zone") { () throws(DeviceError) in try dev.openZone(seq(1)) }
    record("close of a full zone") { () throws(DeviceError) in try dev.closeZone(seq(1)) }
    record("finish of a full zone") { () throws(DeviceError) in try dev.finish(seq(1)) }
    record("reset of a full zone") { () throws(DeviceError) in try dev.reset(seq(1)) }
    record("reset of an empty zone") { () throws(DeviceError) in try dev.reset(seq(1)) }
    record("open of an explicitly open zone") { () throws(DeviceError) in try dev.openZone(seq(2)); try dev.openZone(seq(2)) }
    record("write off the write pointer") { () throws(DeviceError) in try dev.write(small, at: g.zoneStart(seq(3)) + ByteCount(bs)) }
    record("write at an offset half a block past the wp") { () throws(DeviceError) in try dev.write(small, at: g.zoneStart(seq(3)) + ByteCount(bs / 2)) }
    let twice = pattern(2 * g.maxWriteBytes.int, seed: 6)
    record("one write of 2 × max_sectors_kb at the wp (kernel splits it)") { () throws(DeviceError) in try dev.write(twice, at: g.zoneStart(seq(4))) }
    let afterSplit = (try? dev.zone(seq(4)))?.writePointer
    say("KERNEL   wp after it: \(afterSplit.map { "\($0 - g.zoneStart(seq(4)))" } ?? "?")")
    record("write to a full zone") { () throws(DeviceError) in try dev.finish(seq(5)); try dev.write(small, at: g.zoneStart(seq(5))) }
    let beyond = AlignedBuffer(count: bs)
    do throws(DeviceError) {
        try dev.read(into: beyond, at: DeviceOffset.zero + g.totalBytes)
        say("KERNEL read past the device end: ok")
    } catch {
        say("KERNEL read past the device end: \(error.errnoName) (\(error.detail))")
    }
    record("read of a full zone past its capacity") { () throws(DeviceError) in try dev.read(into: beyond, at: g.zoneStart(seq(5)) + g.zoneCapacity) }
    beyond.fill(0xAB)
    record("read past the wp of an empty zone") { () throws(DeviceError) in try dev.read(into: beyond, at: g.zoneStart(seq(6)) + ByteCount(bs)) }
    say("KERNEL   … buffer after it: all zero \(isZero(beyond)), untouched (0xAB) \(beyond.readOnly.allSatisfy { $0 == 0xAB }), "
        + "first bytes \(beyond.readOnly.prefix(16).map { String($0, radix: 16) }.joined(separator: " ")), "
        + "distinct values \(Set(beyond.readOnly).count)")
    // Explicit open with implicitly open zones at the limit: does the device close one?
    do throws(DeviceError) {
        try resetAll(dev)
        if g.maxOpenZones > 0, g.sequentialZoneCount > g.maxOpenZones + 1 {
            for k in 0..<g.maxOpenZones { try dev.write(small, at: g.zoneStart(seq(k))) }
            record("explicit open with max open zones all implicitly open") { () throws(DeviceError) in try dev.openZone(seq(g.maxOpenZones)) }
            let s = ZoneSummary(zones: try dev.reportAllZones(), geometry: g)
            say("KERNEL   after it: open \(s.open), active \(s.active), closed \(s.byCondition[.closed] ?? 0)")
        }
        try resetAll(dev)
        if g.maxOpenZones > 0, g.maxActiveZones > g.maxOpenZones, g.sequentialZoneCount > g.maxActiveZones + 1 {
            // Fill the active budget: max open implicitly open + the rest closed (by the device).
            for k in 0..<g.maxActiveZones { try dev.write(small, at: g.zoneStart(seq(k))) }
            let zs = try dev.reportAllZones()
            let closed = zs.filter { $0.condition == .closed }
            let s = ZoneSummary(zones: zs, geometry: g)
            say("KERNEL   at the limits: open \(s.open), active \(s.active), closed \(closed.count)")
            if closed.count >= 3 {
                record("write to a closed zone with max open (implicit) and max active reached") { () throws(DeviceError) in
                    try dev.write(small, at: closed[0].writePointer)
                }
                record("explicit open of a closed zone at both limits") { () throws(DeviceError) in try dev.openZone(closed[1].id) }
                record("finish of a closed zone at both limits") { () throws(DeviceError) in try dev.finish(closed[2].id) }
                record("close of an implicitly open zone at both limits") { () throws(DeviceError) in
                    if let o = try dev.reportAllZones().first(where: { $0.condition == .implicitlyOpen }) { try dev.closeZone(o.id) }
                }
                record("finish of a closed zone after that close") { () throws(DeviceError) in try dev.finish(closed[2].id) }
                record("reset of an implicitly open zone at both limits") { () throws(DeviceError) in
                    if let o = try dev.reportAllZones().first(where: { $0.condition == .implicitlyOpen }) { try dev.reset(o.id) }
                }
            }
        }
        try resetAll(dev)
    } catch {
        say("KERNEL probe: setup failed: \(error)")
    }
}

// MARK: main

let args = CommandLine.arguments
guard args.count == 2 else {
    say("usage: zbdfs-kernel-smoke DEVICE   (destructive: resets every sequential zone)")
    exit(2)
}
let path = args[1]
say("SMOKE isZonedBlockDevice(\(path)) = \(KernelZonedDevice.isZonedBlockDevice(path: path))")
say("SMOKE isZonedBlockDevice(/dev/null) = \(KernelZonedDevice.isZonedBlockDevice(path: "/dev/null"))")
do throws(DeviceError) {
    _ = try KernelZonedDevice.open(path: "/dev/null")
    check("open(/dev/null) is refused", false, "it opened")
} catch {
    check("open(/dev/null) is refused with EINVAL", error.errno == EINVAL, "\(error)")
    say("SMOKE   message: \(error)")
}
do throws(DeviceError) {
    let dev = try KernelZonedDevice.open(path: path)
    let g = dev.geometry
    say("SMOKE geometry: \(g.zoneCount) zones of \(g.zoneSize) (capacity \(g.zoneCapacity)), block \(g.logicalBlockSize.bytes) B, "
        + "\(g.conventionalZoneCount) conventional, max open \(g.maxOpenZones), max active \(g.maxActiveZones), "
        + "max write \(g.maxWriteBytes), model \(dev.zonedModel), kernel name \(dev.kernelName)")
    expect("a second exclusive open fails EBUSY", "EBUSY") { () throws(DeviceError) in
        _ = try KernelZonedDevice.open(path: path)
    }
    try contractChecks(dev)
    dev.close()
    dev.close()
    expect("calls after close fail EBADF", DeviceError.name(ofErrno: EBADF)) { () throws(DeviceError) in _ = try dev.reportAllZones() }
} catch {
    check("smoke run", false, "unexpected error: \(error)")
}
kernelProbe(path: path)
if failures == 0 {
    say("ZBDFS-SMOKE: PASS \(checks) checks")
    exit(0)
}
say("ZBDFS-SMOKE: FAIL \(failures) of \(checks) checks")
exit(1)
