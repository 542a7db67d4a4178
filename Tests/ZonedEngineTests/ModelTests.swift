// Seeded random sequences of write / read / truncate / punch / fallocate, direct and buffered,
// aligned and not, compared byte for byte with an in-memory model of each file; on the emulated
// zoned device (with zone limits, so zone finishes happen), on it with zone append completing out
// of order, and in conventional mode.
// A failing seed is printed; add it to `regressionSeeds` to replay it forever.

import Dispatch
import Foundation
import Testing
import ZonedAllocator
import ZonedBackendFile
import ZonedCore
@testable import ZonedEngine

/// The reference: each file is a byte array; its count is the size.
struct FileModel {
    var files: [[UInt8]]

    mutating func write(_ f: Int, _ off: Int, _ data: [UInt8]) {
        if files[f].count < off + data.count { files[f] += [UInt8](repeating: 0, count: off + data.count - files[f].count) }
        files[f].replaceSubrange(off..<(off + data.count), with: data)
    }
    mutating func truncate(_ f: Int, _ size: Int) {
        if size < files[f].count { files[f].removeLast(files[f].count - size) } else { files[f] += [UInt8](repeating: 0, count: size - files[f].count) }
    }
    mutating func punch(_ f: Int, _ off: Int, _ len: Int) {
        let end = min(off + len, files[f].count)
        if off < end { for i in off..<end { files[f][i] = 0 } }
    }
    func read(_ f: Int, _ off: Int, _ len: Int) -> [UInt8] {
        guard off < files[f].count else { return [] }
        return Array(files[f][off..<min(off + len, files[f].count)])
    }
}

enum ModelDevice: String, CaseIterable, Sendable {
    case zoned, conventional
    /// Zoned with 16 KiB zone appends whose completions the fault plan permutes in every batch.
    case zonedAppendOutOfOrder = "zoned-append-out-of-order"
}

struct ModelRun {
    let engine: Engine
    let inodes: [InodeNumber]
    var model: FileModel
    var rng: SeededRandom
    var log: [String] = []

    init(engine: Engine, files: Int, seed: UInt64) {
        self.engine = engine
        inodes = (0..<files).map { _ in engine.createFile() }
        model = FileModel(files: Array(repeating: [], count: files))
        rng = SeededRandom(seed: seed)
    }

    mutating func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }

    /// One random operation; returns a description of a mismatch, or nil.
    mutating func step(_ i: Int) throws -> String? {
        let f = pick(inodes.count), ino = inodes[f]
        let aligned = pick(2) == 0
        let span = 1 << 19
        var off = pick(span), len = 1 + pick(64 << 10)
        if aligned { off = off / 4096 * 4096; len = max(4096, len / 4096 * 4096) }
        let flags: IOFlags = pick(4) == 0 ? [] : [.direct]
        switch pick(10) {
        case 0...3:
            let data = rng.bytes(len)
            let n = try engine.write(ino, UInt64(off), data, flags)
            if n != len { return "op \(i): write \(len) at \(off) wrote \(n)" }
            model.write(f, off, data)
        case 4...6:
            let got = try engine.read(ino, UInt64(off), len, flags)
            let want = model.read(f, off, len)
            if got != want {
                let d = zip(got, want).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(got.count, want.count)
                return "op \(i): read \(len) at \(off) of file \(f): got \(got.count) bytes, want \(want.count), first difference at +\(d)"
            }
        case 7:
            let size = pick(span + (64 << 10))
            try engine.truncate(ino, to: UInt64(size))
            model.truncate(f, size)
        case 8:
            try engine.punchHole(ino, at: UInt64(off), length: UInt64(len))
            model.punch(f, off, len)
        default:
            if engine.isConventionalMode {
                try engine.fallocate(ino, at: UInt64(off), length: UInt64(len))
                if model.files[f].count < off + len { model.truncate(f, off + len) }
            } else {
                // Zoned: no preallocation (EOPNOTSUPP), and nothing changes.
                let failed: DeviceError? = { () -> DeviceError? in
                    do throws(DeviceError) { try engine.fallocate(ino, at: UInt64(off), length: UInt64(len)); return nil } catch { return error }
                }()
                if failed?.errno != EOPNOTSUPP { return "op \(i): fallocate on a zoned device gave \(String(describing: failed))" }
            }
        }
        if UInt64(model.files[f].count) != (try engine.size(ino)) {
            return "op \(i): size of file \(f) is \(try engine.size(ino)), model says \(model.files[f].count)"
        }
        return nil
    }

    /// The engine's own invariants after a step: every file's extent map, the allocator's
    /// accounts, and the two agreeing — the allocator's live bytes are exactly the bytes the
    /// files map (nothing leaked as live, nothing referenced counted as garbage).
    func structureProblem() throws -> String? {
        var mapped: UInt64 = 0
        for (f, ino) in inodes.enumerated() {
            let map = try engine.layout(ino).map
            if let p = map.problem(block: engine.device.geometry.logicalBlockSize.bytes) { return "file \(f): \(p)" }
            mapped += map.mappedBytes
        }
        if let p = engine.allocator.problem() { return "allocator: \(p)" }
        let live = engine.allocator.totals.live.bytes
        if live != mapped { return "the allocator counts \(live) live bytes, the files map \(mapped)" }
        return nil
    }

    func verifyAll() throws -> String? {
        for (f, ino) in inodes.enumerated() {
            let got = try engine.read(ino, 0, model.files[f].count + 4096)
            if got != model.files[f] { return "final read of file \(f) differs from the model" }
        }
        if let p = engine.allocator.problem() { return "allocator: \(p)" }
        let t = engine.allocator.totals
        if t.capacity != t.free + t.live + t.garbage + t.unusable + t.reserved { return "space totals do not add up: \(t)" }
        return nil
    }
}

