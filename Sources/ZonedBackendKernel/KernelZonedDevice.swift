// KernelZonedDevice: a Linux zoned block device (null_blk zoned, host-managed SMR, the block
// device of an NVMe ZNS namespace) behind the ZonedDevice contract.
//
// Invariants:
// - Two descriptors per device: `zbdFD` from zbd_open for zone management and reports (libzbd
//   keeps its own table keyed by it), and `dataFD`, opened O_DIRECT (and O_EXCL unless asked
//   otherwise, so a mounted device is refused with EBUSY), for data IO through io_uring.
// - Geometry is read once at open and never changes: the kernel cannot change a zoned device's
//   zone layout while it is open.
// - Data IO uses a small pool of io_uring rings: a caller leases one ring for the length of its
//   call, so concurrent callers never share a ring and never wait on each other's IO; at most
//   `idleRingLimit` idle rings are kept. Chosen over one locked ring because a synchronous read
//   on one thread must not wait behind another thread's batch of writes. The bookkeeping is
//   ZonedCore's LeasePool, shared with the NVMe backend.
// - `close()` is idempotent. The descriptors are closed when the last lease ends, so an IO in
//   flight on another thread finishes on a valid descriptor; calls after close fail with EBADF.
// - libzbd's errno and io_uring's -errno both become DeviceError through DeviceError(errno:…).
// - `wpFloors` (ZonedCore's WritePointerFloors) holds, per zone, an offset at or below the zone's
//   write pointer whenever no reset of it is in flight: from the report at open, raised by every
//   write that completes through this object and by reports taken for reads, dropped to the zone
//   start around a reset (bumping the zone's reset count, so a write or report that raced the
//   reset cannot raise it again). Reads ending at or below it need no zone report (see
//   KernelZonedDevice+IO.swift, reads past the write pointer).

#if canImport(Glibc)
import Glibc
#endif
import CURing
import CZBD
import ZonedCore

public final class KernelZonedDevice: ZonedDevice {
    /// How much the backend checks before the kernel sees an IO or a zone operation.
    public enum Checks: Sendable {
        /// The contract's checks (alignment, one zone per IO, max write size, no management of
        /// conventional zones): failures are EINVAL before touching the device.
        case contract
        /// Only what memory safety needs: everything else goes to the kernel as asked, so a
        /// probe can record the kernel's own answers (Emulation/README.md).
        case kernelOnly
    }

    public let geometry: DeviceGeometry
    public var kind: DeviceKind { .kernel }
    public let path: String
    /// The kernel's name for the device ("nullb0"), for messages and sysfs.
    public let kernelName: String
    /// `queue/zoned`: "host-managed" or "host-aware".
    public let zonedModel: String
    public let checks: Checks

    let zbdFD: Int32
    let dataFD: Int32
    static let ringEntries = 64
    static let idleRingLimit = 4

    /// The ring leases (LeasePool.swift); closing the pool closes the descriptors.
    private let leases: LeasePool<URing>
    /// Per zone: an absolute offset known to be at or below the write pointer.
    let wpFloors: WritePointerFloors

    private init(path: String, sys: SysBlockDevice, model: String, zbdFD: Int32, dataFD: Int32,
                 geometry: DeviceGeometry, zones: [Zone], checks: Checks, firstRing: URing) {
        self.path = path
        self.kernelName = sys.kernelName
        self.zonedModel = model
        self.zbdFD = zbdFD
        self.dataFD = dataFD
        self.geometry = geometry
        self.checks = checks
        wpFloors = WritePointerFloors(zones)
        leases = LeasePool(first: firstRing, idleLimit: Self.idleRingLimit) { [dataFD, zbdFD] in
            _ = Glibc.close(dataFD)
            Self.closeManagement(zbdFD)
        }
    }

    deinit { close() }

    // MARK: detection and opening

    /// True when `path` is a block device whose queue is zoned (host-managed or host-aware).
    public static func isZonedBlockDevice(path: String) -> Bool {
        guard case .found(let sys) = SysBlockDevice.lookUp(path: path), let model = sys.zonedModel else {
            return false
        }
        return model != "none"
    }

