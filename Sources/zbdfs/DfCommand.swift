// `zbdfs df` and `zbdfs zonemap`: how the space of a zbdfs device is used, read-only.

import ArgumentParser
import Foundation
import ZonedCore
import ZonedFS

/// Reads the usage of the zbdfs file system on the device, or says why it cannot.
/// Reports only read, so they do not claim the device: they work while it is mounted (and then
/// show the state of the mount's last commit).
private func usage(of target: DeviceOptions) throws -> (FileSystemUsage, DeviceGeometry) {
    let device = try target.open(exclusive: false)
    defer { device.close() }
    do {
        guard let u = try FileSystemUsage.read(device: device) else {
            throw CLIError.runtime("\(target.device) holds no zbdfs file system (no valid superblock); make one with `zbdfs format \(target.device)`")
        }
        return (u, device.geometry)
    } catch let e as DeviceError {
        throw runtimeFailure("reading the file system on \(target.device)", e)
    }
}

struct Df: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show how a zbdfs device's space is used: size, used, free, garbage, unusable, amplification, zone limits.",
        discussion: """
        Reads the superblock, the metadata log and the zone report; never writes the device.
        used = live file data + written metadata; garbage = written bytes no file references
        (reclaimable); unusable = capacity lost to zones finished before they were full (back
        after a reset). free + used + garbage + unusable = size. Space amplification = (live +
        garbage) / live. --json prints the same figures, sizes in bytes.
        """
    )

    @OptionGroup var target: DeviceOptions
    @Flag(help: "Print JSON (sizes in bytes).") var json = false

    struct Report: Codable {
        var device: String
        var label: String
        var sizeBytes: UInt64
        var usedBytes: UInt64
        var liveDataBytes: UInt64
        var metadataBytes: UInt64
        var freeBytes: UInt64
        var garbageBytes: UInt64
        var unusableBytes: UInt64
        var spaceAmplification: Double
        var zonesByRole: [String: Int]
        var openZones: Int
        var activeZones: Int
        var maxOpenZones: Int
        var maxActiveZones: Int
    }

    func run() throws {
        let (u, g) = try usage(of: target)
        let device = try target.open(exclusive: false)
        let zones = (try? device.reportAllZones()) ?? []
        device.close()
        let r = Report(device: target.device, label: u.label, sizeBytes: u.capacity.bytes, usedBytes: u.used.bytes,
                       liveDataBytes: u.liveData.bytes, metadataBytes: u.metadata.bytes, freeBytes: u.free.bytes,
                       garbageBytes: u.garbage.bytes, unusableBytes: u.unusable.bytes,
                       spaceAmplification: (u.spaceAmplification * 1000).rounded() / 1000,
                       zonesByRole: Dictionary(grouping: u.zones, by: { $0.role.rawValue }).mapValues(\.count),
                       openZones: zones.filter { $0.condition.isOpen }.count,
                       activeZones: zones.filter { $0.condition.isActive }.count,
                       maxOpenZones: g.maxOpenZones, maxActiveZones: g.maxActiveZones)
        if json {
            print(jsonText(r))
            return
        }
        func f(_ b: UInt64) -> String { ByteCount.format(b) }
        func pct(_ b: UInt64) -> String { String(format: "%.1f%%", 100 * Double(b) / Double(max(1, r.sizeBytes))) }
        func lim(_ n: Int) -> String { n == 0 ? "unlimited" : String(n) }
        print("device     \(r.device)\(r.label.isEmpty ? "" : " (label '\(r.label)')")")
        print("size       \(f(r.sizeBytes))")
        print("used       \(f(r.usedBytes)) (\(pct(r.usedBytes))): file data \(f(r.liveDataBytes)), metadata \(f(r.metadataBytes))")
        print("free       \(f(r.freeBytes)) (\(pct(r.freeBytes)))")
        print("garbage    \(f(r.garbageBytes)) (\(pct(r.garbageBytes))), reclaimable")
        print("unusable   \(f(r.unusableBytes)) (\(pct(r.unusableBytes))), zones finished early, back after a reset")
        print("space amp  \(String(format: "%.3f", r.spaceAmplification))")
        print("zones      " + r.zonesByRole.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
              + "; open \(r.openZones)/\(lim(r.maxOpenZones)), active \(r.activeZones)/\(lim(r.maxActiveZones))")
    }
}

