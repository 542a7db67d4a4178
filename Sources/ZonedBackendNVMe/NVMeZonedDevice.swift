// NVMeZonedDevice: an NVMe ZNS namespace behind the ZonedDevice contract, driven from user space
// through its generic char device (/dev/ngXnY): identify and zone management through libnvme,
// reads, writes and zone appends as io_uring passthrough commands.
//
// Invariants:
// - Geometry is read once at open (identify + one zone report) and never changes: a namespace's
//   format cannot change while it is open without the kernel dropping the device.
// - An exclusive open claims the namespace twice: flock(LOCK_EX) on the char device (another
//   zbdfs on /dev/ngXnY gets EBUSY; a refusal is retried for half a second, because a child
//   another thread is spawning holds our descriptors until it execs), and an O_EXCL open of the
//   sibling block device when there is one (so the namespace cannot be mounted, or driven by the
//   kernel backend, while we write to it behind the block layer's back). Both go at `close()`.
// - Data IO uses a small pool of io_uring queues: a caller leases one for the length of its call,
//   so concurrent callers never share a queue and never wait on each other's IO; at most
//   `idleQueueLimit` idle queues are kept (the kernel backend's shape, for the same reason, and
//   the same code: ZonedCore's LeasePool).
// - `close()` is idempotent; the descriptors are closed when the last lease ends, so a command in
//   flight on another thread finishes on a valid descriptor; calls after close fail with EBADF.
// - `wpFloors` (ZonedCore's WritePointerFloors) holds, per zone, an offset at or below the zone's
//   write pointer whenever no reset of it is in flight: from the report at open, raised by every
//   write or append that completes through this object and by reports taken for reads, dropped to
//   the zone start around a reset (bumping the zone's reset count, so an IO or report that raced
//   the reset cannot raise it again). Reads ending at or below it need no zone report (see
//   NVMeZonedDevice+IO.swift).
// - Every failure is a DeviceError: errno through DeviceError(errno:), NVMe status through
//   NVMeStatus.error (NVMeStatus.swift), nothing else.

#if canImport(Glibc)
import Glibc
#endif
import ZonedCore

public final class NVMeZonedDevice: ZonedDevice {
    public let geometry: DeviceGeometry
    public var kind: DeviceKind { .nvme }
    /// The path the device was opened from (a char device, or the block device it was found from).
    public let path: String
    /// The generic char device commands go to: "/dev/ng0n1".
    public let charDevicePath: String
    /// The namespace identifier (NSID) of the namespace.
    public let namespaceID: UInt32
    /// What the namespace said about itself at open.
    public let identity: NVMeIdentity

    let controller: NVMeController
    /// The O_EXCL descriptor of the sibling block device, held while open (-1: none).
    private let blockClaimFD: Int32
    /// The namespace's block device this open claimed with O_EXCL, if any ("/dev/nvme0n1").
    public let claimedBlockDevice: String?
    static let queueEntries = 64
    static let idleQueueLimit = 4

    /// The queue leases (LeasePool.swift); closing the pool closes the descriptors.
    private let leases: LeasePool<any NVMeQueue>
    /// Per zone: an absolute offset known to be at or below the write pointer.
    let wpFloors: WritePointerFloors

    init(path: String, charDevicePath: String, controller: NVMeController, namespaceID: UInt32,
         identity: NVMeIdentity, geometry: DeviceGeometry, zones: [Zone], blockClaimFD: Int32,
         claimedBlockDevice: String?, firstQueue: NVMeQueue) {
        self.path = path
        self.charDevicePath = charDevicePath
        self.controller = controller
        self.namespaceID = namespaceID
        self.identity = identity
        self.geometry = geometry
        self.blockClaimFD = blockClaimFD
        self.claimedBlockDevice = claimedBlockDevice
        wpFloors = WritePointerFloors(zones)
        leases = LeasePool(first: firstQueue, idleLimit: Self.idleQueueLimit) { [controller, blockClaimFD] in
            controller.close()
            if blockClaimFD >= 0 { _ = Glibc.close(blockClaimFD) }
        }
    }

    deinit { close() }

    // MARK: detection and opening

