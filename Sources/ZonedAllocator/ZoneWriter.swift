// The zone writer: puts a grant's pieces on the device — zone appends all in flight at once, or
// writes at the write pointer one batch at a time behind the zone's sequencer — and tells the
// accounts (a `ZoneLedger`, the allocator) what was submitted and what landed. It decides nothing
// about where space comes from; that is the grant policy's job.
//
// Invariants:
// - A zone is either always appended to or always written at the pointer (fixed per zone for the
//   writer's life): a write at the pointer we track would miss the device's while appends are in
//   flight.
// - Writes at the pointer to one zone are issued one batch at a time, in order: the zone's
//   sequencer is held from reading the tracked pointer until the batch is accounted.
// - Every submitted byte is counted in flight (`startFlight`) before the device sees it and leaves
//   flight when the batch comes back (`landed`), so the accounts never lose a byte the device may
//   already hold. A failed batch makes the ledger re-read the zone.
// - The writer holds no account lock: the ledger takes its own around each call, and the device
//   is never called under it.

import ZonedCore

/// What the writer tells the accounts; each call takes the accounts' lock itself.
protocol ZoneLedger: AnyObject {
    /// The tracked write pointer of `zone` (where the next write at the pointer goes).
    func writePointer(_ zone: ZoneID) -> DeviceOffset
    /// `total` bytes of the zone's grants go to the device.
    func startFlight(_ zone: ZoneID, _ total: ByteCount)
    /// The batch of `total` bytes came back; `landed` are the sizes of the pieces that landed.
    func landed(_ zone: ZoneID, total: ByteCount, _ landed: [ByteCount], viaAppend: Bool)
    /// A piece failed: re-read the zone from the device.
    func resyncAfterFailure(_ zone: ZoneID)
}

final class ZoneWriter: Sendable {
    let device: any ZonedDevice
    /// True when sequential zones are written with the device's zone append.
    let usesZoneAppend: Bool
    /// One sequencer per zone: writes at the write pointer are issued one at a time, in order.
    private let sequencers: [ConditionLock]
    /// Immutable per-zone facts, readable without any lock.
    private let conventional: [Bool]

    init(device: any ZonedDevice, report: [Zone], zoneAppend: Bool) {
        self.device = device
        usesZoneAppend = zoneAppend && device.geometry.supportsZoneAppend
        sequencers = report.map { _ in ConditionLock(rank: .zoneSequencer) }
        conventional = report.map { !$0.type.isSequential }
    }

    func isConventional(_ zone: ZoneID) -> Bool { conventional[zone.int] }

    /// Whether writes into `zone` are zone appends.
    func appends(_ zone: ZoneID) -> Bool { !conventional[zone.int] && usesZoneAppend }

    /// The largest piece `submit` takes for `zone`.
    func pieceLimit(_ zone: ZoneID) -> ByteCount {
        appends(zone) ? device.geometry.maxAppendBytes : device.geometry.maxWriteBytes
    }

    /// See `ZoneAllocator.submit`.
    func submit(_ grant: ZoneGrant, _ pieces: [UnsafeRawBufferPointer], nowait: Bool, ledger: some ZoneLedger) -> [Result<DeviceOffset, DeviceError>] {
        guard !pieces.isEmpty else { return [] }
        let limit = pieceLimit(grant.zone).int
        for p in pieces {
            precondition(p.count > 0 && p.count <= limit, "piece of \(p.count) B for \(grant.zone) (limit \(limit) B)")
        }
        let z = grant.zone
        if appends(z) { return submitAppends(z, pieces, ledger) }
        if nowait {
            let busy = DeviceError.wouldBlock(.write, "zone \(z.int) is being written by another writer")
            return sequencers[z.int].withLockIfFree { submitAtPointerLocked(z, pieces, ledger) }
                ?? pieces.map { _ in .failure(busy) }
        }
        return sequencers[z.int].withLock { submitAtPointerLocked(z, pieces, ledger) }
    }

