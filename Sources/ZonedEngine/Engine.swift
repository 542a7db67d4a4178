// The engine: files identified by inode number, on one zoned (or conventional) device.
//
// Lock order: the whole stack's is written once, in ZonedCore/LockOrder.swift (FUSE worker →
// journal commit → file system → namespace → inode → range → inode state → allocator's zone
// sequencer → allocator → device), and checked at run time in debug builds.
//
// Invariants:
// - The engine is generic over `ZonedDevice`; it never names a backend.
// - All device space goes through one ZoneAllocator; the engine never writes a sequential zone
//   except through `ZoneAllocator.submit`, so write-pointer order holds by construction (at the
//   pointer) or the device keeps it (zone append, whose addresses are recorded at completion).
// - Inode numbers are handed out from 1, in order; the inode table changes under `tableLock`.
// - Errors are DeviceError (errno-typed): EINVAL, ENOENT, ENOSPC, EAGAIN, EIO, EOPNOTSUPP.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ZonedAllocator
import ZonedCore

public struct IOFlags: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// O_DIRECT: aligned IO goes straight to the device; unaligned IO falls back to buffered.
    public static let direct = IOFlags(rawValue: 1)
    /// IOCB_NOWAIT / RWF_NOWAIT: EAGAIN instead of blocking.
    public static let nowait = IOFlags(rawValue: 2)
}

/// Counters for monitoring (monotonic since the engine started).
public struct EngineCounters: Sendable, Equatable {
    public var eagainReturns: UInt64 = 0
    public var orderedExtentSplits: UInt64 = 0
    /// Ordered extents split at completion because their pieces did not land back to back (zone
    /// appends completing out of order, or between another writer's appends).
    public var landedApartSplits: UInt64 = 0
    public var shortWrites: UInt64 = 0
    public var bufferedFallbacks: UInt64 = 0
    public var nocowWrites: UInt64 = 0
    public var orderedExtentWaits: UInt64 = 0
    /// fsyncs that had to wait for ordered extents of their file.
    public var fsyncWaits: UInt64 = 0
    public var userBytesWritten: UInt64 = 0
    public var deviceBytesWritten: UInt64 = 0
    public var userBytesRead: UInt64 = 0
    public var zoneFinishWaits: UInt64 = 0
    public var zoneFinishWaitNanoseconds: UInt64 = 0
    /// Reads refused because a block did not match its checksum.
    public var checksumErrors: UInt64 = 0
    /// Bytes buffered writes put in the page cache, and the write-back runs that took them out.
    public var bufferedBytesCached: UInt64 = 0
    public var writeBacks: UInt64 = 0
    /// Bytes moved by relocation (zone reclaim).
    public var relocatedBytes: UInt64 = 0
}

public struct EngineConfig: Sendable {
    /// Largest piece of one read iteration (the seed caps a DIO read's extent lookup).
    public var maxReadChunk: ByteCount = .mib(1)
    public var allocator = AllocatorConfig()
    /// CRC-32C per block on copy-on-write data, checked on read.
    public var dataChecksums = true
    /// A file's page cache is written back once it holds more than this.
    public var bufferedCacheBytes: ByteCount = .mib(4)
    /// The page cache of all files together holds at most this (see DirtyFiles.swift).
    public var dirtyLimit: ByteCount = .mib(64)
    /// Zone appends of one write submitted as one device batch, all in flight at once (when the
    /// device has zone append and `allocator.zoneAppend` is on). Writes at the write pointer go
    /// one at a time per zone whatever this says.
    public var appendsInFlight = 8
    public init(maxReadChunk: ByteCount = .mib(1), allocator: AllocatorConfig = AllocatorConfig(), dataChecksums: Bool = true,
                bufferedCacheBytes: ByteCount = .mib(4), dirtyLimit: ByteCount = .mib(64), appendsInFlight: Int = 8) {
        self.maxReadChunk = maxReadChunk
        self.allocator = allocator
        self.dataChecksums = dataChecksums
        self.bufferedCacheBytes = bufferedCacheBytes
        self.dirtyLimit = dirtyLimit
        self.appendsInFlight = appendsInFlight
    }

    /// Write with zone append when the device has it; false forces writes at the write pointer
    /// (an engine and mount option, to compare the two).
    public var zoneAppend: Bool {
        get { allocator.zoneAppend }
        set { allocator.zoneAppend = newValue }
    }
}

public final class Engine: @unchecked Sendable {
    public let device: any ZonedDevice
    public let allocator: ZoneAllocator
    public let config: EngineConfig
    let block: UInt64
    /// True when the device has no sequential zones (conventional mode): NOCOW/prealloc allowed.
    public let isConventionalMode: Bool