    /// True when `path` is an NVMe generic char device (/dev/ngXnY). Whether its namespace is
    /// zoned is only known once it is opened.
    public static func isPassthroughDevice(path: String) -> Bool { NVMePaths.isGenericCharDevice(path) }

    /// The generic char device for `path`: itself, or the ngXnY of an nvmeXnY block device.
    public static func passthroughPath(for path: String) -> String? { NVMePaths.genericCharDevice(for: path) }

    /// Opens the ZNS namespace at `path` (its char device /dev/ngXnY, or its block device
    /// /dev/nvmeXnY, whose char device is then used). `exclusive` claims it (see the invariants).
    public static func open(path: String, exclusive: Bool = true) throws(DeviceError) -> NVMeZonedDevice {
        guard let charPath = NVMePaths.genericCharDevice(for: path), let node = NVMePaths.node(charPath) else {
            throw .invalid(.open, "\(path) is not an NVMe namespace (neither /dev/ngXnY nor an /dev/nvmeXnY with "
                           + "its generic char device); use --backend kernel for other zoned block devices")
        }
        let fd = Glibc.open(charPath, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else {
            throw DeviceError(errno: currentErrno(), .open, "open(\(charPath), O_RDWR) failed")
        }
        let controller = NVMeCharDevice(fd: fd)
        var blockFD: Int32 = -1
        do throws(DeviceError) {
            let sibling = NVMePaths.blockSibling(of: node)
            if exclusive {
                try claim(fd: fd, charPath: charPath)
                blockFD = try claimBlockDevice(sibling)
            }
            return try make(path: path, charPath: charPath, controller: controller,
                            limits: NVMePaths.queueLimits(sibling), blockClaimFD: blockFD,
                            claimedBlockDevice: blockFD >= 0 ? sibling.map { "/dev/\($0.name)" } : nil)
        } catch {
            if blockFD >= 0 { _ = Glibc.close(blockFD) }
            controller.close()
            throw error
        }
    }

    /// Identifies the namespace behind `controller`, reads its zones and makes the device.
    static func make(path: String, charPath: String, controller: NVMeController, limits: NVMeQueueLimits,
                     blockClaimFD: Int32, claimedBlockDevice: String? = nil) throws(DeviceError) -> NVMeZonedDevice {
        let nsid = try controller.namespaceID().get()
        let identity = try identify(controller, nsid: nsid, path: charPath)
        let (zoneSize, zoneCount) = try NVMeGeometry.zoneLayout(identity).mapError { e in
            DeviceError(errno: e.errno, .open, "\(charPath): \(e.detail)")
        }.get()
        let provisional = DeviceGeometry(zoneCount: zoneCount, zoneSize: zoneSize,
                                         logicalBlockSize: identity.namespace.blockSize,
                                         maxWriteBytes: NVMeGeometry.maxTransferBytes(identity, limits))
        let zones = try reportRaw(controller, nsid: nsid, geometry: provisional,
                                  from: ZoneID(0), count: zoneCount, path: charPath)
        guard zones.count == zoneCount, let first = zones.first else {
            throw .io(.open, "\(charPath): the zone report gave \(zones.count) of \(zoneCount) zones")
        }
        let geometry = try NVMeGeometry.geometry(identity, limits: limits, capacity: first.capacity).mapError { e in
            DeviceError(errno: e.errno, .open, "\(charPath): \(e.detail)")
        }.get()
        let queue = try controller.makeQueue(entries: queueEntries)
        return NVMeZonedDevice(path: path, charDevicePath: charPath, controller: controller, namespaceID: nsid,
                               identity: identity, geometry: geometry, zones: zones, blockClaimFD: blockClaimFD,
                               claimedBlockDevice: claimedBlockDevice, firstQueue: queue)
    }

    /// The four identify structures, decoded.
    private static func identify(_ c: NVMeController, nsid: UInt32, path: String) throws(DeviceError) -> NVMeIdentity {
        let nsBytes = try identifyData(c, .namespace, nsid, path)
        let ns = try decoded(path) { () throws(DecodeError) in try NVMeNamespaceIdentity.decode(nsBytes) }
        let zonedBytes: [UInt8]
        do throws(DeviceError) {
            zonedBytes = try identifyData(c, .zonedNamespace, nsid, path)
        } catch {
            // A namespace of another command set has no ZNS identify data (Invalid Field).
            throw .invalid(.open, "\(path) (namespace \(nsid)) is not a zoned (ZNS) namespace: \(error.detail); "
                           + "use --backend conventional for a regular namespace")
        }
        let zoned = try decoded(path) { () throws(DecodeError) in
            try NVMeZonedNamespaceIdentity.decode(zonedBytes, formatIndex: ns.formatIndex)
        }
        let ctrlBytes = try identifyData(c, .controller, nsid, path)
        let ctrl = try decoded(path) { () throws(DecodeError) in try NVMeControllerIdentity.decode(ctrlBytes) }
        let zctrlBytes = try identifyData(c, .zonedController, nsid, path)
        let zctrl = try decoded(path) { () throws(DecodeError) in try NVMeZonedControllerIdentity.decode(zctrlBytes) }
        return NVMeIdentity(namespace: ns, zoned: zoned, controller: ctrl, zonedController: zctrl)
    }

    private static func identifyData(_ c: NVMeController, _ kind: NVMeIdentifyKind, _ nsid: UInt32,
                                     _ path: String) throws(DeviceError) -> [UInt8] {
        let buffer = AlignedBuffer(count: 4096)
        if let e = c.identify(kind, nsid: nsid, into: buffer.mutable).error(.open, "\(path): identify (\(kind))") {
            throw e
        }
        return buffer.bytes
    }

    /// Runs a decoder, turning its DecodeError into the device's error.
    static func decoded<T>(_ path: String, _ body: () throws(DecodeError) -> T) throws(DeviceError) -> T {
        do throws(DecodeError) { return try body() } catch {
            throw .io(.open, "\(path): the device's identify data does not decode: \(error)")
        }
    }

    // MARK: claims

    /// flock(LOCK_EX) on the char device, retried for `claimPatience` (see the invariants).
    private static func claim(fd: Int32, charPath: String) throws(DeviceError) {
        var deadline: UInt64?
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = currentErrno()
            if e == EINTR { continue }
            guard e == EWOULDBLOCK else { return }  // no flock support: nothing to claim with
            let now = SystemClock().nowNanoseconds
            if deadline == nil { deadline = now + claimPatience }
            if now >= deadline! {
                throw DeviceError(errno: EBUSY, .open, "\(charPath) is in use by another zbdfs (a mount or a command); "
                                  + "unmount it or wait for that command")
            }
            usleep(2_000)
        }
    }

