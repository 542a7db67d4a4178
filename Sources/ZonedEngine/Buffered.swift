// The buffered path and its page cache, taken by unaligned writes and by writes without O_DIRECT.
//
// A buffered write copies its bytes into cached whole blocks (reading a block's old bytes first
// when the write covers only part of it) and returns; the cache is written back later through the
// direct path — copy on write, the same allocator, ordered extents and checksums — when:
//   - the file is fsync'd or the engine synced (`flushAll`),
//   - an aligned direct write or a truncate / punch / fallocate touches the file (the seed flushes
//     the page cache range before a direct write, so the device never holds older bytes than the
//     cache once direct IO starts),
//   - the file's cache grows past `EngineConfig.bufferedCacheBytes`,
//   - the page cache of all files would grow past `EngineConfig.dirtyLimit`: the writer first
//     writes back the files dirty longest (DirtyFiles.swift), holding no inode lock meanwhile.
//
// Invariants:
// - `cache` and `cachedSize` change under the inode's state lock, and only with the inode lock
//   held exclusively (buffered writers and write-back), so readers under the shared inode lock see
//   either all of a buffered write or none of it. Every cache change goes through
//   `Engine.changeCache`, which keeps the mount-wide account (`Engine.dirty`) exact.
// - A writer never takes a second inode lock while holding one: it makes room in the page cache
//   (writing back other files, each under its own lock) before it takes its own.
// - Reads overlay cached blocks on what the device holds, so a read (direct or not) always sees
//   the newest bytes, including right after a buffered fallback.
// - i_size grows to the end of the bytes written, never to the end of the enclosing block; bytes
//   past EOF in the last block are always zero (truncate keeps that so).
// - A cached block leaves the cache only once write-back put it on the device; on a device error
//   the unwritten blocks stay cached and the error is returned.

import ZonedCore

extension Engine {
    func bufferedWrite(_ inode: Inode, _ offset: UInt64, _ data: UnsafeRawBufferPointer) throws(DeviceError) -> Int {
        let end = offset + UInt64(data.count)
        let first = offset / block, last = (end - 1) / block
        // Room first, with no inode lock held: a failure (ENOSPC) then leaves nothing of this
        // write cached, and the file system's retry after reclaim starts clean.
        try makeRoom(forBlocks: uncachedBlocks(inode, first, last))
        _ = inode.lock.lock(.exclusive)
        defer { inode.lock.unlock() }
        // Pages to fill: read the blocks that are not cached yet (and hold old bytes) first.
        var pages: [UInt64: [UInt8]] = [:]
        for b in first...last {
            if let cached = inode.state.withLock({ inode.cache[b] }) { pages[b] = cached; continue }
            pages[b] = try readBlock(inode, b)
        }
        for b in first...last {
            let bs = b * block
            let from = max(offset, bs), to = min(end, bs + block)
            pages[b]!.withUnsafeMutableBytes { page in
                UnsafeMutableRawBufferPointer(rebasing: page[Int(from - bs)..<Int(to - bs)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: data[Int(from - offset)..<Int(to - offset)]))
            }
        }
        let overFileLimit = changeCache(inode) { () -> Bool in
            for (b, p) in pages { inode.cache[b] = p }
            inode.cachedSize = max(inode.size, end)
            return UInt64(inode.cache.count) * block > config.bufferedCacheBytes.bytes
        }
        count {
            $0.bufferedBytesCached += UInt64(data.count)
            $0.userBytesWritten += UInt64(data.count)
        }
        // Still over the mount-wide limit (other writers filled the room meanwhile, or this write
        // alone is larger): this file goes back, under the lock already held.
        if overFileLimit || cachedBytes > config.dirtyLimit { try writeBack(inode) }
        return data.count
    }

    /// Blocks of [first, last] the file does not cache yet: what a write there adds to the cache.
    private func uncachedBlocks(_ inode: Inode, _ first: UInt64, _ last: UInt64) -> UInt64 {
        inode.state.withLock { UInt64((first...last).count { inode.cache[$0] == nil }) }
    }

    /// Writes back the files dirty longest until `incoming` more blocks fit under the mount-wide
    /// limit. Takes each victim's inode lock in turn, so the caller must hold no inode lock. Gives
    /// up after as many files as were dirty when it started: writers that keep dirtying files
    /// cannot keep this one writing back theirs forever (the bound then rests on their own checks).
    func makeRoom(forBlocks incoming: UInt64) throws(DeviceError) {
        let limit = config.dirtyLimit.bytes / block
        guard dirty.cachedBlocks + incoming > limit else { return }
        var turns = dirtyFiles.count
        while turns > 0, dirty.cachedBlocks + incoming > limit {
            turns -= 1
            guard try writeBackOldest() != nil else { return }
        }
    }