    let buffers = BufferPool()
    /// The page cache over all files (the mount-wide dirty limit).
    let dirty = DirtyFiles()
    /// Where data checksums live: in memory unless the owner (a file system) gives its own
    /// storage, once, before the first IO.
    public var checksums: any ChecksumStorage
    /// Gets every layout change (the metadata log). Set once, before the first IO.
    public var recorder: (any ChangeRecorder)?
    private let tableLock = ConditionLock(rank: .engineTable)
    private var inodes: [InodeNumber: Inode] = [:]
    /// Every inode the engine has open (a snapshot of the table).
    func openInodes() -> [Inode] { tableLock.withLock { Array(inodes.values) } }
    private var nextInode: InodeNumber = 1
    private let countersLock = ConditionLock(rank: .leaf)
    private var counters = EngineCounters()

    /// `roles`: the role of each zone already in use (a mounted file system's superblock, metadata
    /// and data zones); the caller then reconciles the allocator's accounts with what it knows.
    public init(device: any ZonedDevice, config: EngineConfig = EngineConfig(),
                clock: any EngineClock = SystemClock(), roles: [ZoneID: ZoneRole] = [:]) throws(DeviceError) {
        self.device = device
        self.config = config
        self.checksums = ChecksumStore(geometry: device.geometry)
        self.allocator = try ZoneAllocator(device: device, roles: roles, config: config.allocator, clock: clock)
        self.block = device.geometry.logicalBlockSize.bytes
        self.isConventionalMode = device.geometry.sequentialZoneCount == 0
    }

    // MARK: Files

    /// A new empty file. `nocow` only has an effect in conventional mode.
    public func createFile(nocow: Bool = false) -> InodeNumber {
        tableLock.withLock {
            let n = nextInode
            nextInode += 1
            inodes[n] = Inode(number: n, nocow: nocow, layout: FileLayout(zoneSize: device.geometry.zoneSize.bytes))
            return n
        }
    }

    /// Creates (or, at mount, restores) file `n` with `layout`; numbers are the caller's (the
    /// file system's inode numbers). Device space the layout maps must already be accounted live.
    public func openFile(_ n: InodeNumber, layout: FileLayout? = nil, nocow: Bool = false) {
        tableLock.withLock {
            inodes[n] = Inode(number: n, nocow: nocow, layout: layout ?? FileLayout(zoneSize: device.geometry.zoneSize.bytes))
            nextInode = max(nextInode, n + 1)
        }
    }

    /// Forgets file `n` once its last ordered extent is done; its space becomes garbage.
    public func removeFile(_ n: InodeNumber) {
        guard let i = tableLock.withLock({ inodes[n] }) else { return }
        _ = i.lock.lock(.exclusive)
        defer { i.lock.unlock() }
        _ = waitForOrdered(i, 0, UInt64.max, nowait: false)
        // Cached bytes of a removed file are never written; they leave the mount-wide account too.
        changeCache(i) { i.cache.removeAll(); i.cachedSize = 0 }
        let dropped = i.state.withLock { i.map.extents }
        tableLock.withLock { inodes[n] = nil }
        discard(dropped)
    }

    /// The file's size and map.
    public func layout(_ n: InodeNumber) throws(DeviceError) -> FileLayout {
        let i = try inode(n)
        return i.state.withLock { i.layout }
    }

    /// Applies a layout change and records it, under the inode's state lock. Returns the device
    /// ranges that stopped being referenced (to be accounted as garbage once the lock is dropped).
    func apply(_ inode: Inode, _ change: FileChange) -> [FileExtent] {
        if case .mapped(let e, let crcs, _) = change, e.kind == .data, !crcs.isEmpty { checksums.set(e.device, crcs) }
        let dropped = inode.layout.apply(change, block: block)
        if case .mapped(let e, _, _) = change, e.kind == .prealloc { inode.hasPrealloc = true }
        recorder?.record(inode.number, change)
        return dropped
    }

    func inode(_ n: InodeNumber) throws(DeviceError) -> Inode {
        guard let i = tableLock.withLock({ inodes[n] }) else { throw DeviceError(errno: ENOENT, .read, "no inode \(n)") }
        return i
    }

    public func size(_ n: InodeNumber) throws(DeviceError) -> UInt64 {
        let i = try inode(n)
        return i.state.withLock { i.size }
    }

    /// The file's extents, in file order (for tests, fsck and, later, the metadata log).
    public func extents(_ n: InodeNumber) throws(DeviceError) -> [FileExtent] {
        let i = try inode(n)
        return i.state.withLock { i.map.extents }
    }

    public func setNoCOW(_ n: InodeNumber, _ on: Bool) throws(DeviceError) {
        let i = try inode(n)
        i.state.withLock { i.nocow = on }
    }

