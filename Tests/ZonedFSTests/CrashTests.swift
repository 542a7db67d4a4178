// Crash test: seeded workloads (format, create, direct and buffered writes, fsync, sync, rename,
// link, unlink, truncate, mkdir; small zones so the metadata log rolls over and checkpoints) cut
// by a power cut at every device IO in turn, with and without a torn last block. After each cut
// the device is reopened and:
//   - mount succeeds (a cut inside format may instead leave no file system: mount then says so);
//   - fsck is clean;
//   - every file that was durable (present in every state since the last fsync/sync) is there, and
//     every block of every file equals that block in one of the contents the model allows for that
//     file (its content at its own last fsync, or at the last sync, or a later one), so it never
//     shows garbage, another file's bytes, or bytes that were never written to it.
// ZBDFS_CRASH_SEEDS overrides the number of seeded workloads (default 4, over 1,000 crash points).

import Foundation
import Testing
import ZonedBackendFile
import ZonedCore
import ZonedEngine
@testable import ZonedFS

/// The expected state: file contents by inode, and which path names which inode.
struct ModelState: Equatable {
    var files: [InodeNumber: [UInt8]] = [:]
    var paths: [String: InodeNumber] = [:]
    var dirs: Set<String> = ["/"]
}

/// Runs a seeded workload on a file system and a model together. `history` holds every state the
/// file system may be in after a crash: the last durable one and each later one (including the
/// intended result of the operation in flight).
struct CrashWorkload {
    let seed: UInt64
    let ops: Int
    var state = ModelState()
    var history: [ModelState] = [ModelState()]
    /// Per file, the contents it may hold after a crash: its last durable one and every later one.
    /// Data durability is per file (fsync of one file does not write back another's page cache);
    /// the namespace is made durable by any fsync or sync (one log), which `history` models.
    var fileHistory: [InodeNumber: [[UInt8]]] = [:]
    var rng: SeededRandom
    var step = 0
    /// What stopped the run (the power cut, or anything else: the uncut run must have none).
    var failure: (any Error)?
    var failureDetail = ""

    init(seed: UInt64, ops: Int) {
        self.seed = seed
        self.ops = ops
        self.rng = SeededRandom(seed: seed)
    }

    mutating func pick<T>(_ xs: [T]) -> T? { xs.isEmpty ? nil : xs[Int(rng.below(UInt64(xs.count)))] }

    /// Runs until done or until the device fails (the power cut).
    mutating func run(_ fs: FileSystem) {
        do {
            for _ in 0..<ops { try one(fs) }
            try fs.sync()
            history = [state]
        } catch {
            failure = error
            let t = fs.engine.allocator.totals
            failureDetail = "live \(t.live) garbage \(t.garbage) free \(t.free) unusable \(t.unusable); model bytes \(state.files.values.reduce(0) { $0 + $1.count }); reclaim \(fs.reclaimStats); zones \(fs.engine.allocator.accounts.map { "\($0.id.int):\($0.role.rawValue.prefix(2))/\($0.phase.rawValue.prefix(2)) l\($0.live.bytes >> 10) g\($0.garbage.bytes >> 10) f\($0.free.bytes >> 10)" })"
            return
        }
    }

    private mutating func intend(_ next: ModelState) {
        history.append(next)
        for (n, c) in next.files where fileHistory[n]?.last != c { fileHistory[n, default: []].append(c) }
    }

