// A zbdfs file system on one zoned (or conventional) device: the namespace and metadata log on
// top of the direct-IO engine.
//
// Invariants:
// - Every namespace change is a batch of log records, applied to `namespace` and buffered in the
//   journal under `nsLock`, so the journal's order is the order the namespace saw.
// - File layout changes reach the journal from the engine (`Engine.recorder`), under the inode's
//   state lock, after their IO completed.
// - Operations run under `fsLock` shared; a checkpoint takes it exclusively (Journal.quiesce), so
//   it sees no operation half done. No code path commits while holding `fsLock`.
// - Attribute-only updates that come with data IO (mtime/ctime of a write) are kept in memory and
//   logged at the next commit (`dirty`); everything else is logged with its operation.
// - A read-only file system never writes the device.
// - The background threads (Reclaimer, Flusher) do their work as operations too and commit outside
//   them; `unmount` stops both before its final sync.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ZonedAllocator
import ZonedCore
import ZonedEngine
import ZonedIndex

public struct MountOptions: Sendable {
    public var readOnly = false
    public var engine = EngineConfig()
    /// Buffered log bytes that trigger a (non-durable) commit.
    public var commitThreshold = 256 << 10
    /// Background reclaim runs while free space is under this fraction of the capacity.
    public var reclaimThreshold = 0.15
    /// Run reclaim in a background thread (writers that find no space reclaim in any case).
    public var backgroundReclaim = true
    public var reclaimPolicy = ReclaimPolicy.costBenefit
    /// Write back in a background thread (Flusher) once the page cache holds more than
    /// `writeBackThreshold` of `engine.dirtyLimit`, so writers seldom reach the limit (where they
    /// write back themselves, thread or not).
    public var backgroundWriteBack = true
    public var writeBackThreshold = 0.5
    /// Every this often, when anything changed since the last durable commit, the flusher writes
    /// back every file and commits durably, so a crash loses at most this window of un-fsync'd
    /// work. Zero: never (the library's default, so tests that count IOs stay deterministic;
    /// `zbdfs mount` takes `-o commit=SECONDS`, 5 by default).
    public var commitInterval: Duration = .zero
    /// The metadata index's block cache: how much of its tables (data checksums today) stays in
    /// memory (`zbdfs mount -o cache=SIZE`).
    public var cacheSize = ByteCount.mib(128)
    /// The metadata index's bounds (its memtable is written out as a table once it holds
    /// `index.memtableBytes`, at the next commit); small ones in tests exercise flush and compaction.
    public var index = IndexConfig()
    /// Gets one line for each error the file system handles without failing an operation (a
    /// background reclaim pass or write-back, a zone resync after a failed write): the mount's
    /// log. Such errors are also counted (`ReclaimCounters.failedPasses`,
    /// `AllocatorCounters.resyncFailures`, `FlusherCounters.errors`).
    public var errorLog: (@Sendable (String) -> Void)?
    public init(readOnly: Bool = false, backgroundReclaim: Bool = true, backgroundWriteBack: Bool = true,
                commitInterval: Duration = .zero) {
        self.readOnly = readOnly
        self.backgroundReclaim = backgroundReclaim
        self.backgroundWriteBack = backgroundWriteBack
        self.commitInterval = commitInterval
    }
}

/// What `stat` says about an inode.
public struct FileStat: Sendable, Equatable {
    public var attributes: InodeAttributes
    public var size: UInt64
    /// Bytes of device space the file maps (data and prealloc), and will map once its page cache
    /// is written back (cached blocks over holes), so `du` and `tar -S` see buffered data.
    public var allocated: UInt64
    public var number: InodeNumber { attributes.number }
    public var kind: InodeKind { attributes.kind }
}

public struct DirectoryEntry: Sendable, Equatable {
    public var name: EntryName
    public var inode: InodeNumber
    public var kind: InodeKind
}

public final class FileSystem: @unchecked Sendable {
    public let device: any ZonedDevice
    public let engine: Engine
    public let readOnly: Bool
    let journal: Journal
    let clock: any EngineClock
    /// Where file timestamps come from (see `timestampClock(for:)`).
    let timestamps: any EngineClock
    let options: MountOptions
    let fsLock = ReadWriteLock(rank: .fileSystem)
    let nsLock = ConditionLock(rank: .namespace)
    var namespace: Namespace
    /// The metadata index's tables as the log says (under `nsLock`, like the namespace).
    var indexManifest: IndexManifest
    /// The metadata index (data checksums) over its zones; `indexManifest` is what the log says
    /// of its tables.
    let index: MetadataIndex
    let indexChecksums: IndexChecksums
    /// Serialises writing the memtable out and compacting with logging their edits, so the log
    /// holds edits in the order the index made them (LockOrder: before `fileSystem`).
    let indexMaintenance = ConditionLock(rank: .indexMaintenance)
    var dirty = Set<InodeNumber>()
    /// Open handles per inode: an unlinked inode lives on until its last one is released.
    var openCount: [InodeNumber: Int] = [:]
    /// What mount found and did (for tools and tests).
    public internal(set) var mountReport = MountReport()
    private(set) var reclaimer: Reclaimer!
    private(set) var flusher: Flusher!
    /// The lifetime counters the log held at mount; `lifetime` adds this mount's work to them.
    let lifetimeAtMount: LifetimeCounters

