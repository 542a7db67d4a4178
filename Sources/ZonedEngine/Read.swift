// The read path (the seed's btrfs_direct_read and the read half of btrfs_dio_iomap_begin).
//
// Invariants:
// - A read returns exactly min(count, size - offset) bytes: never short except at EOF. It works in
//   chunks of at most `config.maxReadChunk` (the seed caps one lookup), looping until done.
// - Holes and preallocated ranges read as zeros; checksummed blocks are verified (EIO on mismatch);
//   blocks in the page cache (buffered writes not yet written back) are read from there.
// - A read never sees a range with a pending ordered extent: it waits for it (EAGAIN under NOWAIT),
//   with the range unlocked while it waits.
// - Under NOWAIT a chunk that maps to more than one extent (or a mix of extents and holes) is EAGAIN:
//   the seed refuses partial NOWAIT IO rather than return a short read.
// - Unaligned reads work on the enclosing blocks and copy out the bytes asked for.

import ZonedCore

extension Engine {
    public func read(_ n: InodeNumber, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer,
                     flags: IOFlags = [.direct]) throws(DeviceError) -> Int {
        let inode = try inode(n)
        let nowait = flags.contains(.nowait)
        guard inode.lock.lock(.shared, nowait: nowait) else { throw eagain(.read, "inode \(n) is locked") }
        defer { inode.lock.unlock() }
        let size = inode.state.withLock { inode.size }
        guard offset < size, !buffer.isEmpty else { return 0 }
        let total = Int(min(UInt64(buffer.count), size - offset))
        try readLocked(inode, offset, UnsafeMutableRawBufferPointer(rebasing: buffer[0..<total]), nowait: nowait)
        count { $0.userBytesRead += UInt64(total) }
        return total
    }

    /// Fills `out` with the file's bytes at `offset` (inode lock held by the caller), chunk by chunk.
    func readLocked(_ inode: Inode, _ offset: UInt64, _ out: UnsafeMutableRawBufferPointer, nowait: Bool) throws(DeviceError) {
        let chunk = UInt64(config.maxReadChunk.bytes)
        var done: UInt64 = 0
        let want = UInt64(out.count)
        while done < want {
            let pos = offset + done
            // Chunks are block-aligned on the device side so device reads stay aligned.
            let s = roundDown(pos)
            let e = min(roundUp(offset + want), s + chunk)
            let take = min(e - pos, want - done)
            try readChunk(inode, s, e, copyFrom: pos, UnsafeMutableRawBufferPointer(rebasing: out[Int(done)..<Int(done + take)]), nowait: nowait)
            done += take
        }
    }

    /// Reads blocks [s, e) and copies the bytes from `from` into `out`.
    private func readChunk(_ inode: Inode, _ s: UInt64, _ e: UInt64, copyFrom from: UInt64,
                           _ out: UnsafeMutableRawBufferPointer, nowait: Bool) throws(DeviceError) {
        while true {
            guard inode.ranges.lock(s, e, nowait: nowait) else { throw eagain(.read, "range [\(s), \(e)) is locked") }
            if inode.state.withLock({ inode.pendingOrdered(s, e) }) == nil { break }
            inode.ranges.unlock(s, e)
            guard waitForOrdered(inode, s, e, nowait: nowait) else { throw eagain(.read, "an ordered extent is pending in [\(s), \(e))") }
        }
        defer { inode.ranges.unlock(s, e) }
        let ranges = inode.state.withLock { inode.map.lookup(s, e - s) }
        if nowait, ranges.count > 1 { throw eagain(.read, "[\(s), \(e)) spans \(ranges.count) extents") }
        // Whole aligned blocks into aligned caller memory: read in place. Otherwise via scratch.
        let direct = from == s && UInt64(out.count) == e - s && AlignedBuffer.isAligned(out.baseAddress)
        let scratch = direct ? nil : buffers.take(Int(e - s))
        defer { if let scratch { buffers.give(scratch) } }
        let blocks = scratch?.slice(0, Int(e - s)) ?? out
        for r in ranges {
            let at = Int(r.fileOffset - s), n = Int(r.length)
            let dst = UnsafeMutableRawBufferPointer(rebasing: blocks[at..<(at + n)])
            if case .extent(let x) = r, x.holdsData {
                try readDevice(x.device, into: dst)
                if x.kind == .data { try verify(x.device, UnsafeRawBufferPointer(dst), inode: inode.number, fileOffset: x.fileOffset) }
            } else {
                dst.initializeMemory(as: UInt8.self, repeating: 0)  // holes and prealloc read as zeros
            }
        }
        overlayCache(inode, s, blocks)
        if let scratch {
            out.copyMemory(from: UnsafeRawBufferPointer(rebasing: scratch.readOnly[Int(from - s)..<(Int(from - s) + out.count)]))
        }
    }

    /// Device reads in pieces the device takes.
    func readDevice(_ at: DeviceOffset, into out: UnsafeMutableRawBufferPointer) throws(DeviceError) {
        let maxPiece = device.geometry.maxWriteBytes.int
        var done = 0
        while done < out.count {
            let n = min(maxPiece, out.count - done)
            try device.read(into: UnsafeMutableRawBufferPointer(rebasing: out[done..<(done + n)]), at: at + ByteCount(UInt64(done)))
            done += n
        }
    }
}
