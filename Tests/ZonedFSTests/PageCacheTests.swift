// The page cache through the file system: the mount-wide bound on many files at once, the
// flusher's background write-back, and what buffered data looks like before it reaches the device.

import Foundation
import Testing
import ZonedBackendFile
import ZonedCore
import ZonedEngine
@testable import ZonedFS
import ZonedTestSupport

/// 48 zones of 1 MiB (960 KiB capacity): room for every test here many times over.
private func roomy() -> DeviceGeometry {
    DeviceGeometry(zoneCount: 48, zoneSize: .mib(1), zoneCapacity: .kib(960), logicalBlockSize: .kib(4),
                   maxOpenZones: 6, maxActiveZones: 6, maxWriteBytes: .kib(64))
}

@Suite("Page cache through the file system", .serialized, .timeLimit(.minutes(10)))
struct PageCacheTests {
    func mounted(_ s: Scratch, _ options: MountOptions) throws -> FileSystem {
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: roomy())
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        return try FileSystem.mount(device: dev, options: options)
    }

    @Test func manyFilesNeverCacheMoreThanTheMountWideLimit() throws {
        let s = Scratch()
        var o = MountOptions(backgroundReclaim: false, backgroundWriteBack: false)
        o.engine.dirtyLimit = .kib(512)
        let fs = try mounted(s, o)
        var expected: [String: [UInt8]] = [:]
        // 60 files of 100 000 bytes: each far under the per-file limit, 6 MB together.
        for i in 0..<60 {
            let path = "/f\(i)", data = bytes(100_000, seed: UInt64(i))
            let f = try fs.createFile(path)
            for off in stride(from: 0, to: data.count, by: 25_000) {
                try fs.write(f, at: UInt64(off), bytes: Array(data[off..<(off + 25_000)]))
                #expect(fs.engine.cachedBytes <= o.engine.dirtyLimit, "\(path) at \(off): \(fs.engine.cachedBytes) cached")
            }
            expected[path] = data
        }
        try fs.unmount()
        let again = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")), options: o)
        for (path, want) in expected { #expect(try again.readAll(try again.resolve(path)) == want, "\(path)") }
        try again.unmount()
    }

    @Test func theFlusherWritesBackOnceTheCachePassesItsThreshold() throws {
        let s = Scratch()
        var o = MountOptions(backgroundReclaim: false)
        o.engine.dirtyLimit = .mib(1)  // the flusher starts past 512 KiB
        let fs = try mounted(s, o)
        // 768 KiB in six files: past the flusher's threshold, under the limit where writers
        // would write back themselves.
        var files: [InodeNumber] = []
        for i in 0..<6 {
            let f = try fs.createFile("/f\(i)")
            try fs.write(f, at: 0, bytes: bytes(128 << 10, seed: UInt64(i)))
            files.append(f)
        }
        // The flusher counts a round's files when the round ends, after the cache has shrunk:
        // wait for both, or the count can be read between the two.
        #expect(waitUntil { fs.engine.cachedBytes <= .kib(512) && fs.flusherStats.writeBacks >= 2 },
                "still \(fs.engine.cachedBytes) cached, \(fs.flusherStats)")
        #expect(fs.flusherStats.errors == 0, "\(fs.flusherStats)")
        let mapped = try files.map { try fs.engine.layout($0).map.mappedBytes }
        #expect(mapped.prefix(2).allSatisfy { $0 == 128 << 10 }, "the oldest files went first: \(mapped)")
        for (i, f) in files.enumerated() { #expect(try fs.readAll(f) == bytes(128 << 10, seed: UInt64(i))) }
        try fs.unmount()
    }

    /// st_blocks (`FileStat.allocated`) counts buffered data before it reaches the device, or
    /// `du` shows 0 and `tar -S` archives the file as one hole.
    @Test func statCountsCachedBlocksAsAllocatedButNotTwice() throws {
        let s = Scratch()
        let fs = try mounted(s, MountOptions(backgroundReclaim: false, backgroundWriteBack: false))
        let f = try fs.createFile("/f")
        try fs.write(f, at: 0, bytes: bytes(100_000, seed: 1))
        #expect(fs.engine.cachedBytes.bytes > 0, "the bytes are still cached")
        let allocated = try fs.stat(f).allocated
        #expect(allocated >= 100_000, "cached blocks count: \(allocated)")
        #expect(try fs.stat(f).allocated == 25 * 4096)
        try fs.fsync(f)
        #expect(try fs.stat(f).allocated == 25 * 4096, "the same after write-back")
        // A cached block over a mapped one replaces it: counted once. One past EOF over a hole: counted.
        try fs.write(f, at: 8192, bytes: [1, 2, 3])
        try fs.write(f, at: 1 << 20, bytes: [4])
        #expect(try fs.stat(f).allocated == 26 * 4096)
        try fs.fsync(f)
        #expect(try fs.stat(f).allocated == 26 * 4096)
        try fs.unmount()
    }

    /// The periodic commit (`-o commit=`) is a sync when something is not durable, and nothing
    /// when the mount is idle: it writes no log frame and counts no commit there.
    @Test func commitIfChangedCommitsOnlyWhatIsNotDurable() throws {
        let s = Scratch()
        let fs = try mounted(s, MountOptions(backgroundReclaim: false, backgroundWriteBack: false))
        try fs.sync()
        #expect(!fs.hasUncommittedChanges, "a synced mount has nothing to commit")
        let idle = fs.journalCounters
        #expect(try !fs.commitIfChanged())
        #expect(fs.journalCounters == idle, "an idle periodic commit wrote: \(idle) → \(fs.journalCounters)")
        let f = try fs.createFile("/f")
        try fs.write(f, at: 0, bytes: bytes(50_000, seed: 5))
        #expect(fs.hasUncommittedChanges)
        #expect(try fs.commitIfChanged())
        #expect(fs.engine.cachedBytes == .zero, "the page cache was written back")
        #expect(fs.journalCounters.durableCommits == idle.durableCommits + 1)
        #expect(!fs.hasUncommittedChanges)
        // An attribute change alone (no data, no namespace record yet) is a change too.
        _ = try fs.setAttributes(f, AttributeChanges(mode: 0o600))
        #expect(fs.hasUncommittedChanges)
        #expect(try fs.commitIfChanged())
        #expect(!fs.hasUncommittedChanges)
        // A namespace change is a log record waiting in the journal's buffer.
        try fs.unlink(rootInode, try EntryName("f"))
        #expect(fs.hasUncommittedChanges, "an unlink waits in the log buffer")
        #expect(try fs.commitIfChanged())
        #expect(!fs.hasUncommittedChanges)
        try fs.unmount()
    }

    /// While a commit is on its way to the device nothing it carries is durable yet: a reader of
    /// `hasUncommittedChanges` on another thread (the periodic commit, a status report) must not
    /// see an idle mount between the moment the commit takes the log buffer and the flush that
    /// ends it. (It did: the buffer was empty and no frame was written yet, so a periodic commit
    /// that looked then skipped changes that were in no frame; a power cut lost them.)
    @Test func aCommitInFlightIsNotDurableUntilItsFlush() throws {
        let s = Scratch()
        let emu = try EmulatedZonedDevice.create(path: s.path("img"), geometry: roomy())
        try FileSystem.format(device: emu, options: FormatOptions(uuid: testUUID))
        let dev = FlushProbe(emu)
        let fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false, backgroundWriteBack: false))
        try fs.sync()
        try fs.write(try fs.createFile("/f"), at: 0, bytes: bytes(9_000, seed: 4))
        // Asked from another thread at each flush, as the flusher or a status reader would.
        dev.onFlush = { DispatchQueue.global().sync { fs.hasUncommittedChanges } }
        try fs.sync()
        dev.onFlush = nil
        #expect(dev.answers.count >= 2, "the sync flushed the data, then the frames: \(dev.answers)")
        #expect(dev.answers.allSatisfy { $0 }, "looked durable before the commit's flush: \(dev.answers)")
        #expect(!fs.hasUncommittedChanges)
        try fs.unmount()
    }

    /// Changes older than the commit interval survive a power cut though nobody called fsync or
    /// sync: a directory and a buffered file made after the first periodic commit are there, and
    /// a removal made before the second one stays removed.
    @Test func changesOlderThanTheCommitIntervalSurviveAPowerCut() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: roomy())
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false, commitInterval: .milliseconds(20)))
        _ = try fs.makeDirectory("/old")
        try fs.write(try fs.createFile("/old/x"), at: 0, bytes: bytes(9_000, seed: 1))
        func committed(after n: UInt64) -> Bool {
            waitUntil { fs.flusherStats.periodicCommits > n && !fs.hasUncommittedChanges }
        }
        #expect(committed(after: 0), "no periodic commit: \(fs.flusherStats)")
        let first = fs.flusherStats.periodicCommits
        try fs.unlink(try fs.resolve("/old"), try EntryName("x"))
        try fs.removeDirectory(rootInode, try EntryName("old"))
        _ = try fs.makeDirectory("/d")
        let data = bytes(70_000, seed: 2)
        try fs.write(try fs.createFile("/d/f"), at: 0, bytes: data)
        #expect(committed(after: first), "no second periodic commit: \(fs.flusherStats)")
        #expect(fs.flusherStats.errors == 0, "\(fs.flusherStats)")
        try dev.powerCut(tornLastBlock: true, seed: 3)
        let again = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")),
                                         options: MountOptions(backgroundReclaim: false))
        #expect(try again.readAll(try again.resolve("/d/f")) == data, "the buffered file came back")
        #expect((try? again.resolve("/old")) == nil, "the removal came back undone")
        #expect(try Fsck.check(device: again.device).clean)
        try again.unmount()
    }
}

/// Asks a question before each flush reaches the device and keeps the answers.
final class FlushProbe: ForwardingDevice, @unchecked Sendable {
    private let lock = NSLock()
    private var hook: (@Sendable () -> Bool)?
    private var stored: [Bool] = []
    var onFlush: (@Sendable () -> Bool)? {
        get { lock.withLock { hook } }
        set { lock.withLock { hook = newValue } }
    }
    var answers: [Bool] { lock.withLock { stored } }
    override func flush() throws(DeviceError) {
        if let ask = onFlush {
            let answer = ask()
            lock.withLock { stored.append(answer) }
        }
        try inner.flush()
    }
}
