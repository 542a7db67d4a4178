// Zone reports and zone management of KernelZonedDevice, through libzbd.
//
// Invariants:
// - One management call acts on exactly one zone: libzbd gets the zone's start and its size,
//   never a range, so a failure names one zone and one errno.
// - Under `.contract` checks a zone id past the device, or management of a conventional zone,
//   fails with EINVAL before the kernel sees it. The kernel itself answers otherwise for
//   conventional zones (see Emulation/README.md); the contract, not the kernel, is what callers
//   program against.
// - libzbd returns -1 and leaves the ioctl's errno in errno; it is read right after the call.
// - Under `.contract` checks, an explicit open or a finish refused with ETOOMANYREFS is retried
//   once after closing one implicitly open zone: null_blk on Linux 6.1 refuses to open (or
//   finish) a closed zone when the open and active limits are both reached instead of closing an
//   implicitly open zone itself, which is what the contract (and ZBC/ZNS) describe.

#if canImport(Glibc)
import Glibc
#endif
import CZBD
import ZonedCore

extension KernelZonedDevice {
    public func reportZones(from first: ZoneID, count: Int) throws(DeviceError) -> [Zone] {
        let n = max(0, min(count, geometry.zoneCount - first.int))
        guard n > 0 else { return [] }
        return try withLease(.report, ring: false) { _ throws(DeviceError) -> ([Zone], ringBroken: Bool) in
            (try Self.reportRaw(zbdFD: zbdFD, from: first, count: n, zoneSize: geometry.zoneSize), false)
        }
    }

    public func reset(_ zone: ZoneID) throws(DeviceError) {
        // Lower the floor first: a read racing the reset must ask the device, not trust old data.
        if geometry.contains(zone) { wpFloors.lowerForReset(zone, to: geometry.zoneStart(zone)) }
        try manage(.reset, zone) { fd, start, len in zbd_reset_zones(fd, start, len) }
        if geometry.contains(zone) { wpFloors.lowerForReset(zone, to: geometry.zoneStart(zone)) }
    }

    public func openZone(_ zone: ZoneID) throws(DeviceError) {
        try manage(.openZone, zone) { fd, start, len in zbd_open_zones(fd, start, len) }
    }

    public func closeZone(_ zone: ZoneID) throws(DeviceError) {
        try manage(.closeZone, zone) { fd, start, len in zbd_close_zones(fd, start, len) }
    }

    public func finish(_ zone: ZoneID) throws(DeviceError) {
        try manage(.finish, zone) { fd, start, len in zbd_finish_zones(fd, start, len) }
    }

    private func manage(_ op: DeviceOperation, _ zone: ZoneID,
                        _ call: (Int32, off_t, off_t) -> Int32) throws(DeviceError) {
        let what = "\(op.rawValue) of \(zone)"
        if checks == .contract {
            guard geometry.contains(zone) else {
                throw .invalid(op, "\(what): the device has \(geometry.zoneCount) zones")
            }
            guard !geometry.isConventional(zone) else {
                throw .invalid(op, "\(what): a conventional zone has no write pointer to manage")
            }
        }
        try withLease(op, ring: false) { _ throws(DeviceError) -> ((), ringBroken: Bool) in
            let start = off_t(UInt64(zone.index) * geometry.zoneSize.bytes)
            let len = off_t(geometry.zoneSize.bytes)
            if call(zbdFD, start, len) == 0 { return ((), false) }
            var e = currentErrno()
            if e == ETOOMANYREFS, checks == .contract, op == .openZone || op == .finish,
               closeOneImplicitlyOpenZone(except: zone) {
                if call(zbdFD, start, len) == 0 { return ((), false) }
                e = currentErrno()
            }
            throw DeviceError(errno: e, op, what)
        }
    }
}

extension KernelZonedDevice {
    /// Closes the lowest implicitly open zone other than `target`, to give the device an open
    /// slot back; false when there is none (every open zone is explicitly open) or it failed.
    /// Closing keeps the zone active and its data; its next write reopens it implicitly.
    /// Callers hold a lease.
    func closeOneImplicitlyOpenZone(except target: ZoneID) -> Bool {
        let open: [Zone]
        do throws(DeviceError) {
            open = try Self.reportRaw(zbdFD: zbdFD, from: ZoneID(0), count: 2, zoneSize: geometry.zoneSize,
                                      only: ZBD_RO_IMP_OPEN, within: geometry.zoneCount)
        } catch {
            return false
        }
        guard let victim = open.first(where: { $0.id != target && $0.condition == .implicitlyOpen }) else {
            return false
        }
        let start = off_t(UInt64(victim.id.index) * geometry.zoneSize.bytes)
        return zbd_close_zones(zbdFD, start, off_t(geometry.zoneSize.bytes)) == 0
    }
}
