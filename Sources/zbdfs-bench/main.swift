// zbdfs-bench: the engine's throughput next to fio's on the same kind of backing file, measured in
// the same run. Prints one table (or JSON with --json).
//
//   zbdfs-bench [--dir /dev/shm] [--size 1G] [--repeat 3] [--no-checksums] [--json] [--no-fio] [--no-mounts]
//   zbdfs-bench --reclaim [--dir /dev/shm] [--json]   (reclaim write amplification; ReclaimBench.swift)
//   zbdfs-bench --append [--max-append 128K] [--dir /dev/shm] [--size 1G] [--repeat 3] [--json]
//                                                      (zone append vs write-at-pointer; AppendBench.swift)
//
// Every figure is the median of --repeat rounds; a round runs the engine on both devices and fio
// back to back, so a noisy neighbour slows all three sides of a round alike (on 2 shared cores
// single runs swing several-fold).
//
// Workloads (each on a fresh device image in --dir):
//   seq-write-1M-qd1   one writer, 1 MiB direct writes, sequential
//   seq-write-1M-qd8   eight writers (own files), 1 MiB direct writes — the engine's "queue depth"
//                      is its number of concurrent callers; fio runs eight jobs (threads) at
//                      iodepth 1, each on its own eighth of one file
//   rand-write-4K-qd1  one writer, 4 KiB direct writes at random aligned offsets of a preallocated span
//   seq-read-1M-qd1    one reader over what seq-write-1M-qd1 wrote
//   rand-read-4K-qd1   one reader, 4 KiB at random offsets
// Devices: an emulated zoned device (64 MiB zones, max active 14, 1 MiB max write) and conventional
// mode, both files in --dir, preallocated as fio preallocates its own file. fio: direct=1,
// ioengine=io_uring, same block sizes, on a file in --dir.
// Second table (unless --no-mounts or --no-fio): the same fio jobs on a file in a mount — zbdfs
// through FUSE on both device kinds, and btrfs on a loop device — for the two write workloads.

import Dispatch
import Foundation
import ZonedAllocator
import ZonedBackendFile
import ZonedCore
import ZonedEngine
import ZonedFS

struct Options {
    var dir = "/dev/shm"
    var size = ByteCount.gib(1)
    var json = false
    var fio = true
    var repeats = 3
    /// Engine data checksums (CRC-32C per block); --no-checksums shows what they cost.
    var checksums = true
    /// Run the reclaim write-amplification table instead of the IO table.
    var reclaim = false
    /// fio through mounts too: zbdfs via FUSE and btrfs on a loop device (MountBench.swift).
    var mounts = true
    /// Run the zone append vs write-at-pointer table instead of the IO table.
    var append = false
    /// The small append limit of that table's third column.
    var maxAppend = ByteCount.kib(128)
}

func parseOptions() -> Options {
    var o = Options()
    var args = Array(CommandLine.arguments.dropFirst())
    func die(_ m: String) -> Never { FileHandle.standardError.write(Data("zbdfs-bench: \(m)\n".utf8)); exit(2) }
    while !args.isEmpty {
        let a = args.removeFirst()
        switch a {
        case "--dir":
            guard !args.isEmpty else { die("--dir needs a folder") }
            o.dir = args.removeFirst()
        case "--size":
            guard !args.isEmpty, let v = ByteCount(parsing: args.removeFirst()), v >= .mib(64) else { die("--size needs a size of at least 64M") }
            o.size = v
        case "--repeat":
            guard !args.isEmpty, let n = Int(args.removeFirst()), n >= 1 else { die("--repeat needs a count of at least 1") }
            o.repeats = n
        case "--no-checksums": o.checksums = false
        case "--reclaim": o.reclaim = true
        case "--append": o.append = true
        case "--max-append":
            guard !args.isEmpty, let v = ByteCount(parsing: args.removeFirst()), v >= .kib(4), v <= .mib(1), v.isMultiple(of: .kib(4)) else {
                die("--max-append needs a multiple of 4K between 4K and 1M")
            }
            o.maxAppend = v
        case "--json": o.json = true
        case "--no-fio": o.fio = false
        case "--no-mounts": o.mounts = false
        case "-h", "--help":
            print("usage: zbdfs-bench [--dir /dev/shm] [--size 1G] [--repeat 3] [--no-checksums] [--json] [--no-fio] [--no-mounts] | --reclaim | --append [--max-append 128K]")
            exit(0)
        default: die("unknown argument \(a); see --help")
        }
    }
    return o
}