    private func submitAppends(_ z: ZoneID, _ pieces: [UnsafeRawBufferPointer], _ ledger: some ZoneLedger) -> [Result<DeviceOffset, DeviceError>] {
        let total = ZoneWriter.total(pieces)
        ledger.startFlight(z, total)
        let results = ZoneWriter.ordered(device.submit(pieces.map { .append($0, zone: z) }), count: pieces.count, .append)
        account(z, total, pieces, results, viaAppend: true, ledger)
        return results
    }

    /// With the zone's sequencer held: it keeps every other writer of the zone out from reading
    /// the pointer until this batch is accounted.
    private func submitAtPointerLocked(_ z: ZoneID, _ pieces: [UnsafeRawBufferPointer], _ ledger: some ZoneLedger) -> [Result<DeviceOffset, DeviceError>] {
        let total = ZoneWriter.total(pieces)
        var at = ledger.writePointer(z)
        var batch: [DeviceIO] = []
        batch.reserveCapacity(pieces.count)
        for p in pieces {
            batch.append(.write(p, at: at))
            at = at + ByteCount(p.count)
        }
        ledger.startFlight(z, total)
        var results = ZoneWriter.ordered(device.submit(batch), count: pieces.count, .write)
        // Only the prefix before the first failure is written where we said; anything the
        // device took past it (not on a sequential zone) is not ours to count.
        if let bad = results.firstIndex(where: { if case .failure = $0 { true } else { false } }) {
            for i in (bad + 1)..<results.count {
                results[i] = .failure(.io(.write, "not written: piece \(bad) of the batch failed before it"))
            }
        }
        account(z, total, pieces, results, viaAppend: false, ledger)
        return results
    }

    /// Hands the batch's outcome to the ledger; a failed piece makes it re-read the zone.
    private func account(_ z: ZoneID, _ total: ByteCount, _ pieces: [UnsafeRawBufferPointer], _ results: [Result<DeviceOffset, DeviceError>],
                         viaAppend: Bool, _ ledger: some ZoneLedger) {
        var landed: [ByteCount] = []
        landed.reserveCapacity(pieces.count)
        var failed = false
        for (p, r) in zip(pieces, results) {
            if case .success = r { landed.append(ByteCount(p.count)) } else { failed = true }
        }
        ledger.landed(z, total: total, landed, viaAppend: viaAppend)
        if failed { ledger.resyncAfterFailure(z) }
    }

    private static func total(_ pieces: [UnsafeRawBufferPointer]) -> ByteCount {
        ByteCount(UInt64(pieces.reduce(0) { $0 + $1.count }))
    }

    /// Completions put back in batch order; an IO the device never completed counts as failed.
    private static func ordered(_ completions: [IOCompletion], count: Int, _ op: DeviceOperation) -> [Result<DeviceOffset, DeviceError>] {
        var out = [Result<DeviceOffset, DeviceError>](repeating: .failure(.io(op, "the device returned no completion")), count: count)
        for c in completions where c.index >= 0 && c.index < count { out[c.index] = c.result }
        return out
    }

    // MARK: Zone management

    /// Finishes `zone` on the device; nil when done (a conventional zone needs nothing).
    func finish(_ zone: ZoneID) -> DeviceError? {
        guard !conventional[zone.int] else { return nil }
        do { try device.finish(zone) } catch { return error }
        return nil
    }

    /// Resets `zone` on the device; nil when done (a conventional zone needs nothing).
    func reset(_ zone: ZoneID) -> DeviceError? {
        guard !conventional[zone.int] else { return nil }
        do { try device.reset(zone) } catch { return error }
        return nil
    }

    /// The device's view of `zone`, to resync an account; nil for a conventional zone (no write
    /// pointer to believe).
    func report(_ zone: ZoneID) throws(DeviceError) -> Zone? {
        guard !conventional[zone.int] else { return nil }
        return try device.zone(zone)
    }
}