    private mutating func one(_ fs: FileSystem) throws {
        step += 1
        let filePaths = state.paths.keys.sorted()
        let dirs = state.dirs.sorted()
        var roll = rng.below(100)
        // Keep live data around 60% of the device so that reclaim has to run (and is cut) but the
        // device never really fills: past 640 KiB of file data (of 896 KiB), writes become truncates.
        if (12..<55).contains(roll), state.files.values.reduce(0, { $0 + $1.count }) > 640 << 10 { roll = 82 }
        var next = state
        switch roll {
        case 0..<12:  // create
            let dir = pick(dirs)!
            let path = (dir == "/" ? "" : dir) + "/f\(step)"
            let n = try fs.create(try fs.resolve(dir), try EntryName("f\(step)"), kind: .file, mode: 0o644, uid: 0, gid: 0).number
            next.files[n] = []
            next.paths[path] = n
            intend(next)
        case 12..<40, 40..<55:  // write, direct (aligned) or buffered (unaligned)
            guard let path = pick(filePaths), let n = state.paths[path] else { return }
            let direct = roll < 40
            let old = state.files[n]!
            let offset = direct ? rng.below(UInt64(old.count / 4096 + 2)) * 4096 : rng.below(UInt64(old.count + 5000))
            let length = direct ? Int(1 + rng.below(8)) * 4096 : Int(1 + rng.below(6000))
            let data = rng.bytes(length)
            var content = old
            if content.count < Int(offset) + length { content += [UInt8](repeating: 0, count: Int(offset) + length - content.count) }
            content.replaceSubrange(Int(offset)..<(Int(offset) + length), with: data)
            next.files[n] = content
            intend(next)
            try fs.write(n, at: offset, bytes: data, direct: direct)
        case 55..<65:  // fsync
            guard let path = pick(filePaths), let n = state.paths[path] else { return }
            try fs.fsync(n)
            history = [state]
            fileHistory[n] = [state.files[n]!]
            return
        case 65..<68:
            try fs.sync()
            history = [state]
            fileHistory = state.files.mapValues { [$0] }
            return
        case 68..<76:  // rename, sometimes over an existing file
            guard let from = pick(filePaths), let n = state.paths[from] else { return }
            let dir = pick(dirs)!
            let target = rng.chance(0.3) ? (pick(filePaths) ?? from) : (dir == "/" ? "" : dir) + "/r\(step)"
            if target == from { return }
            if state.paths[target] == n {  // two names of one inode: POSIX rename does nothing
                intend(next)
                let (fp, fnm) = try fs.split(from)
                let (tp, tnm) = try fs.split(target)
                try fs.rename(fp, fnm, to: tp, tnm)
                state = next
                return
            }
            if let replaced = state.paths[target] {
                next.paths[target] = nil
                if !next.paths.values.contains(replaced) { next.files[replaced] = nil }
            }
            next.paths[from] = nil
            next.paths[target] = n
            intend(next)
            let (fp, fnm) = try fs.split(from)
            let (tp, tnm) = try fs.split(target)
            try fs.rename(fp, fnm, to: tp, tnm)
        case 76..<82:  // unlink
            guard let path = pick(filePaths), let n = state.paths[path] else { return }
            next.paths[path] = nil
            if !next.paths.values.contains(n) { next.files[n] = nil }
            intend(next)
            let (d, name) = try fs.split(path)
            try fs.unlink(d, name)
        case 82..<90:  // truncate
            guard let path = pick(filePaths), let n = state.paths[path] else { return }
            let size = Int(rng.below(UInt64(state.files[n]!.count + 8192)))
            var c = state.files[n]!
            if size < c.count { c = Array(c[0..<size]) } else { c += [UInt8](repeating: 0, count: size - c.count) }
            next.files[n] = c
            intend(next)
            try fs.truncate(n, to: UInt64(size))
        case 90..<95:  // mkdir
            guard state.dirs.count < 6 else { return }
            let parent = pick(dirs)!
            let path = (parent == "/" ? "" : parent) + "/d\(step)"
            next.dirs.insert(path)
            intend(next)
            try fs.makeDirectory(path)
        default:  // hard link
            guard let path = pick(filePaths), let n = state.paths[path] else { return }
            let dir = pick(dirs)!
            let target = (dir == "/" ? "" : dir) + "/l\(step)"
            next.paths[target] = n
            intend(next)
            let (d, name) = try fs.split(target)
            _ = try fs.link(n, into: d, as: name)
        }
        state = next
    }
}

