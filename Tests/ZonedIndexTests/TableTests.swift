// The metadata index's building blocks on their own: key order, entry and block codecs, tables
// built and read back against a model, damaged and stale bytes, the block cache's bound.

import Testing
import ZonedCore
@testable import ZonedIndex

/// A value of `n` seeded bytes.
private func value(_ n: Int, _ rng: inout SeededRandom) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }

/// Seeded entries with unique keys of every kind, sorted; a few values larger than a block.
private func entries(_ count: Int, seed: UInt64) -> [IndexEntry] {
    var rng = SeededRandom(seed: seed)
    var byKey: [IndexKey: IndexEntry] = [:]
    while byKey.count < count {
        let key: IndexKey
        switch rng.below(4) {
        case 0: key = .inode(rng.below(1 << 40))
        case 1: key = .entry(parent: rng.below(64), name: value(1 + Int(rng.below(40)), &rng).map { $0 == 0 || $0 == 47 ? 1 : $0 })
        case 2: key = .extent(inode: rng.below(64), fileOffset: rng.below(1 << 30) * 4096)
        default: key = .checksums(address: rng.below(1 << 44) * 4096)
        }
        let size = rng.chance(0.01) ? 5_000 + Int(rng.below(9_000)) : Int(rng.below(120))
        byKey[key] = rng.chance(0.1) ? .delete(key, sequence: rng.below(1 << 32))
                                     : .put(key, value(size, &rng), sequence: rng.below(1 << 32))
    }
    return byKey.values.sorted { $0.key < $1.key }
}

private func build(_ es: [IndexEntry], id: UInt64) -> [UInt8] {
    var b = TableBuilder(tableID: id)
    for e in es { b.add(e) }
    return b.finish()
}

@Suite(.timeLimit(.minutes(10))) struct IndexKeyTests {
    @Test func numbersSortNumericallyAndKindsAreContiguous() {
        #expect(IndexKey.inode(1) < .inode(2) && IndexKey.inode(255) < .inode(256) && IndexKey.inode(256) < .inode(1 << 40))
        #expect(IndexKey.extent(inode: 7, fileOffset: 1 << 33) < .extent(inode: 8, fileOffset: 0))
        #expect(IndexKey.extent(inode: 7, fileOffset: 4096) < .extent(inode: 7, fileOffset: 8192))
        #expect(IndexKey.inode(UInt64.max) < .entry(parent: 0, name: [1]), "every inode key before every entry key")
        let dir = IndexKey.prefix(.entry, 9)
        #expect(IndexKey.entry(parent: 9, name: Array("a".utf8)).hasPrefix(dir))
        #expect(!IndexKey.entry(parent: 10, name: Array("a".utf8)).hasPrefix(dir))
        #expect(IndexKey.extent(inode: 3, fileOffset: 12288).field(at: 9) == 12288)
        #expect(IndexKey.inode(42).kind == .inode && IndexKey.checksums(address: 0).kind == .checksums)
    }
}

@Suite(.timeLimit(.minutes(10))) struct TableFormatTests {
    @Test func entriesAndBlocksRoundTripByteForByte() throws {
        for e in entries(200, seed: 1) {
            var w = ByteWriter()
            e.encode(into: &w)
            var r = ByteReader(w.bytes)
            #expect(try IndexEntry.decode(&r) == e && r.remaining == 0)
        }
        let block = TableBlock(kind: .data, tableID: 77, count: 3, payload: Array(repeating: 9, count: 5_000))
        let bytes = block.encode()
        #expect(bytes.count == 8192)
        let back = try TableBlock.decode(bytes[...], tableID: 77)
        #expect(back == block && back.encode() == bytes)
    }

    @Test func nonCanonicalEntriesAreRefused() {
        func decodes(_ bytes: [UInt8]) -> Bool {
            var r = ByteReader(bytes)
            return (try? IndexEntry.decode(&r)) != nil
        }
        // key length 0; a delete with a value; an unknown operation.
        #expect(!decodes([0, 0] + [UInt8](repeating: 0, count: 13)))
        var w = ByteWriter()
        w.u16(1); w.raw([1]); w.u64(5); w.u8(IndexOperation.delete.rawValue); w.u32(1); w.raw([7])
        #expect(!decodes(w.bytes))
        var v = ByteWriter()
        v.u16(1); v.raw([1]); v.u64(5); v.u8(9); v.u32(0)
        #expect(!decodes(v.bytes))
    }

    @Test func tornStaleAndTruncatedBlocksAreTypedErrors() {
        let bytes = TableBlock(kind: .index, tableID: 5, count: 1, payload: [1, 2, 3]).encode()
        var torn = bytes
        torn[40] ^= 0x10
        #expect(throws: DecodeError.self) { try TableBlock.decode(torn[...], tableID: 5) }
        #expect(throws: DecodeError.self) { try TableBlock.decode(bytes[...], tableID: 6) }
        #expect(throws: DecodeError.self) { try TableBlock.decode(bytes[0..<100], tableID: 5) }
        var padded = bytes
        padded[4000] = 1
        #expect(throws: DecodeError.self) { try TableBlock.decode(padded[...], tableID: 5) }
    }
}