func modelEngine(_ kind: ModelDevice, _ s: Scratch) throws -> Engine {
    switch kind {
    case .zoned:
        let g = DeviceGeometry(zoneCount: 512, zoneSize: .mib(1), zoneCapacity: .kib(960), maxOpenZones: 4,
                               maxActiveZones: 4, maxWriteBytes: .kib(64), conventionalZoneCount: 0)
        return try Engine(device: try s.emulated(g), config: EngineConfig(maxReadChunk: .kib(128), allocator: AllocatorConfig(reservedActiveZones: 2)))
    case .zonedAppendOutOfOrder:
        let g = DeviceGeometry(zoneCount: 512, zoneSize: .mib(1), zoneCapacity: .kib(960), maxOpenZones: 4,
                               maxActiveZones: 4, maxWriteBytes: .kib(64), maxAppendBytes: .kib(16), conventionalZoneCount: 0)
        return try Engine(device: try s.emulated(g, faults: FaultPlan(seed: 77, outOfOrderAppends: true)),
                          config: EngineConfig(maxReadChunk: .kib(128), allocator: AllocatorConfig(reservedActiveZones: 2)))
    case .conventional:
        return try Engine(device: try s.conventional(size: .mib(512), zoneSize: .mib(1)), config: EngineConfig(maxReadChunk: .kib(128)))
    }
}

/// Seeds that once failed; replayed on every run.
let regressionSeeds: [UInt64] = []

@Suite("Engine model", .timeLimit(.minutes(15)))
struct ModelTests {
    static let operations = Int(ProcessInfo.processInfo.environment["ZBDFS_MODEL_OPS"] ?? "") ?? 10_000
    static let seeds: [UInt64] = [1, 2, 3, 4] + regressionSeeds

    @Test("random operations match the model", arguments: ModelDevice.allCases, ModelTests.seeds)
    func randomOperationsMatchTheModel(device: ModelDevice, seed: UInt64) throws {
        let s = Scratch()
        var run = ModelRun(engine: try modelEngine(device, s), files: 3, seed: seed)
        for i in 0..<ModelTests.operations {
            if let problem = try run.step(i) ?? run.structureProblem() {
                Issue.record("seed \(seed) on \(device.rawValue) op \(i): \(problem)")
                return
            }
        }
        if let problem = try run.verifyAll() { Issue.record("seed \(seed) on \(device.rawValue): \(problem)") }
        if device == .zonedAppendOutOfOrder {
            #expect(run.engine.stats.landedApartSplits > 0 && run.engine.allocator.stats.deviceAppends > 0, "the appends must land apart")
        }
    }
}
