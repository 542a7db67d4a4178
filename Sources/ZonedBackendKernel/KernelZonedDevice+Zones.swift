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
        try manage(.reset, zone) { fd, start, len in zbd_reset_zones(fd, start, len) }
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
            guard call(zbdFD, start, off_t(geometry.zoneSize.bytes)) == 0 else {
                throw DeviceError(errno: currentErrno(), op, what)
            }
            return ((), false)
        }
    }
}