@Suite(.timeLimit(.minutes(10))) struct TableReadTests {
    /// Every key is found with its entry, absent keys are not, and scans from any key give the
    /// model's entries in order.
    @Test(arguments: [UInt64(1), 2, 3])
    func lookupsAndScansMatchTheModel(seed: UInt64) throws {
        let es = entries(3_000, seed: seed)
        let bytes = build(es, id: seed)
        let cache = BlockCache(capacity: 64 << 10)
        let t = try TableReader(tableID: seed, length: UInt64(bytes.count), source: BytesSource(bytes), cache: cache)
        #expect(t.footer.entryCount == 3_000 && t.blocks.count > 10)
        for e in es { #expect(try t.get(e.key) == e) }
        var rng = SeededRandom(seed: seed ^ 0xA5)
        for _ in 0..<200 {
            let probe = IndexKey.inode(rng.below(1 << 40))
            #expect(try t.get(probe) == es.first { $0.key == probe })
            let from = es[Int(rng.below(UInt64(es.count)))].key
            let limit = IndexKey.prefix(from.kind!) + [0xFF]
            let got = try t.scan(from: from) { $0.bytes.lexicographicallyPrecedes(limit) }
            let want = es.filter { !($0.key < from) && $0.key.bytes.lexicographicallyPrecedes(limit) }
            #expect(got == want)
        }
        #expect(try t.all() == es)
        #expect(cache.bytes <= 64 << 10 && cache.stats.hits > 0)
    }

    /// Random damage anywhere in a table: opening and reading it gives the original answers or a
    /// typed EIO, never a trap and never other answers.
    @Test func damagedTablesNeverTrapNorAnswerWrongly() throws {
        let es = entries(400, seed: 9)
        let pristine = build(es, id: 9)
        var rng = SeededRandom(seed: 99)
        var refused = 0
        for _ in 0..<1_500 {
            var bytes = pristine
            for _ in 0..<(1 + Int(rng.below(3))) {
                let i = Int(rng.below(UInt64(bytes.count)))
                bytes[i] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
            }
            do {
                let t = try TableReader(tableID: 9, length: UInt64(bytes.count), source: BytesSource(bytes))
                #expect(try t.all() == es, "a damaged table answered differently")
            } catch {
                refused += 1
            }
        }
        #expect(refused > 1_000, "most damage is in checked bytes: \(refused) refused")
    }

    /// A table's reader given another table's bytes refuses them: a stale address never answers.
    @Test func anotherTablesBytesAreRefused() throws {
        let a = build(entries(100, seed: 4), id: 40)
        #expect(throws: DeviceError.self) { try TableReader(tableID: 41, length: UInt64(a.count), source: BytesSource(a)) }
        #expect(throws: DeviceError.self) { try TableReader(tableID: 40, length: UInt64(a.count - 4096), source: BytesSource(a)) }
    }
}

@Suite(.timeLimit(.minutes(10))) struct BlockCacheTests {
    @Test func theBoundHoldsAndTheLeastRecentlyUsedGoesFirst() {
        let c = BlockCache(capacity: 10 * 4096)
        for i in 0..<10 { c.insert(1, UInt64(i) * 4096, [], bytes: 4096) }
        #expect(c.bytes == 10 * 4096)
        #expect(c.entries(1, 0) != nil, "block 0 touched: now the most recent")
        c.insert(1, 10 * 4096, [], bytes: 4096)
        #expect(c.bytes == 10 * 4096 && c.blockCount == 10)
        #expect(c.entries(1, 4096) == nil, "block 1 was the least recently used")
        #expect(c.entries(1, 0) != nil)
        c.insert(2, 0, [], bytes: 11 * 4096)
        #expect(c.entries(2, 0) == nil, "larger than the whole cache: not kept")
        c.forget(table: 1)
        #expect(c.bytes == 0 && c.blockCount == 0)
    }
}
