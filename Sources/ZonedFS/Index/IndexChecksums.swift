// Data checksums in the metadata index (docs/ON-DISK.md, "Checksums"): the engine's
// `ChecksumStorage` for a mounted file system, so only the memtable and the block cache hold any
// of them in memory, whatever the amount of data.
//
// Invariants:
// - One entry per chunk of `chunkBlocks` consecutive blocks, keyed `IndexKey.checksums` by the
//   chunk's first byte address (a multiple of the chunk size): `chunkBlocks` little-endian
//   CRC-32Cs, zero for a block never written. A block's checksum is always in the entry of the
//   chunk holding its address, so a lookup is one `get` per chunk the range touches.
// - `set` is a read-modify-write of each chunk it touches, one `MetadataIndex.update` each, so two
//   writers of one chunk never lose each other's blocks.
// - Every checksum given to `set` is also in a log record (the engine records the `.mapped`
//   change right after), so losing the memtable in a crash loses nothing: replay sets them again.
// - A failed `set` (the index could not read a chunk's older value) is kept in `failure`, and the
//   file system refuses to commit after it: a chunk written without its older blocks would make
//   them read as checksum errors, so no later state may become durable on top of it.

import ZonedCore
import ZonedEngine
import ZonedIndex

final class IndexChecksums: ChecksumStorage, @unchecked Sendable {
    static let chunkBlocks = 64
    let index: MetadataIndex
    private let block: UInt64
    private let failureLock = ConditionLock(rank: .leaf)
    private var firstFailure: DeviceError?

    init(index: MetadataIndex, block: ByteCount) {
        self.index = index
        self.block = block.bytes
    }

    var failure: DeviceError? { failureLock.withLock { firstFailure } }

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
            do {
                try index.update(.checksums(address: p.chunk)) { old in
                    var v = old.flatMap { $0.count == IndexChecksums.chunkBlocks * 4 ? $0 : nil }
                        ?? [UInt8](repeating: 0, count: IndexChecksums.chunkBlocks * 4)
                    for i in 0..<p.n { IndexChecksums.put(crcs[p.from + i], at: p.slot + i, in: &v) }
                    return v
                }
            } catch {
                failureLock.withLock { if firstFailure == nil { firstFailure = error } }
            }
        }
    }

    func get(_ at: DeviceOffset, count: Int) throws(DeviceError) -> [UInt32] {
        var out = [UInt32](repeating: 0, count: count)
        for p in pieces(at, count: count) {
            guard let v = try index.get(.checksums(address: p.chunk)) else { continue }
            guard v.count == IndexChecksums.chunkBlocks * 4 else {
                throw .io(.read, "the checksum entry of device address \(p.chunk) holds \(v.count) bytes, not \(IndexChecksums.chunkBlocks * 4)")
            }
            for i in 0..<p.n { out[p.from + i] = IndexChecksums.take(at: p.slot + i, in: v) }
        }
        return out
    }

    /// What the memtable holds, as runs (a checkpoint writes them: no table has them yet).
    func pendingRuns() -> [ChecksumRun] {
        index.memtableContents.compactMap { e -> ChecksumRun? in
            guard e.operation == .put, e.key.kind == .checksums, let at = e.key.field(at: 1),
                  e.value.count == IndexChecksums.chunkBlocks * 4 else { return nil }
            return ChecksumRun(at: DeviceOffset(at), crcs: (0..<IndexChecksums.chunkBlocks).map { IndexChecksums.take(at: $0, in: e.value) })
        }
    }

    /// Sets the checksums replay found in the log since the last checkpoint, in log order.
    func restore(_ runs: [ChecksumRun]) throws(DeviceError) {
        for r in runs { set(r.at, r.crcs) }
        if let failure { throw failure }
    }

    private static func put(_ c: UInt32, at slot: Int, in v: inout [UInt8]) {
        for k in 0..<4 { v[slot * 4 + k] = UInt8(truncatingIfNeeded: c >> (8 * UInt32(k))) }
    }

    private static func take(at slot: Int, in v: [UInt8]) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(v[slot * 4 + $1]) << (8 * UInt32($1)) }
    }
}