    /// Opens a zoned block device. `exclusive` claims it (O_EXCL) so it cannot be mounted or
    /// claimed by another program while we use it.
    public static func open(path: String, exclusive: Bool = true,
                            checks: Checks = .contract) throws(DeviceError) -> KernelZonedDevice {
        let sys = try probe(path)
        let model = sys.zonedModel ?? "none"
        var info = zbd_info()
        let zbdFD = openManagement(path, &info)
        guard zbdFD >= 0 else {
            throw DeviceError(errno: -zbdFD, .open, "zbd_open(\(path)) failed")
        }
        var flags = O_RDWR | O_CLOEXEC | __O_DIRECT
        if exclusive { flags |= O_EXCL }
        let dataFD = Glibc.open(path, flags)
        guard dataFD >= 0 else {
            let e = currentErrno()
            closeManagement(zbdFD)
            throw DeviceError(errno: e, .open, e == EBUSY
                ? "\(path) is in use (mounted or claimed by another program); unmount it first"
                : "open(\(path), O_RDWR|O_DIRECT\(exclusive ? "|O_EXCL" : "")) failed")
        }
        do throws(DeviceError) {
            let (geometry, zones) = try readGeometry(zbdFD: zbdFD, info: info, sys: sys, path: path)
            let ring = try URing(entries: ringEntries)
            return KernelZonedDevice(path: path, sys: sys, model: model, zbdFD: zbdFD, dataFD: dataFD,
                                     geometry: geometry, zones: zones, checks: checks, firstRing: ring)
        } catch {
            _ = Glibc.close(dataFD)
            closeManagement(zbdFD)
            throw error
        }
    }

    /// The sysfs view of `path`, or the error that says why it is not a zoned block device.
    private static func probe(_ path: String) throws(DeviceError) -> SysBlockDevice {
        switch SysBlockDevice.lookUp(path: path) {
        case .statFailed(let e):
            throw DeviceError(errno: e, .open, "cannot stat \(path)")
        case .notABlockDevice:
            throw .invalid(.open, "\(path) is not a block device; use --backend emulated for an image file")
        case .found(let sys):
            guard let model = sys.zonedModel, model != "none" else {
                throw .invalid(.open, "\(path) (\(sys.kernelName)) is not a zoned block device "
                               + "(queue/zoned is \(sys.zonedModel ?? "missing")); use --backend conventional")
            }
            return sys
        }
    }

    // libzbd's open/close edit a process-wide table; serialize them.
    private static let libzbdTable = Lock()

    /// zbd_open, silencing libzbd's own stderr messages (we report through DeviceError).
    /// Returns the descriptor or -errno.
    private static func openManagement(_ path: String, _ info: inout zbd_info) -> Int32 {
        libzbdTable.withLock {
            zbd_set_log_level(ZBD_LOG_NONE)
            let fd = zbd_open(path, O_RDWR | O_CLOEXEC, &info)
            return fd >= 0 ? fd : -(currentErrno() != 0 ? currentErrno() : EIO)
        }
    }

    private static func closeManagement(_ fd: Int32) {
        libzbdTable.withLock { zbd_close(fd) }
    }

    // MARK: geometry