struct Zonemap: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw the zones of a zbdfs device as an SVG picture: one cell per zone, live vs garbage, role.",
        discussion: """
        Each cell is one zone: its fill shows live data (dark) and garbage (light) as shares of the
        zone's capacity, its border colour the role (superblock, metadata, data, free). Read-only.
        """
    )

    @OptionGroup var target: DeviceOptions
    @Option(help: ArgumentHelp("Where to write the SVG.", valueName: "file")) var svg: String

    func run() throws {
        let (u, _) = try usage(of: target)
        let text = ZoneMapSVG.render(u, title: target.device)
        do { try text.write(toFile: svg, atomically: true, encoding: .utf8) } catch {
            throw CLIError.runtime("cannot write \(svg): \(error.localizedDescription); check the folder exists and is writable")
        }
        print("wrote \(svg): \(u.zones.count) zones")
    }
}

/// The SVG of a zone map: a grid of cells, 16 per row.
enum ZoneMapSVG {
    static let roleColour: [ZoneUsageEntry.Role: String] = [.superblock: "#7b3294", .metadata: "#e66101", .data: "#0571b0", .free: "#999999"]

    static func render(_ u: FileSystemUsage, title: String) -> String {
        let cell = 28, gap = 4, perRow = 16
        let rows = (u.zones.count + perRow - 1) / perRow
        let width = perRow * (cell + gap) + gap, height = rows * (cell + gap) + gap + 40
        var out = ["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" font-family=\"sans-serif\" font-size=\"10\">",
                   "<title>\(escape(title)): \(u.zones.count) zones</title>"]
        for (i, z) in u.zones.enumerated() {
            let x = gap + (i % perRow) * (cell + gap), y = gap + (i / perRow) * (cell + gap)
            let cap = Double(max(1, z.capacity.bytes))
            let liveH = Int((Double(z.live.bytes) / cap * Double(cell)).rounded())
            let garbageH = min(cell - liveH, Int((Double(z.garbage.bytes) / cap * Double(cell)).rounded()))
            let colour = roleColour[z.role] ?? "#999999"
            out.append("<g class=\"zone\" data-zone=\"\(z.zone.int)\" data-role=\"\(z.role.rawValue)\" data-live-bytes=\"\(z.live.bytes)\" data-garbage-bytes=\"\(z.garbage.bytes)\">"
                       + "<title>zone \(z.zone.int): \(z.role.rawValue), live \(ByteCount.format(z.live.bytes)), garbage \(ByteCount.format(z.garbage.bytes))</title>"
                       + "<rect x=\"\(x)\" y=\"\(y)\" width=\"\(cell)\" height=\"\(cell)\" fill=\"#ffffff\" stroke=\"\(colour)\" stroke-width=\"2\"/>"
                       + "<rect x=\"\(x)\" y=\"\(y + cell - liveH)\" width=\"\(cell)\" height=\"\(liveH)\" fill=\"\(colour)\"/>"
                       + "<rect x=\"\(x)\" y=\"\(y + cell - liveH - garbageH)\" width=\"\(cell)\" height=\"\(garbageH)\" fill=\"\(colour)\" fill-opacity=\"0.3\"/></g>")
        }
        let ly = rows * (cell + gap) + gap + 16
        var lx = gap
        for role in [ZoneUsageEntry.Role.superblock, .metadata, .data, .free] {
            out.append("<rect x=\"\(lx)\" y=\"\(ly - 9)\" width=\"10\" height=\"10\" fill=\"\(roleColour[role]!)\"/><text x=\"\(lx + 14)\" y=\"\(ly)\">\(role.rawValue)</text>")
            lx += 90
        }
        out.append("<text x=\"\(gap)\" y=\"\(ly + 16)\">dark: live data, light: garbage, as shares of each zone's capacity</text>")
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
