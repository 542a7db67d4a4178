// Crash test: seeded workloads cut by a power cut at every device IO in turn, half of the cuts on
// sequential-zone devices with a torn last block. The workloads (CrashWorkload.swift): format,
// create, direct and buffered writes, fsync, sync, rename, link, unlink, truncate, mkdir, on
// small zones so the metadata log rolls over and checkpoints; zone append completing out of
// order; reclaim under load (a nearly full device, overwrites, reclaim inside the writers);
// truncate and punch hole; NOCOW files and fallocate (in-place writes) on a conventional device.
// After each cut the device is reopened and:
//   - mount succeeds (a cut inside format may instead leave no file system: mount then says so);
//   - fsck is clean (verifying data checksums at every 8th point) and the allocator consistent;
//   - every file that was durable (present in every state since the last fsync/sync) is there, and
//     every block of every file equals that block in one of the contents the model allows for that
//     file (its content at its own last fsync, or at the last sync, or a later one), so it never
//     shows garbage, another file's bytes, or bytes that were never written to it.
// Each workload runs once, recorded; the image of a cut at IO k is made by replaying the first
// k-1 recorded calls and `crashImage` (CrashReplay.swift). Every 50th point, and the first torn
// ones, are also cut for real (the workload rerun with the power cut at k): the image must be the
// same bytes and the model the same, so the shortcut cannot drift from a real power cut.
// ZBDFS_CRASH_SEEDS scales the seeds of every workload (default 4: over 10,000 crash points);
// ZBDFS_CRASH_WORKLOAD=text runs only the workloads whose name contains it.

import Foundation
import Testing
import ZonedBackendFile
import ZonedCore
import ZonedEngine
import ZonedIndex
@testable import ZonedFS

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

/// What an uncut run reached (for the per-profile assertions).
struct RunStats {
    var journal = JournalCounters()
    var zonesReclaimed: UInt64 = 0
    var nocowWrites: UInt64 = 0
    var indexTablesWritten: UInt64 = 0
    var formatted = false
}

@Suite("Crash consistency", .serialized, .timeLimit(.minutes(20)))
struct CrashTests {
    static let zoned = smallZoned(zones: 20, zoneSize: .kib(64), capacity: .kib(64), maxActive: 4)
    static var seedScale: Int { Int(ProcessInfo.processInfo.environment["ZBDFS_CRASH_SEEDS"] ?? "") ?? 4 }
    static func mountOptions(_ profile: CrashProfile) -> MountOptions {
        var o = MountOptions(backgroundReclaim: false, backgroundWriteBack: false)
        if let index = profile.index { o.index = index }
        return o
    }

    /// A memtable written out at nearly every commit and compacted every other table, so power
    /// cuts land inside table writes, compactions and the checkpoints that follow them.
    static let busyIndex: IndexConfig = {
        var c = IndexConfig()
        c.memtableBytes = 256
        c.level0Tables = 2
        c.levelBaseBytes = 24 << 10
        c.fanout = 2
        return c
    }()

    static let general: [(CrashOp, Int)] = [(.create, 12), (.direct, 28), (.buffered, 15), (.fsync, 10), (.sync, 3),
                                            (.rename, 8), (.unlink, 6), (.truncate, 8), (.mkdir, 5), (.link, 5)]
    static let profiles: [CrashProfile] = {
        var appendGeometry = zoned
        appendGeometry.maxAppendBytes = .kib(16)
        return [
            CrashProfile(name: "log roll-over", geometry: zoned, ops: 240, seedsPerDefault: 3, liveLimit: 640 << 10, weights: general),
            CrashProfile(name: "zone append out of order", geometry: appendGeometry, ops: 240, seedsPerDefault: 1, append: true,
                         liveLimit: 640 << 10, weights: general),
            CrashProfile(name: "reclaim under load", geometry: zoned, ops: 300, seedsPerDefault: 2, liveLimit: 600 << 10, overwrites: true,
                         weights: [(.create, 6), (.direct, 40), (.buffered, 12), (.fsync, 12), (.sync, 4), (.rename, 4),
                                   (.unlink, 4), (.truncate, 6), (.mkdir, 2), (.link, 2)]),
            CrashProfile(name: "truncate and punch", geometry: zoned, ops: 240, seedsPerDefault: 2, liveLimit: 640 << 10,
                         weights: [(.create, 10), (.direct, 22), (.buffered, 10), (.fsync, 10), (.sync, 3), (.truncate, 15),
                                   (.punch, 18), (.rename, 4), (.unlink, 4), (.mkdir, 2), (.link, 2)]),
            CrashProfile(name: "index write-back", geometry: zoned, ops: 240, seedsPerDefault: 2, liveLimit: 400 << 10,
                         weights: general, index: busyIndex),
            CrashProfile(name: "conventional NOCOW and prealloc",
                         geometry: smallZoned(zones: 20, zoneSize: .kib(64), capacity: nil, maxActive: 4, conventional: 20),
                         ops: 240, seedsPerDefault: 3, liveLimit: 360 << 10,
                         weights: [(.create, 5), (.createNoCOW, 9), (.direct, 26), (.buffered, 10), (.fsync, 10), (.sync, 3),
                                   (.fallocate, 10), (.punch, 6), (.truncate, 8), (.rename, 4), (.unlink, 5), (.link, 4)]),
        ]
    }()

