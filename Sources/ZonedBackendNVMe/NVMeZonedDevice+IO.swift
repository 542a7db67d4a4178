// Data IO of NVMeZonedDevice: validation, then NVMe Read, Write and Zone Append as io_uring
// passthrough commands through NVMeBatch.
//
// Invariants:
// - An IO reaches the device only if it is non-empty, block-aligned in offset and length, inside
//   the device and inside one zone, and at most `geometry.maxWriteBytes` (a write) or
//   `geometry.maxAppendBytes` (an append); anything else fails with EINVAL here, as the contract
//   says (ZonedCore's DeviceContract.problem, shared with the kernel backend; appends are checked
//   here). Nothing splits a write or an append: a split write could reach the zone out of order, a
//   split append would scatter one buffer over two places.
// - The write pointer is not checked here: the device refuses a write off it (Zone Invalid Write)
//   or past the zone capacity (Zone Boundary Error) itself, and checking would cost a report.
// - Caller memory goes to the kernel as is, aligned or not: for passthrough commands Linux maps
//   the user pages itself and copies through its own bounce pages when they do not suit the
//   device's DMA alignment, so no bounce buffer of ours is needed.
// - Synchronous `write`/`append`/`read` are one-element batches: one code path for every data IO.
// - Reads past a zone's write pointer give zeros (the contract; a ZNS device may return anything
//   there): a read ending above the zone's write-pointer floor takes a one-zone report before the
//   IO, and the bytes from that write pointer on are zeroed after it (ZonedCore's
//   WritePointerFloors). Reporting first makes the answer the zone's state at report time; data a
//   concurrent write adds later reads as not yet written.

#if canImport(Glibc)
import Glibc
#endif
import ZonedCore

extension NVMeZonedDevice {
    public func write(_ data: UnsafeRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) {
        _ = try single(.write(data, at: offset)).get()
    }

    public func append(_ data: UnsafeRawBufferPointer, to zone: ZoneID) throws(DeviceError) -> DeviceOffset {
        try single(.append(data, zone: zone)).get()
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) {
        _ = try single(.read(buffer, at: offset)).get()
    }

    public func flush() throws(DeviceError) {
        try withLease(.flush, queue: false) { _ throws(DeviceError) -> ((), queueBroken: Bool) in
            if let e = controller.flush(nsid: namespaceID).error(.flush, "\(path): flush of namespace \(namespaceID)") {
                throw e
            }
            return ((), false)
        }
    }

    /// Keeps several IOs in flight: reads freely, a zone's appends together, its writes one at a
    /// time (see NVMeBatch).
    public func submit(_ batch: [DeviceIO]) -> [IOCompletion] {
        guard !batch.isEmpty else { return [] }
        do throws(DeviceError) {
            return try withLease(.write, queue: true) { queue throws(DeviceError) -> ([IOCompletion], queueBroken: Bool) in
                let plans = batch.map(plan)
                var run = NVMeBatch(queue: queue!, nsid: namespaceID, blockSize: geometry.logicalBlockSize, items: plans)
                let completions = run.run()
                noteWrites(completions, plans)
                return (completions, run.queueBroken)
            }
        } catch {
            return batch.indices.map { IOCompletion(index: $0, result: .failure(error)) }
        }
    }

    /// Raises the write-pointer floor of every zone a write or append of the batch completed in.
    private func noteWrites(_ completions: [IOCompletion], _ plans: [Result<PlannedNVMeIO, DeviceError>]) {
        for c in completions {
            guard case .success(let at) = c.result, case .success(let p) = plans[c.index],
                  p.kind != .read, let seen = p.floorSeen else { continue }
            wpFloors.raise(p.zone, to: at + ByteCount(p.length), since: seen)
        }
    }

    private func single(_ io: DeviceIO) -> Result<DeviceOffset, DeviceError> {
        let completion = submit([io])
        precondition(completion.count == 1, "one IO gives one completion")
        return completion[0].result
    }

    // MARK: validation and planning

    /// What the device gets for `io`, or why it gets nothing.
    func plan(_ io: DeviceIO) -> Result<PlannedNVMeIO, DeviceError> {
        switch io {
        case .append(let b, let zone):
            return plan(append: b, to: zone)
        case .write(let b, let at):
            return plan(.write, base: UnsafeMutableRawPointer(mutating: b.baseAddress), count: b.count, at: at)
        case .read(let b, let at):
            return plan(.read, base: b.baseAddress, count: b.count, at: at)
        }
    }

    private func plan(_ kind: PlannedNVMeIO.Kind, base: UnsafeMutableRawPointer?, count: Int,
                      at offset: DeviceOffset) -> Result<PlannedNVMeIO, DeviceError> {
        let op: DeviceOperation = kind == .write ? .write : .read
        let length = ByteCount(count)
        let zone = geometry.zone(containing: offset)
            ?? ZoneID(UInt32(min(offset.bytes / geometry.zoneSize.bytes, UInt64(UInt32.max))))
        let what = "\(op.rawValue) of \(length.bytes) B at \(offset) (\(zone))"
        if let why = DeviceContract.problem(geometry, write: kind == .write, length: length, at: offset,
                                           maxWriteNote: "(MDTS and the queue's limits); split it into pieces written in order") {
            return .failure(.invalid(op, "\(what): \(why)"))
        }
        guard let base else { return .failure(.invalid(op, "\(what): empty buffer")) }
        let floor = wpFloors.floor(zone)
        var p = PlannedNVMeIO(kind: kind, zone: zone, address: base, length: count, offset: offset,
                              capacityEnd: geometry.zoneStart(zone) + geometry.zoneCapacity,
                              pieceLimit: geometry.maxWriteBytes.int, zeroFrom: nil, floorSeen: floor, what: what)
        if kind == .read {
            let past = wpFloors.bytesPastWritePointer(zone: zone, from: offset, length: length, floor: floor) {
                () throws(DeviceError) in
                try Self.reportRaw(controller, nsid: namespaceID, geometry: geometry, from: zone, count: 1, path: path)
            }
            switch past {
            case .success(let from): p.zeroFrom = from
            case .failure(let e): return .failure(e)
            }
        }
        return .success(p)
    }

    private func plan(append data: UnsafeRawBufferPointer, to zone: ZoneID) -> Result<PlannedNVMeIO, DeviceError> {
        let length = ByteCount(data.count)
        let what = "zone append of \(length.bytes) B to \(zone)"
        guard geometry.contains(zone) else {
            return .failure(.invalid(.append, "\(what): the device has \(geometry.zoneCount) zones"))
        }
        let bs = geometry.logicalBlockSize
        guard length.bytes > 0, length.isMultiple(of: bs), length <= geometry.maxAppendBytes else {
            return .failure(.invalid(.append, "\(what): must be a non-zero multiple of the \(bs.bytes)-byte block "
                                     + "size and at most the device's zone append limit of \(geometry.maxAppendBytes) (ZASL)"))
        }
        guard let base = data.baseAddress else { return .failure(.invalid(.append, "\(what): empty buffer")) }
        let start = geometry.zoneStart(zone)
        return .success(PlannedNVMeIO(kind: .append, zone: zone, address: UnsafeMutableRawPointer(mutating: base),
                                      length: data.count, offset: start, capacityEnd: start + geometry.zoneCapacity,
                                      pieceLimit: data.count, zeroFrom: nil, floorSeen: wpFloors.floor(zone), what: what))
    }
}
