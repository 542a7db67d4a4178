// A zoned device's shape and limits.
//
// Invariants (checked by `validate()`, which every backend calls before handing geometry out):
// - zoneSize is a power of two and a multiple of logicalBlockSize; zoneCapacity is a multiple of
//   logicalBlockSize, > 0 and <= zoneSize.
// - conventionalZoneCount <= zoneCount; conventional zones come first (as on SMR and null_blk).
// - maxOpenZones <= maxActiveZones when both are set (0 means "no limit").
// - maxWriteBytes and maxAppendBytes (0 = no zone append) are logical-block multiples.
// - commandSet names the standard whose zone state machine the device follows where ZBC and
//   NVMe ZNS differ; it does not change the shape, only which answers the contract accepts.

/// The standard a device's zones follow, for the few transitions where ZBC and NVMe ZNS differ.
public enum ZoneCommandSet: String, Sendable, Hashable, CaseIterable {
    /// SCSI ZBC / ATA ZAC (host-managed SMR), and what Linux null_blk and the emulated device do:
    /// closing an open zone whose write pointer is still at the zone start makes it empty, so it
    /// gives back its open and its active resource.
    case zbc
    /// NVMe Zoned Namespaces: Close Zone takes an open zone to closed even when nothing was
    /// written, so it keeps its active resource until it is reset or finished.
    case zns

    /// The condition a close gives an open zone with nothing written (only an explicit open
    /// leaves a zone open with its write pointer at the start).
    public var conditionAfterClosingUnwrittenZone: ZoneCondition { self == .zbc ? .empty : .closed }
}

public struct DeviceGeometry: Hashable, Sendable {
    public var zoneCount: Int
    public var zoneSize: ByteCount
    /// Writable bytes per sequential zone (NVMe ZNS zone capacity); zoneSize when the device has none.
    public var zoneCapacity: ByteCount
    public var logicalBlockSize: ByteCount
    /// 0 = no limit.
    public var maxOpenZones: Int
    /// 0 = no limit.
    public var maxActiveZones: Int
    /// Largest single write or read the device takes in one IO.
    public var maxWriteBytes: ByteCount
    /// Largest zone append; .zero = the device has no zone append.
    public var maxAppendBytes: ByteCount
    /// Leading zones that take random writes.
    public var conventionalZoneCount: Int
    /// Whose zone state machine the device follows where ZBC and ZNS differ.
    public var commandSet: ZoneCommandSet

    public init(zoneCount: Int, zoneSize: ByteCount, zoneCapacity: ByteCount? = nil,
                logicalBlockSize: ByteCount = ByteCount(4096), maxOpenZones: Int = 0, maxActiveZones: Int = 0,
                maxWriteBytes: ByteCount = .mib(1), maxAppendBytes: ByteCount = .zero,
                conventionalZoneCount: Int = 0, commandSet: ZoneCommandSet = .zbc) {
        self.zoneCount = zoneCount
        self.zoneSize = zoneSize
        self.zoneCapacity = zoneCapacity ?? zoneSize
        self.logicalBlockSize = logicalBlockSize
        self.maxOpenZones = maxOpenZones
        self.maxActiveZones = maxActiveZones
        self.maxWriteBytes = maxWriteBytes
        self.maxAppendBytes = maxAppendBytes
        self.conventionalZoneCount = conventionalZoneCount
        self.commandSet = commandSet
    }

    public var totalBytes: ByteCount { zoneSize * UInt64(zoneCount) }
    public var sequentialZoneCount: Int { zoneCount - conventionalZoneCount }
    public var supportsZoneAppend: Bool { maxAppendBytes.bytes > 0 }

    public func zoneStart(_ id: ZoneID) -> DeviceOffset { DeviceOffset(UInt64(id.index) * zoneSize.bytes) }
    /// The zone holding `offset`, or nil past the end of the device.
    public func zone(containing offset: DeviceOffset) -> ZoneID? {
        let i = offset.bytes / zoneSize.bytes
        return i < UInt64(zoneCount) ? ZoneID(UInt32(i)) : nil
    }
    public func isConventional(_ id: ZoneID) -> Bool { id.int < conventionalZoneCount }
    public func contains(_ id: ZoneID) -> Bool { id.int < zoneCount }

    /// Why this geometry cannot describe a device, or nil when it can. Messages name the fix.
    public func problem() -> String? {
        let bs = logicalBlockSize
        if !bs.isPowerOfTwo || bs.bytes < 512 || bs.bytes > 65536 {
            return "block size \(bs.bytes) is not a power of two between 512 and 65536; use 512 or 4096"
        }
        if zoneCount < 1 { return "the device has no zones; give a size of at least one zone" }
        if !zoneSize.isPowerOfTwo { return "zone size \(zoneSize.bytes) B is not a power of two; use e.g. 64M or 256M" }
        if !zoneSize.isMultiple(of: bs) || zoneSize < bs {
            return "zone size \(zoneSize) is not a multiple of the \(bs.bytes)-byte block size"
        }
        if zoneCapacity.bytes == 0 || zoneCapacity > zoneSize {
            return "zone capacity \(zoneCapacity) must be above 0 and at most the zone size \(zoneSize)"
        }
        if !zoneCapacity.isMultiple(of: bs) {
            return "zone capacity \(zoneCapacity.bytes) B is not a multiple of the \(bs.bytes)-byte block size"
        }
        if conventionalZoneCount < 0 || conventionalZoneCount > zoneCount {
            return "\(conventionalZoneCount) conventional zones do not fit in \(zoneCount) zones"
        }
        if maxOpenZones < 0 || maxActiveZones < 0 { return "zone limits cannot be negative" }
        if maxOpenZones > 0, maxActiveZones > 0, maxOpenZones > maxActiveZones {
            return "max open zones (\(maxOpenZones)) cannot exceed max active zones (\(maxActiveZones))"
        }
        if maxWriteBytes < bs || !maxWriteBytes.isMultiple(of: bs) {
            return "max write size \(maxWriteBytes.bytes) B must be a positive multiple of the block size"
        }
        if maxAppendBytes.bytes > 0, !maxAppendBytes.isMultiple(of: bs) {
            return "max append size \(maxAppendBytes.bytes) B must be a multiple of the block size"
        }
        return nil
    }
}
