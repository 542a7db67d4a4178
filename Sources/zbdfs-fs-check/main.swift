// zbdfs-fs-check: the file system's write-and-verify workload, and a check of `zbdfs zones --json`,
// on a kernel zoned block device or an NVMe ZNS namespace's char device (the QEMU guest,
// Emulation/run-suite) or an emulated image (host).
//
//   zbdfs-fs-check workload DEVICE      DEVICE must hold a fresh zbdfs (`zbdfs format` first)
//   zbdfs-fs-check zones-json FILE [--zones N]
//
// workload: mounts through the library and keeps a model of every file's bytes. Round 1 writes
// two files with aligned direct writes of mixed sizes, alternating between them, until together
// they cross data zones; two more in parallel from two threads; unaligned buffered writes
// (overlapping, one overwriting direct data across a 1 MiB boundary, one asking for direct IO at
// an unaligned offset); a sparse file; fsync; a rename, a rename over an existing file, an unlink;
// then creates and unlinks files with long names, with an fsync now and then, until the metadata
// log has rolled over into a new zone twice. Unmount, mount, verify every byte of every file and
// that the tree is exactly the model's. Round 2 appends (direct), truncates to an unaligned size,
// fills part of a hole, unlinks; unmount, mount, verify again; unmount (fsck may follow).
// Output: one line per phase and per verified file; the last line is
// "fs-write-verify: PASS ..." or "fs-write-verify: FAIL <what>". Exit 0 / 1; 2 on bad usage.
//
// zones-json: decodes FILE as a ZoneReport (what `zbdfs zones --json` prints) and checks it is
// consistent: N zones (when given), zones in order and contiguous, write pointers inside their
// zones, conditions known, open/active counts within the limits and matching the summary.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import FoundationEssentials
import ZonedBackendFile
import ZonedBackendKernel
import ZonedBackendNVMe
import ZonedCore
import ZonedEngine
import ZonedFS
import ZonedMonitor

let tool = "fs-write-verify"

func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

nonisolated(unsafe) var lastPhase = monotonicSeconds()

/// One line of output; `timed` adds the seconds since the previous timed line.
func say(_ s: String, timed: Bool = false) {
    if timed {
        let now = monotonicSeconds()
        print(s + " [" + String(format1(now - lastPhase)) + " s]")
        lastPhase = now
    } else {
        print(s)
    }
    fflush(nil)  // the console interleaves with kernel messages; keep lines whole and in order
}

func format1(_ v: Double) -> String {
    let tenths = Int((v * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}

func fail(_ message: String) -> Never {
    say("\(tool): FAIL \(message)")
    exit(1)
}

func usage(_ message: String) -> Never {
    let text = "zbdfs-fs-check: \(message)\nusage: zbdfs-fs-check workload DEVICE | zones-json FILE [--zones N]\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
    exit(2)
}

func mib(_ b: UInt64) -> String {
    let tenths = b * 10 / 1_048_576
    return tenths % 10 == 0 ? "\(tenths / 10) MiB" : "\(tenths / 10).\(tenths % 10) MiB"
}

func hex(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 8 - s.count) + s
}

/// Deterministic bytes (xorshift64), different per seed.
func pattern(_ count: Int, seed: UInt64) -> [UInt8] {
    var x = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    var out = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17
        var v = x
        for _ in 0..<8 where i < count {
            out[i] = UInt8(truncatingIfNeeded: v)
            v >>= 8
            i += 1
        }
    }
    return out
}

// MARK: - zones-json