enum Workload: String, CaseIterable {
    case seqWrite1 = "seq-write-1M-qd1", seqWrite8 = "seq-write-1M-qd8", randWrite = "rand-write-4K-qd1"
    case seqRead = "seq-read-1M-qd1", randRead = "rand-read-4K-qd1"

    var blockSize: Int { self == .randWrite || self == .randRead ? 4096 : 1 << 20 }
    var threads: Int { self == .seqWrite8 ? 8 : 1 }
    var isIOPS: Bool { blockSize == 4096 }
}

struct Measurement: Codable {
    var bytes: UInt64
    var ops: UInt64
    var seconds: Double
    var mbPerSecond: Double { Double(bytes) / seconds / 1_000_000 }
    var iops: Double { Double(ops) / seconds }
}

func now() -> Double { Double(SystemClock().nowNanoseconds) / 1e9 }

/// A fresh bench image at `path`: emulated zoned ("zoned": 64 MiB zones, max open/active 14) or
/// conventional mode (64 MiB zones), 1 MiB max write either way. `maxAppend` and `maxWrite`: the
/// emulated device's zone append limit (none by default) and write limit.
func makeBenchDevice(kind: String, path: String, deviceSize: ByteCount, maxAppend: ByteCount = .zero,
                     maxWrite: ByteCount = .mib(1)) throws -> any ZonedDevice {
    if kind == "zoned" {
        let zone = ByteCount.mib(64)
        let g = DeviceGeometry(zoneCount: Int(deviceSize.bytes / zone.bytes), zoneSize: zone, maxOpenZones: 14,
                               maxActiveZones: 14, maxWriteBytes: maxWrite, maxAppendBytes: maxAppend)
        return try EmulatedZonedDevice.create(path: path, geometry: g, overwrite: true)
    }
    try ConventionalDevice.create(path: path, size: deviceSize, overwrite: true)
    return try ConventionalDevice.open(path: path, zoneSize: .mib(64), maxWriteBytes: .mib(1))
}

final class BenchDevice: @unchecked Sendable {
    let path: String
    let engine: Engine
    /// `maxAppend`, `maxWrite`: the device's limits; `zoneAppend`: whether the engine appends.
    init(kind: String, dir: String, size: ByteCount, checksums: Bool, maxAppend: ByteCount = .zero, maxWrite: ByteCount = .mib(1),
         zoneAppend: Bool = true) throws {
        path = "\(dir)/zbdfs-bench-\(kind)-\(getpid()).img"
        // Room for the data, the random rewrites' garbage (80 MiB) and zones finished early.
        let device = try makeBenchDevice(kind: kind, path: path, deviceSize: size + .mib(512), maxAppend: maxAppend, maxWrite: maxWrite)
        // fio fallocates its file before writing (fallocate=native); do the same, so both sides
        // measure the IO path and not tmpfs allocating pages on first touch.
        let fd = open(path, O_RDWR)
        if fd >= 0 {
            var st = stat()
            fstat(fd, &st)
            _ = posix_fallocate(fd, 0, st.st_size)
            close(fd)
        }
        var config = EngineConfig(dataChecksums: checksums)
        config.zoneAppend = zoneAppend
        engine = try Engine(device: device, config: config)
        // Let the kernel finish with the pages of the previous image (freed at its unlink) before
        // timing anything: measured runs right after a multi-GiB unlink and fallocate were 2-4x slower.
        sleep(2)
    }
    deinit {
        engine.device.close()
        unlink(path)
    }
}

/// seq-write-1M-qd1: one writer, 1 MiB direct writes of seeded bytes into a new file, `total` bytes.
func sequentialWrite(_ engine: Engine, total: Int) throws -> (InodeNumber, Measurement) {
    let f = engine.createFile()
    let buf = AlignedBuffer(count: 1 << 20)
    var rng = SeededRandom(seed: 1)
    rng.fill(buf.mutable)
    let t0 = now()
    var off = 0
    while off < total {
        _ = try engine.write(f, at: UInt64(off), buf.readOnly)
        off += 1 << 20
    }
    return (f, Measurement(bytes: UInt64(total), ops: UInt64(total >> 20), seconds: now() - t0))
}