    /// Formats `dev` and runs the workload on it (stopping at the first device failure).
    static func workload(_ dev: any ZonedDevice, seed: UInt64, profile: CrashProfile, box: ModelBox?) -> (CrashWorkload, RunStats) {
        var w = CrashWorkload(seed: seed, profile: profile, box: box)
        var stats = RunStats()
        do {
            try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID), clock: ManualClock())
            stats.formatted = true
            box?.formatted = true
            // No background reclaim or write-back: their threads would make the IO numbering, and
            // so the crash points, differ from run to run. Writers that find no space reclaim.
            let fs = try FileSystem.mount(device: dev, options: mountOptions(profile), clock: ManualClock())
            w.run(fs)
            stats.journal = fs.journalCounters
            stats.indexTablesWritten = fs.index.tableIDsUsed - 1
            stats.zonesReclaimed = fs.reclaimStats.zonesReclaimed
            stats.nocowWrites = fs.engine.stats.nocowWrites
        } catch {
            if w.failure == nil { w.failure = error }
        }
        return (w, stats)
    }

    /// Formats and runs the log roll-over workload on a new image at `path`, cut by `cut`.
    static func run(_ path: String, seed: UInt64, ops: Int, cut: FaultPlan.PowerCut?) throws -> CrashWorkload {
        var profile = profiles[0]
        profile.ops = ops
        let dev = try device(path, profile, seed: seed, cut: cut)
        defer { dev.close() }
        return workload(dev, seed: seed, profile: profile, box: nil).0
    }

    /// The device a profile runs on, with its fault plan (a power cut when `cut`).
    static func device(_ path: String, _ profile: CrashProfile, seed: UInt64, cut: FaultPlan.PowerCut?) throws -> EmulatedZonedDevice {
        try EmulatedZonedDevice.create(path: path, geometry: profile.geometry, overwrite: true,
                                       faults: FaultPlan(seed: seed, powerCut: cut, outOfOrderAppends: profile.append))
    }

    /// Mounts a crash image and checks it; nil when it holds no file system and may not.
    static func check(_ path: String, _ r: RecordedCall, _ profile: CrashProfile, verifyData: Bool) throws -> [String]? {
        let dev = try EmulatedZonedDevice.open(path: path)
        defer { dev.close() }
        let fs: FileSystem
        do {
            fs = try FileSystem.mount(device: dev, options: mountOptions(profile), clock: ManualClock())
        } catch {
            if !r.formatted, error.errno == EINVAL { return nil }  // cut inside format: no file system yet
            return ["mount failed: \(error)"]
        }
        var problems: [String] = []
        let report = try Fsck.check(device: dev, verifyData: verifyData)
        if !report.clean { problems.append("fsck: \(report.problems.prefix(3))") }
        problems += try crashProblems(fs, history: r.model.history, files: r.model.files).prefix(3)
        if let a = fs.engine.allocator.problem() { problems.append("allocator: \(a)") }
        return problems
    }

    /// The uncut runs over many more seeds than the crash points can afford: a workload that keeps
    /// its live data under the limit never sees ENOSPC (it found truncate outside the reclaim retry
    /// and reclaim leaving NOCOW and prealloc extents in place: about one seed in 50 failed).
    @Test("uncut workloads over 40 more seeds each: no ENOSPC while garbage is left, fsck clean")
    func uncutWorkloadsOverManySeeds() throws {
        let s = Scratch()
        var failures: [String] = []
        for profile in Self.profiles {
            for seed in UInt64(1001)...1040 {
                let dev = try Self.device(s.path("uncut"), profile, seed: seed, cut: nil)
                defer { dev.close() }
                let (w, _) = Self.workload(dev, seed: seed, profile: profile, box: nil)
                if let f = w.failure { failures.append("\(profile.name) seed \(seed): \(f); \(w.failureDetail)") }
                else if !(try Fsck.check(device: dev, verifyData: false).clean) { failures.append("\(profile.name) seed \(seed): fsck not clean") }
            }
        }
        #expect(failures.isEmpty, "\(failures.count) runs failed: \(failures.prefix(3))")
    }

    @Test("power cut at every IO of seeded workloads: mount, fsck clean, durable data intact")
    func everyCrashPoint() throws {
        let s = Scratch()
        let start = Date()
        var total = 0, totalTorn = 0, totalSeeds = 0, realCuts = 0
        var failures: [String] = []
        let only = ProcessInfo.processInfo.environment["ZBDFS_CRASH_WORKLOAD"]
        for profile in Self.profiles where only.map({ profile.name.contains($0) }) ?? true {
            let t0 = Date()
            let seeds = max(1, Int((Double(Self.seedScale) * profile.seedsPerDefault).rounded()))
            let tears = !profile.geometry.isConventional(ZoneID(profile.geometry.zoneCount - 1))
            var points = 0, torn = 0, rollovers: UInt64 = 0, reclaims: UInt64 = 0, nocow: UInt64 = 0, tables: UInt64 = 0
            var done: [String: Int] = [:]
            for seed in 1...UInt64(seeds) {
                let box = ModelBox()
                let rec = RecordingDevice(try Self.device(s.path("rec"), profile, seed: seed, cut: nil), box: box)
                let (probe, stats) = Self.workload(rec, seed: seed, profile: profile, box: box)
                rec.close()
                #expect(probe.failure == nil, "\(profile.name) seed \(seed): the uncut run failed: \(String(describing: probe.failure)); \(probe.failureDetail)")
                if profile.weights.contains(where: { $0.0 == .mkdir }), profile.name == "log roll-over" || profile.append {
                    // The workload must reach what the test is for: log roll-over with checkpoints.
                    #expect(stats.journal.zonesUsed >= 2 && stats.journal.checkpoints >= 2, "\(profile.name) seed \(seed): \(stats.journal)")
                }
                rollovers += stats.journal.zonesUsed
                reclaims += stats.zonesReclaimed
                nocow += stats.nocowWrites
                tables += stats.indexTablesWritten
                for (k, v) in probe.done { done[k, default: 0] += v }
                var tornReal = 0
                let replayProblems = try CrashReplay.replay(rec.calls, geometry: profile.geometry, seed: seed, base: s.path("base"),
                                                            image: s.path("img"), torn: { tears && $0 % 2 == 0 }) { k, r in
                    guard failures.count <= 5 else { return }
                    let isTorn = tears && k % 2 == 0
                    // The shortcut against the real thing: rerun with a power cut at k.
                    if k % 50 == 0 || (isTorn && tornReal < 2) {
                        if isTorn { tornReal += 1 }
                        realCuts += 1
                        let dev = try Self.device(s.path("real"), profile, seed: seed, cut: FaultPlan.PowerCut(atIO: k, tornLastBlock: isTorn))
                        let (w, _) = Self.workload(dev, seed: seed, profile: profile, box: nil)
                        dev.close()
                        let sameImage = try Data(contentsOf: URL(fileURLWithPath: s.path("real"))) == Data(contentsOf: URL(fileURLWithPath: s.path("img")))
                        if !sameImage { failures.append("\(profile.name) seed \(seed) cut at IO \(k): the replayed image differs from a real power cut's") }
                        if w.snapshot != r.model { failures.append("\(profile.name) seed \(seed) cut at IO \(k): the recorded model differs from the cut run's") }
                    }
                    guard let p = try Self.check(s.path("img"), r, profile, verifyData: k % 8 == 0) else { return }
                    points += 1
                    if isTorn { torn += 1 }
                    if !p.isEmpty { failures.append("\(profile.name) seed \(seed) cut at IO \(k)\(isTorn ? " (torn)" : ""): \(p)") }
                }
                if !replayProblems.isEmpty { failures.append("\(profile.name) seed \(seed): the replay differs from the recording: \(replayProblems.prefix(3))") }
                if failures.count > 5 { break }
            }
            switch profile.name {
            case "reclaim under load": #expect(reclaims >= UInt64(seeds), "the workload must make reclaim run inside writers (\(reclaims) zones reclaimed)")
            case "index write-back": #expect(tables >= UInt64(seeds) * 20, "the workload must write index tables (\(tables) written)")
            case "truncate and punch": #expect(done["punch", default: 0] > seeds * 10 && done["truncate", default: 0] > seeds * 10, "\(done)")
            case "conventional NOCOW and prealloc":
                #expect(nocow > UInt64(seeds) * 10 && done["fallocate", default: 0] > seeds * 5 && done["createNoCOW", default: 0] > seeds, "in-place writes \(nocow), \(done)")
            default: break
            }
            if tears { #expect(torn > 0, "\(profile.name): no torn cut points") }
            print("crash test (\(profile.name)): \(points) crash points (\(torn) torn) over \(seeds) seeds in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s; \(rollovers) log zones used, \(reclaims) zones reclaimed, \(nocow) in-place writes, \(tables) index tables by the uncut runs")
            total += points
            totalTorn += torn
            totalSeeds += seeds
            if failures.count > 5 { break }
        }
        #expect(failures.isEmpty, "\(failures.prefix(6).joined(separator: "\n"))")
        #expect(total >= (Self.seedScale >= 4 && only == nil ? 10_000 : 1), "only \(total) crash points")
        print("crash test: \(total) crash points (\(totalTorn) torn) over \(totalSeeds) seeds and \(Self.profiles.count) workloads in \(String(format: "%.1f", Date().timeIntervalSince(start))) s; \(realCuts) of them also cut for real, same image and model")
    }
}
