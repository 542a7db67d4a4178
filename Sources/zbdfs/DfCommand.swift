// `zbdfs df` and `zbdfs zonemap`: how the space of a zbdfs device is used, read-only.

import ArgumentParser
import Foundation
import ZonedCore
import ZonedFS
import ZonedMonitor

struct Df: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show how a zbdfs device's space is used: size, used, free, garbage, unusable, amplification, zone limits.",
        discussion: """
        On a mounted file system (give the mount point or the device) the figures come live from
        the mount, which counts writes not yet flushed; the device is not opened. Otherwise it
        reads the superblock, the metadata log and the zone report; it never writes the device.
        used = live file data + written metadata; garbage = written bytes no file references
        (reclaimable); unusable = capacity lost to zones finished before they were full (back
        after a reset). free + used + garbage + unusable = size. Space amplification = (live +
        garbage) / live. Write amplification = bytes written to the device (file data, reclaim
        moves, metadata) / bytes programs wrote, since format. --json prints the same figures,
        sizes in bytes.
        """
    )

    @OptionGroup var target: DeviceOptions
    @Flag(help: "Print JSON (sizes in bytes).") var json = false

    struct Report: Codable {
        var device: String
        /// "mount" (live figures from the mount) or "device" (read from the unmounted device).
        var source: String
        var mountPoint: String?
        var label: String
        var sizeBytes: UInt64
        var usedBytes: UInt64
        var liveDataBytes: UInt64
        var metadataBytes: UInt64
        var freeBytes: UInt64
        var garbageBytes: UInt64
        var unusableBytes: UInt64
        var spaceAmplification: Double
        var writeAmplification: Double?
        var reclaimWriteAmplification: Double?
        var userBytesWritten: UInt64
        var deviceBytesWritten: UInt64
        var zonesByRole: [String: Int]
        var openZones: Int
        var activeZones: Int
        var maxOpenZones: Int
        var maxActiveZones: Int
        /// Since the mount started (live figures only).
        var zoneFinishWaits: UInt64?
        var reclaimWriterWaits: UInt64?
        var reclaimWriterWaitNanoseconds: UInt64?
        var zonesReclaimed: UInt64
        var reclaimBytesMoved: UInt64
        /// Buffered writes still in the mount's page cache (live figures only).
        var cachedBytes: UInt64?
        /// Durability since the mount started (live figures only): durable log commits, those
        /// made by the periodic commit, its interval (0: off), and whether a crash now would lose
        /// anything.
        var durableCommits: UInt64?
        var periodicCommits: UInt64?
        var commitIntervalSeconds: Double?
        var uncommittedChanges: Bool?
        /// Errors the mount handled on its own and logged (live figures only).
        var reclaimFailedPasses: UInt64?
        var zoneResyncFailures: UInt64?
        var flusherErrors: UInt64?

        init(_ s: FileSystemStatus) {
            let sp = s.space
            device = s.zones.device
            source = s.source
            mountPoint = s.mountPoint
            label = sp.label
            sizeBytes = sp.sizeBytes; usedBytes = sp.usedBytes; liveDataBytes = sp.liveDataBytes
            metadataBytes = sp.metadataBytes; freeBytes = sp.freeBytes; garbageBytes = sp.garbageBytes
            unusableBytes = sp.unusableBytes; spaceAmplification = sp.spaceAmplification
            writeAmplification = s.writeAmplification; reclaimWriteAmplification = s.reclaimWriteAmplification
            userBytesWritten = s.lifetime.userBytesWritten; deviceBytesWritten = s.lifetime.deviceBytesWritten
            zonesByRole = sp.zonesByRole
            openZones = s.zones.summary.openZones; activeZones = s.zones.summary.activeZones
            maxOpenZones = s.zones.summary.maxOpenZones; maxActiveZones = s.zones.summary.maxActiveZones
            zoneFinishWaits = s.activity?.zoneFinishWaits
            reclaimWriterWaits = s.activity?.reclaimWriterWaits
            reclaimWriterWaitNanoseconds = s.activity?.reclaimWriterWaitNanoseconds
            zonesReclaimed = s.lifetime.zonesReclaimed
            reclaimBytesMoved = s.lifetime.reclaimBytesWritten
            cachedBytes = s.activity?.cachedBytes
            durableCommits = s.activity?.durableCommits
            periodicCommits = s.activity?.periodicCommits
            commitIntervalSeconds = s.activity?.commitIntervalSeconds
            uncommittedChanges = s.activity?.uncommittedChanges
            reclaimFailedPasses = s.activity?.reclaimFailedPasses
            zoneResyncFailures = s.activity?.zoneResyncFailures
            flusherErrors = s.activity?.flusherErrors
        }
    }

    func run() throws {
        try target.requireDeviceOrMount()
        let r = Report(try fileSystemStatus(of: target))
        if json {
            print(jsonText(r))
            return
        }
        func f(_ b: UInt64) -> String { ByteCount.format(b) }
        func pct(_ b: UInt64) -> String { String(format: "%.1f%%", 100 * Double(b) / Double(max(1, r.sizeBytes))) }
        func amp(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "- (nothing written yet)" }
        print("device     \(r.device)\(r.label.isEmpty ? "" : " (label '\(r.label)')")"
              + (r.mountPoint.map { ", live from the mount at \($0)" } ?? ""))
        print("size       \(f(r.sizeBytes))")
        print("used       \(f(r.usedBytes)) (\(pct(r.usedBytes))): file data \(f(r.liveDataBytes)), metadata \(f(r.metadataBytes))")
        print("free       \(f(r.freeBytes)) (\(pct(r.freeBytes)))")
        print("garbage    \(f(r.garbageBytes)) (\(pct(r.garbageBytes))), reclaimable")
        print("unusable   \(f(r.unusableBytes)) (\(pct(r.unusableBytes))), zones finished early, back after a reset")
        print("space amp  \(String(format: "%.3f", r.spaceAmplification))")
        print("write amp  \(amp(r.writeAmplification)): \(f(r.deviceBytesWritten)) written to the device for \(f(r.userBytesWritten)) written by programs, since format"
              + (r.cachedBytes.map { $0 > 0 ? "; \(f($0)) of them still in the page cache" : "" } ?? ""))
        print("zones      " + r.zonesByRole.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
              + "; open \(r.openZones)/\(CountText.limit(r.maxOpenZones)), active \(r.activeZones)/\(CountText.limit(r.maxActiveZones))")
        print("reclaim    \(r.zonesReclaimed) zones reclaimed, \(f(r.reclaimBytesMoved)) moved, reclaim write amp \(amp(r.reclaimWriteAmplification)), since format")
        if let w = r.zoneFinishWaits, let rw = r.reclaimWriterWaits {
            print("waits      \(w) zone-finish waits, \(rw) reclaim waits (\((r.reclaimWriterWaitNanoseconds ?? 0) / 1_000_000) ms) since mount")
        }
        if let c = r.durableCommits, let p = r.periodicCommits, let every = r.commitIntervalSeconds, let dirty = r.uncommittedChanges {
            let interval = every > 0 ? "every \(String(format: "%g", every)) s" : "off (-o commit=0)"
            print("commits    \(c) durable since mount, \(p) of them periodic (\(interval)); "
                  + (dirty ? "changes not yet durable" : "everything durable"))
        }
        if let a = r.reclaimFailedPasses, let b = r.zoneResyncFailures, let c = r.flusherErrors, a + b + c > 0 {
            print("errors     \(a) failed reclaim passes, \(b) failed zone re-reads, \(c) failed write-backs/commits since mount; see the mount's log")
        }
    }
}