    init(device: any ZonedDevice, engine: Engine, journal: Journal, namespace: Namespace, manifest: IndexManifest = IndexManifest(),
         index: IndexChecksums, options: MountOptions, clock: any EngineClock) {
        self.device = device
        self.engine = engine
        self.journal = journal
        self.namespace = namespace
        self.indexManifest = manifest
        self.index = index.index
        self.indexChecksums = index
        engine.checksums = index
        self.options = options
        self.readOnly = options.readOnly
        self.clock = clock
        self.timestamps = FileSystem.timestampClock(for: clock)
        self.lifetimeAtMount = namespace.lifetime
        journal.quiesce = { [unowned self] body throws(DeviceError) in
            _ = fsLock.lock(.exclusive)
            defer { fsLock.unlock() }
            try body()
        }
        journal.snapshot = { [unowned self] () throws(DeviceError) in try checkpointBatches() }
        if !readOnly { engine.recorder = journal }
        reclaimer = Reclaimer(fs: self, log: options.errorLog)
        flusher = Flusher(fs: self, options: options)
    }

    /// Dropped without `unmount`: the flusher must not outlive the file system.
    deinit { flusher?.cancel(); reclaimer?.cancel() }

    public var reclaimStats: ReclaimCounters { reclaimer.stats }
    public var flusherStats: FlusherCounters { flusher.stats }
    /// How often the flusher commits changes nobody made durable (zero: never).
    public var commitInterval: Duration { flusher.commitInterval }

    /// Runs a reclaim pass now (`zbdfs reclaim`); returns the zones reset.
    @discardableResult
    public func reclaim(goal: ByteCount? = nil) throws(DeviceError) -> Int {
        try requireWritable(.write)
        return try reclaimer.pass(goal: goal ?? engine.allocator.totals.capacity)
    }

    /// Lifetime write counters: the log's as of mount plus this mount's writes.
    public var lifetime: LifetimeCounters {
        let e = engine.stats, j = journal.counters
        var d = LifetimeCounters()
        d.userBytesWritten = e.userBytesWritten
        d.dataBytesWritten = e.deviceBytesWritten - min(e.deviceBytesWritten, e.relocatedBytes)
        d.reclaimBytesWritten = e.relocatedBytes
        d.metadataBytesWritten = j.bytes + j.superblockWrites * UInt64(Superblock.copySize(block: device.geometry.logicalBlockSize.bytes))
        d.zonesReclaimed = reclaimer.stats.zonesReclaimed
        return lifetimeAtMount.adding(d)
    }

    /// The newest superblock and the log's counters: safe to read from any thread at any time
    /// (the journal publishes them under a lock of their own, never held across a commit's IO).
    public var superblock: Superblock { journal.superblock }
    public var journalCounters: JournalCounters { journal.counters }

    /// Something is not durable yet: data in the page cache, attribute updates waiting for a
    /// commit, log records buffered or written since the last flush. False on an idle mount
    /// after its last commit (so the periodic commit writes nothing there).
    public var hasUncommittedChanges: Bool {
        guard !readOnly else { return false }
        return engine.cachedBytes > .zero || nsLock.withLock { !dirty.isEmpty } || !journal.isDurable
    }

    var now: Timestamp { Timestamp(truncatingIfNeeded: timestamps.nowNanoseconds) }

    /// File timestamps are dates: with the system's monotonic clock (the default) they come from
    /// the wall clock, or `ls -l` would show times since boot as 1970 dates. An injected clock (a
    /// test's ManualClock) drives them too, so runs stay deterministic.
    static func timestampClock(for clock: any EngineClock) -> any EngineClock {
        clock is SystemClock ? WallClock() : clock
    }

    // MARK: Helpers for operations

    /// Runs `body` as an operation (fsLock shared), then commits if the log buffer grew large.
    /// `nowait`: EAGAIN instead of waiting while a checkpoint holds (or waits for) the lock.
    func operation<T>(nowait: Bool = false, _ body: () throws(DeviceError) -> T) throws(DeviceError) -> T {
        guard fsLock.lock(.shared, nowait: nowait) else {
            throw DeviceError.wouldBlock(.write, "a checkpoint is running")
        }
        let result: T
        do throws(DeviceError) {
            result = try body()
        } catch {
            fsLock.unlock()
            throw error
        }
        fsLock.unlock()
        if !readOnly, journal.pendingBytes >= options.commitThreshold { try commit(durable: false) }
        return result
    }

    func requireWritable(_ op: DeviceOperation) throws(DeviceError) {
        if readOnly { throw DeviceError(errno: EROFS, op, "the file system is mounted read-only") }
    }

