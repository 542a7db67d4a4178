// The crash test's seeded workloads and the model they keep: what state the file system may be in
// after a power cut at any moment (see CrashTests.swift for the checks).
//
// Invariants:
// - A workload is deterministic for its seed and profile (no clock, no background threads), so
//   an uncut run and a run cut at IO k issue the same IOs up to k.
// - `history` holds every state the file system may show after a crash: the last durable one and
//   each later one, the intended result of the operation in flight included (it is added before
//   the operation runs). `fileHistory` is the same per file for data: fsync of one file makes
//   only its own data durable, sync makes all of it durable; the namespace is one log, made
//   durable by any fsync or sync.
// - A block of a file must equal that block in one of its allowed contents. This also covers
//   NOCOW in-place overwrites that were not fsync'd (each block old or new, independently) and
//   in-place writes into preallocated space: both contents are in the list.
// - `box`, when set, always holds the current history and file history (the recording device
//   reads it at every IO: the state a cut there is checked against).

import Foundation
import ZonedBackendFile
import ZonedCore
import ZonedIndex
import ZonedEngine
@testable import ZonedFS

/// The expected state: file contents by inode, and which path names which inode.
struct ModelState: Equatable {
    var files: [InodeNumber: [UInt8]] = [:]
    var paths: [String: InodeNumber] = [:]
    var dirs: Set<String> = ["/"]
}

/// The states a crash may leave, as of one moment.
struct ModelSnapshot: Equatable {
    var history: [ModelState]
    var files: [InodeNumber: [[UInt8]]]
}

/// Where a running workload publishes its model for the recording device.
final class ModelBox: @unchecked Sendable {
    var snapshot = ModelSnapshot(history: [ModelState()], files: [:])
    /// False until format has completed (a cut before may leave no file system).
    var formatted = false
}

enum CrashOp: Sendable {
    case create, createNoCOW, direct, buffered, fsync, sync, rename, unlink, truncate, punch, fallocate, mkdir, link
}

/// What a workload does and on which device.
struct CrashProfile: Sendable {
    var name: String
    var geometry: DeviceGeometry
    var ops: Int
    /// Seeds for each of the default seed count (ZBDFS_CRASH_SEEDS scales them).
    var seedsPerDefault: Double
    /// The device has zone append and completes every batch of appends out of order.
    var append = false
    /// Past this many bytes of file data, writes become truncates (with `overwrites`: overwrites
    /// inside the file, truncates when the file is too short).
    var liveLimit: Int
    /// Half the direct writes overwrite what the file has rather than extending it.
    var overwrites = false
    var weights: [(CrashOp, Int)]
    /// The metadata index's bounds (nil: the mount's defaults, which these small workloads never
    /// fill, so no table is written).
    var index: IndexConfig? = nil
}

/// Runs a seeded workload on a file system and a model together.
struct CrashWorkload {
    let seed: UInt64
    let profile: CrashProfile
    var state = ModelState()
    var history: [ModelState] = [ModelState()] { didSet { publish() } }
    var fileHistory: [InodeNumber: [[UInt8]]] = [:] { didSet { publish() } }
    var box: ModelBox?
    var rng: SeededRandom
    var step = 0
    /// Operations that ran, by kind (the uncut run asserts the profile reached what it is for).
    var done: [String: Int] = [:]
    /// What stopped the run (the power cut, or anything else: the uncut run must have none).
    var failure: (any Error)?
    var failureDetail = ""
    /// The operation running when the run stopped (for failure messages).
    private var current = "format"

    init(seed: UInt64, profile: CrashProfile, box: ModelBox? = nil) {
        self.seed = seed
        self.profile = profile
        self.rng = SeededRandom(seed: seed)
        self.box = box
    }

    var snapshot: ModelSnapshot { ModelSnapshot(history: history, files: fileHistory) }

    private func publish() { box?.snapshot = snapshot }