struct Zonemap: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw the zones of a zbdfs device as an SVG picture: one cell per zone (or per group of zones on big devices), live vs garbage, role.",
        discussion: """
        Each cell is one zone: its fill shows live data (dark) and garbage (light) as shares of the
        zone's capacity, its border colour the role (superblock, metadata, data, free). Read-only.
        Past 4,096 zones each cell is a group of consecutive zones (at most 4,096 cells): its fill
        sums the group's bytes, its border is the role most of the group has, and the legend
        gives the group size ("1 cell = 20 zones").
        """
    )

    @OptionGroup var target: DeviceOptions
    @Option(help: ArgumentHelp("Where to write the SVG.", valueName: "file")) var svg: String

    func run() throws {
        try target.requireDeviceOrMount()
        let status = try fileSystemStatus(of: target)
        let text = ZoneMapSVG.render(status.zones, title: target.device)
        do { try text.write(toFile: svg, atomically: true, encoding: .utf8) } catch {
            throw CLIError.runtime("cannot write \(svg): \(error.localizedDescription); check the folder exists and is writable")
        }
        let group = ZoneMapSVG.groupSize(zoneCount: status.zones.zones.count)
        print("wrote \(svg): \(CountText.grouped(status.zones.zones.count)) zones" + (group > 1 ? ", 1 cell = \(group) zones" : "") + (status.mountPoint.map { ", live from the mount at \($0)" } ?? ""))
    }
}

/// The SVG of a zone map: a grid of cells, 16 per row up to 256 cells, 64 per row past that.
/// Up to `maxCells` zones each zone is a cell; past it each cell is a group of consecutive zones
/// (a drive of 80,000 zones would otherwise be a picture of 80,000 cells nobody can read).
enum ZoneMapSVG {
    static let roleColour: [String: String] = ["superblock": "#7b3294", "metadata": "#e66101", "data": "#0571b0", "free": "#999999"]
    static let roleOrder = ["superblock", "metadata", "data", "free"]
    /// The most cells a picture has; a group of zones per cell past it.
    static let maxCells = 4_096

    /// One cell: zones first..<first+count, their bytes summed, the role most of them have.
    struct Cell {
        var first: UInt32
        var count: Int
        var role: String
        var condition: String
        var live: UInt64
        var garbage: UInt64
        var capacity: UInt64
    }