    /// Geometry from zbd_info, the zone report (conventional zones, zone capacity) and sysfs
    /// (max IO size, NVMe ZNS or ZBC), validated.
    private static func readGeometry(zbdFD: Int32, info: zbd_info, sys: SysBlockDevice,
                                     path: String) throws(DeviceError) -> (DeviceGeometry, [Zone]) {
        let zoneSize = ByteCount(UInt64(info.zone_size))
        let count = Int(info.nr_zones)
        guard zoneSize.bytes > 0, count > 0 else {
            throw .invalid(.open, "\(path) reports \(count) zones of \(zoneSize.bytes) B")
        }
        guard UInt64(info.nr_sectors) * 512 == zoneSize.bytes * UInt64(count) else {
            throw .invalid(.open, "\(path) has a smaller last zone (\(UInt64(info.nr_sectors) * 512) B "
                           + "is not \(count) × \(zoneSize)); such devices are not supported yet")
        }
        let zones = try reportRaw(zbdFD: zbdFD, from: ZoneID(0), count: count, zoneSize: zoneSize)
        let conventional = zones.prefix { $0.type == .conventional }.count
        if zones.dropFirst(conventional).contains(where: { $0.type == .conventional }) {
            throw .invalid(.open, "\(path) has conventional zones after sequential ones; "
                           + "only leading conventional zones are supported")
        }
        let capacity = zones.first { $0.type.isSequential }?.capacity ?? zoneSize
        let lbs = ByteCount(UInt64(info.lblock_size))
        var maxIO = sys.maxIOBytes ?? ByteCount.kib(128).bytes
        maxIO -= maxIO % max(lbs.bytes, 1)
        let g = DeviceGeometry(zoneCount: count, zoneSize: zoneSize, zoneCapacity: capacity,
                               logicalBlockSize: lbs,
                               maxOpenZones: zoneLimit(info.max_nr_open_zones),
                               maxActiveZones: zoneLimit(info.max_nr_active_zones),
                               maxWriteBytes: ByteCount(maxIO), maxAppendBytes: .zero,
                               conventionalZoneCount: conventional, commandSet: sys.zoneCommandSet)
        if let problem = g.problem() {
            throw .invalid(.open, "\(path): \(problem)")
        }
        guard zones.count == count else {
            throw .io(.open, "\(path): the zone report gave \(zones.count) of \(count) zones")
        }
        return (g, zones)
    }

    /// libzbd gives 0 for "no limit" and UINT_MAX for "unknown" (no sysfs attribute); we can
    /// only treat unknown as no limit, and the device will still refuse with its own errno.
    private static func zoneLimit(_ raw: UInt32) -> Int { raw == UInt32.max ? 0 : Int(raw) }

    /// Zones `from ..< from + count` (or the first `count` matching `filter` among `span`
    /// zones) straight from libzbd (no lease: used by open and by
    /// `reportZones` under its lease).
    static func reportRaw(zbdFD: Int32, from first: ZoneID, count: Int, zoneSize: ByteCount,
                          only filter: zbd_report_option = ZBD_RO_ALL,
                          within span: Int? = nil) throws(DeviceError) -> [Zone] {
        guard count > 0 else { return [] }
        var raw = [zbd_zone](repeating: zbd_zone(), count: count)
        var got = UInt32(count)
        let start = off_t(UInt64(first.index) * zoneSize.bytes)
        let length = off_t(UInt64(span ?? count) * zoneSize.bytes)
        let rc = raw.withUnsafeMutableBufferPointer {
            zbd_report_zones(zbdFD, start, length, filter, $0.baseAddress, &got)
        }
        guard rc == 0 else {
            throw DeviceError(errno: currentErrno(), .report, "report of \(count) zones from \(first)")
        }
        var zones: [Zone] = []
        zones.reserveCapacity(Int(got))
        for z in raw.prefix(Int(got)) { zones.append(try ZoneMapping.zone(z, zoneSize: zoneSize)) }
        return zones
    }

    // MARK: leases

    /// Runs `body` with the device open, holding a ring when `ring` is true. The ring goes back
    /// to the pool afterwards unless `body` reports it broken.
    func withLease<R>(_ op: DeviceOperation, ring wantRing: Bool,
                      _ body: (URing?) throws(DeviceError) -> (R, ringBroken: Bool)) throws(DeviceError) -> R {
        try leases.withLease(op, path: path, resource: wantRing,
                             make: { () throws(DeviceError) in try URing(entries: Self.ringEntries) }) {
            ring throws(DeviceError) -> (R, broken: Bool) in
            let (value, ringBroken) = try body(ring)
            return (value, ringBroken)
        }
    }

    /// Idempotent; the descriptors close when the last lease ends (see the invariants).
    public func close() { leases.close() }
}
