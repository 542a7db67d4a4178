// The buffered path, taken by unaligned writes (and by writes without O_DIRECT).
//
// The seed falls back to buffered IO and then flushes and invalidates the range, so a later direct
// read sees the new bytes. We do the same thing in one step: the enclosing blocks are read, the new
// bytes merged in, and the whole blocks written through the direct path (copy on write, same
// allocator) before the call returns. There is no page cache yet, so nothing can go stale.
//
// Invariants:
// - Runs under the exclusive inode lock: two unaligned writers sharing a block would otherwise lose
//   one another's bytes in the read-modify-write.
// - i_size grows to the end of the bytes written, never to the end of the enclosing block; bytes
//   past EOF in the last block are always zero (truncate keeps that so), so a later extending write
//   exposes zeros, not old data.

import ZonedCore

extension Engine {
    func bufferedWrite(_ inode: Inode, _ offset: UInt64, _ data: UnsafeRawBufferPointer) throws(DeviceError) -> Int {
        _ = inode.lock.lock(.exclusive)
        defer { inode.lock.unlock() }
        return try mergeAndWrite(inode, offset, data)
    }

    /// Read-modify-write of the blocks enclosing [offset, offset+len) with the inode lock held
    /// exclusively. Returns the bytes of `data` that reached the device.
    func mergeAndWrite(_ inode: Inode, _ offset: UInt64, _ data: UnsafeRawBufferPointer) throws(DeviceError) -> Int {
        let end = offset + UInt64(data.count)
        let s = roundDown(offset), e = roundUp(end)
        let blocks = AlignedBuffer(count: Int(e - s))
        let size = inode.state.withLock { inode.size }
        if offset > s, s < size { try readLocked(inode, s, blocks.slice(0, Int(min(block, size - s))), nowait: false) }
        let tail = e - block
        if end < e, tail < size, tail != s || offset == s {
            try readLocked(inode, tail, blocks.slice(Int(tail - s), Int(min(block, size - tail))), nowait: false)
        }
        blocks.slice(Int(offset - s), data.count).copyMemory(from: data)
        let written = try writeLocked(inode, s, blocks.readOnly, nowait: false, sizeLimit: end)
        // Bytes of `data` inside what was written.
        let reached = s + UInt64(written)
        return reached <= offset ? 0 : Int(min(reached, end) - offset)
    }

    /// Zeroes [from, to) inside one block by rewriting the block (copy on write). A hole stays a hole.
    func zeroInBlock(_ inode: Inode, _ from: UInt64, _ to: UInt64) throws(DeviceError) {
        let s = roundDown(from)
        precondition(to <= s + block && from < to, "zeroInBlock crosses a block")
        let mapped = inode.state.withLock { inode.map.lookup(s, block).contains { if case .extent = $0 { true } else { false } } }
        guard mapped else { return }
        let b = AlignedBuffer(count: Int(block))
        let size = inode.state.withLock { inode.size }
        if s < size { try readLocked(inode, s, b.slice(0, Int(min(block, size - s))), nowait: false) }
        b.slice(Int(from - s), Int(to - from)).initializeMemory(as: UInt8.self, repeating: 0)
        let written = try writeLocked(inode, s, b.readOnly, nowait: false, sizeLimit: 0)
        if written < Int(block) { throw DeviceError.io(.write, "zeroing a block of inode \(inode.number) failed") }
    }
}
