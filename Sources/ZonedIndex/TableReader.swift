// Reads one table: opens it from its footer, answers point lookups and ordered scans, reading
// data blocks through the shared, bounded block cache.
//
// Invariants:
// - Opening reads the footer (the table's last unit) and the index block, both checked (kind,
//   table id, checksum, fields that agree: the index names `dataBlocks` blocks in key order that
//   tile the table up to the index). After that a lookup reads at most one data block.
// - Every block read is checked for this table's id and its checksum; a data block must hold
//   `entries` entries in strictly increasing key order starting at the index's first key. Any
//   failure is EIO naming the table: never a trap, never an answer from bad bytes.

import ZonedCore

public final class TableReader: Sendable {
    public let tableID: UInt64
    public let footer: TableFooter
    let blocks: [DataBlockRef]
    private let source: any TableSource
    private let cache: BlockCache?

    /// Opens the table of `length` bytes with id `tableID` from `source`.
    public init(tableID: UInt64, length: UInt64, source: any TableSource, cache: BlockCache? = nil) throws(DeviceError) {
        self.tableID = tableID
        self.source = source
        self.cache = cache
        guard length >= UInt64(2 * TableBlock.unit), length % UInt64(TableBlock.unit) == 0 else {
            throw .io(.read, "table \(tableID): a length of \(length) B cannot hold a table")
        }
        let footerBlock = try TableReader.block(source, tableID, at: length - UInt64(TableBlock.unit), length: TableBlock.unit, kind: .footer)
        let footer = try TableReader.checked(tableID) { () throws(DecodeError) in try TableFooter.decode(footerBlock.payload) }
        guard footer.tableBytes == length else {
            throw .io(.read, "table \(tableID): its footer says \(footer.tableBytes) B, the table is \(length) B")
        }
        self.footer = footer
        let indexBlock = try TableReader.block(source, tableID, at: footer.indexOffset, length: Int(footer.indexLength), kind: .index)
        self.blocks = try TableReader.checked(tableID) { () throws(DecodeError) in try TableReader.decodeIndex(indexBlock, footer) }
    }

    // MARK: Lookups

