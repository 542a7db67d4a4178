// The metadata index: a log-structured merge tree of a memtable and levels of tables
// (docs/ON-DISK.md). The file system's log is its write-ahead log: every entry given to `apply`
// is already in a log record, so the memtable may be lost in a crash and replayed.
//
// Invariants (checked by `problem()`, after every change in the model tests):
// - Level 0 holds tables in flush order, newest first; each later level holds tables sorted by
//   key with disjoint key ranges.
// - For any key, a newer entry lives nearer the top: memtable, then level 0 newest first, then
//   level 1, 2, ... So the first hit going down is the newest, and a read stops there.
// - A compaction takes all of level 0 (or one table of level n) and every table of the next level
//   its keys overlap, and writes their merge (newest entry per key) as new tables of that next
//   level. A delete is dropped only when no deeper level has tables (nothing older to hide).
// - Tables are immutable and their ids are never reused. Every change of the set of tables comes
//   out as `ManifestEdit`s, returned after the new tables are written, so a caller can log them.
//   A compaction's replaced tables are only released to the store by `releaseRetired`, which the
//   caller calls once it has logged the removals: a store may reuse released space as soon as the
//   next durable commit, and that commit must already hold the removal.
// - `merge` numbers its entries above every sequence in the manifest it opened and every entry
//   it was given, so the newest write of a key always wins, across remounts too.
// - Keys of the merge kind (`IndexMerge`) hold partial values: a write puts only what it
//   changes (combined in place with the memtable's entry for the key, never with a table's, so a
//   write does no IO), a read combines the versions newest first until one is complete, and a
//   compaction combines the versions it merges. So a value is the combination of all its puts.
// - Memory: the memtable (bounded by the caller flushing at `config.memtableBytes`), the readers'
//   footers and indexes, and the shared `BlockCache` (bounded).
// - Table IO never happens under `lock`: a flush freezes the memtable (still read, after the
//   live one) and writes it with the lock dropped; a compaction reads and writes its tables with
//   the lock dropped and swaps them in after. So `apply`/`update` (called by writers that hold
//   allocator grants) never wait for a table write, which may itself wait for a zone finish.
//   Flushes and compactions come from one caller at a time (the file system serialises them);
//   `writing` traps a second one.

import ZonedCore

/// Where a table lives in its store.
public struct TableLocation: Equatable, Hashable, Sendable {
    public var address: UInt64
    public var length: UInt64
    public init(address: UInt64, length: UInt64) { self.address = address; self.length = length }
}

/// Where tables are written and read: metadata zones in the file system, memory in tests.
public protocol TableStore: AnyObject, Sendable {
    /// Writes a whole table; returns where it lies.
    func write(tableID: UInt64, _ bytes: [UInt8]) throws(DeviceError) -> TableLocation
    func source(_ location: TableLocation) -> any TableSource
    /// No table references `location` any more once the edit that removed it is durable.
    func release(_ location: TableLocation)
}

public struct TableDescriptor: Equatable, Sendable {
    public var id: UInt64
    public var level: Int
    public var location: TableLocation
    public var firstKey: IndexKey
    public var lastKey: IndexKey
    public var entryCount: UInt64
    public var maxSequence: UInt64

    public init(id: UInt64, level: Int, location: TableLocation, firstKey: IndexKey, lastKey: IndexKey,
                entryCount: UInt64, maxSequence: UInt64) {
        self.id = id
        self.level = level
        self.location = location
        self.firstKey = firstKey
        self.lastKey = lastKey
        self.entryCount = entryCount
        self.maxSequence = maxSequence
    }

    func overlaps(_ lo: IndexKey, _ hi: IndexKey) -> Bool { !(lastKey < lo) && !(hi < firstKey) }
}

public enum ManifestEdit: Equatable, Sendable {
    case added(TableDescriptor)
    case removed(id: UInt64)
}

/// How partial values of one key kind combine (data checksums: a write sets some blocks of a chunk).
public struct IndexMerge: Sendable {
    public var kind: IndexKeyKind
    /// The value of `newer` laid over `older`.
    public var combine: @Sendable (_ newer: [UInt8], _ older: [UInt8]) -> [UInt8]
    /// Nothing older can change this value (a read stops here).
    public var complete: @Sendable ([UInt8]) -> Bool
    public init(kind: IndexKeyKind, combine: @escaping @Sendable ([UInt8], [UInt8]) -> [UInt8],
                complete: @escaping @Sendable ([UInt8]) -> Bool) {
        self.kind = kind
        self.combine = combine
        self.complete = complete
    }
}

