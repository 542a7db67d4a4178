// A table: a sorted run of entries with unique keys, as one byte image (docs/ON-DISK.md).
//
//   data block 0 | data block 1 | ... | index block | footer (the last unit)
//
// Invariants:
// - Keys strictly increase through the data blocks; a data block holds whole entries (an entry
//   larger than one unit gets a block of its own, as large as it needs).
// - The index block lists every data block in order: u64 offset, u32 length, u32 entries, u16 key
//   length, first key. The footer is one unit: u64 index offset, u32 index length, u64 entries,
//   u32 data blocks, u64 highest sequence, u64 table length, u16 + first key, u16 + last key.
// - Every block carries the table's id; the reader checks it on every block it reads, so a table
//   is never answered from another table's bytes.
// - `TableReader` never traps on bad bytes: a damaged table gives a typed EIO naming the table and
//   what is wrong.

import ZonedCore

/// Writes a table from entries given in strictly increasing key order.
public struct TableBuilder: Sendable {
    public let tableID: UInt64
    private var image = ByteWriter()
    private var block = ByteWriter()
    private var blockEntries: UInt32 = 0
    private var blockFirstKey: IndexKey?
    private var index = ByteWriter()
    private var dataBlocks: UInt32 = 0
    private var firstKey: IndexKey?
    private var lastKey: IndexKey?
    private(set) var entryCount: UInt64 = 0
    private var maxSequence: UInt64 = 0

    /// Payload a one-unit data block holds.
    static let blockPayload = TableBlock.unit - TableBlock.headerBytes

    public init(tableID: UInt64) { self.tableID = tableID }

    /// Bytes written so far (the table grows by whole blocks).
    public var bytesSoFar: Int { image.bytes.count + TableBlock.size(payload: block.bytes.count) }

    public mutating func add(_ e: IndexEntry) {
        if let lastKey { precondition(lastKey < e.key, "table entries out of order: \(e.key) after \(lastKey)") }
        if blockEntries > 0, block.bytes.count + e.encodedSize > TableBuilder.blockPayload { closeBlock() }
        if blockFirstKey == nil { blockFirstKey = e.key }
        e.encode(into: &block)
        blockEntries += 1
        if firstKey == nil { firstKey = e.key }
        lastKey = e.key
        entryCount += 1
        maxSequence = max(maxSequence, e.sequence)
    }

    private mutating func closeBlock() {
        guard blockEntries > 0, let first = blockFirstKey else { return }
        let b = TableBlock(kind: .data, tableID: tableID, count: blockEntries, payload: block.bytes).encode()
        index.u64(UInt64(image.bytes.count))
        index.u32(UInt32(b.count))
        index.u32(blockEntries)
        index.u16(UInt16(first.bytes.count))
        index.raw(first.bytes)
        image.raw(b)
        dataBlocks += 1
        block = ByteWriter()
        blockEntries = 0
        blockFirstKey = nil
    }

    /// The whole table. A table has at least one entry.
    public mutating func finish() -> [UInt8] {
        precondition(entryCount > 0, "an empty table")
        closeBlock()
        let indexOffset = image.bytes.count
        let indexBlock = TableBlock(kind: .index, tableID: tableID, count: dataBlocks, payload: index.bytes).encode()
        image.raw(indexBlock)
        let footer = TableFooter(indexOffset: UInt64(indexOffset), indexLength: UInt32(indexBlock.count), entryCount: entryCount,
                                 dataBlocks: dataBlocks, maxSequence: maxSequence,
                                 tableBytes: UInt64(image.bytes.count + TableBlock.unit), firstKey: firstKey!, lastKey: lastKey!)
        image.raw(TableBlock(kind: .footer, tableID: tableID, count: 1, payload: footer.encode()).encode())
        return image.bytes
    }
}

/// What the footer says about its table.
public struct TableFooter: Equatable, Sendable {
    public var indexOffset: UInt64
    public var indexLength: UInt32
    public var entryCount: UInt64
    public var dataBlocks: UInt32
    public var maxSequence: UInt64
    public var tableBytes: UInt64
    public var firstKey: IndexKey
    public var lastKey: IndexKey

    func encode() -> [UInt8] {
        var w = ByteWriter()
        w.u64(indexOffset)
        w.u32(indexLength)
        w.u64(entryCount)
        w.u32(dataBlocks)
        w.u64(maxSequence)
        w.u64(tableBytes)
        for k in [firstKey, lastKey] {
            w.u16(UInt16(k.bytes.count))
            w.raw(k.bytes)
        }
        return w.bytes
    }

    static func decode(_ payload: [UInt8]) throws(DecodeError) -> TableFooter {
        var r = ByteReader(payload)
        let indexOffset = try r.u64("index offset")
        let indexLength = try r.u32("index length")
        let entries = try r.u64("entry count")
        let blocks = try r.u32("data blocks")
        let maxSequence = try r.u64("highest sequence")
        let tableBytes = try r.u64("table length")
        let first = try key(&r, "first key")
        let last = try key(&r, "last key")
        guard r.remaining == 0 else { throw DecodeError("\(r.remaining) bytes after the footer", at: r.offset) }
        guard !(last < first) else { throw DecodeError("last key before first key", at: 0) }
        guard entries > 0, blocks > 0, UInt64(blocks) <= entries, indexOffset + UInt64(indexLength) + UInt64(TableBlock.unit) == tableBytes else {
            throw DecodeError("footer fields disagree (entries \(entries), blocks \(blocks), index \(indexOffset)+\(indexLength), table \(tableBytes))", at: 0)
        }
        return TableFooter(indexOffset: indexOffset, indexLength: indexLength, entryCount: entries, dataBlocks: blocks,
                           maxSequence: maxSequence, tableBytes: tableBytes, firstKey: first, lastKey: last)
    }

    static func key(_ r: inout ByteReader, _ what: String) throws(DecodeError) -> IndexKey {
        let at = r.offset
        let n = Int(try r.u16("\(what) length"))
        guard n > 0, n <= IndexKey.maxBytes else { throw DecodeError("\(what) of \(n) bytes", at: at) }
        return IndexKey(unchecked: try r.raw(n, what))
    }
}

/// One data block as the index names it.
struct DataBlockRef: Equatable, Sendable {
    var offset: UInt64
    var length: UInt32
    var entries: UInt32
    var firstKey: IndexKey
}

/// Where a table's bytes come from: offsets are within the table.
public protocol TableSource: Sendable {
    func read(offset: UInt64, length: Int) throws(DeviceError) -> [UInt8]
}

/// A table in memory (tests, and a table just built).
public struct BytesSource: TableSource {
    public let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public func read(offset: UInt64, length: Int) throws(DeviceError) -> [UInt8] {
        guard offset <= UInt64(bytes.count), length <= bytes.count - Int(offset) else {
            throw .io(.read, "read of \(length) B at \(offset) past a table of \(bytes.count) B")
        }
        return Array(bytes[Int(offset)..<(Int(offset) + length)])
    }
}