/// seq-write-1M-qd8: eight writers at once, each 1 MiB direct writes into its own file, `total` bytes in all.
func concurrentSequentialWrites(_ engine: Engine, total: Int) throws -> Measurement {
    let files = (0..<8).map { _ in engine.createFile() }
    let per = total / 8
    let failure = NSLock()
    nonisolated(unsafe) var error: (any Error)?
    let t0 = now()
    DispatchQueue.concurrentPerform(iterations: 8) { w in
        let buf = AlignedBuffer(count: 1 << 20)
        buf.fill(UInt8(w))
        var off = 0
        do {
            while off < per {
                _ = try engine.write(files[w], at: UInt64(off), buf.readOnly)
                off += 1 << 20
            }
        } catch let e { failure.withLock { error = e } }
    }
    if let error { throw error }
    return Measurement(bytes: UInt64(per * 8), ops: UInt64(per * 8 >> 20), seconds: now() - t0)
}

/// Runs the engine side of every workload on one device kind.
func benchEngine(kind: String, o: Options) throws -> [Workload: Measurement] {
    var out: [Workload: Measurement] = [:]
    let total = Int(o.size.bytes)
    // Sequential writes at QD1, then reads of the same file.
    do {
        let d = try BenchDevice(kind: kind, dir: o.dir, size: o.size, checksums: o.checksums)
        let (f, m) = try sequentialWrite(d.engine, total: total)
        out[.seqWrite1] = m
        let buf = AlignedBuffer(count: 1 << 20)
        var rng = SeededRandom(seed: 2)
        var off = 0
        let t1 = now()
        off = 0
        while off < total {
            _ = try d.engine.read(f, at: UInt64(off), into: buf.mutable)
            off += 1 << 20
        }
        out[.seqRead] = Measurement(bytes: UInt64(total), ops: UInt64(total >> 20), seconds: now() - t1)
        // Random 4 KiB reads and writes within the written file.
        let small = AlignedBuffer(count: 4096)
        let n = 20_000
        let blocks = UInt64(total / 4096)
        let t2 = now()
        for _ in 0..<n { _ = try d.engine.read(f, at: (rng.next() % blocks) * 4096, into: small.mutable) }
        out[.randRead] = Measurement(bytes: UInt64(n * 4096), ops: UInt64(n), seconds: now() - t2)
        let t3 = now()
        for _ in 0..<n { _ = try d.engine.write(f, at: (rng.next() % blocks) * 4096, small.readOnly) }
        out[.randWrite] = Measurement(bytes: UInt64(n * 4096), ops: UInt64(n), seconds: now() - t3)
    }
    // Eight concurrent sequential writers.
    do {
        let d = try BenchDevice(kind: kind, dir: o.dir, size: o.size, checksums: o.checksums)
        out[.seqWrite8] = try concurrentSequentialWrites(d.engine, total: total)
        if ProcessInfo.processInfo.environment["ZBDFS_BENCH_DEBUG"] != nil {
            FileHandle.standardError.write(Data("\(kind) qd8: \(d.engine.allocator.stats) \(d.engine.stats)\n".utf8))
        }
    }
    return out
}

/// fio on a plain file in the same folder, same block sizes and depths.
func benchFio(o: Options) throws -> [Workload: Measurement] {
    let file = "\(o.dir)/zbdfs-bench-fio-\(getpid()).dat"
    defer { unlink(file) }
    var out: [Workload: Measurement] = [:]
    for w in [Workload.seqWrite1, .seqWrite8, .seqRead, .randWrite, .randRead] {
        out[w] = try fio(w, file: file, o: o)
    }
    return out
}

