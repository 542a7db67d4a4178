// Format and mount.
//
// Mount, in order (the first four steps only read):
//   1. the newest valid superblock copy; its geometry must be this device's
//   2. replay the log from the superblock's log start (Replay.swift); damage refuses the mount
//   3. every extent must lie below its zone's write pointer and inside its capacity; one that does
//      not means the device lost data the log relies on: corruption, mount refuses
//   4. zone roles and live bytes from the replayed state: written-but-unrecorded space is garbage
//   5. (read-write) zones with no live data are reset, orphans (nlink 0) removed, and the log
//      starts afresh with a checkpoint in a new zone; the superblock then moves there and the old
//      log zones are reset. Every step before the superblock write leaves the durable state as it
//      was, so a mount that crashes midway and runs again ends the same.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ZonedAllocator
import ZonedCore
import ZonedEngine
import ZonedIndex

public struct FormatOptions: Sendable {
    public var label = ""
    /// 16 bytes; random when nil (tests pass one for determinism).
    public var uuid: [UInt8]?
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    /// Called with (zones reset so far, zones to reset) while formatting.
    public var progress: (@Sendable (Int, Int) -> Void)?
    public init(label: String = "", uuid: [UInt8]? = nil) {
        self.label = label
        self.uuid = uuid
    }
}

/// What `format` made.
public struct FormatReport: Sendable {
    public var superblock: Superblock
    public var geometry: DeviceGeometry
    /// Space for file data: every zone's capacity except the superblock zones and the zones kept
    /// for the metadata log and for reclaim.
    public var dataCapacity: ByteCount
    public var metadataZones: Int
    /// Zones that will hold file data (all but the superblock, metadata and reclaim-reserve zones).
    public var dataZones: Int
    /// Empty zones kept for reclaim to move live data into.
    public var reclaimReserveZones: Int
}

/// What a zbdfs file system needs from a device.
public enum FormatRequirements {
    public static let minZones = 8
    public static let minZoneCapacity = ByteCount.kib(64)
    /// Active zones: one for data, one for the metadata log, one for a superblock write.
    public static let minActiveZones = 3
    /// Empty zones data never takes (the metadata log rolls over into them).
    public static let reservedEmptyZones = 2
    /// Empty zones only reclaim takes (to move live data out of a victim zone).
    public static let reclaimReserveZones = 1

    /// Why `g` cannot hold a zbdfs file system, or nil.
    public static func problem(_ g: DeviceGeometry) -> String? {
        if g.zoneCount < minZones {
            return "the device has \(g.zoneCount) zones; zbdfs needs at least \(minZones) (2 superblock, 3 metadata, 1 reclaim reserve, the rest data): use a larger device or smaller zones"
        }
        if g.zoneCapacity < minZoneCapacity || g.zoneCapacity < g.logicalBlockSize * 16 {
            return "zone capacity \(g.zoneCapacity) is too small for the metadata log; zbdfs needs at least \(minZoneCapacity) and 16 blocks per zone"
        }
        if g.maxActiveZones > 0, g.maxActiveZones < minActiveZones {
            return "the device allows \(g.maxActiveZones) active zones; zbdfs needs at least \(minActiveZones) (data, metadata log, superblock update)"
        }
        if g.maxOpenZones > 0, g.maxOpenZones < minActiveZones {
            return "the device allows \(g.maxOpenZones) open zones; zbdfs needs at least \(minActiveZones) (data, metadata log, superblock update)"
        }
        return nil
    }
}

extension FileSystem {
    static func engineConfig(_ base: EngineConfig) -> EngineConfig {
        var c = base
        c.allocator.reservedEmptyZones = FormatRequirements.reservedEmptyZones
        c.allocator.reclaimReserveZones = FormatRequirements.reclaimReserveZones
        c.allocator.reservedActiveZones = max(c.allocator.reservedActiveZones, 2)
        return c
    }

    // MARK: Format

