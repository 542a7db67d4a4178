// Data IO of KernelZonedDevice: validation, then io_uring through BatchRun.
//
// Invariants:
// - Under `.contract` checks an IO reaches the kernel only if it is non-empty, block-aligned in
//   offset and length, inside the device and inside one zone, and (for a write) at most
//   `geometry.maxWriteBytes`. Anything else fails with EINVAL here, as the contract says, and as
//   the emulated device does. Larger writes would be split by the kernel into pieces that may
//   reach the zone out of order, so the engine must split them itself. The check is ZonedCore's
//   DeviceContract.problem, the NVMe backend's too, so both refuse with the same words.
// - The write pointer is NOT checked here: the kernel (and the device) reject a write off the
//   write pointer or past the zone capacity with EIO, and checking would cost a report per write.
// - The caller's memory goes to the kernel as is when it is block-aligned; otherwise the data is
//   copied through an aligned bounce buffer (O_DIRECT needs aligned memory; the contract does not
//   ask callers for it).
// - Synchronous `write`/`read` are one-element batches: one code path for every data IO.
// - Reads past a sequential zone's write pointer give zeros (the contract), although the kernel
//   fills them with its own pattern (0xFF from null_blk on 6.1, see Emulation/README.md): a read
//   ending above the zone's write-pointer floor takes a one-zone report BEFORE the IO, and the
//   bytes from that write pointer on are zeroed after it (ZonedCore's WritePointerFloors).
//   Reporting first makes the answer the zone's state at report time; data a concurrent write
//   adds later reads as not yet written.
//   So a batch's reads do not see the same batch's writes past the floor either (BatchRun does
//   not order reads after writes anyway).

#if canImport(Glibc)
import Glibc
#endif
import ZonedCore

extension KernelZonedDevice {
    public func write(_ data: UnsafeRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) {
        try single(.write(data, at: offset)).get()
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) {
        try single(.read(buffer, at: offset)).get()
    }

    /// Linux gives user space no zone append through a block device (only in-kernel users and
    /// NVMe passthrough have it), so `maxAppendBytes` is 0 and this always refuses.
    public func append(_ data: UnsafeRawBufferPointer, to zone: ZoneID) throws(DeviceError) -> DeviceOffset {
        throw .notSupported(.append, "\(path): zone append is not available through a kernel block device; "
                            + "write at the write pointer, or use the nvme backend")
    }

    public func flush() throws(DeviceError) {
        try withLease(.flush, ring: false) { _ throws(DeviceError) -> ((), ringBroken: Bool) in
            // fsync on a block device sends a cache flush (FUA-less devices need it for durability).
            guard fsync(dataFD) == 0 else { throw DeviceError(errno: currentErrno(), .flush, path) }
            return ((), false)
        }
    }

    /// Keeps several IOs in flight across zones, one write per zone at a time (see BatchRun).
    public func submit(_ batch: [DeviceIO]) -> [IOCompletion] {
        guard !batch.isEmpty else { return [] }
        do throws(DeviceError) {
            return try withLease(.write, ring: true) { ring throws(DeviceError) -> ([IOCompletion], ringBroken: Bool) in
                let plans = batch.map(plan)
                let makeRoom: ((ZoneID) -> Bool)? = checks == .contract
                    ? { [self] zone in closeOneImplicitlyOpenZone(except: zone) } : nil
                var run = BatchRun(fd: dataFD, ring: ring!, items: plans, makeRoom: makeRoom)
                let completions = run.run()
                noteWrites(completions, plans)
                return (completions, run.ringBroken)
            }
        } catch {
            return batch.indices.map { IOCompletion(index: $0, result: .failure(error)) }
        }
    }

    /// Raises the write-pointer floor of every zone a write of the batch completed in.
    private func noteWrites(_ completions: [IOCompletion], _ plans: [Result<PlannedIO, DeviceError>]) {
        for c in completions {
            guard case .success = c.result, case .success(let p) = plans[c.index],
                  p.direction == .write, let seen = p.floorSeen else { continue }
            wpFloors.raise(p.zone, to: p.offset + ByteCount(p.length), since: seen)
        }
    }

    private func single(_ io: DeviceIO) -> Result<Void, DeviceError> {
        let completion = submit([io])
        precondition(completion.count == 1, "one IO gives one completion")
        return completion[0].result.map { _ in () }
    }

    // MARK: validation and planning

    /// What the kernel gets for `io`, or why it gets nothing.
    func plan(_ io: DeviceIO) -> Result<PlannedIO, DeviceError> {
        switch io {
        case .append(_, let zone):
            return .failure(.notSupported(.append, "\(path): no zone append through a block device (\(zone))"))
        case .write(let b, let at):
            return plan(write: true, base: UnsafeMutableRawPointer(mutating: b.baseAddress),
                        count: b.count, at: at)
        case .read(let b, let at):
            return plan(write: false, base: b.baseAddress, count: b.count, at: at)
        }
    }

    private func plan(write: Bool, base: UnsafeMutableRawPointer?, count: Int,
                      at offset: DeviceOffset) -> Result<PlannedIO, DeviceError> {
        let op: DeviceOperation = write ? .write : .read
        let length = ByteCount(count)
        let zone = geometry.zone(containing: offset) ?? ZoneID(UInt32(min(offset.bytes / geometry.zoneSize.bytes,
                                                                            UInt64(UInt32.max))))
        let what = "\(op.rawValue) of \(length.bytes) B at \(offset) (\(zone))"
        if checks == .contract, let why = DeviceContract.problem(
            geometry, write: write, length: length, at: offset,
            maxWriteNote: "(queue/max_sectors_kb); split it, the kernel would split it and break write ordering") {
            return .failure(.invalid(op, "\(what): \(why)"))
        }
        guard let base, count > 0 else {
            return .failure(.invalid(op, "\(what): empty buffer"))
        }
        let sequential = !geometry.isConventional(zone)
        var p = PlannedIO(direction: write ? .write : .read, zone: zone,
                          sequential: sequential, address: base, length: count,
                          offset: offset, bounce: nil, copyBack: nil, zeroFrom: nil, floorSeen: nil,
                          pieceLimit: checks == .contract ? geometry.maxWriteBytes.int : count, what: what)
        if checks == .contract && sequential {
            let floor = wpFloors.floor(zone)
            p.floorSeen = floor
            if !write {
                let past = wpFloors.bytesPastWritePointer(zone: zone, from: offset, length: length, floor: floor) {
                    () throws(DeviceError) in
                    try Self.reportRaw(zbdFD: zbdFD, from: zone, count: 1, zoneSize: geometry.zoneSize)
                }
                switch past {
                case .success(let from): p.zeroFrom = from
                case .failure(let e): return .failure(e)
                }
            }
        }
        if UInt(bitPattern: base) % UInt(geometry.logicalBlockSize.bytes) != 0 {
            let bounce = AlignedBuffer(count: count)
            if write {
                bounce.base.copyMemory(from: base, byteCount: count)
            } else {
                p.copyBack = UnsafeMutableRawBufferPointer(start: base, count: count)
            }
            p.bounce = bounce
            p.address = bounce.base
        }
        return .success(p)
    }
}