/// Whether `got` equals `c`'s bytes at `at` (zeros past `c`'s end). memcmp: this runs millions of
/// times per test run in a debug build.
func sameBlock(_ got: [UInt8], _ c: [UInt8], at: Int) -> Bool {
    let inside = max(0, min(got.count, c.count - at))
    return got.withUnsafeBytes { g in
        c.withUnsafeBytes { cc in
            (inside == 0 || memcmp(g.baseAddress!, cc.baseAddress! + at, inside) == 0)
                && (inside == got.count || zeroBlock.withUnsafeBytes { memcmp(g.baseAddress! + inside, $0.baseAddress!, got.count - inside) == 0 })
        }
    }
}

private let zeroBlock = [UInt8](repeating: 0, count: 1 << 16)

/// Compares a recovered file system with the states a crash may leave. Returns what is wrong.
func crashProblems(_ fs: FileSystem, history: [ModelState], files: [InodeNumber: [[UInt8]]]) throws -> [String] {
    var problems: [String] = []
    let block = 4096
    var found: [InodeNumber: [String]] = [:]
    for (path, n) in try fs.walk() where !path.hasSuffix("/") { found[n, default: []].append(path) }
    for (n, paths) in found {
        let states = history.filter { $0.files[n] != nil }
        guard !states.isEmpty else { problems.append("inode \(n) at \(paths) was never a file in any allowed state"); continue }
        for p in paths where !states.contains(where: { $0.paths[p] == n }) { problems.append("inode \(n) is at \(p), which no allowed state has") }
        let content = try fs.readAll(n)
        let allowed = files[n] ?? []
        guard !allowed.isEmpty else { problems.append("inode \(n) has no allowed contents"); continue }
        let sizes = allowed.map(\.count)
        if content.count < sizes.min()! || content.count > sizes.max()! {
            problems.append("inode \(n) has size \(content.count), allowed \(sizes.min()!)...\(sizes.max()!)")
        }
        for b in stride(from: 0, to: content.count, by: block) {
            let got = Array(content[b..<min(b + block, content.count)])
            let ok = allowed.contains { c in sameBlock(got, c, at: b) }
            if !ok { problems.append("inode \(n) (\(paths[0])): block at \(b) matches no allowed state"); break }
        }
    }
    // Durable files: a path that names the same inode in every allowed state must still name it.
    if let first = history.first {
        for (p, n) in first.paths where history.allSatisfy({ $0.paths[p] == n }) {
            if found[n]?.contains(p) != true { problems.append("durable file \(p) (inode \(n)) is missing") }
        }
        for d in first.dirs where history.allSatisfy({ $0.dirs.contains(d) }) {
            if (try? fs.resolve(d)) == nil { problems.append("durable directory \(d) is missing") }
        }
    }
    return problems
}

@Suite("Crash consistency", .serialized, .timeLimit(.minutes(20)))
struct CrashTests {
    static let geometry = smallZoned(zones: 20, zoneSize: .kib(64), capacity: .kib(64), maxActive: 4)
    static var seeds: Int { Int(ProcessInfo.processInfo.environment["ZBDFS_CRASH_SEEDS"] ?? "") ?? 4 }

