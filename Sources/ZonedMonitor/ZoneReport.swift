// The zone report: what `zbdfs zones` prints, as text or JSON.
//
// Invariants:
// - The report is built from one zone report of the device and never writes to it.
// - JSON field names are snake_case and every quantity carries its unit as a suffix (`_bytes`,
//   `_percent`); keys are sorted so the output is byte-for-byte stable for the same device state.
//   README.md documents every field; change both together.

import Foundation
import ZonedCore

public struct ZoneReport: Codable, Sendable, Equatable {
    public struct Geometry: Codable, Sendable, Equatable {
        public var zoneCount: Int
        public var zoneSizeBytes: UInt64
        public var zoneCapacityBytes: UInt64
        public var logicalBlockSizeBytes: UInt64
        public var deviceSizeBytes: UInt64
        public var conventionalZones: Int
        public var maxOpenZones: Int
        public var maxActiveZones: Int
        public var maxWriteBytes: UInt64
        public var maxAppendBytes: UInt64
    }

    public struct Entry: Codable, Sendable, Equatable {
        public var index: UInt32
        public var type: String
        public var condition: String
        public var startBytes: UInt64
        /// nil for conventional zones (they have none).
        public var writePointerBytes: UInt64?
        public var sizeBytes: UInt64
        public var capacityBytes: UInt64
        public var writtenBytes: UInt64
        /// nil for conventional zones.
        public var fillPercent: Double?
        /// On a zbdfs device: superblock, metadata, data or free (nil otherwise).
        public var role: String?
        /// On a zbdfs device: bytes files still reference, and written bytes they no longer do.
        public var liveBytes: UInt64?
        public var garbageBytes: UInt64?
    }

    public struct Summary: Codable, Sendable, Equatable {
        public var byCondition: [String: Int]
        public var openZones: Int
        public var activeZones: Int
        /// 0 = the device sets no limit.
        public var maxOpenZones: Int
        public var maxActiveZones: Int
    }

    public var device: String
    public var backend: String
    public var geometry: Geometry
    public var zones: [Entry]
    public var summary: Summary
    /// True on a discard-data emulated image (`emulate create --discard-data`): only non-zero
    /// blocks are kept. Absent (nil) everywhere else, so other reports are unchanged.
    public var discardsData: Bool?

    public init(path: String, kind: DeviceKind, geometry g: DeviceGeometry, zones: [Zone]) {
        device = path
        backend = kind.rawValue
        geometry = Geometry(
            zoneCount: g.zoneCount, zoneSizeBytes: g.zoneSize.bytes, zoneCapacityBytes: g.zoneCapacity.bytes,
            logicalBlockSizeBytes: g.logicalBlockSize.bytes, deviceSizeBytes: g.totalBytes.bytes,
            conventionalZones: g.conventionalZoneCount, maxOpenZones: g.maxOpenZones, maxActiveZones: g.maxActiveZones,
            maxWriteBytes: g.maxWriteBytes.bytes, maxAppendBytes: g.maxAppendBytes.bytes)
        self.zones = zones.map { z in
            let seq = z.type.isSequential
            return Entry(index: z.id.index, type: z.type.rawValue, condition: z.condition.rawValue,
                         startBytes: z.start.bytes, writePointerBytes: seq ? z.writePointer.bytes : nil,
                         sizeBytes: z.size.bytes, capacityBytes: z.capacity.bytes, writtenBytes: z.written.bytes,
                         fillPercent: seq ? (z.fillPercent * 10).rounded() / 10 : nil, role: nil, liveBytes: nil, garbageBytes: nil)
        }
        let s = ZoneSummary(zones: zones, geometry: g)
        summary = Summary(byCondition: Dictionary(uniqueKeysWithValues: s.byCondition.map { ($0.key.rawValue, $0.value) }),
                          openZones: s.open, activeZones: s.active, maxOpenZones: s.maxOpen, maxActiveZones: s.maxActive)
    }

    /// Adds what a file system knows per zone (role, live and garbage bytes).
    public mutating func annotate(_ usage: [UInt32: (role: String, live: UInt64, garbage: UInt64)]) {
        for i in zones.indices {
            guard let u = usage[zones[i].index] else { continue }
            zones[i].role = u.role
            zones[i].liveBytes = u.live
            zones[i].garbageBytes = u.garbage
        }
    }

    public func json() -> String { reportJSON(self) }

    /// The human table: a header with geometry and limits, one row per zone, a summary line.
    public func text() -> String {
        var out: [String] = []
        let g = geometry
        out.append("device   \(device) (\(backend))")
        out.append("zones    \(g.zoneCount) × \(fmt(g.zoneSizeBytes)), capacity \(fmt(g.zoneCapacityBytes)), "
            + "block \(g.logicalBlockSizeBytes) B, \(g.conventionalZones) conventional, size \(fmt(g.deviceSizeBytes))")
        out.append("limits   max open \(CountText.limit(g.maxOpenZones)), max active \(CountText.limit(g.maxActiveZones)), "
            + "max write \(fmt(g.maxWriteBytes)), zone append \(g.maxAppendBytes > 0 ? "up to " + fmt(g.maxAppendBytes) : "no")")
        if discardsData == true {
            out.append("data     discarded: only non-zero blocks are kept (an image for scale and speed work)")
        }
        out.append("")
        let roles = zones.contains { $0.role != nil }
        out.append(row("ZONE", "TYPE", "CONDITION", "START", "WRITE POINTER", "CAPACITY", "FILL")
                   + (roles ? "  " + usageColumns("ROLE", "LIVE", "GARBAGE") : ""))
        for z in zones {
            out.append(row(String(z.index), shortType(z.type), z.condition, hex(z.startBytes),
                           z.writePointerBytes.map(hex) ?? "-", fmt(z.capacityBytes),
                           z.fillPercent.map { String(format: "%.1f%%", $0) } ?? "-")
                       + (roles ? "  " + usageColumns(z.role ?? "-", z.liveBytes.map(fmt) ?? "-", z.garbageBytes.map(fmt) ?? "-") : ""))
        }
        out.append("")
        let order = ZoneCondition.allCases.map(\.rawValue)
        let counts = summary.byCondition.sorted { order.firstIndex(of: $0.key)! < order.firstIndex(of: $1.key)! }
            .map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        out.append("summary  \(counts); open \(summary.openZones)/\(CountText.limit(summary.maxOpenZones)), "
            + "active \(summary.activeZones)/\(CountText.limit(summary.maxActiveZones))")
        return out.joined(separator: "\n")
    }

    private func usageColumns(_ role: String, _ live: String, _ garbage: String) -> String {
        role.padding(toLength: 10, withPad: " ", startingAt: 0)
            + String(repeating: " ", count: max(0, 10 - live.count)) + live
            + "  " + String(repeating: " ", count: max(0, 10 - garbage.count)) + garbage
    }

    private func fmt(_ b: UInt64) -> String { ByteCount.format(b) }
    private func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
    private func shortType(_ t: String) -> String {
        switch t {
        case ZoneType.conventional.rawValue: return "conv"
        case ZoneType.sequentialWriteRequired.rawValue: return "seq-req"
        default: return "seq-pref"
        }
    }
    private func row(_ c: String...) -> String {
        let widths = [5, 9, 14, 14, 14, 10, 7]
        return zip(c, widths).enumerated().map { i, p in
            let (s, w) = p
            let pad = String(repeating: " ", count: max(0, w - s.count))
            return (i == 0 || i >= 5) ? pad + s : s + pad
        }.joined(separator: "  ")
    }
}