    mutating func pick<T>(_ xs: [T]) -> T? { xs.isEmpty ? nil : xs[Int(rng.below(UInt64(xs.count)))] }

    /// Runs until done or until the device fails (the power cut).
    mutating func run(_ fs: FileSystem) {
        do {
            for _ in 0..<profile.ops { try one(fs) }
            current = "final sync"
            try fs.sync()
            history = [state]
            fileHistory = state.files.mapValues { [$0] }
        } catch {
            failure = error
            let t = fs.engine.allocator.totals
            failureDetail = "in \(current): victims \(fs.reclaimer.victims().map { "\($0.id.int) g\($0.garbage.bytes >> 10) gr\($0.grants)" }) live \(t.live) garbage \(t.garbage) free \(t.free) unusable \(t.unusable); model bytes \(liveBytes); reclaim \(fs.reclaimStats); zones \(fs.engine.allocator.accounts.map { "\($0.id.int):\($0.role.rawValue.prefix(2))/\($0.phase.rawValue.prefix(2)) l\($0.live.bytes >> 10) g\($0.garbage.bytes >> 10) f\($0.free.bytes >> 10)" })"
        }
    }

    var liveBytes: Int { state.files.values.reduce(0) { $0 + $1.count } }

    private mutating func intend(_ next: ModelState) {
        history.append(next)
        for (n, c) in next.files where fileHistory[n]?.last != c { fileHistory[n, default: []].append(c) }
    }

    private mutating func chooseOp() -> CrashOp {
        let total = profile.weights.reduce(0) { $0 + $1.1 }
        var roll = Int(rng.below(UInt64(total)))
        for (op, w) in profile.weights {
            if roll < w { return op }
            roll -= w
        }
        return profile.weights[0].0
    }

