// `zbdfs format DEVICE`: reset every zone and write an empty zbdfs file system.
//
// Order, so that a refusal leaves the device exactly as it was (nothing is written before 4):
//   1. arguments (label length): usage error
//   2. open; FormatRequirements.problem(geometry): the device cannot hold zbdfs, exit 2
//   3. Signatures.detect (reads only): zbdfs or a foreign file system without --force, exit 2,
//      naming what was found
//   4. FileSystem.format (resets sequential zones, writes the superblock and the first log
//      checkpoint), then zero foreign magic left in conventional superblock zones (format only
//      writes the first 4 KiB there), so the device no longer looks like what it was
//   5. the report: geometry, limits and space, text or --json

import ArgumentParser
import Foundation
import ZonedCore
import ZonedFS
import ZonedMonitor

struct Format: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reset every zone and write an empty zbdfs file system.",
        discussion: """
        Format destroys what the device holds. It refuses, without writing anything, a device \
        that holds zbdfs or another file system it recognises (btrfs, f2fs, ext2/3/4, xfs) unless \
        --force is given, and a device zbdfs cannot use: fewer than \(FormatRequirements.minZones) zones, zone capacity \
        under \(FormatRequirements.minZoneCapacity), fewer than \(FormatRequirements.minActiveZones) open or active zones.

        Examples:
          zbdfs format dev.zimg --label data
          zbdfs format disk.img --zone-size 16M      (conventional mode)
          zbdfs format /dev/nullb0 --force

        Exit status: 0 formatted; 1 the device failed during format; 2 bad usage, a device \
        zbdfs cannot use, or a file system found and no --force. --json prints the result \
        (sizes in bytes); README.md documents its fields.
        """
    )

    @OptionGroup var target: DeviceOptions

    @Option(help: ArgumentHelp("A name for the file system, at most \(Superblock.maxLabelBytes) bytes of UTF-8.", valueName: "label"))
    var label = ""

    @Flag(help: "Format even when the device holds a file system (it is destroyed).")
    var force = false

    @Flag(help: "Print the result as JSON (sizes in bytes).")
    var json = false

    func validate() throws {
        let n = label.utf8.count
        guard n <= Superblock.maxLabelBytes else {
            throw ValidationError("--label is \(n) bytes long; a label has at most \(Superblock.maxLabelBytes) bytes.")
        }
        guard !label.utf8.contains(0) else { throw ValidationError("--label cannot contain a NUL byte.") }
    }

    func run() throws {
        let device = try target.open(formatting: true)
        defer { device.close() }
        let g = device.geometry
        if let problem = FormatRequirements.problem(g) {
            let hint = device.kind == .conventional ? " (conventional mode cuts the device into --zone-size zones; now \(g.zoneSize))" : ""
            throw CLIError.usage("cannot format \(target.device): \(problem)\(hint). Nothing was written.")
        }
        let found: [FoundSignature]
        do {
            found = try Signatures.detect(device: device)
        } catch {
            throw CLIError.runtime("cannot read the start of \(target.device) to look for a file system: \(error). Check the device with `zbdfs zones \(target.device)`.")
        }
        if !found.isEmpty, !force {
            let what = found.map(\.description).joined(separator: "; ")
            throw CLIError.usage("\(target.device) holds \(what). Format would destroy it: pass --force to format anyway, or check the path. Nothing was written.")
        }

        var options = FormatOptions(label: label)
        if isatty(STDERR_FILENO) == 1, g.sequentialZoneCount >= 128 {
            options.progress = { done, total in
                FileHandle.standardError.write(Data("\rformat: resetting zones \(CountText.grouped(done))/\(CountText.grouped(total))\(done == total ? "\n" : "")".utf8))
            }
        }
        let report: FormatReport
        do {
            report = try FileSystem.format(device: device, options: options)
        } catch {
            throw CLIError.runtime("format of \(target.device) failed: \(error). The device is not a usable file system now; check `zbdfs zones \(target.device)` for read-only or offline zones and run format again.")
        }
        var leftovers: [FoundSignature] = []
        do {
            let foreign = try Signatures.detect(device: device).filter { $0.kind != .zbdfs }
            leftovers = try Signatures.erase(foreign, device: device)
        } catch {
            throw CLIError.runtime("format of \(target.device) wrote the file system but clearing the old signatures failed: \(error). Run format again with --force.")
        }
        for s in leftovers {
            printError("zbdfs: note: \(s) is still readable on \(target.device); it lies in a zone format reset and means nothing now")
        }
        let result = FormatResult(path: target.device, kind: device.kind, report: report,
                                  replaced: found.map { .init(kind: $0.kind.rawValue, offsetBytes: $0.offset.bytes, detail: $0.detail) })
        print(json ? jsonText(result) : result.text())
    }
}