    /// Applies a batch to the namespace and buffers it in the log (under `nsLock`).
    func log(_ batch: [LogRecord]) throws(DeviceError) {
        for r in batch {
            do {
                try namespace.apply(r)
                try indexManifest.apply(r)
            } catch {
                throw DeviceError.corrupted(.namespace, "internal: a checked operation produced a record that does not fit: \(error)")
            }
        }
        journal.append(batch)
    }

    /// Writes the log; `durable` also flushes.
    public func commit(durable: Bool) throws(DeviceError) {
        guard !readOnly else { return }
        try maintainIndex()
        nsLock.withLock {
            let batch = dirty.sorted().compactMap { namespace.attributes($0) }.map { LogRecord.inode($0) }
            dirty.removeAll()
            // Counters ride along with anything logged, so an idle sync writes nothing.
            if !batch.isEmpty || journal.pendingBytes > 0 { journal.append(batch + [.counters(lifetime)]) }
        }
        try journal.commit(durable: durable)
    }

    /// Makes everything written so far durable (buffered data included).
    public func sync() throws(DeviceError) {
        guard !readOnly else { return }
        try withSpace(.mib(1)) { () throws(DeviceError) in try operation { () throws(DeviceError) in try engine.flushAll() } }
        try commit(durable: true)
    }

    /// Syncs and closes the device. The file system must not be used afterwards.
    public func unmount() throws(DeviceError) {
        reclaimer.stop()
        flusher.stop()  // before the final sync, which then has the page cache to itself
        if !readOnly {
            try sync()
            try journal.checkpointIfShorter()
        }
        device.close()
    }

    /// Once the memtable holds its bound: writes it out as a table, compacts, logs the edits and
    /// only then releases the tables compaction replaced. Runs as an operation (`fsLock` shared),
    /// so no checkpoint comes between writing a table and logging it: a checkpoint drops the log
    /// records whose checksums the table holds.
    func maintainIndex() throws(DeviceError) {
        guard index.memtableBytes >= index.config.memtableBytes else { return }
        try indexMaintenance.withLock { () throws(DeviceError) in
            _ = fsLock.lock(.shared)
            defer { fsLock.unlock() }
            guard index.memtableBytes >= index.config.memtableBytes else { return }
            var edits = try index.flush()
            while true {
                let more = try index.compact()
                if more.isEmpty { break }
                edits += more
            }
            try nsLock.withLock { () throws(DeviceError) in try log(edits.map(LogRecord.init)) }
            index.releaseRetired()
        }
    }

    /// The whole state as batches (checkpoint): inodes, then entries, then file layouts, then the
    /// index's manifest and the checksums no table holds yet (its memtable). Extent records carry
    /// no checksums: they are in the index's tables or in those records. Called quiesced, so no
    /// flush or compaction is running (`maintainIndex` runs as an operation).
    func checkpointBatches() throws(DeviceError) -> (nextInode: InodeNumber, batches: [[LogRecord]]) {
        let pending = indexChecksums.pendingRuns()
        return nsLock.withLock { () -> (nextInode: InodeNumber, batches: [[LogRecord]]) in
            var out: [[LogRecord]] = []
            let numbers = namespace.inodes.keys.sorted()
            for n in numbers { out.append([.inode(namespace.inodes[n]!)]) }
            for d in namespace.entries.keys.sorted() {
                for (name, n) in namespace.entries[d]!.sorted(by: { $0.key < $1.key }) { out.append([.link(parent: d, name: name, inode: n)]) }
            }
            for n in numbers where namespace.inodes[n]!.kind == .file {
                guard let layout = try? engine.layout(n) else { continue }
                for e in layout.map.extents { out.append([.checkpointExtent(n, e)]) }
                if layout.size > 0 { out.append([.file(n, .extended(to: layout.size))]) }
            }
            dirty.removeAll()  // the checkpoint carries the newest attributes
            out += indexManifest.checkpointRecords
            for r in pending { out.append([.checkpointChecksums(r)]) }
            out.append([.counters(lifetime)])
            return (namespace.nextInode, out)
        }
    }
}

/// What mount found and did.
public struct MountReport: Sendable, Equatable {
    public var superblockGeneration: UInt64 = 0
    public var logZones: [Int] = []
    public var framesReplayed = 0
    public var recordsReplayed = 0
    public var logEnd = ""
    public var zonesReset: [Int] = []
    public var garbageBytes: UInt64 = 0
    public var orphansRemoved = 0
    /// Index tables the manifest lists, and data checksums set again from the log since the last checkpoint.
    public var indexTables = 0
    public var checksumRunsReplayed = 0
}

extension LogRecord {
    /// The log record of an index manifest edit.
    init(_ edit: ManifestEdit) {
        switch edit {
        case .added(let d): self = .tableAdded(d)
        case .removed(let id): self = .tableRemoved(id: id)
        }
    }
}