    /// Resets every zone and writes an empty file system. Checks for existing file systems are the
    /// caller's (`Signatures.detect`): format destroys whatever the device holds.
    @discardableResult
    public static func format(device: any ZonedDevice, options: FormatOptions = FormatOptions(),
                              clock: any EngineClock = SystemClock()) throws(DeviceError) -> FormatReport {
        let g = device.geometry
        if let p = FormatRequirements.problem(g) { throw DeviceError.invalid(.format, p) }
        guard options.label.utf8.count <= Superblock.maxLabelBytes else {
            throw DeviceError.invalid(.format, "the label is \(options.label.utf8.count) bytes; at most \(Superblock.maxLabelBytes)")
        }
        let uuid = options.uuid ?? (0..<16).map { _ in UInt8.random(in: 0...255) }
        guard uuid.count == 16 else { throw DeviceError.invalid(.format, "a uuid has 16 bytes") }
        // Wipe: reset sequential zones; zero the superblock slots of conventional ones.
        let sequential = (0..<g.zoneCount).filter { !g.isConventional(ZoneID($0)) }
        for (i, z) in sequential.enumerated() {
            let info = try device.zone(ZoneID(z))
            if info.condition != .empty, info.condition != .readOnly, info.condition != .offline { try device.reset(ZoneID(z)) }
            if i % 64 == 0 || i == sequential.count - 1 { options.progress?(i + 1, sequential.count) }
        }
        let sbZones = SuperblockIO.zones(for: g)
        for z in [sbZones.0, sbZones.1] where g.isConventional(z) {
            let zeros = AlignedBuffer(count: Superblock.copySize(block: g.logicalBlockSize.bytes))
            try device.write(zeros.readOnly, at: g.zoneStart(z))
        }
        let sb = Superblock(generation: 0, uuid: uuid, label: options.label, geometry: g, superblockZones: sbZones,
                            logStartZone: ZoneID(2), logStartSequence: 1,
                            createdNanoseconds: timestampClock(for: clock).nowNanoseconds)
        let engine = try Engine(device: device, config: engineConfig(EngineConfig()), clock: clock,
                                roles: [sbZones.0: .superblock, sbZones.1: .superblock])
        let journal = Journal(device: device, allocator: engine.allocator, superblock: sb, newestSlot: 1, nextSequence: 1)
        var ns = Namespace()
        let t = Timestamp(truncatingIfNeeded: timestampClock(for: clock).nowNanoseconds)
        let root = InodeAttributes(number: rootInode, kind: .directory, mode: 0o755, uid: options.uid, gid: options.gid, nlink: 2, time: t)
        do { try ns.apply(.inode(root)) } catch { throw DeviceError.corrupted(.format, error.what) }
        let index = try openIndex(engine: engine, device: device, manifest: IndexManifest(), options: MountOptions())
        let fs = FileSystem(device: device, engine: engine, journal: journal, namespace: ns, index: index, options: MountOptions(), clock: clock)
        try fs.journal.startFresh()
        try device.flush()
        let metadataZones = 1 + FormatRequirements.reservedEmptyZones
        let kept = metadataZones + FormatRequirements.reclaimReserveZones
        // Usable capacity of every zone but the superblock ones, less the zones kept back (counted
        // at the smallest zone capacity, so the figure never overstates).
        let usable = (2..<g.zoneCount).reduce(ByteCount.zero) { acc, i in
            acc + (g.isConventional(ZoneID(i)) ? g.zoneSize : g.zoneCapacity)
        }
        let keptBytes = min(g.zoneSize, g.zoneCapacity) * UInt64(kept)
        return FormatReport(superblock: fs.journal.superblock, geometry: g, dataCapacity: usable > keptBytes ? usable - keptBytes : .zero,
                            metadataZones: metadataZones, dataZones: max(0, g.zoneCount - 2 - kept),
                            reclaimReserveZones: FormatRequirements.reclaimReserveZones)
    }

    // MARK: Mount

