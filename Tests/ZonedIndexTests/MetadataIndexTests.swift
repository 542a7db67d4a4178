// The LSM index against a dictionary: seeded puts, overwrites and deletes with flushes and
// compactions at small bounds, read back by point and by scan, and reopened from its manifest.

import Foundation
import Testing
import ZonedCore
@testable import ZonedIndex

/// Tables in memory; a released table cannot be read any more (so a read of one fails loudly).
final class MemoryTableStore: TableStore, @unchecked Sendable {
    private let lock = NSLock()
    private var tables: [UInt64: [UInt8]] = [:]
    private var next: UInt64 = 0
    private(set) var written = 0
    private var readCount = 0
    /// Reads of table bytes so far.
    var reads: Int { lock.withLock { readCount } }

    var liveBytes: Int { lock.withLock { tables.values.reduce(0) { $0 + $1.count } } }

    func write(tableID: UInt64, _ bytes: [UInt8]) throws(DeviceError) -> TableLocation {
        lock.withLock {
            let at = next
            next += UInt64(bytes.count)
            tables[at] = bytes
            written += bytes.count
            return TableLocation(address: at, length: UInt64(bytes.count))
        }
    }

    func source(_ location: TableLocation) -> any TableSource { Released(store: self, at: location.address) }

    func release(_ location: TableLocation) { _ = lock.withLock { tables.removeValue(forKey: location.address) } }

    fileprivate func bytes(_ at: UInt64) -> [UInt8]? {
        lock.withLock {
            readCount += 1
            return tables[at]
        }
    }

    private struct Released: TableSource {
        let store: MemoryTableStore
        let at: UInt64
        func read(offset: UInt64, length: Int) throws(DeviceError) -> [UInt8] {
            guard let b = store.bytes(at) else { throw .io(.read, "table at \(at) was released") }
            return try BytesSource(b).read(offset: offset, length: length)
        }
    }
}

/// Small bounds so a few thousand operations flush and compact through several levels.
private func smallConfig() -> IndexConfig {
    var c = IndexConfig()
    c.memtableBytes = 6 << 10
    c.tableBytes = 12 << 10
    c.level0Tables = 3
    c.levelBaseBytes = 48 << 10
    c.fanout = 3
    return c
}