func checkZonesJSON(_ args: [String]) -> Never {
    guard let file = args.first else { usage("zones-json needs a file") }
    var expectZones: Int?
    if args.count == 3, args[1] == "--zones", let n = Int(args[2]) { expectZones = n } else if args.count != 1 { usage("bad zones-json arguments") }
    let fd = open(file, O_RDONLY)
    guard fd >= 0 else { say("zones: FAIL cannot open \(file)"); exit(1) }
    var data = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        data += chunk[0..<n]
    }
    close(fd)
    let report: ZoneReport
    do {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        report = try decoder.decode(ZoneReport.self, from: Data(data))
    } catch {
        say("zones: FAIL the output is not a zone report: \(error)")
        exit(1)
    }
    let g = report.geometry
    var problems: [String] = []
    if let e = expectZones, report.zones.count != e { problems.append("\(report.zones.count) zones listed, sysfs says \(e)") }
    if report.zones.count != g.zoneCount { problems.append("\(report.zones.count) zones listed, geometry says \(g.zoneCount)") }
    var open = 0, active = 0, conventional = 0
    var counts: [String: Int] = [:]
    for (i, z) in report.zones.enumerated() {
        if z.index != UInt32(i) { problems.append("zone \(i) has index \(z.index)"); break }
        if z.startBytes != UInt64(i) * g.zoneSizeBytes { problems.append("zone \(i) starts at \(z.startBytes)"); break }
        guard let condition = ZoneCondition(rawValue: z.condition) else { problems.append("zone \(i) has condition '\(z.condition)'"); continue }
        counts[z.condition, default: 0] += 1
        if z.type == ZoneType.conventional.rawValue { conventional += 1; continue }
        guard let wp = z.writePointerBytes else { problems.append("sequential zone \(i) has no write pointer"); continue }
        if wp < z.startBytes || wp > z.startBytes + z.capacityBytes, condition != .full {
            problems.append("zone \(i): write pointer \(wp) outside [\(z.startBytes), +\(z.capacityBytes)]")
        }
        if condition.isOpen { open += 1 }
        if condition.isActive { active += 1 }
    }
    if conventional != g.conventionalZones { problems.append("\(conventional) conventional zones listed, geometry says \(g.conventionalZones)") }
    if g.maxOpenZones > 0, open > g.maxOpenZones { problems.append("\(open) open zones > max open \(g.maxOpenZones)") }
    if g.maxActiveZones > 0, active > g.maxActiveZones { problems.append("\(active) active zones > max active \(g.maxActiveZones)") }
    if report.summary.openZones != open { problems.append("summary says \(report.summary.openZones) open zones, the list \(open)") }
    if report.summary.activeZones != active { problems.append("summary says \(report.summary.activeZones) active zones, the list \(active)") }
    let byCondition = counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
    if !problems.isEmpty {
        say("zones: FAIL " + problems.prefix(5).joined(separator: "; "))
        exit(1)
    }
    func limit(_ n: Int) -> String { n == 0 ? "unlimited" : String(n) }
    say("zones: PASS \(report.zones.count) zones (\(byCondition)); open \(open)/\(limit(g.maxOpenZones)), active \(active)/\(limit(g.maxActiveZones))")
    exit(0)
}

// MARK: - workload

/// What every file should hold, and what the tree should be.
struct Model {
    var files: [String: [UInt8]] = [:]
    var directories: Set<String> = ["/"]
    var symlinks: [String: [UInt8]] = [:]

    mutating func write(_ path: String, at offset: Int, _ bytes: [UInt8]) {
        var f = files[path] ?? []
        if f.count < offset + bytes.count { f += [UInt8](repeating: 0, count: offset + bytes.count - f.count) }
        f.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
        files[path] = f
    }
}

func run<T>(_ what: String, _ body: () throws(DeviceError) -> T) -> T {
    do {
        return try body()
    } catch {
        fail("\(what): \(error)")
    }
}

@MainActor
final class Workload {
    let path: String
    var model = Model()
    var fs: FileSystem!
    var block = 4096
    var zoneCapacity: UInt64 = 0
    var dataZonesCrossed = 0
    var logRollovers: UInt64 = 0
    /// Zone appends the engine sent (0 on a device without zone append), over all mounts.
    var zoneAppends: UInt64 = 0

    init(path: String) { self.path = path }

    func openDevice() -> any ZonedDevice {
        run("open \(path)") { () throws(DeviceError) -> any ZonedDevice in
            if EmulatedZonedDevice.isEmulatedImage(path: path) { return try EmulatedZonedDevice.open(path: path) }
            if NVMeZonedDevice.isPassthroughDevice(path: path) { return try NVMeZonedDevice.open(path: path) }
            return try KernelZonedDevice.open(path: path)
        }
    }

    func mount() {
        let device = openDevice()
        fs = run("mount") { () throws(DeviceError) -> FileSystem in try FileSystem.mount(device: device) }
        let r = fs.mountReport
        say("mounted   superblock generation \(r.superblockGeneration), log zones \(r.logZones), replayed \(r.framesReplayed) frames / \(r.recordsReplayed) records, \(r.zonesReset.count) zones reset, garbage \(r.garbageBytes) B", timed: true)
    }

