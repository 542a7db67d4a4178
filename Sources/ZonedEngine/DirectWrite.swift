// The direct write path, in the seed's order (direct-io.c: btrfs_direct_write, btrfs_dio_iomap_begin,
// btrfs_get_blocks_direct_write, btrfs_dio_submit_io, btrfs_dio_end_io):
//   1. alignment check — unaligned IO takes the buffered path (Buffered.swift)
//   2. inode lock: shared when the write stays inside EOF, exclusive when it extends the file,
//      re-checked after locking because the size may have changed meanwhile
//   3. reserve data space BEFORE locking the range: taking it after could deadlock with a
//      concurrent writer of the same range when the range spans several extents
//   4. lock the range; if an ordered extent overlaps, unlock, wait for it (EAGAIN under NOWAIT), retry
//   5. NOCOW / prealloc: overwrite in place, only in conventional mode, and never over checksummed
//      data (the seed's can_nocow_extent refuses ranges with checksums: an in-place write cut by
//      a power cut before its log record would leave new bytes under the old checksums, EIO
//      after remount). So NOCOW files carry no data checksums (the seed's nodatacow implies
//      nodatasum): their copy-on-write extents are unchecked, and a checksummed extent they still
//      have from before the flag was set is written copy-on-write. A preallocated extent is
//      written in place with checksums, which take effect with the record that maps it
//   6. allocate: a grant at some zone's write pointer, possibly shorter than asked (end of zone);
//      when the active budget is spent the allocator waits for a zone finish (EAGAIN under NOWAIT)
//   7. create the ordered extent; the range lock is released, the ordered extent now guards it
//   8. submit in batches of pieces the device takes; each batch splits its own ordered extent off
//      the front. At the write pointer a batch is one piece; with zone append several pieces are
//      in flight at once and the device picks where each lands. If a piece fails, the rest is
//      finished as failed and the caller gets a short write (a prefix: appended pieces past the
//      failure that landed anyway become garbage)
//   9. per completed batch: record where each piece landed on the ordered extent, split it where
//      pieces landed apart (out-of-order appends) so every extent is contiguous on the device, map
//      each run with its checksums at its address, grow i_size, account replaced extents as garbage
// Invariants:
// - No extent is ever inserted for bytes whose IO did not complete.
// - NOWAIT (the seed's IOCB_NOWAIT): the write either completes whole without blocking or fails
//   with EAGAIN before any IO — never a short count because a later part would block. So under
//   NOWAIT a write is one extent (one grant, or one in-place target covering all of it), its
//   inode and range locks are tried, not waited for, and a zone whose sequencer is busy is EAGAIN.
//   Without space it is ENOSPC, as without NOWAIT: the engine has nothing to wait for (the file
//   system, which can reclaim, turns it into EAGAIN when reclaim could help).

import ZonedAllocator
import ZonedCore

extension Engine {
    /// Writes `data` at `offset`. Returns the bytes written, which is less than asked only when the
    /// device failed part-way (a short write); an error when nothing could be written.
    public func write(_ n: InodeNumber, at offset: UInt64, _ data: UnsafeRawBufferPointer,
                      flags: IOFlags = [.direct]) throws(DeviceError) -> Int {
        guard !data.isEmpty else { return 0 }
        let inode = try inode(n)
        let nowait = flags.contains(.nowait)
        guard flags.contains(.direct), isAligned(offset, data.count) else {
            if flags.contains(.direct) { count { $0.bufferedFallbacks += 1 } }
            // The buffered path always blocks (it flushes), so NOWAIT cannot take it (seed: "buffered:").
            if nowait { throw eagain(.write, "unaligned NOWAIT write needs the buffered path") }
            return try bufferedWrite(inode, offset, data)
        }
        let end = offset + UInt64(data.count)
        // The page cache goes to the device before direct IO (the seed's flush of the range), and
        // stays empty while the inode lock is held (buffered writers need it exclusively).
        while true {
            if inode.state.withLock({ !inode.cache.isEmpty }) {
                if nowait { throw eagain(.write, "buffered data of inode \(n) must be written back first") }
                _ = inode.lock.lock(.exclusive)
                do { try writeBack(inode) } catch { inode.lock.unlock(); throw error }
                inode.lock.unlock()
            }
            try lockInode(inode, extendingTo: end, nowait: nowait)
            if inode.state.withLock({ inode.cache.isEmpty }) { break }
            inode.lock.unlock()
        }
        defer { inode.lock.unlock() }
        return try writeLocked(inode, offset, data, nowait: nowait, sizeLimit: end)
    }

