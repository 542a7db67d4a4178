// `zbdfs zone reset|open|close|finish DEVICE ZONE...`: zone management by hand.
//
// Every zone argument is parsed and range-checked against the device before the first command is
// sent, so a typo never leaves the device half-changed.

import ArgumentParser
import ZonedCore
import ZonedMonitor

struct ZoneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zone",
        abstract: "Reset, open, close or finish zones.",
        discussion: """
        ZONE is an index (5), a range (3-7) or `all` (every sequential zone). Examples:
          zbdfs zone finish dev.zimg 3
          zbdfs zone close dev.zimg 4-6
          zbdfs zone reset dev.zimg all --yes
        """,
        subcommands: [Reset.self, Open.self, Close.self, Finish.self]
    )

    struct Reset: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Reset zones: their data is discarded and the write pointer goes back to the zone start.")
        @OptionGroup var zones: ZoneSelection
        @Flag(help: "Confirm: reset destroys the data in the zones.")
        var yes = false
        func validate() throws {
            guard yes else { throw ValidationError("reset destroys the data in the zones; add --yes to confirm.") }
        }
        func run() throws { try zones.apply("reset") { d, z throws(DeviceError) in try d.reset(z) } }
    }

    struct Open: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Open zones explicitly (they count against max open zones until closed or full).")
        @OptionGroup var zones: ZoneSelection
        func run() throws { try zones.apply("open") { d, z throws(DeviceError) in try d.openZone(z) } }
    }

    struct Close: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Close open zones (they stay active; an unwritten zone becomes empty).")
        @OptionGroup var zones: ZoneSelection
        func run() throws { try zones.apply("close") { d, z throws(DeviceError) in try d.closeZone(z) } }
    }

    struct Finish: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Finish zones: they become full, releasing their open/active resources.")
        @OptionGroup var zones: ZoneSelection
        func run() throws { try zones.apply("finish") { d, z throws(DeviceError) in try d.finish(z) } }
    }
}

struct ZoneSelection: ParsableArguments {
    @OptionGroup var target: DeviceOptions

    @Argument(help: ArgumentHelp("Zones: an index, a range like 3-7, or `all`.", valueName: "zone"))
    var zones: [String]

    func validate() throws {
        guard !zones.isEmpty else { throw ValidationError("name at least one zone: an index, a range like 3-7, or `all`.") }
        for z in zones where z != "all" && ZoneSpec.parse(z) == nil {
            throw ValidationError("\(z) is not a zone: give an index like 5, a range like 3-7, or `all`.")
        }
    }

    func apply(_ verb: String, _ op: (any ZonedDevice, ZoneID) throws(DeviceError) -> Void) throws {
        let device = try target.open()
        defer { device.close() }
        let ids = try resolve(device.geometry)
        for id in ids {
            do {
                try op(device, id)
            } catch {
                throw runtimeFailure("\(verb) of zone \(id.index) on \(target.device)", error)
            }
        }
        print("\(verb): \(CountText.grouped(ids.count)) zone\(ids.count == 1 ? "" : "s") (\(ZoneSpec.describe(ids)))")
    }

    /// All named zones, in order, without duplicates; a usage error if any is out of range.
    func resolve(_ g: DeviceGeometry) throws -> [ZoneID] {
        var out: [Int] = []
        for spec in zones {
            let range: ClosedRange<Int>
            if spec == "all" {
                guard g.sequentialZoneCount > 0 else {
                    throw CLIError.usage("`all` names the sequential zones, and \(target.device) has none (conventional mode).")
                }
                range = g.conventionalZoneCount...(g.zoneCount - 1)
            } else {
                range = ZoneSpec.parse(spec)!
            }
            guard range.upperBound < g.zoneCount else {
                throw CLIError.usage("zone \(range.upperBound) is out of range: \(target.device) has \(g.zoneCount) zones (0-\(g.zoneCount - 1)).")
            }
            out.append(contentsOf: range)
        }
        var seen = Set<Int>()
        return out.filter { seen.insert($0).inserted }.map { ZoneID($0) }
    }
}

enum ZoneSpec {
    /// "5" → 5...5, "3-7" → 3...7; nil for anything else (including 7-3).
    static func parse(_ s: String) -> ClosedRange<Int>? {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        if parts.count == 1, let v = Int(parts[0]), v >= 0 { return v...v }
        if parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]), a >= 0, a <= b { return a...b }
        return nil
    }

    /// "3-7, 9" style description of sorted-or-not ids, compressing runs.
    static func describe(_ ids: [ZoneID]) -> String {
        var parts: [String] = []
        var i = 0
        while i < ids.count {
            var j = i
            while j + 1 < ids.count, ids[j + 1].index == ids[j].index + 1 { j += 1 }
            parts.append(i == j ? "\(ids[i].index)" : "\(ids[i].index)-\(ids[j].index)")
            i = j + 1
        }
        return parts.joined(separator: ", ")
    }
}
