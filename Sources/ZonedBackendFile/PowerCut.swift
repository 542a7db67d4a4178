// What a power cut does to the emulated device.
//
// Invariants:
// - Only what was sent since it last became durable is at risk (see EmulatedZonedDevice's
//   durability model): a sequential zone keeps a seeded, block-aligned prefix of it (anything
//   from nothing to everything), and its condition follows the kept write pointer (empty at the
//   start, full at capacity, closed in between: a power cycle closes open zones). Read-only,
//   offline and full zones (durably, or by having been written to capacity) are untouched, so a
//   cut never leaves more active zones than there were.
// - With a torn last block, the last kept block of each zone that kept new data holds the new
//   bytes up to a seeded cut point and seeded garbage after it.
// - Conventional zones keep a seeded subset of their unflushed writes. A dropped write gets its
//   old bytes back, block by block, except where a later kept write covers the block, so the
//   result equals replaying exactly the kept writes in their order. Without an armed fault plan
//   no old bytes were recorded and every write is kept.
// - Every draw comes from the power-cut stream of (seed, IO count), zones in ascending order
//   then undo records newest first: the same seed and calls give the same outcome.
// - Afterwards the outcome is persisted and synced and the device is dead, even if that IO fails;
//   its exclusive claim is released, as a crashed machine's would be, so the image can be opened
//   again (the remount after the crash) while the dead instance still exists.
// - `crashImage(to:tornLastBlock:seed:)` writes the image a power cut instead of the next IO
//   would leave without cutting this device: a copy of the image file and of the in-memory
//   state (live and durable tables, undo records) with the IO count one higher, cut by the same
//   `cutPower`. So it equals, byte for byte, the image `FaultPlan.PowerCut(atIO: ioCount + 1)`
//   leaves after the same calls (condition changes scheduled for that IO are not applied).

import ZonedCore

extension EmulatedZonedDevice {
    /// Writes to `path` the image a power cut instead of the next IO (number `ioCount + 1`) would
    /// leave, seeded by the plan's seed (or `seed` when given); this device goes on unchanged.
    /// Conventional zones keep all their unflushed writes unless a fault plan was armed (only
    /// then are old bytes recorded). Waits for IOs in flight (takes every zone lock).
    public func crashImage(to path: String, tornLastBlock: Bool = false, seed: UInt64? = nil) throws(DeviceError) {
        guard !discardsData else { throw .invalid(.flush, "\(path) discards data: crash images need a full image") }
        try withEveryZoneLock { () throws(DeviceError) in
            try state.withLock { (s: inout EmulatorState) throws(DeviceError) in
                try checkLive(s, .flush)
                try file.copy(to: path, .flush)
                let copy = EmulatedZonedDevice(path: path, geometry: geometry,
                                               file: try BackingFile(path: path, dataStart: file.dataStart),
                                               table: s.table, onFile: s.onFile, faults: nil)
                defer { copy.close() }
                var cut = s
                cut.ioCount += 1
                try copy.state.withLock { (c: inout EmulatorState) throws(DeviceError) in
                    c = cut
                    try copy.cutPower(&c, torn: tornLastBlock, seed: seed ?? s.faults?.seed ?? 0)
                }
            }
        }
    }

    /// Takes the zone locks in index order (the order every multi-zone path uses) in a loop, not by
    /// recursion: a device of 80,000 zones would need a stack frame per zone.
    private func withEveryZoneLock(_ body: () throws(DeviceError) -> Void) throws(DeviceError) {
        for z in zoneLocks { z.mutex.lock() }
        defer { for z in zoneLocks.reversed() { z.mutex.unlock() } }
        try body()
    }

    func cutPower(_ s: inout EmulatorState, torn: Bool, seed: UInt64) throws(DeviceError) {
        defer {
            s.life = .dead
            s.undo.removeAll()
            file.releaseClaim()
        }
        var rng = FaultPlan.stream(seed: seed, .powerCut, io: s.ioCount)
        for i in 0..<geometry.zoneCount where !geometry.isConventional(ZoneID(i)) {
            let zone = ZoneID(i)
            let outcome = try cutZone(zone, live: s.table[zone], durable: s.durable[i], torn: torn, &rng)
            s.table.restore(zone, outcome)
        }
        try undoConventional(s.undo, &rng)
        s.table.powerCycle()  // what the device comes back with: open zones closed
        _ = s.table.takeChanged()
        var moved: [Int] = []
        for i in 0..<geometry.zoneCount where s.durable[i] != s.table[ZoneID(i)] {
            s.durable[i] = s.table[ZoneID(i)]
            moved.append(i)
        }
        try persist(&s, zones: moved, .flush)
        try file.sync(.flush)
    }

    /// The state zone `zone` keeps; writes the torn block when asked.
    private func cutZone(_ zone: ZoneID, live: ZoneState, durable: ZoneState, torn: Bool,
                         _ rng: inout SeededRandom) throws(DeviceError) -> ZoneState {
        switch durable.condition {
        case .readOnly, .offline, .full: return durable
        default: break
        }
        switch live.condition {
        // A zone that reached full has given its resources back; it comes back full with all it
        // holds (as after a finish). Rolling it back to closed could leave the device with more
        // active zones than its limit, which a real device never reports.
        case .readOnly, .offline, .full: return live
        default: break
        }
        let bs = geometry.logicalBlockSize
        let sentBlocks = live.writePointer > durable.writePointer
            ? (live.writePointer - durable.writePointer).quotient(dividingBy: bs) : 0
        let kept = sentBlocks > 0 ? rng.below(sentBlocks + 1) : 0
        let wp = durable.writePointer + bs * kept
        if torn, kept > 0 { try tear(block: wp - bs, &rng) }
        let start = geometry.zoneStart(zone)
        let condition: ZoneCondition = wp == start ? .empty : wp == start + geometry.zoneCapacity ? .full : .closed
        return ZoneState(condition: condition, writePointer: wp)
    }

    /// Keeps the block's bytes before a seeded cut point and overwrites the rest with garbage.
    private func tear(block at: DeviceOffset, _ rng: inout SeededRandom) throws(DeviceError) {
        let bs = geometry.logicalBlockSize.int
        let buffer = AlignedBuffer(count: bs)
        try file.read(into: buffer.mutable, at: at, .flush)
        let cut = 1 + Int(rng.below(UInt64(bs - 1)))
        rng.fill(buffer.slice(cut, bs - cut))
        try file.write(buffer.readOnly, at: at, .flush)
    }

    private func undoConventional(_ undo: [ConventionalUndo], _ rng: inout SeededRandom) throws(DeviceError) {
        let bs = geometry.logicalBlockSize.int
        var coveredByKept = Set<UInt64>()
        for record in undo.reversed() {
            let blocks = record.old.count / bs
            if rng.chance(0.5) {
                for b in 0..<blocks { coveredByKept.insert(record.offset.bytes + UInt64(b * bs)) }
                continue
            }
            for b in 0..<blocks where !coveredByKept.contains(record.offset.bytes + UInt64(b * bs)) {
                let failure: DeviceError? = record.old.withUnsafeBytes { old in
                    do throws(DeviceError) {
                        try file.write(UnsafeRawBufferPointer(rebasing: old[(b * bs)..<((b + 1) * bs)]),
                                       at: record.offset + ByteCount(b * bs), .flush)
                        return nil
                    } catch { return error }
                }
                if let failure { throw failure }
            }
        }
    }
}