    static let claimPatience: UInt64 = 500_000_000

    /// An O_EXCL open of the namespace's block device, or -1 when there is none.
    private static func claimBlockDevice(_ sibling: NVMeSysfsNode?) throws(DeviceError) -> Int32 {
        guard let sibling else { return -1 }
        let dev = "/dev/\(sibling.name)"
        let fd = Glibc.open(dev, O_RDONLY | O_EXCL | O_CLOEXEC)
        if fd >= 0 { return fd }
        let e = currentErrno()
        if e == EBUSY {
            throw DeviceError(errno: EBUSY, .open, "the namespace's block device \(dev) is in use (mounted, or "
                              + "claimed by another program or by zbdfs on \(dev)); unmount it first")
        }
        return -1  // no node in /dev (a container, a renamed node): nothing to claim
    }

    // MARK: leases

    /// Runs `body` with the device open, holding a queue when `queue` is true. The queue goes
    /// back to the pool afterwards unless `body` reports it broken.
    func withLease<R>(_ op: DeviceOperation, queue wantQueue: Bool,
                      _ body: (NVMeQueue?) throws(DeviceError) -> (R, queueBroken: Bool)) throws(DeviceError) -> R {
        try leases.withLease(op, path: path, resource: wantQueue,
                             make: { () throws(DeviceError) in try controller.makeQueue(entries: Self.queueEntries) }) {
            queue throws(DeviceError) -> (R, broken: Bool) in
            let (value, queueBroken) = try body(queue)
            return (value, queueBroken)
        }
    }

    /// Idempotent; the descriptors close when the last lease ends (see the invariants).
    public func close() { leases.close() }
}
