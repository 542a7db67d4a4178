// The flusher: one background thread that writes the page cache back before writers have to.
//
// Once the page cache of all files holds more than `MountOptions.writeBackThreshold` of the
// engine's mount-wide limit (`EngineConfig.dirtyLimit`), a writer pokes the flusher, which writes
// back the files dirty longest until the cache is under that threshold again. Writers that reach
// the limit itself write back on their own (ZonedEngine/DirtyFiles.swift), so the bound never
// depends on this thread; the thread only takes that work off their path.
//
// Every `MountOptions.commitInterval` (when not zero) it also commits: if anything is not durable
// yet (page cache, attribute updates, log records written but not flushed), it writes back every
// file and commits the log durably, as `sync` does. `sync(1)` never reaches a FUSE daemon, so this
// is what bounds how much un-fsync'd work a crash can lose. An idle mount commits nothing (an
// idle sync writes nothing either, and `hasUncommittedChanges` is false after a commit).
//
// Invariants:
// - Each write-back is one file system operation (fsLock shared, one file per operation, so a
//   checkpoint waits for one file at most) inside `withSpace`, so ENOSPC reclaims and retries as
//   for every other allocating path. Nothing here commits while holding fsLock.
// - Errors are counted (`FlusherCounters`, shown in the mount's status) and logged through
//   `MountOptions.errorLog`, never swallowed; the work is tried again at the next poke.
// - The thread (a BackgroundWorker) holds the file system weakly and strongly only while it works:
//   `stop` (unmount, before the final sync) waits for it to end; a file system dropped without
//   unmount cancels it (deinit), and it never touches the file system afterwards.
// - What the thread does is decided by the file system's state; the only timer is the commit
//   interval (a monotonic clock, ConditionLock's timed wait), and whether a commit writes
//   anything is decided by the state again. Tests drive the same work synchronously
//   (`FileSystem.writeBackOldest(until:)`, `FileSystem.commitIfChanged()`).

import Foundation
import ZonedCore
import ZonedEngine

public struct FlusherCounters: Sendable, Equatable {
    /// Files the background thread wrote back.
    public var writeBacks: UInt64 = 0
    /// Commits it made because the commit interval passed with changes not yet durable.
    public var periodicCommits: UInt64 = 0
    /// Errors the background thread met (each also logged), and the latest one.
    public var errors: UInt64 = 0
    public var lastError: String?
}

final class Flusher: @unchecked Sendable {
    private weak var fs: FileSystem?
    /// Background write-back starts when the page cache holds more than this.
    let threshold: ByteCount
    private let writeBackEnabled: Bool
    /// Zero: no periodic commits.
    let commitInterval: Duration
    private let worker: BackgroundWorker
    private let lock = ConditionLock(rank: .leaf)
    private var counters = FlusherCounters()

    init(fs: FileSystem, options: MountOptions) {
        self.fs = fs
        let limit = Double(fs.engine.config.dirtyLimit.bytes)
        threshold = ByteCount(UInt64(max(0, min(1, options.writeBackThreshold)) * limit))
        writeBackEnabled = options.backgroundWriteBack
        commitInterval = max(.zero, options.commitInterval)
        worker = BackgroundWorker(name: "zbdfs-flusher", interval: commitInterval, log: options.errorLog)
    }

    var stats: FlusherCounters {
        var c = lock.withLock { counters }
        (c.errors, c.lastError) = worker.errors
        return c
    }

    /// Whether a page cache of `cached` bytes is worth a poke.
    func wantsWriteBack(_ cached: ByteCount) -> Bool { writeBackEnabled && cached > threshold }

    // MARK: The thread

    /// Starts the thread, when it has work to do. The thread keeps this object alive, not the
    /// file system.
    func start() {
        guard writeBackEnabled || commitInterval > .zero else { return }
        worker.start { [self] wake in round(wake) }
    }

    func poke() { worker.poke() }

    /// Stops the thread and waits until it has ended (its current write-back finishes first).
    func stop() { worker.stop() }

    /// Stops the thread without waiting (the file system is going away, possibly on this thread).
    func cancel() { worker.cancel() }

    private func round(_ wake: BackgroundWorker.Wake) {
        guard let fs else { return }
        if wake.poked { worker.attempt("background write-back") { () throws(DeviceError) in
            let n = try fs.writeBackOldest(until: threshold)
            lock.withLock { counters.writeBacks += UInt64(n) }
        } }
        if wake.due { worker.attempt("periodic commit") { () throws(DeviceError) in
            if try fs.commitIfChanged() { lock.withLock { counters.periodicCommits += 1 } }
        } }
    }
}

extension FileSystem {
    /// The periodic commit: when anything is not durable yet, writes back every file and commits
    /// durably (`sync`). Returns whether it did; an idle mount writes nothing.
    @discardableResult
    public func commitIfChanged() throws(DeviceError) -> Bool {
        guard hasUncommittedChanges else { return false }
        try sync()
        return true
    }

    /// Writes back the files dirty longest, each as its own operation (retried after reclaim on
    /// ENOSPC), until the page cache holds at most `target`. Returns the files written back.
    @discardableResult
    func writeBackOldest(until target: ByteCount) throws(DeviceError) -> Int {
        var done = 0
        // As many turns as files were dirty: writers that keep dirtying cannot keep this going.
        var turns = engine.dirtyFiles.count
        while turns > 0, engine.cachedBytes > target {
            turns -= 1
            let n = try withSpace(engine.config.bufferedCacheBytes) { () throws(DeviceError) -> InodeNumber? in
                try operation { () throws(DeviceError) -> InodeNumber? in try engine.writeBackOldest() }
            }
            guard n != nil else { break }
            done += 1
        }
        return done
    }
}