    private mutating func one(_ fs: FileSystem) throws {
        step += 1
        let filePaths = state.paths.keys.sorted()
        let dirs = state.dirs.sorted()
        var op = chooseOp()
        let full = liveBytes > profile.liveLimit
        if full, op == .fallocate { op = .truncate }
        current = "step \(step) \(op)"
        var next = state
        func named(_ dir: String, _ name: String) -> String { (dir == "/" ? "" : dir) + "/" + name }
        switch op {
        case .create, .createNoCOW:
            let dir = pick(dirs)!
            let n = try fs.create(try fs.resolve(dir), try EntryName("f\(step)"), kind: .file, mode: 0o644, uid: 0, gid: 0).number
            next.files[n] = []
            next.paths[named(dir, "f\(step)")] = n
            intend(next)
            state = next
            // chattr +C while empty, as NOCOW must be set.
            if op == .createNoCOW { _ = try fs.setAttributes(n, AttributeChanges(nocow: true)) }
        case .direct, .buffered:  // direct (aligned) or buffered (unaligned)
            guard let path = pick(filePaths), let n = state.paths[path] else { return }
            let direct = op == .direct
            let old = state.files[n]!
            var offset = direct ? Int(rng.below(UInt64(old.count / 4096 + 2))) * 4096 : Int(rng.below(UInt64(old.count + 5000)))
            let length = direct ? Int(1 + rng.below(8)) * 4096 : Int(1 + rng.below(6000))
            if full && !profile.overwrites { return try truncate(fs, n, &next) }
            if full || (profile.overwrites && direct && rng.chance(0.5)) {
                // Overwrite inside the file: on a nearly full device this is what makes garbage.
                guard old.count >= length else { return try truncate(fs, n, &next) }
                offset = direct ? Int(rng.below(UInt64((old.count - length) / 4096 + 1))) * 4096 : Int(rng.below(UInt64(old.count - length + 1)))
            }
            let data = rng.bytes(length)
            var content = old
            if content.count < offset + length { content += [UInt8](repeating: 0, count: offset + length - content.count) }
            content.replaceSubrange(offset..<(offset + length), with: data)
            next.files[n] = content
            intend(next)
            try fs.write(n, at: UInt64(offset), bytes: data, direct: direct)
        case .fsync:
            guard let path = pick(filePaths), let n = state.paths[path] else { return }
            try fs.fsync(n)
            history = [state]
            fileHistory[n] = [state.files[n]!]
        case .sync:
            try fs.sync()
            history = [state]
            fileHistory = state.files.mapValues { [$0] }
        case .rename:  // sometimes over an existing file
            guard let from = pick(filePaths), let n = state.paths[from] else { return }
            let dir = pick(dirs)!
            let target = rng.chance(0.3) ? (pick(filePaths) ?? from) : named(dir, "r\(step)")
            if target == from { return }
            if state.paths[target] == n {  // two names of one inode: POSIX rename does nothing
                intend(next)
            } else {
                if let replaced = state.paths[target] {
                    next.paths[target] = nil
                    if !next.paths.values.contains(replaced) { next.files[replaced] = nil }
                }
                next.paths[from] = nil
                next.paths[target] = n
                intend(next)
            }
            let (fp, fnm) = try fs.split(from)
            let (tp, tnm) = try fs.split(target)
            try fs.rename(fp, fnm, to: tp, tnm)
        case .unlink:
            guard let path = pick(filePaths), let n = state.paths[path] else { return }
            next.paths[path] = nil
            if !next.paths.values.contains(n) { next.files[n] = nil }
            intend(next)
            let (d, name) = try fs.split(path)
            try fs.unlink(d, name)
        case .truncate:
            guard let path = pick(filePaths), let n = state.paths[path] else { return }
            return try truncate(fs, n, &next)
        case .punch:
            guard let path = pick(filePaths), let n = state.paths[path] else { return }
            let size = state.files[n]!.count
            let offset = rng.chance(0.5) ? Int(rng.below(UInt64(size / 4096 + 1))) * 4096 : Int(rng.below(UInt64(size + 1)))
            let length = rng.chance(0.5) ? Int(1 + rng.below(6)) * 4096 : Int(1 + rng.below(20000))
            var c = state.files[n]!
            if offset < c.count { c.replaceSubrange(offset..<min(c.count, offset + length), with: [UInt8](repeating: 0, count: min(c.count, offset + length) - offset)) }
            next.files[n] = c
            intend(next)
            try fs.punchHole(n, at: UInt64(offset), length: UInt64(length))
        case .fallocate:
            guard let path = pick(filePaths), let n = state.paths[path] else { return }
            let size = state.files[n]!.count
            let offset = Int(rng.below(UInt64(size + 16384)))
            let length = Int(1 + rng.below(24576))
            var c = state.files[n]!
            if c.count < offset + length { c += [UInt8](repeating: 0, count: offset + length - c.count) }
            next.files[n] = c
            intend(next)
            try fs.fallocate(n, at: UInt64(offset), length: UInt64(length))
        case .mkdir:
            guard state.dirs.count < 6 else { return }
            let path = named(pick(dirs)!, "d\(step)")
            next.dirs.insert(path)
            intend(next)
            try fs.makeDirectory(path)
        case .link:
            guard let path = pick(filePaths), let n = state.paths[path] else { return }
            let target = named(pick(dirs)!, "l\(step)")
            next.paths[target] = n
            intend(next)
            let (d, name) = try fs.split(target)
            _ = try fs.link(n, into: d, as: name)
        }
        done["\(op)", default: 0] += 1
        state = next
    }

    private mutating func truncate(_ fs: FileSystem, _ n: InodeNumber, _ next: inout ModelState) throws {
        let size = Int(rng.below(UInt64(state.files[n]!.count + 8192)))
        var c = state.files[n]!
        if size < c.count { c = Array(c[0..<size]) } else { c += [UInt8](repeating: 0, count: size - c.count) }
        next.files[n] = c
        intend(next)
        try fs.truncate(n, to: UInt64(size))
        done["truncate", default: 0] += 1
        state = next
    }
}
