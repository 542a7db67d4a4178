// One snapshot of everything the monitoring commands show: the zone report with each zone's role,
// live and garbage bytes, the space figures of `zbdfs df`, the lifetime write counters, and (from
// a mount) what the mount has done since it started.
//
// Invariants:
// - Building a snapshot never writes the device: from a mount it reads the file system's memory
//   and the device's zone report; from an unmounted device the superblock, the log and the zone
//   report (`FileSystemUsage.read`).
// - The JSON form (snake_case keys, units as suffixes, sorted keys) is what a mount serves in its
//   control file; `decode(_:)` reads it back and `json()` writes it, so every command renders from
//   one type whether the figures came live or from the device.
// - free + used + garbage + unusable = size (FileSystemUsage's invariant, carried over).

import Foundation
import ZonedCore
import ZonedFS

public struct FileSystemStatus: Codable, Sendable, Equatable {
    /// df's figures (bytes).
    public struct Space: Codable, Sendable, Equatable {
        public var label: String
        public var sizeBytes: UInt64
        public var usedBytes: UInt64
        public var liveDataBytes: UInt64
        public var metadataBytes: UInt64
        public var freeBytes: UInt64
        public var garbageBytes: UInt64
        public var unusableBytes: UInt64
        public var spaceAmplification: Double
        public var zonesByRole: [String: Int]
    }

    /// What a mount did since it started (absent when read from an unmounted device).
    public struct Activity: Codable, Sendable, Equatable {
        public var userBytesWritten: UInt64
        public var userBytesRead: UInt64
        public var deviceBytesWritten: UInt64
        public var zoneFinishWaits: UInt64
        public var zoneFinishWaitNanoseconds: UInt64
        public var zonesFinished: UInt64
        public var zonesReset: UInt64
        public var reclaimPasses: UInt64
        public var zonesReclaimed: UInt64
        public var reclaimBytesMoved: UInt64
        public var reclaimWriterWaits: UInt64
        public var reclaimWriterWaitNanoseconds: UInt64
        public var checksumErrors: UInt64
        /// Bytes of buffered writes in the mount's page cache, not on the device yet.
        public var cachedBytes: UInt64
        /// Errors the mount handled on its own and logged: background reclaim passes that failed,
        /// and zone re-reads after a failed write that failed.
        public var reclaimFailedPasses: UInt64
        public var zoneResyncFailures: UInt64
        /// Durable commits of the metadata log since mount (fsync, sync, reclaim, periodic), and
        /// those the flusher made on its own (`-o commit=`).
        public var durableCommits: UInt64
        public var periodicCommits: UInt64
        /// The mount's commit interval in seconds (`-o commit=`; 0: no periodic commits).
        public var commitIntervalSeconds: Double
        /// Whether anything is not durable yet (page cache, log records, attribute updates): a
        /// crash now would lose it.
        public var uncommittedChanges: Bool
        /// Files the flusher wrote back, errors it met (each also in the mount's log) and the last.
        public var backgroundWriteBacks: UInt64
        public var flusherErrors: UInt64
        public var flusherLastError: String?
    }

    /// "mount" (served live by a mount) or "device" (read from an unmounted device).
    public var source: String
    public var mountPoint: String?
    /// Monotonic time of the snapshot, for rates between two snapshots.
    public var sampledAtNanoseconds: UInt64
    public var zones: ZoneReport
    public var space: Space
    public var lifetime: LifetimeCounters
    /// Lifetime write amplification (device bytes per user byte); nil before the first write.
    public var writeAmplification: Double?
    /// Lifetime reclaim write amplification ((data + moved) / data); nil before the first write.
    public var reclaimWriteAmplification: Double?
    public var activity: Activity?

    public init(source: String, mountPoint: String?, sampledAt: UInt64, zones: ZoneReport, usage: FileSystemUsage,
                activity: Activity?) {
        self.source = source
        self.mountPoint = mountPoint
        self.sampledAtNanoseconds = sampledAt
        var report = zones
        report.annotate(usage)
        self.zones = report
        space = Space(label: usage.label, sizeBytes: usage.capacity.bytes, usedBytes: usage.used.bytes,
                      liveDataBytes: usage.liveData.bytes, metadataBytes: usage.metadata.bytes, freeBytes: usage.free.bytes,
                      garbageBytes: usage.garbage.bytes, unusableBytes: usage.unusable.bytes,
                      spaceAmplification: FileSystemStatus.rounded(usage.spaceAmplification),
                      zonesByRole: Dictionary(grouping: usage.zones, by: { $0.role.rawValue }).mapValues(\.count))
        lifetime = usage.lifetime
        writeAmplification = lifetime.writeAmplification.map(FileSystemStatus.rounded)
        reclaimWriteAmplification = lifetime.reclaimWriteAmplification.map(FileSystemStatus.rounded)
        self.activity = activity
    }

