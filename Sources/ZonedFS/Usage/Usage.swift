// Space usage of a zbdfs device, read without writing: per zone its role and its live and garbage
// bytes, and the totals `zbdfs df` prints.
//
// Invariants:
// - Never writes the device (superblock read, log replay, zone report).
// - Per zone: written = live + garbage; free = capacity − written − unusable; summed over the
//   device, free + used + garbage + unusable = capacity, where used counts live file data and the
//   metadata (superblock copies and log zones) that is written.
// - Roles: the two superblock zones, the log zones the replay walked (metadata), zones holding file
//   extents (data); any other zone with bytes below its write pointer holds only garbage (data).

import ZonedCore
import ZonedEngine

public struct ZoneUsageEntry: Sendable, Equatable {
    public enum Role: String, Sendable { case superblock, metadata, data, free }
    public var zone: ZoneID
    public var role: Role
    public var capacity: ByteCount
    public var written: ByteCount
    public var live: ByteCount
    public var garbage: ByteCount
    public var unusable: ByteCount
    public var free: ByteCount { capacity > written + unusable ? capacity - written - unusable : .zero }
}

public struct FileSystemUsage: Sendable, Equatable {
    public var zones: [ZoneUsageEntry]
    public var label: String
    /// Bytes of file data (all extents, prealloc included).
    public var liveData: ByteCount
    /// Written metadata: superblock copies and log zones.
    public var metadata: ByteCount
    /// The lifetime write counters (from the log, or the mount's current ones).
    public var lifetime = LifetimeCounters()

    public var capacity: ByteCount { zones.reduce(.zero) { $0 + $1.capacity } }
    public var used: ByteCount { liveData + metadata }
    public var garbage: ByteCount { zones.reduce(.zero) { $0 + $1.garbage } }
    public var unusable: ByteCount { zones.reduce(.zero) { $0 + $1.unusable } }
    public var free: ByteCount { zones.reduce(.zero) { $0 + $1.free } }
    /// Device bytes holding data per byte of live file data (1.0 = no garbage).
    public var spaceAmplification: Double {
        liveData.bytes == 0 ? 1 : Double((liveData + garbage).bytes) / Double(liveData.bytes)
    }

    /// The usage of the zbdfs file system on `device`, or nil when it holds none. `zones` is the
    /// device's zone report when the caller already has one (it is read otherwise).
    public static func read(device: any ZonedDevice, zones: [Zone]? = nil) throws(DeviceError) -> FileSystemUsage? {
        let g = device.geometry
        guard let (sb, _) = try SuperblockIO.newest(device: device).best, sb.geometryMismatch(g) == nil else { return nil }
        let replay = try LogReplay.read(device: device, superblock: sb)
        let usage = ZoneUsage(state: replay.state, geometry: g)
        let chain = Set(replay.chain)
        var rows: [ZoneUsageEntry] = []
        for z in try report(zones, device) {
            let sequential = z.type.isSequential
            let capacity = sequential ? z.capacity : g.zoneSize
            let role: ZoneUsageEntry.Role
            var written: ByteCount
            if z.id == sb.superblockZones.0 || z.id == sb.superblockZones.1 {
                role = .superblock
                written = sequential ? z.written : ByteCount(UInt64(Superblock.copySize(block: g.logicalBlockSize.bytes)))
            } else if chain.contains(z.id) {
                role = .metadata
                written = sequential ? z.written : capacity
            } else {
                written = sequential ? z.written : (usage.end[z.id].map { $0 - z.start } ?? .zero)
                role = written.bytes > 0 ? .data : .free
            }
            if z.condition == .full, sequential, role != .superblock { written = min(written, capacity) }
            let l = role == .data ? min(usage.live[z.id] ?? .zero, written) : (role == .free ? .zero : written)
            // A full zone's unwritten tail (finished early) is unusable until reset; the superblock
            // zones are finished after one copy by design and count as metadata use.
            let unusable = z.condition == .full && role != .superblock ? capacity - min(capacity, written) : .zero
            var row = ZoneUsageEntry(zone: z.id, role: role, capacity: capacity, written: written, live: l,
                                     garbage: role == .data ? written - l : .zero, unusable: unusable)
            if role == .superblock {  // the whole zone is spent on one copy: count it as written metadata
                row.written = capacity
                row.live = capacity
            }
            rows.append(row)
        }
        return FileSystemUsage(rows: rows, label: sb.label, lifetime: replay.state.namespace.lifetime)
    }
}

extension FileSystemUsage {
    /// The usage of a mounted file system, from its allocator's accounts and the device's zone
    /// report (`zones`, read when not given): what it holds in memory, including writes not yet
    /// committed. Same rules as `read`
    /// (the superblock zones count whole as metadata; reserve zones are free).
    public static func live(_ fs: FileSystem, zones: [Zone]? = nil) throws(DeviceError) -> FileSystemUsage {
        let g = fs.device.geometry
        let accounts = fs.engine.allocator.accounts
        var rows: [ZoneUsageEntry] = []
        for z in try report(zones, fs.device) {
            let a = accounts[z.id.int]
            let capacity = z.type.isSequential ? z.capacity : g.zoneSize
            var row = ZoneUsageEntry(zone: z.id, role: .free, capacity: capacity, written: a.written, live: a.live,
                                     garbage: a.garbage, unusable: a.unusable)
            switch a.role {
            case .superblock:
                row.role = .superblock
                row.written = capacity; row.live = capacity; row.garbage = .zero; row.unusable = .zero
            case .metadata:
                row.role = .metadata
                row.live = a.written; row.garbage = .zero
            case .index:
                // Index tables are metadata; tables the manifest dropped are garbage until reset.
                row.role = .metadata
            case .data, .free, .reserved:
                row.role = a.written.bytes > 0 ? .data : .free
            }
            rows.append(row)
        }
        return FileSystemUsage(rows: rows, label: fs.superblock.label, lifetime: fs.lifetime)
    }

    /// The totals of per-zone rows: metadata = written bytes of superblock and log zones, live data
    /// = live bytes of data zones.
    init(rows: [ZoneUsageEntry], label: String, lifetime: LifetimeCounters) {
        zones = rows
        self.label = label
        metadata = rows.filter { $0.role == .superblock || $0.role == .metadata }.reduce(ByteCount.zero) { $0 + $1.written }
        liveData = rows.filter { $0.role == .data }.reduce(ByteCount.zero) { $0 + $1.live }
        self.lifetime = lifetime
    }

    /// `zones` when the caller has the report already, else the device's (so one set of figures
    /// costs one zone report).
    static func report(_ zones: [Zone]?, _ device: any ZonedDevice) throws(DeviceError) -> [Zone] {
        if let zones { return zones }
        return try device.reportAllZones()
    }
}
