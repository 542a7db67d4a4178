// The scale benchmark (issue 15): how zbdfs behaves at the sizes real drives have, at several
// sizes in one run, printed as one table (or JSON with the same rows).
//
//   zbdfs-bench --scale [--quick] [--json] [--dir DIR]      (tools/bench --scale ...)
//
// Three parts:
// - files: N empty files (100 k, 1 M, 5 M; --quick 10 k, 100 k) created through the library API in
//   directories of 1,000, then sync, unmount, mount (clean), stat all, readdir all; then 1% more
//   files committed to the log and a crash image taken, mounted (log replay) and fsck'd. On an
//   emulated device that keeps its data (the crash image needs it), sparse, in --dir.
// - data: zeros written through the engine's direct path (8 MiB O_DIRECT writes, 1 GiB files) on a
//   discard-data device (reads return zeros; zero blocks cost the image nothing) up to 64 GiB,
//   256 GiB and 1 TiB (--quick: 8 and 32 GiB) written, on a 20 TiB SMR-like device (80,000 zones of
//   256 MiB, max open/active 128) and a ZNS-like one (2 GiB zones of 1,077 MiB capacity, max
//   open/active 14); after each step a sync, unmount and timed mount.
// - allocator: ns per 1 MiB grant+submit+complete at 128, 8,000 and 80,000 zones
//   (AllocatorScale.swift), and ns per 4 KiB O_DIRECT write through the file system end to end on
//   discard-data devices of those zone counts.
//
// Invariants:
// - Every figure is measured in this run; nothing is carried over from an earlier one. The table
//   names the machine load (/proc/loadavg) at the start and the end, since this machine is shared.
// - Every image the benchmark makes is removed before it returns, also when a step fails.
// - Each files row and each device's data rows run in a fresh child process (this program with the
//   hidden `--scale-part`), so the RSS column is that part's alone, not what earlier parts left in
//   the heap. The allocator rows run in the parent (they report no memory).
// - Times are wall-clock medians where a step repeats (the allocator rows); the files and data
//   rows are single runs of long steps (seconds), so they are not repeated.

import Foundation
import ZonedBackendFile
import ZonedCore
import ZonedEngine
import ZonedFS

struct ScaleOptions {
    var quick = false
    var json = false
    var dir = "/var/tmp"
}

struct FilesRow: Codable {
    var files: Int
    var createPerSecond: Double
    var rssBytes: UInt64
    var engineCacheBytes: UInt64
    var metadataBytes: UInt64
    var checkpointBytes: UInt64
    var cleanMountSeconds: Double
    var statAllSeconds: Double
    var readdirAllSeconds: Double
    var crashMountSeconds: Double
    var recordsReplayed: Int
    var fsckSeconds: Double
}

struct DataRow: Codable {
    var device: String
    var zones: Int
    var writtenBytes: UInt64
    var lastStepBytesPerSecond: Double
    var rssBytes: UInt64
    var metadataBytes: UInt64
    var mountSeconds: Double
}

struct AllocatorRow: Encodable {
    var zones: Int
    var nsPerGrant: Double
    var nsPerReservedGrant: Double
    var nsPer4KWrite: Double
}

struct ScaleReport: Encodable {
    var loadAtStart: String
    var loadAtEnd: String
    var cores: Int
    var files: [FilesRow]
    var data: [DataRow]
    var allocator: [AllocatorRow]
}

/// `--scale ...`: parses, runs, prints; the exit status.
func runScaleCommand(_ args: [String]) -> Int32 {
    var o = ScaleOptions()
    var rest = args[...]
    while let a = rest.popFirst() {
        switch a {
        case "--quick": o.quick = true
        case "--json": o.json = true
        case "--dir":
            guard let d = rest.popFirst() else { scaleUsageError("--dir needs a folder") }
            o.dir = d
        case "--scale-part":
            guard let part = rest.popFirst() else { scaleUsageError("--scale-part needs a part") }
            return runScalePart(part, o)
        case "-h", "--help":
            print("usage: zbdfs-bench --scale [--quick] [--json] [--dir /var/tmp]")
            print("  files, data and allocator tables at real device sizes; --quick: 10k/100k files, 8/32 GiB")
            return 0
        default: scaleUsageError("unknown argument \(a) for --scale; see --scale --help")
        }
    }
    do {
        let report = try runScale(o)
        if o.json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            enc.keyEncodingStrategy = .convertToSnakeCase
            print(String(decoding: try enc.encode(report), as: UTF8.self))
        } else {
            print(scaleTable(report), terminator: "")
        }
        return 0
    } catch {
        FileHandle.standardError.write(Data("zbdfs-bench --scale: \(error)\n".utf8))
        return 1
    }
}