    public static func mount(device raw: any ZonedDevice, options: MountOptions = MountOptions(),
                             clock: any EngineClock = SystemClock()) throws(DeviceError) -> FileSystem {
        // Every write of the mount goes through one tracker, so a commit flushes only when
        // something was written since the last flush (one flush per durability point).
        let device = raw as? FlushTrackingDevice ?? FlushTrackingDevice(raw)
        let g = device.geometry
        let found = try SuperblockIO.newest(device: device)
        guard let (sb, slot) = found.best else {
            if let v = SuperblockIO.otherVersion(found.copies) { throw DeviceError(errno: EINVAL, .mount, SuperblockIO.versionProblem(v)) }
            throw DeviceError(errno: EINVAL, .mount, "no zbdfs file system here: neither superblock zone holds a valid copy (zone 0: \(describe(found.copies[0])); zone 1: \(describe(found.copies[1]))); make one with `zbdfs format`, or run `zbdfs fsck` if it should be there")
        }
        if let m = sb.geometryMismatch(g) {
            throw DeviceError.invalid(.mount, "this zbdfs file system was made on another geometry: the device has \(m)")
        }
        let replay = try LogReplay.read(device: device, superblock: sb)
        if let d = replay.damage.first {
            throw DeviceError.corrupted(.mount, "the metadata log is damaged: \(d)\(replay.damage.count > 1 ? " (and \(replay.damage.count - 1) more)" : ""); run `zbdfs fsck` for the full list")
        }
        let zones = try device.reportAllZones()
        let usage = try ZoneUsage(checking: replay.state, zones: zones, geometry: g)
        var roles: [ZoneID: ZoneRole] = [sb.superblockZones.0: .superblock, sb.superblockZones.1: .superblock]
        for z in replay.chain { roles[z] = .metadata }
        let indexLive = try IndexZones.live(replay.state.manifest, zones: zones, geometry: g)
        for z in indexLive.keys where roles[z] == nil { roles[z] = .index }
        for z in usage.live.keys where roles[z] == nil { roles[z] = .data }

        let config = engineConfig(options.engine)
        let engine = try Engine(device: device, config: config, clock: clock, roles: roles)
        engine.allocator.errorSink = options.errorLog
        for (n, layout) in replay.state.layouts {
            let nocow = (replay.state.namespace.inodes[n]?.flags ?? 0) & InodeAttributes.nocowFlag != 0
            engine.openFile(n, layout: layout, nocow: nocow)
        }
        let journal = Journal(device: device, allocator: engine.allocator, superblock: sb, newestSlot: slot,
                              nextSequence: replay.nextSequence)
        journal.adopt(chain: replay.chain)
        let index = try openIndex(engine: engine, device: device, manifest: replay.state.manifest, options: options)
        index.restore(replay.state.checksumRuns)
        let fs = FileSystem(device: device, engine: engine, journal: journal, namespace: replay.state.namespace,
                            manifest: replay.state.manifest, index: index, options: options, clock: clock)
        var report = MountReport()
        report.superblockGeneration = sb.generation
        report.logZones = replay.chain.map(\.int)
        report.framesReplayed = replay.frames
        report.recordsReplayed = replay.records
        report.logEnd = replay.end
        report.indexTables = replay.state.manifest.tables.count
        report.checksumRunsReplayed = replay.state.checksumRuns.count
        // Accounts: live bytes per zone from the replayed extents; the rest below the pointer is garbage.
        let allocator = engine.allocator
        for z in zones {
            let role = roles[z.id] ?? .free
            switch role {
            case .superblock: continue
            case .metadata:
                let w = z.type.isSequential ? z.writePointer - z.start : g.zoneSize
                allocator.adopt(z.id, role: .metadata, live: w, written: w)
            case .index:
                // Below the pointer, what no listed table holds is a table never logged, or released.
                let w = z.type.isSequential ? z.writePointer - z.start : (indexLive[z.id]?.end ?? .zero)
                allocator.adopt(z.id, role: .index, live: indexLive[z.id]?.live ?? .zero, written: w)
                report.garbageBytes += allocator.account(z.id).garbage.bytes
            default:
                let live = usage.live[z.id] ?? .zero
                allocator.adopt(z.id, role: live.bytes > 0 ? .data : .free, live: live, written: usage.end[z.id].map { $0 - z.start } ?? .zero)
                report.garbageBytes += allocator.account(z.id).garbage.bytes
            }
        }
        fs.mountReport = report
        guard !options.readOnly else { return fs }

        // Read-write from here on: reset unused zones, drop orphans, restart the log.
        for z in zones where (roles[z.id] ?? .free) == .free && z.type.isSequential && z.writePointer > z.start
            && z.condition != .readOnly && z.condition != .offline {
            if try allocator.resetIfUnused(z.id) { fs.mountReport.zonesReset.append(z.id.int) }
        }
        for z in replay.chain { try allocator.finish(z) }
        let orphans = replay.state.namespace.inodes.values.filter { $0.nlink == 0 }.map(\.number).sorted()
        for n in orphans {
            try fs.log([.removeInode(n)])
            engine.removeFile(n)
        }
        fs.mountReport.orphansRemoved = orphans.count
        try journal.startFresh()
        if options.backgroundReclaim { fs.reclaimer.start(threshold: options.reclaimThreshold) }
        fs.flusher.start()
        return fs
    }

    /// The metadata index a manifest describes, over the index zones, as the engine's checksums.
    static func openIndex(engine: Engine, device: any ZonedDevice, manifest: IndexManifest,
                          options: MountOptions) throws(DeviceError) -> IndexChecksums {
        let store = ZoneTableStore(allocator: engine.allocator, device: device)
        let cache = BlockCache(capacity: Int(clamping: options.cacheSize.bytes))
        // A checkpoint carries the memtable, so it stays well inside one log zone.
        var config = options.index
        config.merge = IndexChecksums.chunkMerge
        config.memtableBytes = min(config.memtableBytes, Int(clamping: device.geometry.zoneCapacity.bytes / 8))
        let index: MetadataIndex
        do {
            index = try MetadataIndex(store: store, cache: cache, config: config,
                                      manifest: manifest.tables.keys.sorted().map { manifest.tables[$0]! }, nextTableID: manifest.nextTableID)
        } catch {
            throw DeviceError.corrupted(.mount, "the metadata index cannot be opened: \(error); run `zbdfs fsck`")
        }
        return IndexChecksums(index: index, block: device.geometry.logicalBlockSize)
    }

