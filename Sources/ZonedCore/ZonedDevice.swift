// The device contract every backend implements and every layer above programs against.
//
// Invariants every conforming backend keeps (the conformance suite checks each one):
// - Offsets and lengths of reads and writes are multiples of `geometry.logicalBlockSize`, and one
//   IO stays inside one zone; anything else fails with EINVAL before touching the media.
// - A write to a sequential zone lands exactly at its write pointer or fails with EIO; it never
//   goes past the zone's capacity. A write to an empty or closed zone opens it implicitly; when that
//   would exceed max open zones the device first closes an implicitly open zone, and fails with
//   ETOOMANYREFS only if every open zone is explicitly open. Activating a zone past max active
//   zones fails with EOVERFLOW. A write that reaches capacity makes the zone full (no longer
//   open nor active).
// - Closing an open zone makes it closed and keeps it active, except that on a ZBC device
//   (`geometry.commandSet == .zbc`) a zone with nothing written becomes empty instead. On NVMe
//   ZNS an explicitly opened zone that is closed unwritten holds an active resource until reset.
// - A write is at most `geometry.maxWriteBytes`; a zone append at most `geometry.maxAppendBytes`,
//   and only when that is non-zero (EOPNOTSUPP otherwise).
// - Zone management (reset, open, close, finish) on a conventional zone fails with EINVAL.
// - Reads of a sequential zone past its write pointer return zeros; reads of an offline zone fail.
// - After `flush()` returns, everything written before it is durable.
// - All methods are safe to call from several threads; IOs to one zone are applied in the order
//   the calls return, and `submit` applies a batch's writes to one zone in batch order.

/// Which backend serves a device.
public enum DeviceKind: String, Sendable, CaseIterable, Codable {
    /// A regular file holding an emulated zoned device (header + zone table + data).
    case emulated
    /// A regular file or non-zoned block device presented as conventional zones.
    case conventional
    /// A Linux zoned block device (null_blk zoned, host-managed SMR, a ZNS namespace's block device).
    case kernel
    /// An NVMe ZNS namespace through io_uring passthrough.
    case nvme
}

/// One IO of a batch handed to `ZonedDevice.submit`. The buffers belong to the caller and must
/// stay valid until `submit` returns.
public enum DeviceIO: @unchecked Sendable {
    case write(UnsafeRawBufferPointer, at: DeviceOffset)
    case append(UnsafeRawBufferPointer, zone: ZoneID)
    case read(UnsafeMutableRawBufferPointer, at: DeviceOffset)

    public var byteCount: ByteCount {
        switch self {
        case .write(let b, _), .append(let b, _): return ByteCount(b.count)
        case .read(let b, _): return ByteCount(b.count)
        }
    }
}

/// The outcome of one IO of a batch. `landedAt` is where a write or append put its data (for a
/// zone append, where the device chose) or where a read read from.
public struct IOCompletion: Sendable {
    /// Position of the IO in the submitted batch.
    public var index: Int
    public var result: Result<DeviceOffset, DeviceError>

    public init(index: Int, result: Result<DeviceOffset, DeviceError>) {
        self.index = index
        self.result = result
    }
}

public protocol ZonedDevice: AnyObject, Sendable {
    var geometry: DeviceGeometry { get }
    var kind: DeviceKind { get }
    /// The path the device was opened from, for messages.
    var path: String { get }

    /// Zones `first ..< first + count` (clamped to the device), in order.
    func reportZones(from first: ZoneID, count: Int) throws(DeviceError) -> [Zone]
    func reset(_ zone: ZoneID) throws(DeviceError)
    func openZone(_ zone: ZoneID) throws(DeviceError)
    func closeZone(_ zone: ZoneID) throws(DeviceError)
    func finish(_ zone: ZoneID) throws(DeviceError)

    /// Writes `data` at `offset`: a sequential zone's write pointer, or anywhere in a conventional zone.
    func write(_ data: UnsafeRawBufferPointer, at offset: DeviceOffset) throws(DeviceError)
    /// Zone append: the device writes `data` at the zone's write pointer and says where.
    func append(_ data: UnsafeRawBufferPointer, to zone: ZoneID) throws(DeviceError) -> DeviceOffset
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: DeviceOffset) throws(DeviceError)
    func flush() throws(DeviceError)

    /// Runs a batch of IOs; completions come back in the order the device completed them, which
    /// for zone appends need not be the batch order. Backends with a queue override this to keep
    /// several IOs in flight; the default runs them one by one.
    func submit(_ batch: [DeviceIO]) -> [IOCompletion]

    /// Releases the device. Later calls fail.
    func close()
}

extension ZonedDevice {
    public func submit(_ batch: [DeviceIO]) -> [IOCompletion] {
        batch.enumerated().map { i, io in IOCompletion(index: i, result: perform(io)) }
    }

    /// Runs one `DeviceIO` through the synchronous calls.
    public func perform(_ io: DeviceIO) -> Result<DeviceOffset, DeviceError> {
        do throws(DeviceError) {
            switch io {
            case .write(let b, let at):
                try write(b, at: at)
                return .success(at)
            case .append(let b, let zone):
                return .success(try append(b, to: zone))
            case .read(let b, let at):
                try read(into: b, at: at)
                return .success(at)
            }
        } catch {
            return .failure(error)
        }
    }

    /// Every zone of the device.
    public func reportAllZones() throws(DeviceError) -> [Zone] {
        try reportZones(from: ZoneID(0), count: geometry.zoneCount)
    }

    public func zone(_ id: ZoneID) throws(DeviceError) -> Zone {
        let zones = try reportZones(from: id, count: 1)
        guard let z = zones.first else {
            throw .invalid(.report, "\(id) is past the last zone (\(geometry.zoneCount) zones)")
        }
        return z
    }

    /// Writes a whole `AlignedBuffer`.
    public func write(_ buffer: AlignedBuffer, at offset: DeviceOffset) throws(DeviceError) {
        try write(buffer.readOnly, at: offset)
    }

    public func read(into buffer: AlignedBuffer, at offset: DeviceOffset) throws(DeviceError) {
        try read(into: buffer.mutable, at: offset)
    }
}

/// Counts of zones by condition and the open/active usage against the limits, for reports.
public struct ZoneSummary: Sendable, Equatable {
    public var byCondition: [ZoneCondition: Int]
    public var open: Int
    public var active: Int
    public var maxOpen: Int
    public var maxActive: Int

    public init(zones: [Zone], geometry: DeviceGeometry) {
        var counts: [ZoneCondition: Int] = [:]
        for z in zones { counts[z.condition, default: 0] += 1 }
        byCondition = counts
        open = zones.filter { $0.condition.isOpen }.count
        active = zones.filter { $0.condition.isActive }.count
        maxOpen = geometry.maxOpenZones
        maxActive = geometry.maxActiveZones
    }
}
