// Prometheus metrics of a mounted file system, built from status snapshots.
//
// Names follow Prometheus conventions: the `zbdfs_` prefix, base units as suffixes (`_bytes`,
// `_seconds`, `_ratio`), `_total` on counters. Per-zone series carry a `zone` label (the zone
// index) and are named `zbdfs_zone_...`. Every name is built from a `MetricUnit`, so its suffix is
// always the unit's.
//
// Invariants:
// - Counters only grow: each scrape adds the growth of the mount's own counter since the previous
//   scrape (the mount's counters start at zero at mount and only grow, so the sum is the value).
// - Gauges are set from the snapshot at every scrape, so a scrape shows the state at that moment.
// - `render` is serialised (one scrape at a time), so two scrapes never add the same growth twice.
// - Per-zone series (five per zone) are served up to `perZoneLimit` zones, or always when asked:
//   at 80,000 zones they would be 400,000 series per scrape, more than a Prometheus server wants
//   from one target. The aggregates (zones by condition, space, limits) are always served.

import Foundation
import Prometheus
import ZonedCore

public final class FileSystemMetrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let last = Locked<[String: Double]>([:])
    private let snapshot: @Sendable () throws -> FileSystemStatus
    private let perZone: PerZoneSeries

    /// Whether the `zbdfs_zone_...` series are served.
    public enum PerZoneSeries: Sendable, Equatable {
        /// Up to `perZoneLimit` zones.
        case automatic
        /// Whatever the zone count (`--metrics-per-zone`).
        case always
    }

    /// The most zones whose per-zone series are served by default.
    public static let perZoneLimit = 1_024

    /// `snapshot` gives the current status (called once per scrape).
    public init(perZone: PerZoneSeries = .automatic, snapshot: @escaping @Sendable () throws -> FileSystemStatus) {
        self.perZone = perZone
        self.snapshot = snapshot
    }

    func servesPerZoneSeries(zoneCount: Int) -> Bool {
        perZone == .always || zoneCount <= FileSystemMetrics.perZoneLimit
    }

    /// The text exposition of the current figures, or the snapshot's error as a comment line.
    public func render() -> [UInt8] {
        last.withLock { seen in
            do {
                let s = try snapshot()
                update(s, &seen)
            } catch {
                return Array("# zbdfs: cannot read the file system's status: \(error)\n".utf8)
            }
            return registry.emitToBuffer()
        }
    }

    private func update(_ s: FileSystemStatus, _ seen: inout [String: Double]) {
        let sp = s.space, sum = s.zones.summary
        gauge("space_size", .bytes, "Capacity of all zones.", Double(sp.sizeBytes))
        gauge("space_used", .bytes, "Live file data plus written metadata.", Double(sp.usedBytes))
        gauge("space_live_data", .bytes, "Bytes of file data files reference.", Double(sp.liveDataBytes))
        gauge("space_metadata", .bytes, "Superblock and metadata log zones' written bytes.", Double(sp.metadataBytes))
        gauge("space_free", .bytes, "Capacity not yet written.", Double(sp.freeBytes))
        gauge("space_garbage", .bytes, "Written bytes no file references (reclaimable).", Double(sp.garbageBytes))
        gauge("space_unusable", .bytes, "Capacity lost to zones finished early (back after a reset).", Double(sp.unusableBytes))
        gauge("space_amplification", .ratio, "(live + garbage) / live.", sp.spaceAmplification)
        gauge("write_amplification", .ratio, "Device bytes written per byte programs wrote, since format.", s.writeAmplification ?? 0)
        gauge("zones_open", .count, "Zones open (implicitly or explicitly).", Double(sum.openZones))
        gauge("zones_active", .count, "Zones open or closed (holding an active resource).", Double(sum.activeZones))
        gauge("zones_open_limit", .count, "Device's max open zones (0 = no limit).", Double(sum.maxOpenZones))
        gauge("zones_active_limit", .count, "Device's max active zones (0 = no limit).", Double(sum.maxActiveZones))
        for c in ZoneCondition.allCases {
            gauge("zones", .count, "Zones per condition.", Double(sum.byCondition[c.rawValue] ?? 0), labels: [("condition", c.rawValue)])
        }
        if servesPerZoneSeries(zoneCount: s.zones.zones.count) {
            for z in s.zones.zones { updateZone(z) }
        }
        guard let a = s.activity else { return }
        counter("user_written", .bytesTotal, "Bytes programs wrote through the mount.", Double(a.userBytesWritten), &seen)
        counter("user_read", .bytesTotal, "Bytes programs read through the mount.", Double(a.userBytesRead), &seen)
        counter("device_written", .bytesTotal, "File data bytes written to the device (reclaim moves included).", Double(a.deviceBytesWritten), &seen)
        counter("zone_finish_waits", .total, "Writers that waited for a zone finish (active-zone budget spent).", Double(a.zoneFinishWaits), &seen)
        counter("zone_finish_wait", .secondsTotal, "Time writers spent waiting for zone finishes.", Double(a.zoneFinishWaitNanoseconds) / 1e9, &seen)
        counter("zones_finished", .total, "Zones finished.", Double(a.zonesFinished), &seen)
        counter("zones_reset", .total, "Zones reset.", Double(a.zonesReset), &seen)
        counter("reclaim_passes", .total, "Reclaim passes.", Double(a.reclaimPasses), &seen)
        counter("reclaim_zones", .total, "Zones reclaim emptied and reset.", Double(a.zonesReclaimed), &seen)
        counter("reclaim_moved", .bytesTotal, "Live bytes reclaim moved.", Double(a.reclaimBytesMoved), &seen)
        counter("reclaim_writer_waits", .total, "Writers that waited for reclaim.", Double(a.reclaimWriterWaits), &seen)
        counter("reclaim_writer_wait", .secondsTotal, "Time writers spent waiting for reclaim.", Double(a.reclaimWriterWaitNanoseconds) / 1e9, &seen)
        counter("checksum_errors", .total, "Reads refused because a block did not match its checksum.", Double(a.checksumErrors), &seen)
        counter("reclaim_failed_passes", .total, "Background reclaim passes that failed (see the mount's log).", Double(a.reclaimFailedPasses), &seen)
        counter("zone_resync_failures", .total, "Zone re-reads after a failed write that failed (see the mount's log).", Double(a.zoneResyncFailures), &seen)
    }

    /// The per-zone series of one zone row (label `zone`: its index).
    private func updateZone(_ z: ZoneReport.Entry) {
        let l = [("zone", String(z.index))]
        gauge("zone_capacity", .bytes, "Zone capacity.", Double(z.capacityBytes), labels: l)
        gauge("zone_written", .bytes, "Bytes below the zone's write pointer.", Double(z.writtenBytes), labels: l)
        gauge("zone_live", .bytes, "Zone bytes files reference.", Double(z.liveBytes ?? 0), labels: l)
        gauge("zone_garbage", .bytes, "Zone bytes no file references.", Double(z.garbageBytes ?? 0), labels: l)
        let active = ZoneCondition(rawValue: z.condition)?.isActive == true ? 1.0 : 0.0
        gauge("zone_active", .count, "1 while the zone holds an active resource.", active, labels: l)
    }

    private func gauge(_ metric: String, _ unit: MetricUnit, _ help: String, _ v: Double, labels: [(String, String)] = []) {
        registry.makeGauge(descriptor: unit.descriptor(metric, help), labels: labels).set(v)
    }

    private func counter(_ metric: String, _ unit: MetricUnit, _ help: String, _ value: Double, _ seen: inout [String: Double]) {
        let descriptor = unit.descriptor(metric, help)
        let name = descriptor.name
        let growth = value - (seen[name] ?? 0)
        let c = registry.makeCounter(descriptor: descriptor)  // registered even before it first grows
        if growth > 0 { c.increment(by: growth) }
        seen[name] = max(value, seen[name] ?? 0)
    }
}

/// A metric name's unit suffix: base units, and `_total` on counters (Prometheus conventions).
enum MetricUnit: String {
    case bytes, seconds, ratio, total
    case bytesTotal = "bytes_total"
    case secondsTotal = "seconds_total"
    /// A plain count or a 0/1 flag: no suffix.
    case count = ""

    /// The full name `zbdfs_<metric>_<unit>` with its help text.
    func descriptor(_ metric: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "zbdfs", metricName: metric, unitName: rawValue, helpText: help)
    }
}
