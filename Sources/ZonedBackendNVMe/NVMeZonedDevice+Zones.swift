// Zone reports and zone management of NVMeZonedDevice: NVMe Zone Management Receive (Report
// Zones) and Zone Management Send (reset, open, close, finish), through libnvme.
//
// Invariants:
// - One management command acts on exactly one zone (Select All is never set), so a failure
//   names one zone and one status.
// - A zone id past the device fails with EINVAL before the device sees it. ZNS has no
//   conventional zones, so there is nothing else to refuse here: the device answers every
//   state-machine question itself (Invalid Zone State Transition, Too Many Open/Active Zones),
//   and NVMeStatus maps the answer to the errno Linux gives for it.
// - A report asks for at most one max-transfer of data per command (the kernel refuses larger
//   passthrough buffers) and stops early only on an error or a device that returns no zone, which
//   is an error too: a short report would otherwise look like a smaller device.

#if canImport(Glibc)
import Glibc
#endif
import ZonedCore

extension NVMeZonedDevice {
    public func reportZones(from first: ZoneID, count: Int) throws(DeviceError) -> [Zone] {
        let n = max(0, min(count, geometry.zoneCount - first.int))
        guard n > 0 else { return [] }
        return try withLease(.report, queue: false) { _ throws(DeviceError) -> ([Zone], queueBroken: Bool) in
            (try Self.reportRaw(controller, nsid: namespaceID, geometry: geometry, from: first, count: n, path: path), false)
        }
    }

    public func reset(_ zone: ZoneID) throws(DeviceError) {
        // Lower the floor first: a read racing the reset must ask the device, not trust old data.
        if geometry.contains(zone) { wpFloors.lowerForReset(zone, to: geometry.zoneStart(zone)) }
        try manage(.reset, zone, .reset)
        if geometry.contains(zone) { wpFloors.lowerForReset(zone, to: geometry.zoneStart(zone)) }
    }

    public func openZone(_ zone: ZoneID) throws(DeviceError) { try manage(.openZone, zone, .open) }
    public func closeZone(_ zone: ZoneID) throws(DeviceError) { try manage(.closeZone, zone, .close) }
    public func finish(_ zone: ZoneID) throws(DeviceError) { try manage(.finish, zone, .finish) }

    private func manage(_ op: DeviceOperation, _ zone: ZoneID, _ action: NVMeZoneSendAction) throws(DeviceError) {
        let what = "\(op.rawValue) of \(zone)"
        guard geometry.contains(zone) else {
            throw .invalid(op, "\(what): the device has \(geometry.zoneCount) zones")
        }
        try withLease(op, queue: false) { _ throws(DeviceError) -> ((), queueBroken: Bool) in
            let outcome = controller.manageZone(nsid: namespaceID, startBlock: startBlock(of: zone), action: action)
            if let e = outcome.error(op, "\(path): \(what)") { throw e }
            return ((), false)
        }
    }

    /// The zone's start in logical blocks.
    func startBlock(of zone: ZoneID) -> UInt64 {
        geometry.zoneStart(zone).bytes / geometry.logicalBlockSize.bytes
    }

    /// Zones `first ..< first + count` straight from the device (no lease: used by open and by
    /// callers that hold one).
    static func reportRaw(_ controller: NVMeController, nsid: UInt32, geometry g: DeviceGeometry,
                          from first: ZoneID, count: Int, path: String) throws(DeviceError) -> [Zone] {
        guard count > 0 else { return [] }
        let bs = g.logicalBlockSize
        let zoneBlocks = g.zoneSize.bytes / bs.bytes
        let perCommand = max(1, (g.maxWriteBytes.int - NVMeZoneReport.headerBytes) / NVMeZoneDescriptor.byteCount)
        var zones: [Zone] = []
        zones.reserveCapacity(count)
        while zones.count < count {
            let next = ZoneID(first.int + zones.count)
            let want = min(perCommand, count - zones.count)
            let buffer = AlignedBuffer(count: NVMeZoneReport.headerBytes + want * NVMeZoneDescriptor.byteCount)
            let outcome = controller.reportZones(nsid: nsid, startBlock: UInt64(next.index) * zoneBlocks, into: buffer.mutable)
            if let e = outcome.error(.report, "\(path): report of \(want) zones from \(next)") { throw e }
            let got: [Zone]
            do throws(DecodeError) {
                got = try NVMeZoneReport.decode(buffer.bytes).prefix(want).map { d throws(DecodeError) in
                    try NVMeZoneReport.zone(d, blockSize: bs, zoneSizeBlocks: zoneBlocks)
                }
            } catch {
                throw .io(.report, "\(path): the zone report from \(next) does not decode: \(error)")
            }
            guard let firstGot = got.first, firstGot.id == next else {
                throw .io(.report, "\(path): the report from \(next) starts at \(got.first.map { "\($0.id)" } ?? "no zone")")
            }
            for (i, z) in got.enumerated() where z.id.int != next.int + i {
                throw .io(.report, "\(path): the report from \(next) gives \(z.id) in place \(i)")
            }
            zones += got
        }
        return zones
    }
}