    static func describe(_ c: SuperblockIO.Copy) -> String {
        switch c {
        case .valid(let sb): return "generation \(sb.generation)"
        case .empty: return "empty"
        case .invalid(let why): return why
        case .otherVersion(let v): return "on-device format version \(v)"
        }
    }
}

/// Where the index's tables lie: per zone, the bytes of listed tables and the end of the last one.
enum IndexZones {
    static func live(_ m: IndexManifest, zones: [Zone], geometry g: DeviceGeometry) throws(DeviceError) -> [ZoneID: (live: ByteCount, end: ByteCount)] {
        var out: [ZoneID: (live: ByteCount, end: ByteCount)] = [:]
        for d in m.tables.values {
            if let p = problem(d, zones: zones, geometry: g) { throw DeviceError.corrupted(.mount, p + "; run `zbdfs fsck`") }
            let z = g.zone(containing: DeviceOffset(d.location.address))!
            let end = DeviceOffset(d.location.address) + ByteCount(d.location.length) - g.zoneStart(z)
            let old = out[z] ?? (.zero, .zero)
            out[z] = (old.live + ByteCount(d.location.length), max(old.end, end))
        }
        return out
    }

    /// Why table `d` cannot be trusted, or nil: it must lie in one zone, below its write pointer.
    static func problem(_ d: TableDescriptor, zones: [Zone], geometry g: DeviceGeometry) -> String? {
        let start = DeviceOffset(d.location.address), end = start + ByteCount(d.location.length)
        guard let z = g.zone(containing: start), z.int < zones.count, g.zone(containing: end - ByteCount(1)) == z else {
            return "index table \(d.id) (\(d.location.length) B at \(d.location.address)) does not lie in one zone of the device"
        }
        let zone = zones[z.int]
        if zone.type.isSequential, end > zone.writePointer, zone.condition != .full {
            return "index table \(d.id) lies past the write pointer of zone \(z.int) (\(zone.writePointer)): the device lost data the log records"
        }
        if zone.condition == .offline { return "index table \(d.id) lies in offline zone \(z.int)" }
        return nil
    }
}

/// Live bytes and the end of the last extent per zone, from a replayed state (mount's accounts,
/// `FileSystemUsage`); `problem` says which extents cannot be trusted.
struct ZoneUsage {
    var live: [ZoneID: ByteCount] = [:]
    var end: [ZoneID: DeviceOffset] = [:]

    /// Sums the extents of `state` per zone (extents outside the device are left out).
    init(state: ReplayState, geometry g: DeviceGeometry) {
        for layout in state.layouts.values {
            for e in layout.map.extents {
                guard let z = g.zone(containing: e.device) else { continue }
                live[z, default: .zero] = live[z, default: .zero] + ByteCount(e.length)
                end[z] = max(end[z] ?? e.deviceEnd, e.deviceEnd)
            }
        }
    }

    /// Mount's check: every extent lies below its zone's write pointer and inside its capacity.
    init(checking state: ReplayState, zones: [Zone], geometry g: DeviceGeometry) throws(DeviceError) {
        for (n, layout) in state.layouts {
            for e in layout.map.extents {
                if let p = ZoneUsage.problem(e, inode: n, zones: zones, geometry: g) { throw DeviceError.corrupted(.mount, p + "; run `zbdfs fsck`") }
            }
        }
        self.init(state: state, geometry: g)
    }

    /// Why extent `e` cannot be trusted, or nil.
    static func problem(_ e: FileExtent, inode n: InodeNumber, zones: [Zone], geometry g: DeviceGeometry) -> String? {
        guard let z = g.zone(containing: e.device), z.int < zones.count else {
            return "inode \(n): extent \(e) lies outside the device"
        }
        let zone = zones[z.int]
        let capacityEnd = zone.start + (zone.type.isSequential ? zone.capacity : g.zoneSize)
        if e.deviceEnd > capacityEnd { return "inode \(n): extent \(e) runs past the capacity of zone \(z.int)" }
        if zone.type.isSequential, e.deviceEnd > zone.writePointer, zone.condition != .full {
            return "inode \(n): extent \(e) lies past the write pointer of zone \(z.int) (\(zone.writePointer)): the device lost data the log records"
        }
        if zone.condition == .offline { return "inode \(n): extent \(e) lies in offline zone \(z.int)" }
        return nil
    }
}