public struct IndexConfig: Sendable {
    /// The caller flushes when the memtable holds this much.
    public var memtableBytes = 4 << 20
    /// Compaction cuts its output into tables of about this size.
    public var tableBytes = 8 << 20
    /// Level 0 is compacted when it holds more tables than this.
    public var level0Tables = 4
    /// Level 1 is compacted past this size; each later level past `fanout` times the one above.
    public var levelBaseBytes: UInt64 = 64 << 20
    public var fanout: UInt64 = 10
    /// The key kind whose values are partial and combine (none: every put replaces).
    public var merge: IndexMerge?
    public init() {}
}

public final class MetadataIndex: @unchecked Sendable {
    private struct Table {
        var descriptor: TableDescriptor
        var reader: TableReader
    }

    public let config: IndexConfig
    private let store: any TableStore
    private let cache: BlockCache
    private let lock = ConditionLock(rank: .metadataIndex)
    private var memtable = Memtable()
    /// The memtable a running flush is writing out: newer than every table, older than `memtable`.
    private var frozen: Memtable?
    /// A flush or compaction is running (they do their IO without `lock`).
    private var writing = false
    private var levels: [[Table]] = [[]]
    private var nextTableID: UInt64
    /// Per level, where the next round-robin compaction starts.
    private var cursors: [Int] = [0]
    /// The sequence `update` gives its next entry.
    private var nextSequence: UInt64 = 1
    /// Tables a compaction replaced, released by `releaseRetired` once their removal is logged.
    private var retired: [TableLocation] = []

    /// Opens the index a manifest describes (mount), or an empty one.
    public init(store: any TableStore, cache: BlockCache, config: IndexConfig = IndexConfig(),
                manifest: [TableDescriptor] = [], nextTableID: UInt64 = 1) throws(DeviceError) {
        self.store = store
        self.cache = cache
        self.config = config
        self.nextTableID = nextTableID
        for d in manifest {
            guard d.id < nextTableID else { throw .io(.read, "table \(d.id) is not below the next table id \(nextTableID)") }
            try place(Table(descriptor: d, reader: try open(d)))
            nextSequence = max(nextSequence, d.maxSequence &+ 1)
        }
        if let p = problem() { throw .io(.read, "the index's manifest is inconsistent: \(p)") }
    }

    // MARK: Reading

    /// The newest entry for `key` (a put or a delete), wherever it lives.
    public func entry(_ key: IndexKey) throws(DeviceError) -> IndexEntry? {
        try lock.withLock { () throws(DeviceError) -> IndexEntry? in try newest(key) }
    }

    /// `entry`, under the lock: the first version going down, or for a merge key the combination
    /// of its versions down to a complete one (or a delete).
    private func newest(_ key: IndexKey) throws(DeviceError) -> IndexEntry? {
        guard let m = config.merge, key.kind == m.kind else {
            var found: IndexEntry?
            try versions(key) { e in found = e; return false }
            return found
        }
        var acc: IndexEntry?
        try versions(key) { e in
            guard var a = acc else { acc = e; return e.operation == .put && !m.complete(e.value) }
            guard e.operation == .put else { return false }
            a.value = m.combine(a.value, e.value)
            acc = a
            return !m.complete(a.value)
        }
        return acc
    }

    /// Calls `each` with the versions of `key`, newest first, while it returns true.
    private func versions(_ key: IndexKey, _ each: (IndexEntry) -> Bool) throws(DeviceError) {
        if let e = memtable.get(key), !each(e) { return }
        if let e = frozen?.get(key), !each(e) { return }
        for t in levels[0] where t.descriptor.overlaps(key, key) {
            if let e = try t.reader.get(key), !each(e) { return }
        }
        for level in levels.dropFirst() {
            if let t = MetadataIndex.table(in: level, holding: key), let e = try t.reader.get(key), !each(e) { return }
        }
    }

    /// The value of `key`, nil when absent or deleted.
    public func get(_ key: IndexKey) throws(DeviceError) -> [UInt8]? {
        guard let e = try entry(key), e.operation == .put else { return nil }
        return e.value
    }