    func unmount() {
        let j = fs.journalCounters
        zoneAppends += fs.engine.allocator.stats.deviceAppends
        run("unmount") { () throws(DeviceError) in try fs.unmount() }
        say("unmounted log: \(j.frames) frames, \(j.bytes) B, \(j.zonesUsed) zones used, \(j.checkpoints) checkpoints, \(j.durableCommits) durable commits", timed: true)
        fs = nil
    }

    func create(_ p: String) -> InodeNumber {
        let n = run("create \(p)") { () throws(DeviceError) -> InodeNumber in try fs.createFile(p) }
        model.files[p] = []
        return n
    }

    func inode(_ p: String) -> InodeNumber { run("resolve \(p)") { () throws(DeviceError) -> InodeNumber in try fs.resolve(p) } }

    /// Aligned direct writes from an aligned buffer, straight to the device.
    func writeDirect(_ p: String, at offset: Int, _ bytes: [UInt8]) {
        let n = inode(p)
        let buffer = AlignedBuffer(count: bytes.count, zeroed: false)
        bytes.withUnsafeBytes { buffer.mutable.copyMemory(from: $0) }
        var done = 0
        while done < bytes.count {
            let w = run("direct write of \(bytes.count) B to \(p) at \(offset + done)") { () throws(DeviceError) -> Int in
                try fs.write(n, at: UInt64(offset + done), UnsafeRawBufferPointer(rebasing: buffer.readOnly[done...]), flags: [.direct])
            }
            guard w > 0 else { fail("direct write to \(p) at \(offset + done) wrote nothing") }
            done += w
        }
        model.write(p, at: offset, bytes)
    }

    func writeBuffered(_ p: String, at offset: Int, _ bytes: [UInt8]) {
        let n = inode(p)
        run("buffered write of \(bytes.count) B to \(p) at \(offset)") { () throws(DeviceError) in try fs.write(n, at: UInt64(offset), bytes: bytes) }
        model.write(p, at: offset, bytes)
    }

    /// Every data zone a file's extents touch.
    func zones(of p: String) -> Set<Int> {
        let n = inode(p)
        let g = fs.device.geometry
        let extents = run("extents of \(p)") { () throws(DeviceError) -> [FileExtent] in try fs.engine.extents(n) }
        var out = Set<Int>()
        for e in extents where e.kind == .data {
            if let a = g.zone(containing: e.device), let b = g.zone(containing: e.device + ByteCount(e.length - 1)) {
                for z in a.int...b.int { out.insert(z) }
            }
        }
        return out
    }

    // MARK: Round 1