    /// Writes back the cache of the file dirty longest (taking its inode lock, so the caller must
    /// hold none); returns that file, or nil when nothing is cached.
    @discardableResult
    public func writeBackOldest() throws(DeviceError) -> InodeNumber? {
        guard let n = oldestDirtyFile else { return nil }
        // Removed since it was listed: removeFile took its cache out of the account already, so
        // this entry is stale; dropping it keeps the account's promise.
        guard let victim = try? inode(n) else {
            dirty.set(n, blocks: 0)
            return n
        }
        _ = victim.lock.lock(.exclusive)
        defer { victim.lock.unlock() }
        try writeBack(victim)
        return n
    }

    /// The current bytes of block `b` (device, holes as zeros, cache overlaid), zero past EOF.
    private func readBlock(_ inode: Inode, _ b: UInt64) throws(DeviceError) -> [UInt8] {
        var page = [UInt8](repeating: 0, count: Int(block))
        let size = inode.state.withLock { inode.size }
        let bs = b * block
        guard bs < size else { return page }
        let n = Int(min(block, size - bs))
        let buffer = AlignedBuffer(count: Int(block))
        try readLocked(inode, bs, buffer.slice(0, n), nowait: false)
        page.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(buffer.slice(0, Int(block)))) }
        if n < Int(block) { page.replaceSubrange(n..<Int(block), with: repeatElement(0, count: Int(block) - n)) }
        return page
    }

    /// Copies cached blocks over `out`, which holds the file's blocks [s, s + out.count). Under the
    /// inode lock (shared or exclusive).
    func overlayCache(_ inode: Inode, _ s: UInt64, _ out: UnsafeMutableRawBufferPointer) {
        inode.state.withLock {
            guard !inode.cache.isEmpty else { return }
            let e = s + UInt64(out.count)
            for b in (s / block)..<((e + block - 1) / block) {
                guard let page = inode.cache[b] else { continue }
                let bs = b * block
                let from = max(s, bs), to = min(e, bs + block)
                page.withUnsafeBytes { p in
                    UnsafeMutableRawBufferPointer(rebasing: out[Int(from - s)..<Int(to - s)])
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: p[Int(from - bs)..<Int(to - bs)]))
                }
            }
        }
    }

    /// Writes the file's cached blocks to the device, in runs of consecutive blocks, with the inode
    /// lock held exclusively by the caller.
    func writeBack(_ inode: Inode) throws(DeviceError) {
        let (pages, sizeLimit) = inode.state.withLock { (inode.cache, inode.size) }
        guard !pages.isEmpty else { return }
        let indices = pages.keys.sorted()
        var runStart = 0
        while runStart < indices.count {
            var runEnd = runStart + 1
            while runEnd < indices.count, indices[runEnd] == indices[runEnd - 1] + 1 { runEnd += 1 }
            let run = indices[runStart..<runEnd]
            let buffer = AlignedBuffer(count: run.count * Int(block))
            for (i, b) in run.enumerated() {
                pages[b]!.withUnsafeBytes { buffer.slice(i * Int(block), Int(block)).copyMemory(from: $0) }
            }
            let at = run.first! * block
            let written = try writeLocked(inode, at, buffer.readOnly, nowait: false, sizeLimit: sizeLimit, user: false)
            let done = written / Int(block)
            changeCache(inode) { for b in run.prefix(done) { inode.cache[b] = nil } }
            count { $0.writeBacks += 1 }
            if done < run.count { throw DeviceError.io(.write, "write-back of inode \(inode.number) stopped at file offset \(at + UInt64(written))") }
            runStart = runEnd
        }
        inode.state.withLock { if inode.cache.isEmpty { inode.cachedSize = 0 } }
    }

    /// Writes back the cache of file `n` (taking its inode lock).
    public func writeBack(_ n: InodeNumber) throws(DeviceError) {
        let i = try inode(n)
        _ = i.lock.lock(.exclusive)
        defer { i.lock.unlock() }
        try writeBack(i)
    }

    /// Writes back every file's cache (sync).
    public func flushAll() throws(DeviceError) {
        for n in allInodeNumbers() { try writeBack(n) }
    }

    /// Zeroes [from, to) inside one block by rewriting the block (copy on write). A hole stays a
    /// hole. The file's cache must be written back already.
    func zeroInBlock(_ inode: Inode, _ from: UInt64, _ to: UInt64) throws(DeviceError) {
        let s = roundDown(from)
        precondition(to <= s + block && from < to, "zeroInBlock crosses a block")
        let mapped = inode.state.withLock { inode.map.lookup(s, block).contains { if case .extent = $0 { true } else { false } } }
        guard mapped else { return }
        let b = AlignedBuffer(count: Int(block))
        let size = inode.state.withLock { inode.size }
        if s < size { try readLocked(inode, s, b.slice(0, Int(min(block, size - s))), nowait: false) }
        b.slice(Int(from - s), Int(to - from)).initializeMemory(as: UInt8.self, repeating: 0)
        let written = try writeLocked(inode, s, b.readOnly, nowait: false, sizeLimit: 0, user: false)
        if written < Int(block) { throw DeviceError.io(.write, "zeroing a block of inode \(inode.number) failed") }
    }
}