    /// The entry for `key`, if this table has one (a put or a delete).
    public func get(_ key: IndexKey) throws(DeviceError) -> IndexEntry? {
        guard !(key < footer.firstKey), !(footer.lastKey < key), let b = blockIndex(holding: key) else { return nil }
        let entries = try dataEntries(b)
        var lo = 0, hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[mid].key < key { lo = mid + 1 } else { hi = mid }
        }
        return lo < entries.count && entries[lo].key == key ? entries[lo] : nil
    }

    /// Entries with keys at or after `from`, in key order, while `more` says so (it sees each key
    /// before it is taken).
    public func scan(from: IndexKey, while more: (IndexKey) -> Bool = { _ in true }) throws(DeviceError) -> [IndexEntry] {
        var out: [IndexEntry] = []
        var b = blockIndex(holding: from) ?? 0
        while b < blocks.count {
            for e in try dataEntries(b) where !(e.key < from) {
                guard more(e.key) else { return out }
                out.append(e)
            }
            b += 1
        }
        return out
    }

    /// Every entry, in key order (compaction, fsck).
    public func all() throws(DeviceError) -> [IndexEntry] { try scan(from: footer.firstKey) }

    /// Reads every data block (checksums, ids, key order inside each block: `dataEntries`), and
    /// checks that keys rise across blocks, stay inside the footer's range and add up to its
    /// entry count; calls `each` with every entry. Holds one block at a time (fsck of big tables).
    public func check(_ each: (IndexEntry) throws(DeviceError) -> Void = { _ in }) throws(DeviceError) {
        var last: IndexKey?
        var count: UInt64 = 0
        for b in blocks.indices {
            for e in try dataEntries(b, caching: false) {
                if let l = last, !(l < e.key) { throw .io(.read, "table \(tableID): key \(e.key) does not follow \(l)") }
                if e.key < footer.firstKey || footer.lastKey < e.key {
                    throw .io(.read, "table \(tableID): key \(e.key) lies outside the table's range")
                }
                if e.sequence > footer.maxSequence { throw .io(.read, "table \(tableID): key \(e.key) has sequence \(e.sequence) past the footer's \(footer.maxSequence)") }
                last = e.key
                count += 1
                try each(e)
            }
        }
        guard count == footer.entryCount else { throw .io(.read, "table \(tableID) holds \(count) entries, its footer says \(footer.entryCount)") }
    }

    /// A cursor over every entry in key order, reading one data block at a time past the cache
    /// (a compaction streams its inputs).
    public func cursor() -> TableCursor { TableCursor(reader: self) }

    func entries(ofBlock b: Int) throws(DeviceError) -> [IndexEntry] { try dataEntries(b, caching: false) }
    var blockCount: Int { blocks.count }

    /// The last data block whose first key is at or before `key`.
    private func blockIndex(holding key: IndexKey) -> Int? {
        var lo = 0, hi = blocks.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if key < blocks[mid].firstKey { hi = mid } else { lo = mid + 1 }
        }
        return lo == 0 ? nil : lo - 1
    }

    private func dataEntries(_ b: Int, caching: Bool = true) throws(DeviceError) -> [IndexEntry] {
        let ref = blocks[b]
        if caching, let hit = cache?.entries(tableID, ref.offset) { return hit }
        let block = try TableReader.block(source, tableID, at: ref.offset, length: Int(ref.length), kind: .data)
        let entries = try TableReader.checked(tableID) { () throws(DecodeError) in try TableReader.decodeData(block, ref) }
        if caching { cache?.insert(tableID, ref.offset, entries, bytes: Int(ref.length)) }
        return entries
    }

    // MARK: Decoding

    private static func checked<T>(_ id: UInt64, _ body: () throws(DecodeError) -> T) throws(DeviceError) -> T {
        do throws(DecodeError) { return try body() } catch { throw .io(.read, "table \(id): \(error)") }
    }

    private static func block(_ source: any TableSource, _ id: UInt64, at: UInt64, length: Int, kind: TableBlockKind) throws(DeviceError) -> TableBlock {
        let bytes = try source.read(offset: at, length: length)
        let block = try checked(id) { () throws(DecodeError) in try TableBlock.decode(bytes[...], tableID: id) }
        guard block.kind == kind, block.encodedSize == length else {
            throw .io(.read, "table \(id): expected a \(kind) block of \(length) B at \(at), found a \(block.kind) block of \(block.encodedSize) B")
        }
        return block
    }

    static func decodeIndex(_ block: TableBlock, _ footer: TableFooter) throws(DecodeError) -> [DataBlockRef] {
        guard block.count == footer.dataBlocks else { throw DecodeError("index names \(block.count) blocks, footer \(footer.dataBlocks)", at: 0) }
        var r = ByteReader(block.payload)
        var refs: [DataBlockRef] = []
        var next: UInt64 = 0
        var entries: UInt64 = 0
        for i in 0..<Int(block.count) {
            let at = r.offset
            let ref = DataBlockRef(offset: try r.u64("block offset"), length: try r.u32("block length"), entries: try r.u32("block entries"),
                                   firstKey: try TableFooter.key(&r, "first key"))
            guard ref.offset == next, ref.length > 0, ref.length % UInt32(TableBlock.unit) == 0, ref.entries > 0 else {
                throw DecodeError("data block \(i) at \(ref.offset) (\(ref.length) B, \(ref.entries) entries) does not follow block \(i - 1)", at: at)
            }
            if let last = refs.last, !(last.firstKey < ref.firstKey) { throw DecodeError("data block \(i) out of key order", at: at) }
            next = ref.offset + UInt64(ref.length)
            entries += UInt64(ref.entries)
            refs.append(ref)
        }
        guard r.remaining == 0 else { throw DecodeError("\(r.remaining) bytes after the index", at: r.offset) }
        guard next == footer.indexOffset, entries == footer.entryCount, refs.first?.firstKey == footer.firstKey else {
            throw DecodeError("index disagrees with the footer (blocks end at \(next), \(entries) entries)", at: 0)
        }
        return refs
    }

    static func decodeData(_ block: TableBlock, _ ref: DataBlockRef) throws(DecodeError) -> [IndexEntry] {
        guard block.count == ref.entries else { throw DecodeError("data block holds \(block.count) entries, the index says \(ref.entries)", at: 0) }
        var r = ByteReader(block.payload)
        var out: [IndexEntry] = []
        out.reserveCapacity(Int(block.count))
        for _ in 0..<block.count {
            let at = r.offset
            let e = try IndexEntry.decode(&r)
            if let last = out.last, !(last.key < e.key) { throw DecodeError("entries out of key order", at: at) }
            out.append(e)
        }
        guard r.remaining == 0 else { throw DecodeError("\(r.remaining) bytes after the last entry", at: r.offset) }
        guard out.first?.key == ref.firstKey else { throw DecodeError("first entry differs from the index's first key", at: 0) }
        return out
    }
}

/// Entries of one table in key order, one data block in memory at a time.
public struct TableCursor {
    let reader: TableReader
    private var block = -1
    private var entries: [IndexEntry] = []
    private var at = 0

    init(reader: TableReader) { self.reader = reader }

    public mutating func next() throws(DeviceError) -> IndexEntry? {
        while at >= entries.count {
            block += 1
            guard block < reader.blockCount else { return nil }
            entries = try reader.entries(ofBlock: block)
            at = 0
        }
        defer { at += 1 }
        return entries[at]
    }
}