    /// Formats and runs the workload; returns the workload's history and the device's IO count.
    /// `append`: the device has 16 KiB zone appends and completes every batch of them out of order.
    static func run(_ path: String, seed: UInt64, ops: Int, cut: FaultPlan.PowerCut?, append: Bool = false,
                    counters: UnsafeMutablePointer<JournalCounters>? = nil,
                    reclaimed: UnsafeMutablePointer<UInt64>? = nil) throws -> (CrashWorkload, UInt64, Bool) {
        var g = geometry
        if append { g.maxAppendBytes = .kib(16) }
        let dev = try EmulatedZonedDevice.create(path: path, geometry: g, overwrite: true)
        if cut != nil || append { dev.setFaultPlan(FaultPlan(seed: seed, powerCut: cut, outOfOrderAppends: append)) }
        var w = CrashWorkload(seed: seed, ops: ops)
        var formatted = false
        do {
            try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID), clock: ManualClock())
            formatted = true
            // No background reclaim: its thread would make the IO numbering, and so the crash
            // points, differ from run to run. Writers that find no space reclaim in their own thread.
            let fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false, backgroundWriteBack: false), clock: ManualClock())
            w.run(fs)
            counters?.pointee = fs.journalCounters
            reclaimed?.pointee = fs.reclaimStats.zonesReclaimed
        } catch {}
        let ios = dev.ioCount
        dev.close()
        return (w, ios, formatted)
    }

    /// With zone append (out-of-order completions) half the seeds: the same checks, a second device.
    @Test("power cut at every IO of seeded workloads: mount, fsck clean, durable data intact", arguments: [false, true])
    func everyCrashPoint(append: Bool) throws {
        let seeds = append ? max(1, Self.seeds / 2) : Self.seeds
        let s = Scratch()
        var crashPoints = 0
        var torn = 0
        var tRun = 0.0, tMount = 0.0, tAll = 0.0
        var rollovers = 0
        var reclaims: UInt64 = 0
        var failures: [String] = []
        for seed in 1...UInt64(seeds) {
            var c = JournalCounters()
            var zonesReclaimed: UInt64 = 0
            let (probe, total, _) = try Self.run(s.path("probe"), seed: seed, ops: 240, cut: nil, append: append, counters: &c, reclaimed: &zonesReclaimed)
            reclaims += zonesReclaimed
            #expect(probe.failure == nil, "seed \(seed): the uncut run failed: \(String(describing: probe.failure)); \(probe.failureDetail)")
            // The workload must reach what the test is for: log roll-over with checkpoints.
            #expect(c.zonesUsed >= 2 && c.checkpoints >= 2, "seed \(seed): \(c)")
            rollovers += Int(c.zonesUsed)
            for k in 1...total {
                let cut = FaultPlan.PowerCut(atIO: k, tornLastBlock: k % 2 == 0)
                let t0 = Date()
                let (w, _, formatted) = try Self.run(s.path("img"), seed: seed, ops: 240, cut: cut, append: append)
                tRun += Date().timeIntervalSince(t0)
                let dev = try EmulatedZonedDevice.open(path: s.path("img"))
                defer { dev.close() }
                let fs: FileSystem
                do {
                    fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false, backgroundWriteBack: false), clock: ManualClock())
                } catch {
                    if !formatted, error.errno == EINVAL { continue }  // cut inside format: no file system yet
                    failures.append("seed \(seed) cut at IO \(k): mount failed: \(error)")
                    continue
                }
                crashPoints += 1
                tMount += Date().timeIntervalSince(t0)
                if cut.tornLastBlock { torn += 1 }
                let report = try Fsck.check(device: dev, verifyData: k % 8 == 0)
                if !report.clean { failures.append("seed \(seed) cut at IO \(k): fsck: \(report.problems)") }
                let p = try crashProblems(fs, history: w.history, files: w.fileHistory)
                if !p.isEmpty { failures.append("seed \(seed) cut at IO \(k): \(p.prefix(3))") }
                tAll += Date().timeIntervalSince(t0)
                if let a = fs.engine.allocator.problem() { failures.append("seed \(seed) cut at IO \(k): allocator: \(a)") }
                if failures.count > 5 { break }
            }
            if failures.count > 5 { break }
        }
        #expect(failures.isEmpty, "\(failures.prefix(6).joined(separator: "\n"))")
        #expect(crashPoints >= (Self.seeds >= 4 ? (append ? 500 : 1000) : 1), "only \(crashPoints) crash points")
        #expect(torn > 0)
        #expect(reclaims > 0, "the workloads must make reclaim run (and so be cut inside it)")
        print("crash test\(append ? " (zone append, out of order)" : ""): \(String(format: "%.1f", tRun)) s in workloads, \(String(format: "%.1f", tAll - tMount)) s checking; \(rollovers) log zones used and \(reclaims) zones reclaimed by the uncut runs")
        print("crash test\(append ? " (zone append, out of order)" : ""): \(crashPoints) crash points (\(torn) with a torn last block) over \(seeds) seeds")
    }
}

