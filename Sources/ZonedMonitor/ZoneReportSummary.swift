// `zbdfs zones --summary`: the zone report folded into counts, for devices too big to list.
//
// Invariants:
// - Built from a full `ZoneReport` (the same zone report and the same role annotation), so the
//   counts always agree with what the per-zone report would list.
// - Its size does not grow with the zone count: counts by condition and by role, limits, bytes.
// - JSON follows ZoneReport's rules (snake_case, unit suffixes, sorted keys); README.md documents it.

import Foundation
import ZonedCore

public struct ZoneReportSummary: Codable, Sendable, Equatable {
    public var device: String
    public var backend: String
    public var geometry: ZoneReport.Geometry
    public var summary: ZoneReport.Summary
    /// Zones per file-system role; nil when the device holds no zbdfs file system.
    public var byRole: [String: Int]?
    /// Sums over all zones: what can be written, and what is written.
    public var capacityBytes: UInt64
    public var writtenBytes: UInt64
    public var discardsData: Bool?

    public init(_ report: ZoneReport) {
        device = report.device
        backend = report.backend
        geometry = report.geometry
        summary = report.summary
        discardsData = report.discardsData
        var roles: [String: Int] = [:]
        var capacity: UInt64 = 0, written: UInt64 = 0
        for z in report.zones {
            capacity += z.capacityBytes
            written += z.writtenBytes
            if let r = z.role { roles[r, default: 0] += 1 }
        }
        byRole = roles.isEmpty ? nil : roles
        capacityBytes = capacity
        writtenBytes = written
    }

    public func json() -> String { reportJSON(self) }

    /// A few lines whatever the zone count: header, conditions, roles, limits, bytes.
    public func text() -> String {
        let g = geometry
        var out = ["device     \(device) (\(backend))",
                   "zones      \(CountText.grouped(g.zoneCount)) × \(ByteCount.format(g.zoneSizeBytes)), size \(ByteCount.format(g.deviceSizeBytes))"]
        if discardsData == true {
            out.append("data       discarded: only non-zero blocks are kept (an image for scale and speed work)")
        }
        let order = ZoneCondition.allCases.map(\.rawValue)
        let conditions = summary.byCondition.sorted { (order.firstIndex(of: $0.key) ?? 0) < (order.firstIndex(of: $1.key) ?? 0) }
        out.append("condition  " + conditions.map { "\($0.key) \(CountText.grouped($0.value))" }.joined(separator: ", "))
        if let byRole {
            // The roles in the order a device is laid out, any others after them.
            let known = ["superblock", "metadata", "data", "free"]
            let roles = byRole.sorted { (known.firstIndex(of: $0.key) ?? known.count, $0.key) < (known.firstIndex(of: $1.key) ?? known.count, $1.key) }
            out.append("role       " + roles.map { "\($0.key) \(CountText.grouped($0.value))" }.joined(separator: ", "))
        }
        out.append("limits     open \(summary.openZones)/\(CountText.limit(summary.maxOpenZones)), active \(summary.activeZones)/\(CountText.limit(summary.maxActiveZones))")
        out.append("capacity   \(ByteCount.format(capacityBytes)), written \(ByteCount.format(writtenBytes))")
        return out.joined(separator: "\n")
    }

}
