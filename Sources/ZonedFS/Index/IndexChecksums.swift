// Data checksums in the metadata index (docs/ON-DISK.md, "Checksums"): the engine's
// `ChecksumStorage` for a mounted file system, so only the memtable and the block cache hold any
// of them in memory, whatever the amount of data.
//
// Invariants:
// - One entry per chunk of `chunkBlocks` consecutive blocks, keyed `IndexKey.checksums` by the
//   chunk's first byte address (a multiple of the chunk size). Its value is a partial chunk: a
//   u64 little-endian mask (bit i: slot i is set) and `chunkBlocks` little-endian CRC-32Cs (zero
//   where the mask bit is clear). A chunk's value is the combination of its puts, newer slots over
//   older (`IndexMerge`, `chunkMerge`); a block never set reads as zero.
// - `set` puts only the slots it sets, combined with the memtable's entry and nothing else, so it
//   does no IO and cannot fail: a write's checksums never depend on reading an index table.
// - Every checksum given to `set` is also in a log record (the engine records the `.mapped`
//   change right after), so losing the memtable in a crash loses nothing: replay sets them again.
// - A checkpoint carries the memtable as runs of set slots only (`pendingRuns`): replaying them
//   sets exactly those slots, never zeros over a table's older ones.

import ZonedCore
import ZonedEngine
import ZonedIndex

final class IndexChecksums: ChecksumStorage, @unchecked Sendable {
    static let chunkBlocks = 64
    static let valueBytes = 8 + chunkBlocks * 4
    let index: MetadataIndex
    private let block: UInt64

    init(index: MetadataIndex, block: ByteCount) {
        self.index = index
        self.block = block.bytes
    }

    /// How partial chunks combine (the index's merge operator for checksum keys).
    static let chunkMerge = IndexMerge(kind: .checksums, combine: { newer, older in
        guard newer.count == valueBytes, older.count == valueBytes else { return newer }
        let n = mask(newer), o = mask(older)
        var out = newer
        for slot in 0..<chunkBlocks where n & (1 << UInt64(slot)) == 0 && o & (1 << UInt64(slot)) != 0 {
            out.replaceSubrange((8 + slot * 4)..<(12 + slot * 4), with: older[(8 + slot * 4)..<(12 + slot * 4)])
        }
        writeMask(n | o, into: &out)
        return out
    }, complete: { v in v.count == valueBytes && mask(v) == UInt64.max })

    private var chunkBytes: UInt64 { block * UInt64(IndexChecksums.chunkBlocks) }

    /// The chunks `count` blocks from `at` touch: (chunk address, first slot, first index in the run, slots).
    private func pieces(_ at: DeviceOffset, count: Int) -> [(chunk: UInt64, slot: Int, from: Int, n: Int)] {
        var out: [(UInt64, Int, Int, Int)] = []
        var done = 0
        while done < count {
            let address = at.bytes + UInt64(done) * block
            let chunk = address - address % chunkBytes
            let slot = Int((address - chunk) / block)
            let n = min(count - done, IndexChecksums.chunkBlocks - slot)
            out.append((chunk, slot, done, n))
            done += n
        }
        return out
    }

    func set(_ at: DeviceOffset, _ crcs: [UInt32]) {
        for p in pieces(at, count: crcs.count) {
            var v = [UInt8](repeating: 0, count: IndexChecksums.valueBytes)
            var m: UInt64 = 0
            for i in 0..<p.n {
                IndexChecksums.put(crcs[p.from + i], at: p.slot + i, in: &v)
                m |= 1 << UInt64(p.slot + i)
            }
            IndexChecksums.writeMask(m, into: &v)
            index.merge(.checksums(address: p.chunk), v)
        }
    }

    func get(_ at: DeviceOffset, count: Int) throws(DeviceError) -> [UInt32] {
        var out = [UInt32](repeating: 0, count: count)
        for p in pieces(at, count: count) {
            guard let v = try index.get(.checksums(address: p.chunk)) else { continue }
            guard v.count == IndexChecksums.valueBytes else {
                throw .io(.read, "the checksum entry of device address \(p.chunk) holds \(v.count) bytes, not \(IndexChecksums.valueBytes)")
            }
            for i in 0..<p.n { out[p.from + i] = IndexChecksums.take(at: p.slot + i, in: v) }
        }
        return out
    }

    /// What the memtable holds, as runs of the slots set (a checkpoint writes them: no table has
    /// them yet).
    func pendingRuns() -> [ChecksumRun] {
        var out: [ChecksumRun] = []
        for e in index.memtableContents where e.operation == .put && e.key.kind == .checksums {
            guard let chunk = e.key.field(at: 1), e.value.count == IndexChecksums.valueBytes else { continue }
            let m = IndexChecksums.mask(e.value)
            var slot = 0
            while slot < IndexChecksums.chunkBlocks {
                guard m & (1 << UInt64(slot)) != 0 else { slot += 1; continue }
                var run: [UInt32] = []
                let first = slot
                while slot < IndexChecksums.chunkBlocks, m & (1 << UInt64(slot)) != 0 {
                    run.append(IndexChecksums.take(at: slot, in: e.value))
                    slot += 1
                }
                out.append(ChecksumRun(at: DeviceOffset(chunk + UInt64(first) * block), crcs: run))
            }
        }
        return out
    }

    /// Sets the checksums replay found in the log since the last checkpoint, in log order.
    func restore(_ runs: [ChecksumRun]) {
        for r in runs { set(r.at, r.crcs) }
    }

    private static func mask(_ v: [UInt8]) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(v[$1]) << (8 * UInt64($1)) } }

    private static func writeMask(_ m: UInt64, into v: inout [UInt8]) {
        for k in 0..<8 { v[k] = UInt8(truncatingIfNeeded: m >> (8 * UInt64(k))) }
    }

    private static func put(_ c: UInt32, at slot: Int, in v: inout [UInt8]) {
        for k in 0..<4 { v[8 + slot * 4 + k] = UInt8(truncatingIfNeeded: c >> (8 * UInt32(k))) }
    }

    private static func take(at slot: Int, in v: [UInt8]) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(v[8 + slot * 4 + $1]) << (8 * UInt32($1)) }
    }
}