    func round1() {
        let g = fs.device.geometry
        block = Int(g.logicalBlockSize.bytes)
        zoneCapacity = g.zoneCapacity.bytes
        say("device    \(path): \(g.zoneCount) zones x \(mib(g.zoneSize.bytes)), capacity \(mib(g.zoneCapacity.bytes)), block \(block) B, \(g.conventionalZoneCount) conventional, max open \(g.maxOpenZones), max active \(g.maxActiveZones), max write \(g.maxWriteBytes.bytes) B")
        for d in ["/data", "/data/sub", "/churn"] {
            run("mkdir \(d)") { () throws(DeviceError) in _ = try fs.makeDirectory(d) }
            model.directories.insert(d)
        }

        // Two files, alternating aligned direct writes of mixed sizes (block multiples), until
        // together they hold a zone's capacity and a half: they cannot fit in one data zone.
        let a = "/data/a.bin", b = "/data/b.bin"
        _ = create(a); _ = create(b)
        let sizes = [1 << 20, 4 * block, (512 << 10) + 3 * block, 2 << 20, 64 << 10, (1 << 20) - block]
        let target = Int(zoneCapacity) * 3 / 2
        var offsets = [a: 0, b: 0]
        var i = 0, total = 0
        let fallbacksBefore = fs.engine.stats.bufferedFallbacks
        while total < target {
            let p = i % 2 == 0 ? a : b
            let len = sizes[i % sizes.count]
            writeDirect(p, at: offsets[p]!, pattern(len, seed: UInt64(1000 + i)))
            offsets[p]! += len
            total += len
            i += 1
        }
        guard fs.engine.stats.bufferedFallbacks == fallbacksBefore else { fail("an aligned direct write fell back to the buffered path") }
        let dataZones = zones(of: a).union(zones(of: b))
        dataZonesCrossed = dataZones.count
        guard dataZones.count >= 2 else { fail("\(mib(UInt64(total))) of direct writes landed in \(dataZones.count) zone(s); expected them to cross zones") }
        say("wrote     \(a) + \(b): \(i) aligned direct writes, \(mib(UInt64(total))) in \(dataZones.count) data zones \(dataZones.sorted())", timed: true)

        // Two writers at once, each with its own file.
        let c0 = "/data/c0.bin", c1 = "/data/c1.bin"
        _ = create(c0); _ = create(c1)
        let parallel = [c0, c1].enumerated().map { i, p in (p, inode(p), pattern(4 << 20, seed: UInt64(5000 + i))) }
        let fsRef = fs!
        let errors = Locked<[String]>([])
        let threads = parallel.map { (p, n, bytes) in
            Worker {
                let buffer = AlignedBuffer(count: bytes.count, zeroed: false)
                bytes.withUnsafeBytes { buffer.mutable.copyMemory(from: $0) }
                var done = 0
                while done < bytes.count {
                    let len = min(256 << 10, bytes.count - done)
                    do {
                        let w = try fsRef.write(n, at: UInt64(done), UnsafeRawBufferPointer(rebasing: buffer.readOnly[done..<(done + len)]), flags: [.direct])
                        guard w > 0 else { errors.update { $0.append("\(p): short write at \(done)") }; return }
                        done += w
                    } catch {
                        errors.update { $0.append("\(p) at \(done): \(error)") }
                        return
                    }
                }
            }
        }
        for t in threads { t.join() }
        if let e = errors.value.first { fail("parallel direct write: \(e)") }
        for (p, _, bytes) in parallel { model.files[p] = bytes }
        say("wrote     \(c0) + \(c1): 4 MiB each from two threads at once, 256 KiB direct writes", timed: true)

        // Unaligned buffered writes, overlapping one another.
        let odd = "/data/sub/odd.bin"
        _ = create(odd)
        var x: UInt64 = 7
        for k in 0..<24 {
            x = x &* 6364136223846793005 &+ 1442695040888963407
            let off = Int(x >> 33) % (3 << 20)
            let len = 1 + Int(x >> 17) % (300 << 10)
            writeBuffered(odd, at: off, pattern(len, seed: UInt64(2000 + k)))
        }
        // Buffered bytes over direct-written data, across a 1 MiB boundary of the file.
        writeBuffered(a, at: (1 << 20) - 123, pattern(70_001, seed: 3000))
        // Direct asked for at an unaligned offset: the engine takes the buffered path.
        let before = fs.engine.stats.bufferedFallbacks
        let unalignedDirect = pattern(3 * block, seed: 3001)
        writeDirect(b, at: 5 * block + 17, unalignedDirect)
        guard fs.engine.stats.bufferedFallbacks > before else { fail("a direct write at an unaligned offset did not take the buffered path") }
        // A sparse file: a hole of 3 MiB + 5 B, then data; the hole must read back as zeros.
        let sparse = "/data/sparse.bin"
        _ = create(sparse)
        writeBuffered(sparse, at: (3 << 20) + 5, pattern(1000, seed: 3002))
        run("fsync \(odd)") { () throws(DeviceError) in try fs.fsync(inode(odd)) }
        say("wrote     \(odd): 24 overlapping unaligned buffered writes, fsync; 70,001 B buffered over \(a); an unaligned direct write to \(b) (buffered path); \(sparse) with a 3 MiB hole", timed: true)

        // Namespace: a rename, a rename over an existing file, an unlink.
        let renamed = "/data/sub/b-renamed.bin"
        rename(b, renamed)
        let victim = "/data/victim.txt"
        _ = create(victim)
        writeBuffered(victim, at: 0, Array("this file is replaced by a rename\n".utf8))
        rename(c1, victim)
        unlink(c0)
        say("renamed   \(b) -> \(renamed); \(c1) -> \(victim) (replacing it); unlinked \(c0)", timed: true)

        churnUntilLogRollsOver()
        run("sync") { () throws(DeviceError) in try fs.sync() }
    }

    func rename(_ from: String, _ to: String) {
        run("rename \(from) -> \(to)") { () throws(DeviceError) in
            let (fd, fn) = try fs.split(from)
            let (td, tn) = try fs.split(to)
            try fs.rename(fd, fn, to: td, tn)
        }
        model.files[to] = model.files.removeValue(forKey: from)
    }