    /// Step 2: shared inode lock inside EOF, exclusive past it; re-checked once locked.
    func lockInode(_ inode: Inode, extendingTo end: UInt64, nowait: Bool) throws(DeviceError) {
        var mode: ReadWriteLock.Mode = end <= inode.state.withLock({ inode.size }) ? .shared : .exclusive
        while true {
            guard inode.lock.lock(mode, nowait: nowait) else { throw eagain(.write, "inode \(inode.number) is locked") }
            if mode == .shared, end > inode.state.withLock({ inode.size }) {
                inode.lock.unlock()
                mode = .exclusive
                continue
            }
            return
        }
    }

    /// Writes block-aligned `data` at `offset` with the inode lock held, extent by extent.
    /// `sizeLimit`: i_size grows to at most this (the buffered path writes whole blocks but only
    /// `sizeLimit` bytes of them belong to the file).
    func writeLocked(_ inode: Inode, _ offset: UInt64, _ data: UnsafeRawBufferPointer, nowait: Bool,
                     sizeLimit: UInt64, user: Bool = true) throws(DeviceError) -> Int {
        var done = 0
        var hint: ZoneID?
        while done < data.count {
            let rest = UnsafeRawBufferPointer(rebasing: data[done...])
            do {
                let r = try writeExtent(inode, offset + UInt64(done), rest, nowait: nowait, hint: &hint, sizeLimit: sizeLimit)
                done += r.written
                if r.failed { break }
                precondition(!nowait || done == data.count, "a NOWAIT write went on to a second extent")
            } catch {
                if done == 0 { throw error }
                break
            }
        }
        if done < data.count, user { count { $0.shortWrites += 1 } }
        if user { count { $0.userBytesWritten += UInt64(done) } }
        return done
    }

    /// Steps 3–9 for one extent starting at `pos`. Returns how much was written and whether the
    /// device failed part-way. Throws when nothing was written.
    private func writeExtent(_ inode: Inode, _ pos: UInt64, _ data: UnsafeRawBufferPointer, nowait: Bool,
                             hint: inout ZoneID?, sizeLimit: UInt64) throws(DeviceError) -> (written: Int, failed: Bool) {
        let want = UInt64(data.count)
        // Step 3: reserve before the range lock. Without space, only a NOCOW/prealloc write can go
        // on (decided after the range lock, step 5); anything else fails now, without waiting.
        var reservation = ReservationBox(try? allocator.reserve(ByteCount(want)))
        if !reservation.held, !mayWriteInPlace(inode) {
            throw DeviceError.noSpace(.write, "no data space for \(want) bytes")
        }
        // Step 4.
        try lockRangeClearOfOrdered(inode, pos, pos + want, nowait: nowait)
        // Step 5.
        if let target = nocowTarget(inode, pos, want) {
            reservation.releaseAll()
            // NOWAIT never does part of a write (the seed's "len < length" check).
            if nowait, target.length < want {
                inode.ranges.unlock(pos, pos + want)
                throw eagain(.write, "a NOWAIT write of \(want) bytes spans more than one in-place extent")
            }
            return try writeInPlace(inode, pos, data, target, sizeLimit: sizeLimit)
        }
        guard reservation.held else {
            inode.ranges.unlock(pos, pos + want)
            throw DeviceError.noSpace(.write, "no data space for \(want) bytes")
        }
        // Step 6.
        let grant: ZoneGrant
        do {
            grant = try allocator.grant(ByteCount(want), hint: hint, nowait: nowait)
        } catch {
            inode.ranges.unlock(pos, pos + want)
            if error.kind == .wouldBlock { count { $0.eagainReturns += 1 } }
            throw error
        }
        // NOWAIT never does part of a write: a grant cut short at a zone's end would need a second
        // extent, so give it back and say EAGAIN (the seed's "len < length" NOWAIT check).
        if nowait, grant.length.bytes < want {
            allocator.complete(grant, written: .zero)
            inode.ranges.unlock(pos, pos + want)
            throw eagain(.write, "a NOWAIT write of \(want) bytes would span several extents")
        }
        reservation.use(grant.length)
        hint = grant.zone
        // Step 7: the ordered extent stands for the range from here on.
        let oe = inode.state.withLock { inode.startOrdered(pos, grant.length.bytes, .regular) }
        inode.ranges.unlock(pos, pos + want)
        reservation.releaseAll()  // what the grant did not cover (the seed frees data space past len)
        // Steps 8 and 9.
        let r = submitPieces(inode, oe, grant, UnsafeRawBufferPointer(rebasing: data[0..<grant.length.int]),
                             sizeLimit: sizeLimit, checksummed: checksummedCOW(inode), nowait: nowait)
        // Everything the device took counts, mapped or not: the allocator accounted it as written.
        allocator.complete(grant, written: ByteCount(r.landed))
        if let failure = r.failure, r.written == 0 { throw failure }
        return (r.written, r.failure != nil)
    }