private func scaleUsageError(_ m: String) -> Never {
    FileHandle.standardError.write(Data("zbdfs-bench --scale: \(m)\n".utf8))
    exit(2)
}

func runScale(_ o: ScaleOptions) throws -> ScaleReport {
    let start = loadAverage()
    let fileCounts = o.quick ? [10_000, 100_000] : [100_000, 1_000_000, 5_000_000]
    var files: [FilesRow] = []
    for n in fileCounts {
        progressLine("files: \(n)")
        files += try inChildProcess("files:\(n)", o, as: [FilesRow].self)
    }
    var data: [DataRow] = []
    for (i, (name, _)) in scaleDevices().enumerated() {
        progressLine("data: \(name)")
        data += try inChildProcess("data:\(i)", o, as: [DataRow].self)
    }

    progressLine("allocator")
    let counts = [128, 8_000, 80_000]
    let grants = try allocatorScaleRows(zoneCounts: counts, grantsPerSize: 2_000)
    var alloc: [AllocatorRow] = []
    for r in grants {
        alloc.append(AllocatorRow(zones: r.zones, nsPerGrant: r.nsPerGrant, nsPerReservedGrant: r.nsPerReservedGrant,
                                  nsPer4KWrite: try nsPer4KWrite(zones: r.zones, o)))
    }
    return ScaleReport(loadAtStart: start, loadAtEnd: loadAverage(), cores: ProcessInfo.processInfo.activeProcessorCount,
                       files: files, data: data, allocator: alloc)
}

// MARK: Parts in child processes

/// Runs one part (`files:N` or `data:I`) in a fresh process of this program and decodes its rows.
private func inChildProcess<Rows: Decodable>(_ part: String, _ o: ScaleOptions, as: Rows.Type) throws -> Rows {
    let child = Process()
    child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
    child.arguments = ["--scale", "--dir", o.dir] + (o.quick ? ["--quick"] : []) + ["--scale-part", part]
    let out = Pipe()
    child.standardOutput = out
    try child.run()
    let bytes = out.fileHandleForReading.readDataToEndOfFile()
    child.waitUntilExit()
    guard child.terminationStatus == 0 else {
        throw BenchError.fio("the \(part) part failed in its process (exit \(child.terminationStatus)); its error is above")
    }
    return try JSONDecoder().decode(Rows.self, from: bytes)
}

/// `--scale-part PART` (hidden; the parent's child process): runs the part, prints its rows as
/// JSON on stdout; the exit status.
private func runScalePart(_ part: String, _ o: ScaleOptions) -> Int32 {
    let pieces = part.split(separator: ":")
    guard pieces.count == 2, let n = Int(pieces[1]) else { scaleUsageError("bad part \(part)") }
    do {
        let json: Data
        switch pieces[0] {
        case "files": json = try JSONEncoder().encode([try filesRow(n, o)])
        case "data":
            let devices = scaleDevices()
            guard devices.indices.contains(n) else { scaleUsageError("no data device \(n)") }
            let steps: [ByteCount] = o.quick ? [.gib(8), .gib(32)] : [.gib(64), .gib(256), .gib(1024)]
            json = try JSONEncoder().encode(try dataRows(devices[n].0, devices[n].1, steps, o))
        default: scaleUsageError("bad part \(part)")
        }
        FileHandle.standardOutput.write(json)
        return 0
    } catch {
        FileHandle.standardError.write(Data("zbdfs-bench --scale-part \(part): \(error)\n".utf8))
        return 1
    }
}

// MARK: Files

