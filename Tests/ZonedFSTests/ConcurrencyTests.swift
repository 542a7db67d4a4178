// Many threads using one file system while the metadata log rolls over and checkpoints (which
// quiesce every operation): no deadlock, and everything synced reads back after a remount. And
// the figures monitoring reads (journal counters, superblock, lifetime, usage) read from other
// threads while commits change them: each reader sees them only grow (run under TSan by
// `tools/test`, which also reports any unguarded access).

import Foundation
import Testing
import ZonedBackendFile
import ZonedCore
import ZonedEngine
@testable import ZonedFS

@Suite("File system concurrency", .timeLimit(.minutes(10)))
struct FSConcurrencyTests {
    @Test("8 threads create, write (direct and buffered), fsync, rename and unlink during log roll-overs")
    func threadsDuringRollOvers() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: smallZoned(zones: 48, zoneSize: .kib(64), capacity: .kib(64), maxActive: 4))
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: dev)
        let threads = 8, perThread = 30
        let failures = ConditionLock()
        nonisolated(unsafe) var errors: [String] = []
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            do {
                let dir = try fs.makeDirectory("/t\(t)")
                for i in 0..<perThread {
                    let name = try EntryName("f\(i)")
                    let n = try fs.create(dir, name, kind: .file, mode: 0o644, uid: 0, gid: 0).number
                    let data = bytes(i % 2 == 0 ? 12_288 : 5_000, seed: UInt64(t * 1000 + i))
                    try fs.write(n, at: 0, bytes: data, direct: i % 2 == 0)
                    if i % 3 == 0 { try fs.fsync(n) }
                    if i % 5 == 4 { try fs.unlink(dir, name) }
                    if i % 7 == 6 { try fs.rename(dir, name, to: dir, try EntryName("r\(i)")) }
                }
            } catch {
                failures.withLock { errors.append("thread \(t): \(error)") }
            }
        }
        #expect(errors.isEmpty, "\(errors)")
        #expect(fs.journalCounters.checkpoints >= 3, "the log rolled over with checkpoints while threads ran: \(fs.journalCounters)")
        try fs.unmount()
        let again = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")))
        for t in 0..<threads {
            for i in 0..<perThread where i % 5 != 4 {
                let path = "/t\(t)/" + (i % 7 == 6 ? "r\(i)" : "f\(i)")
                let want = bytes(i % 2 == 0 ? 12_288 : 5_000, seed: UInt64(t * 1000 + i))
                #expect(try again.readAll(try again.resolve(path)) == want, "\(path)")
            }
        }
        #expect(try Fsck.check(device: again.device, verifyData: true).clean)
        try again.unmount()
    }

    @Test("status figures read from 3 threads while 2 threads write, fsync and roll the log over")
    func figuresWhileCommitting() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: smallZoned(zones: 48, zoneSize: .kib(64), capacity: .kib(64), maxActive: 4))
        try FileSystem.format(device: dev, options: FormatOptions(label: "figures", uuid: testUUID))
        let fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false))
        let writers = 2, rounds = 40
        let done = Locked(0)  // writers finished; readers stop once all have
        let problems = Locked<[String]>([])
        // Threads of their own (not concurrentPerform, which on 2 cores may run the readers only
        // after the writers): every reader overlaps the writers.
        let all = DispatchGroup()
        func spawn(_ body: @escaping @Sendable () -> Void) {
            all.enter()
            Thread { body(); all.leave() }.start()
        }
        for t in 0..<writers {
            spawn {
                do { try writeAndSync(fs, tag: t, rounds: rounds) } catch { problems.withLock { $0.append("writer \(t): \(error)") } }
                done.withLock { $0 += 1 }
            }
        }
        // One reader per figure, each touching nothing else between two reads (another lock taken
        // in between would order it after the writer and hide an unguarded read from TSan).
        for figure in Figure.allCases {
            spawn {
                let seen = read(figure, of: fs) { done.withLock { $0 } == writers }
                problems.withLock { $0 += seen }
            }
        }
        all.wait()
        #expect(problems.withLock { $0 }.isEmpty, "\(problems.withLock { $0 })")
        #expect(fs.journalCounters.checkpoints >= 2, "the superblock moved while readers read: \(fs.journalCounters)")
        try fs.unmount()
    }
}

/// Writes a 4 KiB block to its own file and fsyncs it, `rounds` times.
private func writeAndSync(_ fs: FileSystem, tag: Int, rounds: Int) throws {
    let f = try fs.createFile("/w\(tag)")
    for i in 0..<rounds {
        try fs.write(f, at: UInt64(i) * 4096, bytes: bytes(4096, seed: UInt64(tag * 1000 + i)), direct: true)
        try fs.fsync(f)
    }
}

/// The figures monitoring reads while the file system commits.
private enum Figure: CaseIterable { case superblock, journalCounters, usage }

/// Reads `figure` until `stop()`; returns what went backwards or read wrong.
private func read(_ figure: Figure, of fs: FileSystem, until stop: () -> Bool) -> [String] {
    var last: (generation: UInt64, counters: JournalCounters, metadata: UInt64) = (0, JournalCounters(), 0)
    var problems: [String] = []
    repeat {
        switch figure {
        case .superblock:
            let sb = fs.superblock
            if sb.generation < last.generation { problems.append("superblock generation went back: \(last.generation) -> \(sb.generation)") }
            if sb.label != "figures" { problems.append("superblock label read as '\(sb.label)'") }
            last.generation = sb.generation
        case .journalCounters:
            let c = fs.journalCounters, was = last.counters
            if c.frames < was.frames || c.bytes < was.bytes || c.durableCommits < was.durableCommits || c.superblockWrites < was.superblockWrites {
                problems.append("journal counters went back: \(was) -> \(c)")
            }
            last.counters = c
        case .usage:
            do {
                let u = try FileSystemUsage.live(fs)
                if u.label != "figures" { problems.append("usage label read as '\(u.label)'") }
                if u.lifetime.metadataBytesWritten < last.metadata { problems.append("lifetime metadata bytes went back") }
                last.metadata = u.lifetime.metadataBytesWritten
            } catch { problems.append("usage: \(error)") }
        }
    } while !stop() && problems.isEmpty
    return problems
}
