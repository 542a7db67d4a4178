// Prometheus metrics of a mounted file system, built from status snapshots.
//
// Names follow Prometheus conventions: the `zbdfs_` prefix, base units as suffixes (`_bytes`,
// `_seconds`, `_ratio`), `_total` on counters. Per-zone series carry a `zone` label (the zone
// index) and are named `zbdfs_zone_...`.
//
// Invariants:
// - Counters only grow: each scrape adds the growth of the mount's own counter since the previous
//   scrape (the mount's counters start at zero at mount and only grow, so the sum is the value).
// - Gauges are set from the snapshot at every scrape, so a scrape shows the state at that moment.
// - `render` is serialised (one scrape at a time), so two scrapes never add the same growth twice.

import Foundation
import Prometheus
import Synchronization
import ZonedCore

public final class FileSystemMetrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let last = Mutex<[String: Double]>([:])
    private let snapshot: @Sendable () throws -> FileSystemStatus

    /// `snapshot` gives the current status (called once per scrape).
    public init(snapshot: @escaping @Sendable () throws -> FileSystemStatus) {
        self.snapshot = snapshot
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
        gauge("zbdfs_space_size_bytes", "Capacity of all zones.", sp.sizeBytes)
        gauge("zbdfs_space_used_bytes", "Live file data plus written metadata.", sp.usedBytes)
        gauge("zbdfs_space_live_data_bytes", "Bytes of file data files reference.", sp.liveDataBytes)
        gauge("zbdfs_space_metadata_bytes", "Superblock and metadata log zones' written bytes.", sp.metadataBytes)
        gauge("zbdfs_space_free_bytes", "Capacity not yet written.", sp.freeBytes)
        gauge("zbdfs_space_garbage_bytes", "Written bytes no file references (reclaimable).", sp.garbageBytes)
        gauge("zbdfs_space_unusable_bytes", "Capacity lost to zones finished early (back after a reset).", sp.unusableBytes)
        gaugeValue("zbdfs_space_amplification_ratio", "(live + garbage) / live.", sp.spaceAmplification)
        gaugeValue("zbdfs_write_amplification_ratio", "Device bytes written per byte programs wrote, since format.", s.writeAmplification ?? 0)
        gaugeValue("zbdfs_zones_open", "Zones open (implicitly or explicitly).", Double(sum.openZones))
        gaugeValue("zbdfs_zones_active", "Zones open or closed (holding an active resource).", Double(sum.activeZones))
        gaugeValue("zbdfs_zones_open_limit", "Device's max open zones (0 = no limit).", Double(sum.maxOpenZones))
        gaugeValue("zbdfs_zones_active_limit", "Device's max active zones (0 = no limit).", Double(sum.maxActiveZones))
        for z in s.zones.zones {
            let l = [("zone", String(z.index))]
            registry.makeGauge(name: "zbdfs_zone_capacity_bytes", labels: l, help: "Zone capacity.").set(Double(z.capacityBytes))
            registry.makeGauge(name: "zbdfs_zone_written_bytes", labels: l, help: "Bytes below the zone's write pointer.").set(Double(z.writtenBytes))
            registry.makeGauge(name: "zbdfs_zone_live_bytes", labels: l, help: "Zone bytes files reference.").set(Double(z.liveBytes ?? 0))
            registry.makeGauge(name: "zbdfs_zone_garbage_bytes", labels: l, help: "Zone bytes no file references.").set(Double(z.garbageBytes ?? 0))
            let active = ZoneCondition(rawValue: z.condition)?.isActive == true ? 1.0 : 0.0
            registry.makeGauge(name: "zbdfs_zone_active", labels: l, help: "1 while the zone holds an active resource.").set(active)
        }
        guard let a = s.activity else { return }
        counter("zbdfs_user_written_bytes_total", "Bytes programs wrote through the mount.", Double(a.userBytesWritten), &seen)
        counter("zbdfs_user_read_bytes_total", "Bytes programs read through the mount.", Double(a.userBytesRead), &seen)
        counter("zbdfs_device_written_bytes_total", "File data bytes written to the device (reclaim moves included).", Double(a.deviceBytesWritten), &seen)
        counter("zbdfs_zone_finish_waits_total", "Writers that waited for a zone finish (active-zone budget spent).", Double(a.zoneFinishWaits), &seen)
        counter("zbdfs_zone_finish_wait_seconds_total", "Time writers spent waiting for zone finishes.", Double(a.zoneFinishWaitNanoseconds) / 1e9, &seen)
        counter("zbdfs_zones_finished_total", "Zones finished.", Double(a.zonesFinished), &seen)
        counter("zbdfs_zones_reset_total", "Zones reset.", Double(a.zonesReset), &seen)
        counter("zbdfs_reclaim_passes_total", "Reclaim passes.", Double(a.reclaimPasses), &seen)
        counter("zbdfs_reclaim_zones_total", "Zones reclaim emptied and reset.", Double(a.zonesReclaimed), &seen)
        counter("zbdfs_reclaim_moved_bytes_total", "Live bytes reclaim moved.", Double(a.reclaimBytesMoved), &seen)
        counter("zbdfs_reclaim_writer_waits_total", "Writers that waited for reclaim.", Double(a.reclaimWriterWaits), &seen)
        counter("zbdfs_reclaim_writer_wait_seconds_total", "Time writers spent waiting for reclaim.", Double(a.reclaimWriterWaitNanoseconds) / 1e9, &seen)
        counter("zbdfs_checksum_errors_total", "Reads refused because a block did not match its checksum.", Double(a.checksumErrors), &seen)
        counter("zbdfs_reclaim_failed_passes_total", "Background reclaim passes that failed (see the mount's log).", Double(a.reclaimFailedPasses), &seen)
        counter("zbdfs_zone_resync_failures_total", "Zone re-reads after a failed write that failed (see the mount's log).", Double(a.zoneResyncFailures), &seen)
    }

    private func gauge(_ name: String, _ help: String, _ v: UInt64) { gaugeValue(name, help, Double(v)) }

    private func gaugeValue(_ name: String, _ help: String, _ v: Double) {
        registry.makeGauge(name: name, help: help).set(v)
    }

    private func counter(_ name: String, _ help: String, _ value: Double, _ seen: inout [String: Double]) {
        let growth = value - (seen[name] ?? 0)
        if growth > 0 { registry.makeCounter(name: name, help: help).increment(by: growth) } else { _ = registry.makeCounter(name: name, help: help) }
        seen[name] = max(value, seen[name] ?? 0)
    }
}
