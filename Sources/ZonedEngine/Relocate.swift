// Relocation: moving a file's extent to fresh space (zone reclaim's data mover).
//
// Invariants:
// - Runs under the file's exclusive inode lock after overlapping ordered extents finished, so no
//   write of that range is in flight; if the range no longer maps to the extent (overwritten,
//   truncated, punched meanwhile) nothing is moved.
// - Data is read and verified against its checksums before it is written again: reclaim never
//   turns a bad block into a good-looking one (EIO instead). New checksums are computed from the
//   bytes written; for data they equal the old ones.
// - Every kind moves, or a zone holding it could never be reset: unchecked extents (NOCOW files,
//   data without checksums) are copied like data and stay unchecked, so NOCOW writes keep going in
//   place at the new address; prealloc extents take new space without IO (they read as zeros).
// - Each moved chunk goes through the normal path: allocator grant, one batch of pieces (zone
//   appends in flight together, or a write at the pointer), a `.mapped` change per run of pieces
//   that landed back to back (recorded in the log), the old range accounted as garbage. A chunk
//   that fails part-way keeps its moved prefix (those bytes equal the old ones) and throws.

import ZonedAllocator
import ZonedCore

extension Engine {
    /// Moves `extent` of file `n` (as the map had it) to new space. Returns the bytes moved (0 when
    /// the mapping changed meanwhile). The move may use the allocator's reclaim reserve; ENOSPC
    /// (nothing moved) when even that has no room.
    public func relocate(_ n: InodeNumber, _ extent: FileExtent) throws(DeviceError) -> UInt64 {
        let inode = try inode(n)
        _ = inode.lock.lock(.exclusive)
        defer { inode.lock.unlock() }
        _ = waitForOrdered(inode, extent.fileOffset, extent.fileEnd, nowait: false)
        let current = inode.state.withLock { inode.map.lookup(extent.fileOffset, extent.length) }
        guard current.count == 1, case .extent(let e) = current[0], e.device == extent.device, e.kind == extent.kind else { return 0 }
        // All the space first: a move never stops half way for lack of room (writers cannot take
        // the reclaim reserve, so this fails only when the device is really full).
        var reservation = ReservationBox(try allocator.reserve(ByteCount(extent.length), forReclaim: true))
        defer { reservation.releaseAll() }
        if extent.kind == .prealloc {
            // No bytes to copy (prealloc reads as zeros): new space, mapped prealloc again.
            try mapPrealloc(inode, at: extent.fileOffset, length: extent.length, &reservation, forReclaim: true)
            return extent.length
        }
        var moved: UInt64 = 0
        let maxPiece = UInt64(device.geometry.maxWriteBytes.bytes)
        var hint: ZoneID?
        while moved < extent.length {
            let want = min(extent.length - moved, maxPiece)
            let grant = try allocator.grant(ByteCount(want), role: .data, hint: hint, useReserve: true)
            reservation.use(grant.length)
            hint = grant.zone
            let n = grant.length.bytes
            let buffer = AlignedBuffer(count: Int(n))
            let from = extent.device + ByteCount(moved)
            do throws(DeviceError) {
                try readDevice(from, into: buffer.mutable)
                if extent.kind == .data { try verify(from, buffer.readOnly, inode: inode.number, fileOffset: extent.fileOffset + moved) }
            } catch {
                allocator.complete(grant, written: .zero)
                throw error
            }
            // One batch: with zone append its pieces may land apart, so each run maps on its own.
            let outcome = sendBatch(grant, buffer.readOnly, fileOffset: extent.fileOffset + moved, checksummed: extent.kind == .data)
            allocator.complete(grant, written: ByteCount(outcome.landedBytes))
            let replaced = inode.state.withLock { () -> [FileExtent] in
                LandedPiece.contiguousRuns(outcome.kept).flatMap { run in
                    apply(inode, .mapped(run.extent(kind: extent.kind), checksums: run.checksums, sizeAtLeast: 0))
                }
            }
            discard(replaced)
            discardStray(outcome.stray)
            count { $0.relocatedBytes += outcome.keptBytes }
            if let failure = outcome.failure { throw failure }
            moved += n
        }
        return moved
    }

    /// Every file's extents in `zone` (for reclaim).
    public func extents(in zone: ZoneID) -> [(InodeNumber, FileExtent)] {
        let g = device.geometry
        var out: [(InodeNumber, FileExtent)] = []
        for n in allInodeNumbers() {
            guard let i = try? inode(n) else { continue }
            let es = i.state.withLock { i.map.extents }
            for e in es where g.zone(containing: e.device) == zone { out.append((n, e)) }
        }
        return out
    }
}