    public var stats: EngineCounters {
        var c = countersLock.withLock { counters }
        let a = allocator.stats
        c.zoneFinishWaits = a.zoneFinishWaits
        c.zoneFinishWaitNanoseconds = a.zoneFinishWaitNanoseconds
        return c
    }

    func count(_ update: (inout EngineCounters) -> Void) { countersLock.withLock { update(&counters) } }

    func eagain(_ op: DeviceOperation, _ why: String) -> DeviceError {
        count { $0.eagainReturns += 1 }
        return DeviceError(errno: EAGAIN, op, why)
    }

    /// Writes back the file's cache, waits until every ordered extent of the file that existed
    /// when fsync began (the write-back's included) has finished — not for writes started after
    /// it, which could otherwise keep it waiting for ever — then makes the device durable (one
    /// flush, skipped when the device tracks writes and nothing was written since the last one).
    public func fsync(_ n: InodeNumber) throws(DeviceError) {
        try waitForData(n)
        try device.flushIfWritten()
    }

    /// fsync without the flush: the data of file `n` written so far has completed on the device
    /// (the file system's commit then makes data and log durable with as few flushes as it can).
    public func waitForData(_ n: InodeNumber) throws(DeviceError) {
        let i = try inode(n)
        // Write-back needs the inode lock exclusively; only take it when there is something to
        // write back (a write in flight holds the lock, and fsync must not wait for it there).
        if i.state.withLock({ !i.cache.isEmpty }) { try writeBack(n) }
        i.state.withLock {
            let g = i.nextOrderedGeneration
            guard i.hasPendingOrdered(before: g) else { return }
            count { $0.fsyncWaits += 1 }
            while i.hasPendingOrdered(before: g) { i.state.wait() }
        }
    }

    func allInodeNumbers() -> [InodeNumber] { tableLock.withLock { inodes.keys.sorted() } }

    // MARK: Helpers shared by the IO paths

    func isAligned(_ offset: UInt64, _ length: Int) -> Bool {
        offset % block == 0 && UInt64(length) % block == 0
    }

    func roundDown(_ v: UInt64) -> UInt64 { v / block * block }
    func roundUp(_ v: UInt64) -> UInt64 { (v + block - 1) / block * block }

    /// Accounts device ranges that no file references any more as garbage.
    func discard(_ ranges: [FileExtent]) {
        for r in ranges {
            guard let z = device.geometry.zone(containing: r.device) else { continue }
            allocator.discard(z, ByteCount(r.length))
        }
    }

    /// Waits (with no range lock held) until no ordered extent overlaps [s, e).
    /// Returns false, without waiting, under NOWAIT when one does.
    func waitForOrdered(_ inode: Inode, _ s: UInt64, _ e: UInt64, nowait: Bool) -> Bool {
        inode.state.withLock {
            guard inode.pendingOrdered(s, e) != nil else { return true }
            if nowait { return false }
            count { $0.orderedExtentWaits += 1 }
            while inode.pendingOrdered(s, e) != nil { inode.state.wait() }
            return true
        }
    }
}

extension Engine {
    /// Bytes buffered writes hold in the page cache that are not on the device yet, over all
    /// files (at most about `EngineConfig.dirtyLimit`; monitoring: they explain a write
    /// amplification below 1 between write-backs).
    public var cachedBytes: ByteCount { ByteCount(dirty.cachedBlocks * block) }

    /// Files with cached bytes, the one dirty longest first (write-back order).
    public var dirtyFiles: [InodeNumber] { dirty.inOrder }

    /// The file that has been dirty longest, or nil when nothing is cached.
    public var oldestDirtyFile: InodeNumber? { dirty.oldest }

    /// Device space the file takes, and will take once its cache is written back: the mapped
    /// bytes (data and prealloc) plus every cached block over a hole. A cached block over a mapped
    /// block replaces it at write-back, so it is not counted twice. What `stat` reports as
    /// allocated, so `du` and `tar -S` see buffered data before it reaches the device.
    public func allocatedBytes(_ n: InodeNumber) throws(DeviceError) -> ByteCount {
        let i = try inode(n)
        return i.state.withLock {
            let overHoles = i.cache.keys.filter { b in
                !i.map.lookup(b * block, block).contains { if case .extent = $0 { true } else { false } }
            }.count
            return ByteCount(i.map.mappedBytes + UInt64(overHoles) * block)
        }
    }

    /// Changes the file's cache (in `body`) under its state lock and keeps the mount-wide account
    /// in step, in the same hold. Every change to `Inode.cache` goes through here.
    func changeCache<T>(_ inode: Inode, _ body: () -> T) -> T {
        inode.state.withLock {
            let result = body()
            dirty.set(inode.number, blocks: inode.cache.count)
            return result
        }
    }
}