    /// Step 4: lock [s, e) with no pending ordered extent in it.
    func lockRangeClearOfOrdered(_ inode: Inode, _ s: UInt64, _ e: UInt64, nowait: Bool) throws(DeviceError) {
        while true {
            guard inode.ranges.lock(s, e, nowait: nowait) else { throw eagain(.write, "range [\(s), \(e)) is locked") }
            if inode.state.withLock({ inode.pendingOrdered(s, e) }) == nil { return }
            inode.ranges.unlock(s, e)
            guard waitForOrdered(inode, s, e, nowait: nowait) else { throw eagain(.write, "an ordered extent is pending in [\(s), \(e))") }
        }
    }

    /// Step 8: the grant goes to the device in batches, each with its own ordered extent split off
    /// the front (the seed extracts one per submitted bio). A batch is one piece at the write
    /// pointer; with zone append it is up to `appendsInFlight` pieces in flight at once. Step 9
    /// per completed batch (`finishBatch`). On failure the rest of the ordered extent finishes failed.
    /// `written`: bytes mapped (a prefix of `data`); `landed`: bytes the device took, mapped or not.
    /// `checksummed`: decided once per extent, so its batches' checksums and kind agree.
    /// `nowait`: a zone sequencer held by another writer fails the batch with EAGAIN before any IO.
    private func submitPieces(_ inode: Inode, _ oe: OrderedExtent, _ grant: ZoneGrant, _ data: UnsafeRawBufferPointer,
                              sizeLimit: UInt64, checksummed: Bool, nowait: Bool) -> (written: Int, landed: UInt64, failure: DeviceError?) {
        let batchBytes = batchLimit(grant.zone)
        // Aligned caller memory (O_DIRECT users) goes to the device as it is; anything else is
        // copied through a pooled scratch buffer.
        let zeroCopy = AlignedBuffer.isAligned(data.baseAddress)
        let buffer = zeroCopy ? nil : buffers.take(min(batchBytes, data.count))
        defer { if let buffer { buffers.give(buffer) } }
        var written = 0
        var landed: UInt64 = 0
        while written < data.count {
            let n = min(batchBytes, data.count - written)
            let batchOE: OrderedExtent
            if UInt64(n) < oe.length {
                batchOE = inode.state.withLock { let f = oe.splitFront(UInt64(n)); inode.addSplit(f); return f }
                count { $0.orderedExtentSplits += 1 }
            } else {
                batchOE = oe
            }
            let source = UnsafeRawBufferPointer(rebasing: data[written..<(written + n)])
            let batch: UnsafeRawBufferPointer
            if let buffer {
                buffer.slice(0, n).copyMemory(from: source)
                batch = UnsafeRawBufferPointer(buffer.slice(0, n))
            } else {
                batch = source
            }
            let outcome = sendBatch(grant, batch, fileOffset: batchOE.fileOffset, checksummed: checksummed, nowait: nowait)
            landed += outcome.landedBytes
            finishBatch(inode, batchOE, outcome, sizeLimit: sizeLimit, kind: checksummed ? .data : .unchecked)
            written += Int(outcome.keptBytes)
            if let failure = outcome.failure {
                if batchOE !== oe { inode.state.withLock { inode.finishOrdered(oe, ok: false) } }
                return (written, landed, failure)
            }
        }
        return (written, landed, nil)
    }

    /// Step 9 for one batch: record where each kept piece landed on the batch's ordered extent,
    /// split it wherever pieces landed apart (and off the failed tail), map each run where it is
    /// and finish its ordered extent. One state-lock hold, so readers see all of it or none.
    private func finishBatch(_ inode: Inode, _ oe: OrderedExtent, _ outcome: BatchOutcome, sizeLimit: UInt64, kind: FileExtent.Kind) {
        let keptBytes = outcome.keptBytes
        var splits: UInt64 = 0
        let replaced = inode.state.withLock { () -> [FileExtent] in
            guard keptBytes > 0 else {
                inode.finishOrdered(oe, ok: false)
                return []
            }
            // The failed tail finishes failed; the landed front goes on.
            let front: OrderedExtent
            if keptBytes < oe.length {
                front = oe.splitFront(keptBytes)
                inode.addSplit(front)
                inode.finishOrdered(oe, ok: false)
            } else {
                front = oe
            }
            for p in outcome.kept { front.recordLanded(p) }
            let runs = front.landedRuns
            var replaced: [FileExtent] = []
            for (i, run) in runs.enumerated() {
                let runOE: OrderedExtent
                if i < runs.count - 1 {
                    runOE = front.splitFront(run.length)
                    inode.addSplit(runOE)
                    splits += 1
                } else {
                    runOE = front
                }
                let change = FileChange.mapped(run.extent(kind: kind), checksums: run.checksums,
                                               sizeAtLeast: min(run.fileEnd, sizeLimit))
                replaced += apply(inode, change)
                inode.finishOrdered(runOE, ok: true)
            }
            return replaced
        }
        if splits > 0 { count { $0.landedApartSplits += splits } }
        discard(replaced)
        discardStray(outcome.stray)
    }

