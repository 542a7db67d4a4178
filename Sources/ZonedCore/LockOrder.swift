// The lock order of the whole stack, written once, and its check.
//
// A thread may take a ranked lock only while every ranked lock it already holds has a lower rank:
// the order below is the only order in which locks nest, so no two threads can each hold what the
// other waits for. Top to bottom, as a request travels:
//
//   FUSE worker thread (holds no lock of ours when it calls in)
//   10 journalCommit   Journal.commitLock: a commit quiesces the file system (takes fsLock
//                      exclusively) from inside it, so nothing below may commit
//   15 indexMaintenance FileSystem.indexMaintenance: writing the index's memtable out (and
//                      compacting) together with logging the edits, taken before fsLock shared
//   20 fileSystem      FileSystem.fsLock: shared per operation, exclusive for a checkpoint
//   25 reclaimPass     Reclaimer's pass lock (passes one at a time; held only to flip a flag)
//   30 namespace       FileSystem.nsLock: the namespace and its log batches
//   40 inode           Inode.lock (the seed's i_rwsem): shared inside EOF, exclusive when extending
//   50 range           RangeLock hold (the seed's extent lock); released before write IO, and a
//                      waiter for an ordered extent holds none
//   60 inodeState      Inode.state: size, map, cache, ordered extents; short sections, no IO but
//                      a checksum update's read of an index block the cache does not hold
//   65 engineTable     Engine's inode table
//   68 metadataIndex   MetadataIndex.lock (ZonedIndex): memtable and levels; held across the table
//                      writes of a flush or compaction, which go through the allocator below
//   70 journalBuffer   Journal.bufferLock: records buffered from inode state and namespace changes
//   75 checksums       ChecksumStore (an engine's in-memory checksums)
//   80 zoneSequencer   ZoneAllocator's per-zone sequencer: held across a batch's device IO
//   90 allocator       ZoneAllocator.lock: zone accounts; never held across device IO
//   100 leaf           counters and pools: nothing is taken while one is held
//   (device)           a backend's own locks sit below everything and are not ranked here
//
// Waiting on a condition (ConditionLock.wait) keeps the lock's place: the thread takes nothing
// while it sleeps. Locks without a rank (backends, tests, tools) are not checked.
//
// The check runs in debug builds (every test run): each thread keeps the ranks it holds and a
// violation traps with both lock names. Release builds compile it out.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public enum LockRank: Int, Sendable, Comparable, CustomStringConvertible {
    case journalCommit = 10
    case indexMaintenance = 15
    case fileSystem = 20
    case reclaimPass = 25
    case namespace = 30
    case inode = 40
    case range = 50
    case inodeState = 60
    case engineTable = 65
    case metadataIndex = 68
    case journalBuffer = 70
    case checksums = 75
    case zoneSequencer = 80
    case allocator = 90
    case leaf = 100

    public static func < (a: LockRank, b: LockRank) -> Bool { a.rawValue < b.rawValue }
    public var description: String {
        let names: [LockRank: String] = [.journalCommit: "journalCommit", .indexMaintenance: "indexMaintenance", .fileSystem: "fileSystem", .reclaimPass: "reclaimPass",
                                         .namespace: "namespace", .inode: "inode", .range: "range", .inodeState: "inodeState",
                                         .engineTable: "engineTable", .metadataIndex: "metadataIndex", .journalBuffer: "journalBuffer", .checksums: "checksums",
                                         .zoneSequencer: "zoneSequencer", .allocator: "allocator", .leaf: "leaf"]
        return "\(names[self] ?? "?")(\(rawValue))"
    }
}

public enum LockOrder {
    /// Whether the order is checked in this build.
    #if DEBUG
    public static let isChecked = true
    #else
    public static let isChecked = false
    #endif

    /// Call before blocking on a lock of rank `rank`: traps when the thread holds one of the same
    /// or a lower place in the order.
    @inline(__always)
    public static func willTake(_ rank: LockRank?) {
        #if DEBUG
        guard let rank, let top = HeldRanks.top, top >= rank else { return }
        preconditionFailure("lock order: taking \(rank) while holding \(top) (held: \(HeldRanks.ranks)); see ZonedCore/LockOrder.swift")
        #endif
    }

    /// Call once the lock is held.
    @inline(__always)
    public static func took(_ rank: LockRank?) {
        #if DEBUG
        guard let rank else { return }
        HeldRanks.push(rank)
        #endif
    }

    /// Call when the lock is given back.
    @inline(__always)
    public static func gave(_ rank: LockRank?) {
        #if DEBUG
        guard let rank else { return }
        guard HeldRanks.remove(rank) else { preconditionFailure("lock order: giving back \(rank), which this thread does not hold") }
        #endif
    }

    /// The ranks the calling thread holds, oldest first (for tests of the check itself).
    public static var heldByThisThread: [LockRank] {
        #if DEBUG
        return HeldRanks.ranks
        #else
        return []
        #endif
    }
}

#if DEBUG
/// The ranks this thread holds, oldest first: malloc'd memory under a pthread key whose destructor
/// is C's `free`, so no Swift code runs while a thread ends. (A Swift object there was released
/// during the teardown of libfuse's worker threads, and ThreadSanitizer reported every such thread
/// as ending with its ignores enabled.) Layout: count, then up to `capacity` raw ranks.
enum HeldRanks {
    static let capacity = 32

    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        let rc = pthread_key_create(&k, free)
        precondition(rc == 0, "pthread_key_create failed")
        return k
    }()

    private static var storage: UnsafeMutablePointer<Int> {
        if let p = pthread_getspecific(key) { return p.assumingMemoryBound(to: Int.self) }
        guard let raw = calloc(capacity + 1, MemoryLayout<Int>.stride) else { preconditionFailure("lock order: out of memory") }
        pthread_setspecific(key, raw)
        return raw.assumingMemoryBound(to: Int.self)
    }

    static var ranks: [LockRank] {
        let s = storage
        return (0..<s[0]).compactMap { LockRank(rawValue: s[1 + $0]) }
    }

    static var top: LockRank? {
        let s = storage
        return s[0] == 0 ? nil : LockRank(rawValue: s[s[0]])
    }

    static func push(_ rank: LockRank) {
        let s = storage
        precondition(s[0] < capacity, "lock order: more than \(capacity) ranked locks held by one thread")
        s[0] += 1
        s[s[0]] = rank.rawValue
    }

    /// Removes the newest entry of `rank`; false when the thread holds none.
    static func remove(_ rank: LockRank) -> Bool {
        let s = storage
        var i = s[0]
        while i >= 1 && s[i] != rank.rawValue { i -= 1 }
        guard i >= 1 else { return false }
        if i < s[0] { for j in i..<s[0] { s[j] = s[j + 1] } }
        s[0] -= 1
        return true
    }
}
#endif