    static func rounded(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }

    // MARK: Building

    /// The live figures of a mounted file system.
    public static func live(_ fs: FileSystem, path: String, mountPoint: String?, clock: any EngineClock = SystemClock()) throws(DeviceError) -> FileSystemStatus {
        let zones = try fs.device.reportAllZones()
        let usage = try FileSystemUsage.live(fs, zones: zones)
        let e = fs.engine.stats, a = fs.engine.allocator.stats, r = fs.reclaimStats, f = fs.flusherStats
        let activity = Activity(
            userBytesWritten: e.userBytesWritten, userBytesRead: e.userBytesRead, deviceBytesWritten: e.deviceBytesWritten,
            zoneFinishWaits: e.zoneFinishWaits, zoneFinishWaitNanoseconds: e.zoneFinishWaitNanoseconds,
            zonesFinished: a.zonesFinished, zonesReset: a.zonesReset, reclaimPasses: r.passes,
            zonesReclaimed: r.zonesReclaimed, reclaimBytesMoved: r.bytesMoved, reclaimWriterWaits: r.writerWaits,
            reclaimWriterWaitNanoseconds: r.writerWaitNanoseconds, checksumErrors: e.checksumErrors,
            cachedBytes: fs.engine.cachedBytes.bytes, reclaimFailedPasses: r.failedPasses,
            zoneResyncFailures: a.resyncFailures, durableCommits: fs.journalCounters.durableCommits,
            periodicCommits: f.periodicCommits, commitIntervalSeconds: Double(fs.commitInterval.components.seconds) + Double(fs.commitInterval.components.attoseconds) * 1e-18, uncommittedChanges: fs.hasUncommittedChanges,
            backgroundWriteBacks: f.writeBacks, flusherErrors: f.errors, flusherLastError: f.lastError)
        return FileSystemStatus(source: "mount", mountPoint: mountPoint, sampledAt: clock.nowNanoseconds,
                                zones: ZoneReport(path: path, kind: fs.device.kind, geometry: fs.device.geometry, zones: zones),
                                usage: usage, activity: activity)
    }

    /// The figures of the file system on an unmounted device, or nil when it holds none.
    public static func read(device: any ZonedDevice, path: String, clock: any EngineClock = SystemClock()) throws(DeviceError) -> FileSystemStatus? {
        let zones = try device.reportAllZones()
        guard let usage = try FileSystemUsage.read(device: device, zones: zones) else { return nil }
        return FileSystemStatus(source: "device", mountPoint: nil, sampledAt: clock.nowNanoseconds,
                                zones: ZoneReport(path: path, kind: device.kind, geometry: device.geometry, zones: zones),
                                usage: usage, activity: nil)
    }

    // MARK: JSON

    public func json() -> String { reportJSON(self) }

    /// Reads the JSON a mount served; nil with the reason when it is not a status.
    public static func decode(_ bytes: [UInt8]) -> Result<FileSystemStatus, StatusDecodeError> {
        let dec = JSONDecoder()
        dec.keyDecodingStrategy = .convertFromSnakeCase
        do { return .success(try dec.decode(FileSystemStatus.self, from: Data(bytes))) } catch {
            return .failure(StatusDecodeError(detail: "\(error)"))
        }
    }
}

public struct StatusDecodeError: Error, Sendable, CustomStringConvertible {
    public var detail: String
    public var description: String { "not a zbdfs status: \(detail)" }
}

extension ZoneReport {
    /// Adds each zone's role, live and garbage bytes from a file system's usage.
    public mutating func annotate(_ usage: FileSystemUsage) {
        annotate(Dictionary(uniqueKeysWithValues: usage.zones.map {
            ($0.zone.index, (role: $0.role.rawValue, live: $0.live.bytes, garbage: $0.garbage.bytes))
        }))
    }
}
