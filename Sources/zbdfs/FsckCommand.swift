// `zbdfs fsck DEVICE`: check a zbdfs file system, read-only.
//
// Invariants:
// - Never writes the device: Fsck.check only reports zones and reads, and the device is closed
//   without a change (an emulated image keeps its bytes exactly; a CLI test compares them).
// - Exit status: 0 clean; 1 problems found (each listed on stdout, after the summary); 2 the
//   device cannot be checked at all (no such path, cannot be opened, a read failed). A device
//   without a valid zbdfs superblock is a problem Fsck reports (exit 1), not a read failure.
// - Progress goes to stderr, one line per stage, so stdout stays the report (and valid JSON).

import ArgumentParser
import Foundation
import ZonedCore
import ZonedFS

struct FsckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck",
        abstract: "Check a zbdfs file system without changing the device.",
        discussion: """
        Reads the superblocks and replays the metadata log, then checks every extent against its \
        zone's write pointer and capacity, overlaps, link counts and reachability; with \
        --verify-data it also reads every data block and compares its checksum. It never writes.
        In conventional mode the zone size comes from the superblock (no --zone-size needed).

        Prints a summary, then every problem (the file system is inconsistent) and note (the \
        expected state after a crash, which mount cleans up).

        Exit status: 0 clean; 1 problems found; 2 the device cannot be read (or bad usage).
        """
    )

    @OptionGroup var target: DeviceOptions

    @Flag(help: "Also read every data block and compare it with its checksum.")
    var verifyData = false

    @Flag(help: "Print the report as JSON (sizes in bytes).")
    var json = false

    func run() throws {
        let device: any ZonedDevice
        do {
            device = try target.open()
        } catch let e as CLIError {
            throw CLIError(message: e.message, status: 2)
        }
        defer { device.close() }
        let report: FsckReport
        do {
            report = try ZonedFS.Fsck.check(device: device, verifyData: verifyData) { stage in
                printError("fsck: checking \(stage)")
            }
        } catch {
            throw CLIError(message: "cannot check \(target.device): \(error). The device could not be read; check it with `zbdfs zones \(target.device)` (offline zones, permissions).", status: 2)
        }
        let result = FsckResult(path: target.device, kind: device.kind, report: report, verifyData: verifyData)
        print(json ? jsonText(result) : result.text())
        if !report.clean { throw QuietExit(status: 1) }
    }
}

/// What `fsck` prints; the JSON field names are documented in README.md.
struct FsckResult: Encodable {
    var device: String
    var backend: String
    var clean: Bool
    var problems: [String]
    var notes: [String]
    var superblockGeneration: UInt64?
    var label: String
    var logZones: [Int]
    var logFrames: Int
    var logRecords: Int
    var logEnd: String
    var inodes: Int
    var directories: Int
    var files: Int
    var symlinks: Int
    var extents: Int
    var liveBytes: UInt64
    var garbageBytes: UInt64
    var dataVerified: Bool
    var blocksVerified: Int

    init(path: String, kind: DeviceKind, report r: FsckReport, verifyData: Bool) {
        device = path
        backend = kind.rawValue
        clean = r.clean
        problems = r.problems
        notes = r.notes
        superblockGeneration = r.superblockGeneration
        label = r.label
        logZones = r.logZones
        logFrames = r.logFrames
        logRecords = r.logRecords
        logEnd = r.logEnd
        inodes = r.inodes
        directories = r.directories
        files = r.files
        symlinks = r.symlinks
        extents = r.extents
        liveBytes = r.liveBytes
        garbageBytes = r.garbageBytes
        dataVerified = verifyData
        blocksVerified = r.blocksVerified
    }

    // Optionals are written as null (the synthesized encoding would leave the key out).
    enum CodingKeys: String, CodingKey {
        case device, backend, clean, problems, notes, superblockGeneration, label, logZones, logFrames, logRecords,
             logEnd, inodes, directories, files, symlinks, extents, liveBytes, garbageBytes, dataVerified, blocksVerified
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(device, forKey: .device)
        try c.encode(backend, forKey: .backend)
        try c.encode(clean, forKey: .clean)
        try c.encode(problems, forKey: .problems)
        try c.encode(notes, forKey: .notes)
        try c.encode(superblockGeneration, forKey: .superblockGeneration)
        try c.encode(label, forKey: .label)
        try c.encode(logZones, forKey: .logZones)
        try c.encode(logFrames, forKey: .logFrames)
        try c.encode(logRecords, forKey: .logRecords)
        try c.encode(logEnd, forKey: .logEnd)
        try c.encode(inodes, forKey: .inodes)
        try c.encode(directories, forKey: .directories)
        try c.encode(files, forKey: .files)
        try c.encode(symlinks, forKey: .symlinks)
        try c.encode(extents, forKey: .extents)
        try c.encode(liveBytes, forKey: .liveBytes)
        try c.encode(garbageBytes, forKey: .garbageBytes)
        try c.encode(dataVerified, forKey: .dataVerified)
        try c.encode(blocksVerified, forKey: .blocksVerified)
    }

    func text() -> String {
        func plural(_ n: Int, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }
        // "3.1 MiB (3252224 B)": the exact count too when the short form rounds.
        func bytes(_ b: UInt64) -> String {
            let short = ByteCount.format(b)
            return short.contains(".") ? "\(short) (\(b) B)" : short
        }
        var lines: [String] = []
        let verdict = clean ? "clean" : "\(plural(problems.count, "problem")) found"
        lines.append("fsck        \(device) (\(backend)): \(verdict)")
        if let gen = superblockGeneration {
            lines.append("superblock  generation \(gen), \(label.isEmpty ? "no label" : "label '\(label)'")")
        } else {
            lines.append("superblock  none valid")
        }
        if superblockGeneration != nil {
            let zones = logZones.isEmpty ? "no zones" : "zone\(logZones.count == 1 ? "" : "s") " + logZones.map(String.init).joined(separator: ", ")
            lines.append("log         \(zones): \(plural(logFrames, "frame")), \(plural(logRecords, "record")); ends: \(logEnd.isEmpty ? "-" : logEnd)")
            lines.append("namespace   \(plural(inodes, "inode")): \(directories) director\(directories == 1 ? "y" : "ies"), \(plural(files, "file")), \(plural(symlinks, "symlink")); \(plural(extents, "extent"))")
            lines.append("space       live \(bytes(liveBytes)), garbage \(bytes(garbageBytes))")
            lines.append("data        " + (dataVerified ? "\(plural(blocksVerified, "block")) verified against their checksums" : "not read (--verify-data reads and checks every block)"))
        }
        if !problems.isEmpty {
            lines.append("")
            lines.append("problems (\(problems.count)):")
            lines += problems.map { "  - \($0)" }
        }
        if !notes.isEmpty {
            lines.append("")
            lines.append("notes (\(notes.count)):")
            lines += notes.map { "  - \($0)" }
        }
        return lines.joined(separator: "\n")
    }
}