@Suite(.timeLimit(.minutes(10))) struct MetadataIndexTests {
    @Test(arguments: [UInt64(1), 2, 3])
    func matchesADictionaryThroughFlushesAndCompactions(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        let store = MemoryTableStore()
        let cache = BlockCache(capacity: 32 << 10)
        var index = try MetadataIndex(store: store, cache: cache, config: smallConfig())
        var model: [IndexKey: [UInt8]] = [:]
        var sequence: UInt64 = 0
        var flushes = 0, compactions = 0
        func key() -> IndexKey {
            rng.chance(0.5) ? .inode(rng.below(600)) : .entry(parent: rng.below(8), name: Array("n\(rng.below(300))".utf8))
        }
        func check(_ step: Int) throws {
            if let p = index.problem() { Issue.record("step \(step): \(p)") }
            for _ in 0..<20 {
                let k = key()
                #expect(try index.get(k) == model[k], "step \(step): \(k)")
            }
            let parent = rng.below(8)
            let prefix = IndexKey.prefix(.entry, parent)
            let got = try index.scan(from: IndexKey.entry(parent: parent, name: [1])) { $0.hasPrefix(prefix) }
            let want = model.filter { $0.key.hasPrefix(prefix) }.sorted { $0.key < $1.key }
            #expect(got.map(\.key) == want.map(\.key) && got.map(\.value) == want.map(\.value), "step \(step): readdir of \(parent)")
        }
        for step in 0..<6_000 {
            sequence += 1
            let k = key()
            if rng.chance(0.25), model[k] != nil {
                index.apply(.delete(k, sequence: sequence))
                model[k] = nil
            } else {
                let v = (0..<Int(rng.below(60))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                index.apply(.put(k, v, sequence: sequence))
                model[k] = v
            }
            if index.memtableBytes >= index.config.memtableBytes {
                flushes += try index.flush().count
                let before = store.liveBytes
                while try !index.compact().isEmpty { compactions += 1 }
                // Replaced tables stay readable until the caller says their removal is logged.
                #expect(store.liveBytes >= before)
                index.releaseRetired()
            }
            if step % 250 == 0 { try check(step) }
        }
        try check(6_000)
        // Every key of the key space, deleted ones included: a delete dropped while an older put
        // sat deeper would bring the put back.
        var everyKey = (0..<600).map { IndexKey.inode(UInt64($0)) }
        for p in 0..<8 { everyKey += (0..<300).map { IndexKey.entry(parent: UInt64(p), name: Array("n\($0)".utf8)) } }
        for k in everyKey { #expect(try index.get(k) == model[k], "\(k)") }
        #expect(flushes > 20 && compactions > 10, "flushes \(flushes), compactions \(compactions)")
        #expect(Set(index.manifest.map(\.level)).count >= 3, "three levels or more: \(Set(index.manifest.map(\.level)))")
        // Reopened from its manifest (the memtable flushed first, as a checkpoint does).
        _ = try index.flush()
        index = try MetadataIndex(store: store, cache: BlockCache(capacity: 32 << 10), config: smallConfig(),
                                  manifest: index.manifest, nextTableID: index.tableIDsUsed)
        for (k, v) in model { #expect(try index.get(k) == v) }
        #expect(cache.bytes <= 32 << 10)
        // Only live tables hold space: compaction released what it replaced.
        let manifestBytes = index.manifest.reduce(0) { $0 + Int($1.location.length) }
        #expect(store.liveBytes == manifestBytes)
    }

    /// A delete compacted into a level above the one holding the older put keeps hiding it: it
    /// is dropped only where nothing older can lie below.
    @Test func aDeleteKeepsHidingAnOlderPutInADeeperLevel() throws {
        var c = smallConfig()
        c.level0Tables = 0
        c.levelBaseBytes = 1
        let index = try MetadataIndex(store: MemoryTableStore(), cache: BlockCache(capacity: 1 << 20), config: c)
        index.apply(.put(.inode(1), [7], sequence: 1))
        _ = try index.flush()
        while try !index.compact().isEmpty {}
        let deepest = try #require(index.manifest.map(\.level).max())
        #expect(deepest >= 3, "the put sank to level \(deepest)")
        index.apply(.delete(.inode(1), sequence: 2))
        index.apply(.put(.inode(2), [8], sequence: 3))
        _ = try index.flush()
        _ = try index.compact()  // level 0 into level 1 only
        #expect(index.manifest.contains { $0.level == 1 }, "the delete is in level 1 now")
        #expect(try index.get(.inode(1)) == nil, "the older put came back")
        while try !index.compact().isEmpty {}
        #expect(try index.get(.inode(1)) == nil && index.get(.inode(2)) == [8])
        #expect(index.manifest.reduce(0) { $0 + $1.entryCount } == 1, "once merged down, the delete and its put are gone")
    }

    /// A manifest that names a table the store does not hold, or two overlapping tables in one
    /// level, is refused at open with a message, not used.
    @Test func aBadManifestIsRefused() throws {
        let store = MemoryTableStore()
        let index = try MetadataIndex(store: store, cache: BlockCache(capacity: 1 << 20), config: smallConfig())
        for i in 0..<50 { index.apply(.put(.inode(UInt64(i)), [1], sequence: UInt64(i + 1))) }
        _ = try index.flush()
        var d = try #require(index.manifest.first)
        #expect(throws: DeviceError.self) {
            try MetadataIndex(store: store, cache: BlockCache(capacity: 1 << 20), manifest: [d], nextTableID: d.id)
        }
        d.level = 1
        var twin = d
        twin.id = d.id + 1
        #expect(throws: DeviceError.self) {
            try MetadataIndex(store: store, cache: BlockCache(capacity: 1 << 20), manifest: [d, twin], nextTableID: d.id + 5)
        }
        d.location.address += 4096
        #expect(throws: DeviceError.self) {
            try MetadataIndex(store: store, cache: BlockCache(capacity: 1 << 20), manifest: [d], nextTableID: d.id + 1)
        }
    }

    /// Merge keys (partial values: a mask byte, then 8 one-byte slots): random partial puts with
    /// flushes and compactions in between read back as the model's combination, after a reopen
    /// too; a put never reads a table (the store counts no reads during puts).
    @Test func partialValuesOfMergeKeysCombineAcrossMemtableTablesAndCompactions() throws {
        let merge = IndexMerge(kind: .checksums, combine: { newer, older in
            var out = newer
            for i in 0..<8 where newer[0] & (1 << i) == 0 && older[0] & (1 << i) != 0 { out[1 + i] = older[1 + i] }
            out[0] = newer[0] | older[0]
            return out
        }, complete: { $0[0] == 0xFF })
        var c = smallConfig()
        c.merge = merge
        let store = MemoryTableStore()
        var index = try MetadataIndex(store: store, cache: BlockCache(capacity: 64 << 10), config: c)
        var model: [UInt64: [UInt8]] = [:]
        var rng = SeededRandom(seed: 17)
        for step in 0..<4_000 {
            let k = rng.below(200)
            var v = [UInt8](repeating: 0, count: 9)
            for i in 0..<8 where rng.chance(0.3) {
                v[0] |= 1 << i
                v[1 + i] = UInt8(truncatingIfNeeded: rng.next())
            }
            if v[0] == 0 { v[0] = 1; v[1] = 7 }
            let before = store.reads
            index.merge(.checksums(address: k), v)
            #expect(store.reads == before, "a put read a table")
            var m = model[k] ?? [UInt8](repeating: 0, count: 9)
            for i in 0..<8 where v[0] & (1 << i) != 0 { m[1 + i] = v[1 + i] }
            m[0] |= v[0]
            model[k] = m
            if index.memtableBytes >= index.config.memtableBytes {
                _ = try index.flush()
                while try !index.compact().isEmpty {}
                index.releaseRetired()
            }
            if step % 500 == 0 { #expect(index.problem() == nil) }
        }
        for (k, v) in model { #expect(try index.get(.checksums(address: k)) == v, "key \(k)") }
        #expect(index.manifest.count > 1 && Set(index.manifest.map(\.level)).count >= 2, "\(index.manifest.map(\.level))")
        _ = try index.flush()
        index = try MetadataIndex(store: store, cache: BlockCache(capacity: 64 << 10), config: c,
                                  manifest: index.manifest, nextTableID: index.tableIDsUsed)
        for (k, v) in model { #expect(try index.get(.checksums(address: k)) == v, "key \(k) after a reopen") }
    }
}