/// What `format` prints; the JSON field names are documented in README.md.
struct FormatResult: Encodable {
    struct Space: Encodable {
        var dataCapacityBytes: UInt64
        var dataZones: Int
        var metadataZones: Int
        var logStartZone: Int
        var superblockZones: [Int]
    }
    struct Replaced: Encodable {
        var kind: String
        var offsetBytes: UInt64
        var detail: String
    }

    var device: String
    var backend: String
    var label: String
    var uuid: String
    var superblockGeneration: UInt64
    var geometry: ZoneReport.Geometry
    var space: Space
    var replacedSignatures: [Replaced]

    init(path: String, kind: DeviceKind, report r: FormatReport, replaced: [Replaced]) {
        let sb = r.superblock
        device = path
        backend = kind.rawValue
        label = sb.label
        uuid = FormatResult.uuidText(sb.uuid)
        superblockGeneration = sb.generation
        geometry = ZoneReport(path: path, kind: kind, geometry: r.geometry, zones: []).geometry
        space = Space(dataCapacityBytes: r.dataCapacity.bytes,
                      dataZones: r.dataZones,
                      metadataZones: r.metadataZones, logStartZone: sb.logStartZone.int,
                      superblockZones: [sb.superblockZones.0.int, sb.superblockZones.1.int])
        replacedSignatures = replaced
    }

    /// 8-4-4-4-12 lower-case hex.
    static func uuidText(_ bytes: [UInt8]) -> String {
        let hex = bytes.map { String(format: "%02x", $0) }
        var out = ""
        for (i, h) in hex.enumerated() {
            if [4, 6, 8, 10].contains(i) { out += "-" }
            out += h
        }
        return out
    }

    func text() -> String {
        let g = geometry
        func size(_ b: UInt64) -> String { ByteCount.format(b) }
        var lines = [
            "formatted  \(device): zbdfs, \(label.isEmpty ? "no label" : "label '\(label)'"), uuid \(uuid)",
            "device     \(backend), \(size(g.deviceSizeBytes)): \(CountText.grouped(g.zoneCount)) zones × \(size(g.zoneSizeBytes)), capacity \(size(g.zoneCapacityBytes)), block \(g.logicalBlockSizeBytes) B, \(g.conventionalZones) conventional",
            "limits     max open \(CountText.limit(g.maxOpenZones)), max active \(CountText.limit(g.maxActiveZones)), max write \(size(g.maxWriteBytes)), zone append \(g.maxAppendBytes > 0 ? "up to \(size(g.maxAppendBytes))" : "no")",
            "space      \(size(space.dataCapacityBytes)) for file data in \(CountText.grouped(space.dataZones)) zones; metadata log \(space.metadataZones) zones (starts in zone \(space.logStartZone), \(FormatRequirements.reservedEmptyZones) kept empty for roll-over); \(FormatRequirements.reclaimReserveZones) zone kept empty for reclaim; superblocks in zones \(space.superblockZones.map(String.init).joined(separator: " and "))",
        ]
        if !replacedSignatures.isEmpty {
            lines.append("replaced   " + replacedSignatures.map { "\($0.kind) (\($0.detail))" }.joined(separator: "; "))
        }
        return lines.joined(separator: "\n")
    }
}