    /// Live entries (puts) with keys at or after `from`, in key order, while `more` accepts them.
    public func scan(from: IndexKey, while more: (IndexKey) -> Bool) throws(DeviceError) -> [IndexEntry] {
        try lock.withLock { () throws(DeviceError) -> [IndexEntry] in
            var all: [IndexKey: [IndexEntry]] = [:]
            func take(_ es: [IndexEntry]) { for e in es { all[e.key, default: []].append(e) } }
            take(memtable.scan(from: from, while: more))
            if let f = frozen { take(f.scan(from: from, while: more)) }
            for t in levels[0] where !(t.descriptor.lastKey < from) { take(try t.reader.scan(from: from, while: more)) }
            for level in levels.dropFirst() {
                for t in level where !(t.descriptor.lastKey < from) {
                    guard more(max(t.descriptor.firstKey, from)) else { break }
                    take(try t.reader.scan(from: from, while: more))
                }
            }
            return all.values.compactMap { folded($0) }.filter { $0.operation == .put }.sorted { $0.key < $1.key }
        }
    }

    /// The table of a sorted, disjoint level whose range holds `key`.
    private static func table(in level: [Table], holding key: IndexKey) -> Table? {
        var lo = 0, hi = level.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if level[mid].descriptor.lastKey < key { lo = mid + 1 } else { hi = mid }
        }
        return lo < level.count && !(key < level[lo].descriptor.firstKey) ? level[lo] : nil
    }

    // MARK: Writing

    /// Takes an entry that is already in the log.
    public func apply(_ e: IndexEntry) {
        lock.withLock {
            memtable.insert(e)
            nextSequence = max(nextSequence, e.sequence &+ 1)
        }
    }

    /// Puts `value` for `key` with the next sequence. For a merge key the value may be partial:
    /// it is combined with the memtable's entry for the key (no table is read).
    public func merge(_ key: IndexKey, _ value: [UInt8]) {
        lock.withLock {
            var v = value
            if let m = config.merge, key.kind == m.kind, let old = memtable.get(key), old.operation == .put {
                v = m.combine(value, old.value)
            }
            memtable.insert(.put(key, v, sequence: nextSequence))
            nextSequence += 1
        }
    }

    /// Gives the store back the tables compactions replaced (after their removals are logged).
    public func releaseRetired() {
        let gone = lock.withLock { () -> [TableLocation] in
            defer { retired.removeAll() }
            return retired
        }
        for l in gone { store.release(l) }
    }

    /// Bytes waiting for a flush (the live memtable; a frozen one is being written already).
    public var memtableBytes: Int { lock.withLock { memtable.bytes } }
    public var memtableEntries: Int { lock.withLock { memtable.count } }
    /// The entries no table holds yet (frozen ones included), in key order.
    public var memtableContents: [IndexEntry] {
        lock.withLock { (frozen?.sorted ?? []).filter { memtable.get($0.key) == nil } + memtable.sorted }.sorted { $0.key < $1.key }
    }

    /// The tables, level by level (the manifest a checkpoint writes).
    public var manifest: [TableDescriptor] { lock.withLock { levels.flatMap { $0.map(\.descriptor) } } }
    public var tableIDsUsed: UInt64 { lock.withLock { nextTableID } }

    /// Writes the memtable as a new level-0 table. Returns the edit to log (none when empty).
    public func flush() throws(DeviceError) -> [ManifestEdit] {
        let taken = lock.withLock { () -> Memtable? in
            precondition(!writing, "MetadataIndex: two flushes or compactions at once")
            guard !memtable.isEmpty else { return nil }
            writing = true
            frozen = memtable
            memtable = Memtable()
            return frozen
        }
        guard let taken else { return [] }
        let tables: [Table]
        do { tables = try write(taken.sorted, level: 0) } catch {
            // Nothing changed: the frozen entries go back under the newer ones.
            lock.withLock {
                for e in taken.sorted where memtable.get(e.key) == nil { memtable.insert(e) }
                frozen = nil
                writing = false
            }
            throw error
        }
        return lock.withLock {
            for t in tables { levels[0].insert(t, at: 0) }
            frozen = nil
            writing = false
            return tables.map { .added($0.descriptor) }
        }
    }

    /// Runs one compaction when a level is over its bound; returns its edits (none when nothing
    /// needed one). Call until it returns none to bring every level under its bound.
    public func compact() throws(DeviceError) -> [ManifestEdit] {
        let plan = lock.withLock { () -> (inputs: [Table], from: Int)? in
            precondition(!writing, "MetadataIndex: two flushes or compactions at once")
            var chosen: (inputs: [Table], from: Int)?
            if levels[0].count > config.level0Tables {
                chosen = (levels[0], 0)
            } else {
                for n in 1..<levels.count where bytes(n) > limit(n) {
                    chosen = ([levels[n][cursors[n] % levels[n].count]], n)
                    cursors[n] += 1
                    break
                }
            }
            if chosen != nil { writing = true }
            return chosen
        }
        guard let plan else { return [] }
        defer { lock.withLock { writing = false } }
        return try compact(inputs: plan.inputs, from: plan.from)
    }

    private func bytes(_ level: Int) -> UInt64 { levels[level].reduce(0) { $0 + $1.descriptor.location.length } }

    private func limit(_ level: Int) -> UInt64 {
        var l = config.levelBaseBytes
        for _ in 1..<max(1, level) { l = l.multipliedReportingOverflow(by: config.fanout).overflow ? .max : l * config.fanout }
        return l
    }

    /// Merges `inputs` (of level `from`) with what they overlap in level `from + 1`: reads and
    /// writes without the lock (only this caller changes the levels meanwhile), then swaps.
    private func compact(inputs: [Table], from: Int) throws(DeviceError) -> [ManifestEdit] {
        let to = from + 1
        let lo = inputs.map(\.descriptor.firstKey).min()!, hi = inputs.map(\.descriptor.lastKey).max()!
        let (below, dropDeletes) = lock.withLock { () -> ([Table], Bool) in
            if levels.count <= to { levels.append([]); cursors.append(0) }
            // Nothing older can hide under a delete when no deeper level has tables.
            let deepest = levels.indices.last { !levels[$0].isEmpty } ?? 0
            return (levels[to].filter { $0.descriptor.overlaps(lo, hi) }, to >= deepest)
        }
        // A k-way merge of the inputs' cursors: one data block per input and the output table
        // being built in memory, whatever the sizes merged.
        var streams = (inputs + below).map { $0.reader.cursor() }
        var heads: [IndexEntry?] = []
        for i in streams.indices { heads.append(try streams[i].next()) }
        var output = TableOutput(level: to)
        while let key = heads.compactMap({ $0?.key }).min() {
            var versions: [IndexEntry] = []
            for i in heads.indices where heads[i]?.key == key {
                versions.append(heads[i]!)
                heads[i] = try streams[i].next()
            }
            if let e = folded(versions), !dropDeletes || e.operation == .put {
                try output.add(e, index: self)
                if output.bytesSoFar >= config.tableBytes { try output.cut(index: self) }
            }
        }
        try output.cut(index: self)
        let outputs = output.tables
        return try lock.withLock { () throws(DeviceError) -> [ManifestEdit] in
            let gone = Set((inputs + below).map(\.descriptor.id))
            for n in [from, to] { levels[n].removeAll { gone.contains($0.descriptor.id) } }
            for t in outputs { try place(t) }
            for t in inputs + below {
                cache.forget(table: t.descriptor.id)
                retired.append(t.descriptor.location)
            }
            return (inputs + below).map { .removed(id: $0.descriptor.id) } + outputs.map { .added($0.descriptor) }
        }
    }

    /// Versions of one key as one, folded newest first (so each is laid over everything older).
    private func folded(_ versions: [IndexEntry]) -> IndexEntry? {
        versions.sorted { $0.sequence > $1.sequence }.reduce(nil) { acc, e in acc.map { combined($0, e) } ?? e }
    }

    /// Two versions of one key as one: the newer, laid over the older when both are puts of a
    /// merge key.
    private func combined(_ a: IndexEntry, _ b: IndexEntry) -> IndexEntry {
        let (newer, older) = a.sequence >= b.sequence ? (a, b) : (b, a)
        guard let m = config.merge, newer.key.kind == m.kind, newer.operation == .put, older.operation == .put else { return newer }
        var out = newer
        out.value = m.combine(newer.value, older.value)
        return out
    }

    /// Writes `entries` (sorted, unique keys) as one table of `level`.
    private func write(_ entries: [IndexEntry], level: Int) throws(DeviceError) -> [Table] {
        var output = TableOutput(level: level)
        for e in entries { try output.add(e, index: self) }
        try output.cut(index: self)
        return output.tables
    }

    /// Tables being written in key order: entries go into the open builder; `cut` writes it out.
    private struct TableOutput {
        let level: Int
        var tables: [Table] = []
        private var builder: TableBuilder?
        private var first: IndexKey?
        private var last: IndexKey?
        private var maxSequence: UInt64 = 0

        init(level: Int) { self.level = level }

        var bytesSoFar: Int { builder?.bytesSoFar ?? 0 }

        mutating func add(_ e: IndexEntry, index: MetadataIndex) throws(DeviceError) {
            if builder == nil {
                builder = TableBuilder(tableID: index.takeTableID())
                first = e.key
                maxSequence = 0
            }
            builder!.add(e)
            last = e.key
            maxSequence = max(maxSequence, e.sequence)
        }

        mutating func cut(index: MetadataIndex) throws(DeviceError) {
            guard var b = builder, let first, let last else { return }
            builder = nil
            let bytes = b.finish()
            let location = try index.store.write(tableID: b.tableID, bytes)
            let d = TableDescriptor(id: b.tableID, level: level, location: location, firstKey: first, lastKey: last,
                                    entryCount: b.entryCount, maxSequence: maxSequence)
            tables.append(Table(descriptor: d, reader: try index.open(d)))
        }
    }

    private func takeTableID() -> UInt64 {
        lock.withLock { () -> UInt64 in
            defer { nextTableID += 1 }
            return nextTableID
        }
    }

    private func open(_ d: TableDescriptor) throws(DeviceError) -> TableReader {
        let r = try TableReader(tableID: d.id, length: d.location.length, source: store.source(d.location), cache: cache)
        guard r.footer.firstKey == d.firstKey, r.footer.lastKey == d.lastKey, r.footer.entryCount == d.entryCount else {
            throw .io(.read, "table \(d.id) at \(d.location.address) does not hold what the manifest says")
        }
        return r
    }

    /// Puts a table in its level: level 0 newest (highest id) first, others by key.
    private func place(_ t: Table) throws(DeviceError) {
        let n = t.descriptor.level
        guard n >= 0, n < 64 else { throw .io(.read, "table \(t.descriptor.id) in level \(n)") }
        while levels.count <= n { levels.append([]); cursors.append(0) }
        if n == 0 {
            let at = levels[0].firstIndex { $0.descriptor.id < t.descriptor.id } ?? levels[0].count
            levels[0].insert(t, at: at)
        } else {
            let at = levels[n].firstIndex { t.descriptor.lastKey < $0.descriptor.firstKey } ?? levels[n].count
            levels[n].insert(t, at: at)
        }
    }

    // MARK: Checking

    /// Reads every table whole (TableReader.check), calling `each` with every entry and
    /// `progress` after each table; one problem per table that fails.
    public func checkTables(_ each: (IndexEntry) -> Void = { _ in }, progress: (Int, Int) -> Void = { _, _ in }) -> [String] {
        let tables = lock.withLock { levels.flatMap { $0 } }
        var problems: [String] = []
        for (i, t) in tables.enumerated() {
            do { try t.reader.check { e throws(DeviceError) in each(e) } } catch {
                problems.append("index table \(t.descriptor.id) (level \(t.descriptor.level)) is damaged: \(error)")
            }
            if t.reader.footer.maxSequence > t.descriptor.maxSequence {
                problems.append("index table \(t.descriptor.id) holds sequences past the manifest's \(t.descriptor.maxSequence)")
            }
            progress(i + 1, tables.count)
        }
        return problems
    }

    /// What breaks the header's invariants, or nil.
    public func problem() -> String? {
        lock.withLock { () -> String? in
            if let p = memtable.problem() { return p }
            for (i, t) in levels[0].enumerated() where i > 0 && !(t.descriptor.id < levels[0][i - 1].descriptor.id) {
                return "level 0 out of flush order at table \(t.descriptor.id)"
            }
            for (n, level) in levels.enumerated() {
                for t in level where t.descriptor.level != n { return "table \(t.descriptor.id) says level \(t.descriptor.level), sits in \(n)" }
                guard n > 0 else { continue }
                for (a, b) in zip(level, level.dropFirst()) where !(a.descriptor.lastKey < b.descriptor.firstKey) {
                    return "level \(n): tables \(a.descriptor.id) and \(b.descriptor.id) overlap or are out of order"
                }
            }
            let ids = levels.flatMap { $0.map(\.descriptor.id) }
            if Set(ids).count != ids.count { return "a table is in the index twice" }
            if let top = ids.max(), top >= nextTableID { return "table \(top) at or past the next id \(nextTableID)" }
            return nil
        }
    }
}
