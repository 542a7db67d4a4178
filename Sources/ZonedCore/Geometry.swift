// A zoned device's shape and limits.
//
// Invariants (checked by `validate()`, which every backend calls before handing geometry out):
// - zoneSize is a power of two and a multiple of logicalBlockSize; zoneCapacity is a multiple of
//   logicalBlockSize, > 0 and <= zoneSize.
// - conventionalZoneCount <= zoneCount; conventional zones come first (as on SMR and null_blk).
// - maxOpenZones <= maxActiveZones when both are set (0 means "no limit").
// - maxWriteBytes and maxAppendBytes (0 = no zone append) are logical-block multiples.

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

    public init(zoneCount: Int, zoneSize: ByteCount, zoneCapacity: ByteCount? = nil,
                logicalBlockSize: ByteCount = ByteCount(4096), maxOpenZones: Int = 0, maxActiveZones: Int = 0,
                maxWriteBytes: ByteCount = .mib(1), maxAppendBytes: ByteCount = .zero,
                conventionalZoneCount: Int = 0) {
        self.zoneCount = zoneCount
        self.zoneSize = zoneSize
        self.zoneCapacity = zoneCapacity ?? zoneSize
        self.logicalBlockSize = logicalBlockSize
        self.maxOpenZones = maxOpenZones
        self.maxActiveZones = maxActiveZones
        self.maxWriteBytes = maxWriteBytes
        self.maxAppendBytes = maxAppendBytes
        self.conventionalZoneCount = conventionalZoneCount
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