private func filesRow(_ n: Int, _ o: ScaleOptions) throws -> FilesRow {
    let image = "\(o.dir)/zbdfs-scale-files-\(getpid()).img"
    let crash = image + ".crash"
    defer { unlink(image); unlink(crash) }
    // 1 TiB sparse, 256 MiB zones: room for the log and its checkpoints at 5 M files.
    let g = DeviceGeometry(zoneCount: 4096, zoneSize: .mib(256), maxOpenZones: 128, maxActiveZones: 128)
    let dev = try EmulatedZonedDevice.create(path: image, geometry: g, overwrite: true)
    try FileSystem.format(device: dev)
    var fs = try FileSystem.mount(device: dev, options: benchMountOptions())
    let perDir = 1_000
    var dirs: [InodeNumber] = []
    let t0 = now()
    for i in 0..<n {
        if i % perDir == 0 {
            dirs.append(try fs.create(rootInode, try EntryName("d\(i / perDir)"), kind: .directory, mode: 0o755, uid: 0, gid: 0).number)
        }
        _ = try fs.create(dirs[dirs.count - 1], try EntryName("f\(i)"), kind: .file, mode: 0o644, uid: 0, gid: 0)
    }
    try fs.sync()
    let createRate = Double(n) / (now() - t0)
    try fs.unmount()
    var t = now()
    let reopened = try EmulatedZonedDevice.open(path: image)
    fs = try FileSystem.mount(device: reopened, options: benchMountOptions())
    let cleanMount = now() - t
    let rss = residentBytes()
    let cache = UInt64(fs.engine.cachedBytes.bytes)
    let checkpoint = fs.journalCounters.lastCheckpointBytes
    t = now()
    var seen = 0
    for d in try fs.readDirectory(rootInode) where d.kind == .directory {
        seen += try fs.readDirectory(d.inode).count
    }
    let readdirAll = now() - t
    precondition(seen >= n, "readdir found \(seen) of \(n) files")
    t = now()
    for d in try fs.readDirectory(rootInode) where d.kind == .directory {
        for e in try fs.readDirectory(d.inode) { _ = try fs.stat(e.inode) }
    }
    let statAll = now() - t
    // A crash after 1% more files reached the log (durable, not checkpointed).
    let extra = try fs.create(rootInode, try EntryName("after"), kind: .directory, mode: 0o755, uid: 0, gid: 0).number
    for i in 0..<max(1, n / 100) { _ = try fs.create(extra, try EntryName("g\(i)"), kind: .file, mode: 0o644, uid: 0, gid: 0) }
    try fs.commit(durable: true)
    let metadata = metadataBytes(fs)
    try reopened.crashImage(to: crash)
    try fs.unmount()
    t = now()
    let crashed = try EmulatedZonedDevice.open(path: crash)
    let afterCrash = try FileSystem.mount(device: crashed, options: benchMountOptions())
    let crashMount = now() - t
    let replayed = afterCrash.mountReport.recordsReplayed
    try afterCrash.unmount()
    t = now()
    let checked = try EmulatedZonedDevice.open(path: crash)
    let report = try Fsck.check(device: checked)
    checked.close()
    let fsck = now() - t
    guard report.clean else { throw BenchError.fio("fsck after the crash found problems: \(report.problems.prefix(3))") }
    return FilesRow(files: n, createPerSecond: createRate, rssBytes: rss, engineCacheBytes: cache, metadataBytes: metadata,
                    checkpointBytes: checkpoint, cleanMountSeconds: cleanMount, statAllSeconds: statAll,
                    readdirAllSeconds: readdirAll, crashMountSeconds: crashMount, recordsReplayed: replayed, fsckSeconds: fsck)
}

// MARK: Data

/// The two drive shapes of the data table.
private func scaleDevices() -> [(String, DeviceGeometry)] {
    [("SMR 20 TiB", DeviceGeometry(zoneCount: 80_000, zoneSize: .mib(256), maxOpenZones: 128, maxActiveZones: 128)),
     ("ZNS 8 TiB", DeviceGeometry(zoneCount: 4_096, zoneSize: .gib(2), zoneCapacity: .mib(1077), maxOpenZones: 14, maxActiveZones: 14))]
}

private func dataRows(_ name: String, _ g: DeviceGeometry, _ steps: [ByteCount], _ o: ScaleOptions) throws -> [DataRow] {
    let image = "\(o.dir)/zbdfs-scale-data-\(getpid()).img"
    defer { unlink(image) }
    let dev = try EmulatedZonedDevice.create(path: image, geometry: g, overwrite: true, discardData: true)
    try FileSystem.format(device: dev)
    var fs = try FileSystem.mount(device: dev, options: benchMountOptions())
    let chunk = 8 << 20, fileBytes: UInt64 = 1 << 30
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
    defer { buffer.deallocate() }
    buffer.initializeMemory(as: UInt8.self, repeating: 0)
    var written: UInt64 = 0
    var rows: [DataRow] = []
    for goal in steps {
        let t0 = now(), from = written
        while written < goal.bytes {
            let file = try fs.create(rootInode, try EntryName("z\(written / fileBytes)"), kind: .file, mode: 0o644, uid: 0, gid: 0).number
            var at: UInt64 = 0
            while at < fileBytes {
                at += UInt64(try fs.write(file, at: at, UnsafeRawBufferPointer(buffer), flags: [.direct]))
            }
            written += fileBytes
        }
        try fs.sync()
        let rate = Double(written - from) / (now() - t0)
        let rss = residentBytes(), meta = metadataBytes(fs)
        try fs.unmount()
        let t = now()
        fs = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: image), options: benchMountOptions())
        rows.append(DataRow(device: name, zones: g.zoneCount, writtenBytes: written, lastStepBytesPerSecond: rate,
                            rssBytes: rss, metadataBytes: meta, mountSeconds: now() - t))
    }
    try fs.unmount()
    return rows
}

// MARK: Allocator, end to end

