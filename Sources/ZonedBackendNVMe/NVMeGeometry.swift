// A ZNS namespace's DeviceGeometry from its identify data, the first zone's capacity and the
// block queue's limits. Pure, so every rule is tested on the host.
//
// Invariants:
// - Zone size = ZSZE × block size; zone count = NSZE / ZSZE, and a namespace whose size is not a
//   whole number of zones is refused (a smaller last zone is not supported, as in the kernel
//   backend). Every multiplication that could overflow on bad identify data is checked.
// - MDTS and ZASL count in units of the controller's minimum memory page size (CAP.MPSMIN), a
//   register user space cannot read; we take 4 KiB, as Linux does (it refuses controllers whose
//   minimum page is larger, and every controller we know of has 4 KiB).
// - maxWriteBytes is the most one passthrough command may carry: MDTS, the queue's
//   max_hw_sectors_kb, and (max_segments - 1) pages, because a buffer that is not page-aligned
//   spans one page more than its length and each page may be its own segment (the kernel refuses a
//   command with more segments than the queue takes). Without sysfs, a queue of 127 segments
//   (Linux's NVMe PCI limit) is assumed. At most 65536 blocks (the command's 16-bit block count).
//   Rounded down to whole blocks.
// - maxAppendBytes is ZASL (MDTS when ZASL is 0), never more than maxWriteBytes, in whole blocks.
// - No conventional zones (ZNS has none); the command set is `.zns`.

import ZonedCore

public struct NVMeIdentity: Sendable, Equatable {
    public var namespace: NVMeNamespaceIdentity
    public var zoned: NVMeZonedNamespaceIdentity
    public var controller: NVMeControllerIdentity
    public var zonedController: NVMeZonedControllerIdentity

    public init(namespace: NVMeNamespaceIdentity, zoned: NVMeZonedNamespaceIdentity,
                controller: NVMeControllerIdentity, zonedController: NVMeZonedControllerIdentity) {
        self.namespace = namespace
        self.zoned = zoned
        self.controller = controller
        self.zonedController = zonedController
    }
}

public enum NVMeGeometry {
    /// The controller memory page size MDTS and ZASL count in (see the invariants).
    public static let pageSize: UInt64 = 4096
    /// Segments assumed when sysfs cannot say (Linux 6.1's NVMe PCI driver: NVME_MAX_SEGS).
    public static let assumedMaxSegments = 127

    /// Zone size in bytes, zone count, or why the namespace cannot be used.
    public static func zoneLayout(_ id: NVMeIdentity) -> Result<(zoneSize: ByteCount, zoneCount: Int), DeviceError> {
        let bs = id.namespace.blockSize.bytes
        let zsze = id.zoned.zoneSizeBlocks
        let nsze = id.namespace.sizeBlocks
        guard zsze > 0, nsze > 0 else {
            return .failure(.invalid(.open, "the namespace reports \(nsze) blocks in zones of \(zsze) blocks"))
        }
        let (zoneBytes, overflow) = zsze.multipliedReportingOverflow(by: bs)
        guard !overflow, zoneBytes <= UInt64(Int64.max) else {
            return .failure(.invalid(.open, "zones of \(zsze) blocks of \(bs) B do not fit in 64 bits"))
        }
        guard nsze % zsze == 0 else {
            return .failure(.invalid(.open, "the namespace size (\(nsze) blocks) is not a whole number of "
                                     + "\(zsze)-block zones; a smaller last zone is not supported yet"))
        }
        let count = nsze / zsze
        guard count <= UInt64(UInt32.max) else {
            return .failure(.invalid(.open, "the namespace has \(count) zones, more than zbdfs can number"))
        }
        return .success((ByteCount(zoneBytes), Int(count)))
    }

    /// The largest data transfer of one command, in whole blocks.
    public static func maxTransferBytes(_ id: NVMeIdentity, _ limits: NVMeQueueLimits) -> ByteCount {
        var limit = UInt64(1) << 30
        let mdts = id.controller.mdts
        if mdts > 0 { limit = min(limit, mdts >= 30 ? limit : pageSize << UInt64(mdts)) }
        if let hw = limits.maxHardwareBytes, hw > 0 { limit = min(limit, hw) }
        let segments = limits.maxSegments ?? assumedMaxSegments
        if segments >= 2 { limit = min(limit, UInt64(segments - 1) * pageSize) }
        let bs = id.namespace.blockSize.bytes
        // NLB is a 16-bit, 0-based block count: no command moves more than 65536 blocks.
        limit = min(limit, UInt64(NVMeIOCommand.maxBlocks) * bs)
        return ByteCount(max(bs, limit - limit % bs))
    }

    /// The largest zone append, in whole blocks, never above `maxTransfer`.
    public static func maxAppendBytes(_ id: NVMeIdentity, maxTransfer: ByteCount) -> ByteCount {
        let zasl = id.zonedController.zasl
        guard zasl > 0 else { return maxTransfer }
        let zaslBytes = zasl >= 30 ? UInt64(1) << 30 : pageSize << UInt64(zasl)
        let bs = id.namespace.blockSize.bytes
        let limit = min(zaslBytes, maxTransfer.bytes)
        return ByteCount(max(bs, limit - limit % bs))
    }

    /// The whole geometry, validated. `capacity`: the first zone's capacity from the zone report.
    public static func geometry(_ id: NVMeIdentity, limits: NVMeQueueLimits,
                                capacity: ByteCount) -> Result<DeviceGeometry, DeviceError> {
        if id.namespace.metadataBytes > 0 {
            return .failure(.invalid(.open, "the namespace's LBA format \(id.namespace.formatIndex) carries "
                                     + "\(id.namespace.metadataBytes) bytes of metadata per block; zbdfs needs a "
                                     + "format without metadata (nvme format --lbaf=N)"))
        }
        let layout: (zoneSize: ByteCount, zoneCount: Int)
        switch zoneLayout(id) {
        case .success(let l): layout = l
        case .failure(let e): return .failure(e)
        }
        let maxIO = maxTransferBytes(id, limits)
        var maxOpen = id.zoned.maxOpenZones, maxActive = id.zoned.maxActiveZones
        // ZNS allows MOR > MAR on paper; opening is bounded by activation anyway.
        if maxOpen > 0, maxActive > 0, maxOpen > maxActive { maxOpen = maxActive }
        if maxActive > layout.zoneCount { maxActive = 0 }
        if maxOpen > layout.zoneCount { maxOpen = 0 }
        let g = DeviceGeometry(zoneCount: layout.zoneCount, zoneSize: layout.zoneSize, zoneCapacity: capacity,
                               logicalBlockSize: id.namespace.blockSize, maxOpenZones: maxOpen,
                               maxActiveZones: maxActive, maxWriteBytes: maxIO,
                               maxAppendBytes: maxAppendBytes(id, maxTransfer: maxIO),
                               conventionalZoneCount: 0, commandSet: .zns)
        if let problem = g.problem() { return .failure(.invalid(.open, problem)) }
        return .success(g)
    }
}