    func unlink(_ p: String) {
        run("unlink \(p)") { () throws(DeviceError) in
            let (d, name) = try fs.split(p)
            try fs.unlink(d, name)
        }
        model.files[p] = nil
    }

    /// Creates and unlinks symlinks with long targets (log records of about 4 KiB, no data) until
    /// the log has moved to a new zone twice; an fsync every 200 operations makes some commits
    /// durable on the way, and every 500th symlink stays, to be checked after the remount.
    func churnUntilLogRollsOver() {
        let start = fs.journalCounters
        let limit = start.bytes + 6 * zoneCapacity
        let churn = inode("/churn")
        var k = 0, kept = 0
        while fs.journalCounters.zonesUsed < start.zonesUsed + 2 {
            guard fs.journalCounters.bytes < limit else {
                fail("the metadata log wrote \(fs.journalCounters.bytes - start.bytes) B without rolling over twice (zones used \(start.zonesUsed) -> \(fs.journalCounters.zonesUsed))")
            }
            let name = "link-\(k)-" + String(repeating: "n", count: 180)
            let target = Array("/target/\(k)/".utf8) + [UInt8](repeating: UInt8(ascii: "a") + UInt8(k % 26), count: 3000 + k % 1000)
            run("symlink /churn/\(name)") { () throws(DeviceError) in
                _ = try fs.create(churn, try EntryName(name), kind: .symlink, mode: 0o777, uid: 0, gid: 0, target: target)
            }
            if k % 500 == 499 {
                kept += 1
                model.symlinks["/churn/" + name] = target
            } else {
                run("unlink /churn/\(name)") { () throws(DeviceError) in try fs.unlink(churn, try EntryName(name)) }
            }
            if k % 200 == 0 { run("fsync") { () throws(DeviceError) in try fs.fsync(inode("/data/sub/odd.bin")) } }
            k += 1
        }
        let j = fs.journalCounters
        logRollovers = j.zonesUsed - start.zonesUsed
        say("churned   \(k) symlinks with 3-4 KiB targets (\(k - kept) unlinked again): the log wrote \(mib(j.bytes - start.bytes)) and rolled over into \(j.zonesUsed - start.zonesUsed) new zones (\(j.checkpoints - start.checkpoints) checkpoints)", timed: true)
    }

    // MARK: Round 2

    func round2() {
        let a = "/data/a.bin"
        let size = model.files[a]!.count
        guard size % block == 0 else { fail("internal: \(a) is not block-sized") }
        writeDirect(a, at: size, pattern(2 << 20, seed: 4000))
        let odd = "/data/sub/odd.bin"
        let newSize = model.files[odd]!.count / 2 + 333
        run("truncate \(odd)") { () throws(DeviceError) in try fs.truncate(inode(odd), to: UInt64(newSize)) }
        model.files[odd]!.removeSubrange(newSize...)
        writeBuffered("/data/sparse.bin", at: 1 << 20, pattern(5000, seed: 4001))
        unlink("/data/victim.txt")
        say("changed   appended 2 MiB direct to \(a), truncated \(odd) to \(newSize) B, wrote into the hole of /data/sparse.bin, unlinked /data/victim.txt", timed: true)
    }

    // MARK: Verify