/// One fio job of workload `w` on `file` (direct=1, io_uring).
func fio(_ w: Workload, file: String, o: Options) throws -> Measurement {
    let (rw, bs, depth, amount): (String, String, Int, String)
    switch w {
    case .seqWrite1: (rw, bs, depth, amount) = ("write", "1M", 1, o.size.description)
    case .seqWrite8: (rw, bs, depth, amount) = ("write", "1M", 8, o.size.description)
    case .seqRead: (rw, bs, depth, amount) = ("read", "1M", 1, o.size.description)
    case .randWrite: (rw, bs, depth, amount) = ("randwrite", "4k", 1, "80M")
    case .randRead: (rw, bs, depth, amount) = ("randread", "4k", 1, "80M")
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    // Eight concurrent writers are eight fio jobs (threads) at depth 1, each on its own eighth of
    // one file: the same shape as eight engine callers on their own files in one image.
    let jobs = depth
    let perJob = o.size.bytes / UInt64(jobs)
    var args = ["fio", "--name=\(w.rawValue)", "--filename=\(file)", "--size=\(perJob)",
                "--rw=\(rw)", "--bs=\(bs)", "--direct=1", "--ioengine=io_uring", "--iodepth=1",
                "--numjobs=\(jobs)", "--thread", "--group_reporting", "--randrepeat=1", "--output-format=json"]
    if jobs > 1 { args.append("--offset_increment=\(perJob)") } else {
        args.append("--io_size=\(amount.replacingOccurrences(of: " ", with: "").replacingOccurrences(of: "iB", with: ""))")
    }
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = FileHandle.nullDevice
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0,
          let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any],
          let job = (obj["jobs"] as? [[String: Any]])?.first,
          let side = job[rw.contains("write") ? "write" : "read"] as? [String: Any],
          let bytes = side["io_bytes"] as? Double ?? (side["io_bytes"] as? Int).map(Double.init),
          let ios = side["total_ios"] as? Double ?? (side["total_ios"] as? Int).map(Double.init),
          let runtimeMs = side["runtime"] as? Double ?? (side["runtime"] as? Int).map(Double.init), runtimeMs > 0
    else { throw BenchError.fio("fio \(w.rawValue) on \(file) failed (status \(p.terminationStatus))") }
    return Measurement(bytes: UInt64(bytes), ops: UInt64(ios), seconds: runtimeMs / 1000)
}

enum BenchError: Error { case fio(String) }

/// The median measurement of each workload over the rounds (by its rate).
func median(_ rounds: [[Workload: Measurement]]) -> [Workload: Measurement] {
    var out: [Workload: Measurement] = [:]
    for w in Workload.allCases {
        let ms = rounds.compactMap { $0[w] }.sorted { w.isIOPS ? $0.iops < $1.iops : $0.mbPerSecond < $1.mbPerSecond }
        if !ms.isEmpty { out[w] = ms[ms.count / 2] }
    }
    return out
}