    /// The bytes of one batch into `zone`: one piece at the write pointer (each write must find
    /// the pointer where the previous one left it), `appendsInFlight` pieces with zone append.
    func batchLimit(_ zone: ZoneID) -> Int {
        let piece = allocator.pieceLimit(zone).int
        return appendsTo(zone) ? piece * max(1, config.appendsInFlight) : piece
    }

    /// Whether writes into `zone` are zone appends (the device decides where they land).
    func appendsTo(_ zone: ZoneID) -> Bool { allocator.usesZoneAppend && !allocator.isConventional(zone) }

    /// Whether this file could take an in-place write at all (the seed's NODATACOW | PREALLOC test).
    private func mayWriteInPlace(_ inode: Inode) -> Bool {
        isConventionalMode && inode.state.withLock { inode.nocow || inode.hasPrealloc }
    }

    /// Whether copy-on-write data of this file gets checksums: unless checksums are off, or the
    /// file is NOCOW where that means something (conventional mode). Checksummed data is never
    /// overwritten in place, so a NOCOW file's own extents must be unchecked to stay in-place.
    func checksummedCOW(_ inode: Inode) -> Bool {
        config.dataChecksums && !(isConventionalMode && inode.state.withLock { inode.nocow })
    }

    /// Step 5: where an in-place overwrite may go — only in conventional mode, starting at `pos`:
    /// a prealloc extent, or (for a NOCOW file) an unchecked one. A checksummed extent is never
    /// overwritten: it is written copy-on-write (see the file header). Zoned devices never overwrite.
    private func nocowTarget(_ inode: Inode, _ pos: UInt64, _ want: UInt64) -> FileExtent? {
        guard isConventionalMode else { return nil }
        return inode.state.withLock { () -> FileExtent? in
            guard case .extent(let e)? = inode.map.lookup(pos, want).first else { return nil }
            switch e.kind {
            case .prealloc: return e
            case .unchecked: return inode.nocow ? e : nil
            case .data: return nil
            }
        }
    }

    /// NOCOW/prealloc write into `target` (already clipped to start at the write's offset).
    private func writeInPlace(_ inode: Inode, _ pos: UInt64, _ data: UnsafeRawBufferPointer, _ target: FileExtent,
                              sizeLimit: UInt64) throws(DeviceError) -> (written: Int, failed: Bool) {
        let len = Int(min(UInt64(data.count), target.length))
        let oe = inode.state.withLock { inode.startOrdered(pos, UInt64(len), target.kind == .prealloc ? .prealloc : .nocow) }
        inode.ranges.unlock(pos, pos + UInt64(data.count))
        // Prealloc space of a checksummed file takes checksums: until the record that maps the
        // bytes is durable the extent is still prealloc (zeros), so old checksums never cover it.
        let checksummed = target.kind == .prealloc && checksummedCOW(inode)
        var crcs: [UInt32] = []
        let maxPiece = device.geometry.maxWriteBytes.int
        let buffer = buffers.take(min(maxPiece, len))
        defer { buffers.give(buffer) }
        var written = 0
        var failure: DeviceError?
        while written < len {
            let n = min(maxPiece, len - written)
            buffer.slice(0, n).copyMemory(from: UnsafeRawBufferPointer(rebasing: data[written..<(written + n)]))
            let piece = UnsafeRawBufferPointer(buffer.slice(0, n))
            do {
                try device.write(piece, at: target.device + ByteCount(UInt64(written)))
            } catch { failure = error; break }
            if checksummed { crcs += ChecksumStore.compute(piece, block: Int(block)) }
            written += n
        }
        inode.state.withLock {
            if written > 0 {
                // Same device space, not garbage: the written part of a prealloc extent becomes
                // data (checksummed or not), an unchecked extent stays unchecked.
                let e = FileExtent(fileOffset: pos, length: UInt64(written), device: target.device, kind: checksummed ? .data : .unchecked)
                _ = apply(inode, .mapped(e, checksums: crcs, sizeAtLeast: min(pos + UInt64(written), sizeLimit)))
            }
            inode.finishOrdered(oe, ok: failure == nil)
        }
        count {
            $0.nocowWrites += 1
            $0.deviceBytesWritten += UInt64(written)
        }
        if let failure, written == 0 { throw failure }
        return (written, failure != nil)
    }
}

/// Holds an optional reservation (a ~Copyable value) so it can be used and dropped in steps.
struct ReservationBox: ~Copyable {
    private var reservation: SpaceReservation?
    init(_ r: consuming SpaceReservation?) { reservation = r }
    var held: Bool { reservation != nil }
    mutating func use(_ n: ByteCount) { reservation?.use(n) }
    mutating func releaseAll() { reservation = nil }
}