    /// Zones per cell so that the picture has at most `maxCells` cells.
    static func groupSize(zoneCount: Int) -> Int { max(1, (zoneCount + maxCells - 1) / maxCells) }

    static func cells(_ zones: [ZoneReport.Entry], groupSize: Int) -> [Cell] {
        stride(from: 0, to: zones.count, by: groupSize).map { start in
            let group = zones[start..<min(zones.count, start + groupSize)]
            return Cell(first: group.first!.index, count: group.count,
                        role: dominant(group.map { $0.role ?? "free" }, order: roleOrder),
                        condition: dominant(group.map(\.condition), order: ZoneCondition.allCases.map(\.rawValue)),
                        live: group.reduce(0) { $0 + ($1.liveBytes ?? 0) },
                        garbage: group.reduce(0) { $0 + ($1.garbageBytes ?? 0) },
                        capacity: group.reduce(0) { $0 + $1.capacityBytes })
        }
    }

    /// The value most of `values` have; a tie goes to the one first in `order` (so the picture is
    /// the same for the same device, whatever Dictionary's order).
    static func dominant(_ values: [String], order: [String]) -> String {
        var counts: [String: Int] = [:]
        for v in values { counts[v, default: 0] += 1 }
        let rank = { (v: String) in order.firstIndex(of: v) ?? order.count }
        return counts.max { a, b in a.value != b.value ? a.value < b.value : (rank(a.key), a.key) > (rank(b.key), b.key) }?.key ?? "free"
    }

    static func render(_ report: ZoneReport, title: String) -> String {
        let zones = report.zones
        let group = groupSize(zoneCount: zones.count)
        let cells = cells(zones, groupSize: group)
        let perRow = cells.count > 256 ? 64 : 16
        let cell = perRow == 16 ? 28 : 12, gap = perRow == 16 ? 4 : 2
        let rows = (cells.count + perRow - 1) / perRow
        let width = max(perRow * (cell + gap) + gap, 400), height = rows * (cell + gap) + gap + 56
        var out = ["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" font-family=\"sans-serif\" font-size=\"10\">",
                   "<title>\(escape(title)): \(zones.count) zones</title>"]
        for (i, c) in cells.enumerated() {
            out.append(cellSVG(c, x: gap + (i % perRow) * (cell + gap), y: gap + (i / perRow) * (cell + gap), side: cell))
        }
        out.append(contentsOf: legend(y: rows * (cell + gap) + gap + 16, x: gap, groupSize: group))
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }

    static func cellSVG(_ c: Cell, x: Int, y: Int, side: Int) -> String {
        let cap = Double(max(1, c.capacity))
        let liveH = Int((Double(c.live) / cap * Double(side)).rounded())
        let garbageH = min(side - liveH, Int((Double(c.garbage) / cap * Double(side)).rounded()))
        let colour = roleColour[c.role] ?? "#999999"
        let zonesAttr = c.count == 1 ? "data-zone=\"\(c.first)\"" : "data-zones=\"\(c.first)-\(c.first + UInt32(c.count) - 1)\""
        let name = c.count == 1 ? "zone \(c.first)" : "zones \(c.first)-\(c.first + UInt32(c.count) - 1) (mostly)"
        return "<g class=\"zone\" \(zonesAttr) data-role=\"\(c.role)\" data-live-bytes=\"\(c.live)\" data-garbage-bytes=\"\(c.garbage)\">"
            + "<title>\(name): \(c.role), \(c.condition), live \(ByteCount.format(c.live)), garbage \(ByteCount.format(c.garbage))</title>"
            + "<rect x=\"\(x)\" y=\"\(y)\" width=\"\(side)\" height=\"\(side)\" fill=\"#ffffff\" stroke=\"\(colour)\" stroke-width=\"\(side > 16 ? 2 : 1)\"/>"
            + "<rect x=\"\(x)\" y=\"\(y + side - liveH)\" width=\"\(side)\" height=\"\(liveH)\" fill=\"\(colour)\"/>"
            + "<rect x=\"\(x)\" y=\"\(y + side - liveH - garbageH)\" width=\"\(side)\" height=\"\(garbageH)\" fill=\"\(colour)\" fill-opacity=\"0.3\"/></g>"
    }

    static func legend(y ly: Int, x gap: Int, groupSize: Int) -> [String] {
        var out: [String] = []
        var lx = gap
        for role in roleOrder {
            out.append("<rect x=\"\(lx)\" y=\"\(ly - 9)\" width=\"10\" height=\"10\" fill=\"\(roleColour[role]!)\"/><text x=\"\(lx + 14)\" y=\"\(ly)\">\(role)</text>")
            lx += 90
        }
        out.append("<text x=\"\(gap)\" y=\"\(ly + 16)\">dark: live data, light: garbage, as shares of each cell's capacity</text>")
        let scale = groupSize == 1 ? "1 cell = 1 zone"
            : "1 cell = \(groupSize) zones (border: the role most of them have; fill: their bytes summed)"
        out.append("<text class=\"scale\" x=\"\(gap)\" y=\"\(ly + 32)\">\(scale)</text>")
        return out
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