// Hidden: the allocator's cost per grant against the zone count (AllocatorScale.swift).
if CommandLine.arguments.dropFirst().first == "--scale" { exit(runScaleCommand(Array(CommandLine.arguments.dropFirst(2)))) }
if CommandLine.arguments.dropFirst().first == "--allocator-scale" { exit(runAllocatorScaleCommand(Array(CommandLine.arguments.dropFirst(2)))) }
let o = parseOptions()
if o.append {
    do {
        try runAppendBench(o: o)
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("zbdfs-bench: \(error)\n".utf8))
        exit(1)
    }
}
if o.reclaim {
    do {
        var results: [ReclaimResult] = []
        for u in [0.5, 0.8] {
            for p in [ReclaimPolicy.costBenefit, .greedy] { results.append(try benchReclaim(dir: o.dir, utilisation: u, policy: p)) }
        }
        if o.json {
            let rows: [[String: Any]] = results.map { ["utilisation": $0.utilisation, "policy": $0.policy.rawValue, "user_bytes": $0.userBytes,
                                                       "moved_bytes": $0.movedBytes, "zones_reclaimed": $0.zonesReclaimed,
                                                       "write_amplification": $0.writeAmplification, "seconds": $0.seconds] }
            let data = try JSONSerialization.data(withJSONObject: ["reclaim": rows], options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            printReclaim(results)
        }
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("zbdfs-bench: \(error)\n".utf8))
        exit(1)
    }
}
do {
    var zr: [[Workload: Measurement]] = [], cr: [[Workload: Measurement]] = [], fr: [[Workload: Measurement]] = []
    var fzr: [[Workload: Measurement]] = [], fcr: [[Workload: Measurement]] = [], br: [[Workload: Measurement]] = []
    let mounts = o.mounts && o.fio
    let btrfsNote = mounts ? btrfsUnavailable() : nil
    for round in 1...o.repeats {
        if !o.json { FileHandle.standardError.write(Data("zbdfs-bench: round \(round) of \(o.repeats)\n".utf8)) }
        zr.append(try benchEngine(kind: "zoned", o: o))
        cr.append(try benchEngine(kind: "conventional", o: o))
        if o.fio { fr.append(try benchFio(o: o)) }
        if mounts {
            fzr.append(try benchFUSE(kind: "zoned", o: o))
            fcr.append(try benchFUSE(kind: "conventional", o: o))
            if btrfsNote == nil { br.append(try benchBtrfs(o: o)) }
        }
    }
    let zoned = median(zr), conv = median(cr), fio = median(fr)
    let fuseZoned = median(fzr), fuseConv = median(fcr), btrfs = median(br)
    if o.json {
        var rows: [[String: Any]] = []
        for w in Workload.allCases {
            var r: [String: Any] = ["workload": w.rawValue]
            for (name, m) in [("zoned", zoned[w]), ("conventional", conv[w]), ("fio", fio[w])] {
                if let m { r[name] = ["mb_per_second": m.mbPerSecond, "iops": m.iops, "bytes": m.bytes, "seconds": m.seconds] }
            }
            rows.append(r)
        }
        var mountRows: [[String: Any]] = []
        for w in mountWorkloads where mounts {
            var r: [String: Any] = ["workload": w.rawValue]
            for (name, m) in [("fuse_zoned", fuseZoned[w]), ("fuse_conventional", fuseConv[w]), ("btrfs_loop", btrfs[w]), ("plain_file", fio[w])] {
                if let m { r[name] = ["mb_per_second": m.mbPerSecond, "iops": m.iops, "bytes": m.bytes, "seconds": m.seconds] }
            }
            mountRows.append(r)
        }
        var top: [String: Any] = ["dir": o.dir, "size_bytes": o.size.bytes, "rounds": o.repeats, "results": rows]
        if mounts {
            top["mounts"] = mountRows
            if let btrfsNote { top["btrfs_note"] = btrfsNote }
        }
        let data = try JSONSerialization.data(withJSONObject: top, options: [.prettyPrinted, .sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    } else {
        func fmt(_ m: Measurement?, _ w: Workload) -> String {
            guard let m else { return "-" }
            return w.isIOPS ? String(format: "%.0f IOPS", m.iops) : String(format: "%.0f MB/s", m.mbPerSecond)
        }
        func ratio(_ a: Measurement?, _ b: Measurement?, _ w: Workload) -> String {
            guard let a, let b else { return "-" }
            return String(format: "%.2f", w.isIOPS ? a.iops / b.iops : a.mbPerSecond / b.mbPerSecond)
        }
        print("zbdfs-bench: engine API vs fio (direct=1, io_uring), files in \(o.dir), \(o.size) per sequential workload, median of \(o.repeats) rounds\(o.checksums ? "" : ", engine without data checksums")")
        let header = ["workload", "engine zoned", "engine conv", "fio", "zoned/fio", "conv/fio"]
        func line(_ c: [String], _ widths: [Int] = [20, 14, 14, 14, 10, 9]) -> String {
            zip(c, widths).enumerated().map { i, p in
                i == 0 ? p.0.padding(toLength: p.1, withPad: " ", startingAt: 0)
                       : String(repeating: " ", count: max(0, p.1 - p.0.count)) + p.0
            }.joined(separator: " ")
        }
        print(line(header))
        for w in Workload.allCases {
            print(line([w.rawValue, fmt(zoned[w], w), fmt(conv[w], w), fmt(fio[w], w), ratio(zoned[w], fio[w], w), ratio(conv[w], fio[w], w)]))
        }
        if mounts {
            print("\nthrough a mount: fio (direct=1, io_uring) on a file in the mount; zbdfs via FUSE, btrfs on a loop device over a file in \(o.dir)")
            let header2 = ["workload", "FUSE zoned", "FUSE conv", "btrfs loop", "plain file", "zoned/btrfs"]
            let widths2 = [20, 14, 14, 14, 14, 12]
            print(line(header2, widths2))
            for w in mountWorkloads {
                print(line([w.rawValue, fmt(fuseZoned[w], w), fmt(fuseConv[w], w), fmt(btrfs[w], w), fmt(fio[w], w),
                            ratio(fuseZoned[w], btrfs[w], w)], widths2))
            }
            if let btrfsNote { print("btrfs: not run: \(btrfsNote)") }
        }
    }
} catch {
    FileHandle.standardError.write(Data("zbdfs-bench: \(error)\n".utf8))
    exit(1)
}