    func verify(_ label: String) {
        let listed = run("walk") { () throws(DeviceError) -> [(path: String, inode: InodeNumber)] in try fs.walk() }
        var files: [String: InodeNumber] = [:]
        var dirs: Set<String> = ["/"]
        for (p, n) in listed {
            if p.hasSuffix("/") {
                dirs.insert(String(p.dropLast()))
            } else if let target = model.symlinks[p] {
                let got = run("readlink \(p)") { () throws(DeviceError) -> [UInt8] in try fs.readLink(n) }
                if got != target { fail("\(label): symlink \(p) reads \(got.count) B of target, wrote \(target.count) B (or other bytes)") }
            } else {
                files[p] = n
            }
        }
        let linksListed = Set(listed.map(\.path)).intersection(model.symlinks.keys).count
        if linksListed != model.symlinks.count { fail("\(label): \(model.symlinks.count - linksListed) of \(model.symlinks.count) symlinks are missing") }
        if dirs != model.directories { fail("\(label): directories \(dirs.sorted()) differ from \(model.directories.sorted())") }
        let missing = Set(model.files.keys).subtracting(files.keys).sorted()
        let extra = Set(files.keys).subtracting(model.files.keys).sorted()
        if !missing.isEmpty || !extra.isEmpty {
            fail("\(label): the tree differs: missing \(missing.prefix(3)), unexpected \(extra.prefix(3))\(extra.count > 3 ? " (\(extra.count) in all)" : "")")
        }
        let chunk = AlignedBuffer(count: 1 << 20)
        var bytes: UInt64 = 0
        for p in model.files.keys.sorted() {
            let want = model.files[p]!
            let n = files[p]!
            let st = run("stat \(p)") { () throws(DeviceError) -> FileStat in try fs.stat(n) }
            if st.size != UInt64(want.count) { fail("\(label): \(p) has \(st.size) B, wrote \(want.count) B") }
            var off = 0
            var got: UInt32 = 0
            while off < want.count {
                let len = min(chunk.count, want.count - off)
                chunk.fill(0xA5)
                let r = run("read \(p) at \(off)") { () throws(DeviceError) -> Int in
                    try fs.read(n, at: UInt64(off), into: chunk.slice(0, len), flags: [.direct])
                }
                if r != len { fail("\(label): short read of \(p) at \(off): \(r) of \(len) B") }
                let equal = want.withUnsafeBytes { w in memcmp(w.baseAddress! + off, chunk.base, len) == 0 }
                if !equal {
                    let first = (0..<len).first { want[off + $0] != chunk.base.load(fromByteOffset: $0, as: UInt8.self) }!
                    let at = off + first
                    fail("\(label): \(p) differs at byte \(at) (read 0x\(String(chunk.base.load(fromByteOffset: first, as: UInt8.self), radix: 16)), wrote 0x\(String(want[at], radix: 16)))")
                }
                got = CRC32C.update(got, UnsafeRawBufferPointer(chunk.slice(0, len)))
                off += len
            }
            let crc = CRC32C.checksum(want)
            if got != crc { fail("\(label): \(p) crc32c \(hex(got)) != \(hex(crc))") }
            bytes += UInt64(want.count)
            say("verified  \(p) \(want.count) B crc32c \(hex(crc))")
        }
        say("verified  \(label): \(model.files.count) files (\(bytes) B byte for byte), \(model.symlinks.count) symlink targets, \(model.directories.count) directories", timed: true)
    }
}

/// A value behind a mutex, shared with threads.
final class Locked<T>: @unchecked Sendable {
    private var v: T
    private var m = pthread_mutex_t()
    init(_ v: T) { self.v = v; pthread_mutex_init(&m, nil) }
    func update(_ f: (inout T) -> Void) { pthread_mutex_lock(&m); f(&v); pthread_mutex_unlock(&m) }
    var value: T { pthread_mutex_lock(&m); defer { pthread_mutex_unlock(&m) }; return v }
}

/// A joinable pthread.
final class Worker: @unchecked Sendable {
    private var id = pthread_t()
    private final class Box { let body: () -> Void; init(_ b: @escaping () -> Void) { body = b } }
    init(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let rc = pthread_create(&id, nil, { p in
            let b = Unmanaged<Box>.fromOpaque(p!).takeRetainedValue()
            b.body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed")
    }
    func join() { pthread_join(id, nil) }
}

// MARK: - main

let args = Array(CommandLine.arguments.dropFirst())
guard let command = args.first else { usage("name a command") }
switch command {
case "zones-json":
    checkZonesJSON(Array(args.dropFirst()))
case "workload":
    guard args.count == 2 else { usage("workload needs exactly one device") }
    let w = Workload(path: args[1])
    let t0 = monotonicSeconds()
    w.mount()
    w.round1()
    w.unmount()
    w.mount()
    w.verify("after remount 1")
    w.round2()
    w.unmount()
    w.mount()
    w.verify("after remount 2")
    let total = w.model.files.values.reduce(0) { $0 + $1.count }
    w.unmount()
    let seconds = monotonicSeconds() - t0
    say("\(tool): PASS \(w.model.files.count) files, \(mib(UInt64(total))) verified byte for byte after 2 remounts; direct writes crossed \(w.dataZonesCrossed) data zones; log rolled over \(w.logRollovers)x; \(w.zoneAppends > 0 ? "\(w.zoneAppends) zone appends" : "written at the write pointer") (\(Int(seconds)) s in all)")
    exit(0)
default:
    usage("unknown command \(command)")
}