/// ns per 4 KiB O_DIRECT write through the file system (sequential, one file, 20,000 writes) on a
/// discard-data device of `zones` zones of 256 MiB.
private func nsPer4KWrite(zones: Int, _ o: ScaleOptions) throws -> Double {
    let image = "\(o.dir)/zbdfs-scale-4k-\(getpid()).img"
    defer { unlink(image) }
    let g = DeviceGeometry(zoneCount: zones, zoneSize: .mib(256), maxOpenZones: 128, maxActiveZones: 128)
    let dev = try EmulatedZonedDevice.create(path: image, geometry: g, overwrite: true, discardData: true)
    try FileSystem.format(device: dev)
    let fs = try FileSystem.mount(device: dev, options: benchMountOptions())
    let block = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
    defer { block.deallocate() }
    block.initializeMemory(as: UInt8.self, repeating: 0)
    let file = try fs.create(rootInode, try EntryName("w"), kind: .file, mode: 0o644, uid: 0, gid: 0).number
    let n = 20_000
    var samples: [Double] = []
    for round in 0..<5 {
        let t0 = now()
        for i in 0..<n {
            _ = try fs.write(file, at: UInt64(round * n + i) * 4096, UnsafeRawBufferPointer(block), flags: [.direct])
        }
        samples.append((now() - t0) * 1e9 / Double(n))
    }
    try fs.unmount()
    return medianOf(samples)
}

// MARK: Helpers

/// No background threads: the benchmark times its own steps, not a flusher's or reclaim's.
private func benchMountOptions() -> MountOptions {
    MountOptions(backgroundReclaim: false, backgroundWriteBack: false)
}

/// Written bytes of the metadata log's zones (superblock zones excluded).
private func metadataBytes(_ fs: FileSystem) -> UInt64 {
    fs.engine.allocator.accounts.reduce(0) { $0 + ($1.role == .metadata ? $1.written.bytes : 0) }
}



/// The process's resident set (VmRSS of /proc/self/status), bytes.
func residentBytes() -> UInt64 {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
          let kib = UInt64(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
    return kib * 1024
}

/// The 1, 5 and 15 minute load averages.
func loadAverage() -> String {
    let s = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? ""
    return s.split(separator: " ").prefix(3).joined(separator: " ")
}

private func progressLine(_ s: String) {
    FileHandle.standardError.write(Data("scale: \(s)\n".utf8))
}

// MARK: Table

func scaleTable(_ r: ScaleReport) -> String {
    func b(_ x: UInt64) -> String { ByteCount(x).description }
    func s(_ x: Double) -> String { String(format: "%.2f s", x) }
    var out = "zbdfs scale benchmark (\(r.cores) cores; load average \(r.loadAtStart) at the start, \(r.loadAtEnd) at the end)\n\n"
    out += "files (empty files, 1,000 per directory, library API; emulated device with data, 4,096 x 256 MiB zones; each row in a fresh process)\n"
    out += row(["files", "create/s", "RSS", "engine cache", "metadata", "checkpoint", "mount", "stat all", "readdir all", "crash mount", "replayed", "fsck"])
    for f in r.files {
        out += row([f.files.formatted(), String(format: "%.0f", f.createPerSecond), b(f.rssBytes), b(f.engineCacheBytes),
                    b(f.metadataBytes), b(f.checkpointBytes), s(f.cleanMountSeconds), s(f.statAllSeconds),
                    s(f.readdirAllSeconds), s(f.crashMountSeconds), f.recordsReplayed.formatted(), s(f.fsckSeconds)])
    }
    out += "\ndata (zeros, 8 MiB O_DIRECT writes, discard-data device; each device in a fresh process)\n"
    out += row(["device", "zones", "written", "last step", "RSS", "metadata", "mount"])
    for d in r.data {
        out += row([d.device, d.zones.formatted(), b(d.writtenBytes), String(format: "%.0f MiB/s", d.lastStepBytesPerSecond / 1_048_576),
                    b(d.rssBytes), b(d.metadataBytes), s(d.mountSeconds)])
    }
    out += "\nallocator (256 MiB zones, max active 128; grants: median of 5 x 2,000; 4K writes: median of 5 x 20,000)\n"
    out += row(["zones", "ns/grant", "ns/grant+reserve", "ns/4K write"])
    for a in r.allocator {
        out += row([a.zones.formatted(), String(format: "%.0f", a.nsPerGrant), String(format: "%.0f", a.nsPerReservedGrant),
                    String(format: "%.0f", a.nsPer4KWrite)])
    }
    return out
}

private func row(_ cells: [String]) -> String {
    cells.map { $0.count >= 12 ? $0 + " " : $0.padding(toLength: 13, withPad: " ", startingAt: 0) }.joined() + "\n"
}
