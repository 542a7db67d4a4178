// The page cache across all files: how many blocks it holds and which files hold them, oldest
// first. Per file the cache is bounded by `EngineConfig.bufferedCacheBytes`; this account bounds
// the sum (`EngineConfig.dirtyLimit`), so memory stays bounded however many files are written at
// once.
//
// How the bound holds (Buffered.swift): before a buffered write takes its inode lock, it writes
// back the oldest dirty files until its new blocks fit under the limit (`Engine.makeRoom`); it
// holds no inode lock meanwhile, so taking each victim's lock keeps the lock order. After caching,
// a writer that still finds the total over the limit (others wrote meanwhile) writes back its own
// file, under the lock it already holds. So with one writer the total never exceeds the limit
// after a write returns; with several, only by the blocks of the writes in flight. No thread is
// needed for this: the bound holds for a plain library user. A file system can add a background
// flusher that starts earlier (ZonedFS/Flusher).
//
// Invariants:
// - `blocks` is the sum over files of their cached block counts, updated in the same state-lock
//   hold that changes a file's cache (`Engine.changeCache`), so it is never stale by a change.
// - A file is listed from the moment its cache goes from empty to non-empty until it is empty
//   again; its age is that moment (a sequence number, not a clock), so rewriting a cached file
//   does not make it younger and the order is deterministic.
// - The lock is a leaf: taken inside an inode's state lock, it takes nothing else.

import ZonedCore

final class DirtyFiles: @unchecked Sendable {
    private let lock = ConditionLock(rank: .leaf)
    private var blocks: UInt64 = 0
    /// Cached blocks and age (sequence number when it became dirty) of every dirty file.
    private var files: [InodeNumber: (blocks: Int, since: UInt64)] = [:]
    /// Dirty files in the order they became dirty. Entries whose file was cleaned (or cleaned and
    /// dirtied again, with a newer age) since are stale and skipped; `head` is the first live one.
    private var queue: [(file: InodeNumber, since: UInt64)] = []
    private var head = 0
    private var nextAge: UInt64 = 0

    /// Total cached blocks.
    var cachedBlocks: UInt64 { lock.withLock { blocks } }

    /// Records that file `n` now caches `count` blocks (called under its state lock).
    func set(_ n: InodeNumber, blocks count: Int) {
        lock.withLock {
            let old = files[n]
            blocks = blocks - UInt64(old?.blocks ?? 0) + UInt64(count)
            if count == 0 {
                files[n] = nil
            } else if let old {
                files[n] = (count, old.since)
            } else {
                files[n] = (count, nextAge)
                queue.append((n, nextAge))
                nextAge += 1
            }
            compactIfStale()
        }
    }

    /// The file that has been dirty longest, or nil when nothing is cached.
    var oldest: InodeNumber? {
        lock.withLock {
            while head < queue.count, !isLive(queue[head]) { head += 1 }
            return head < queue.count ? queue[head].file : nil
        }
    }

    /// Every dirty file, oldest first.
    var inOrder: [InodeNumber] {
        lock.withLock { queue[head...].filter(isLive).map(\.file) }
    }

    private func isLive(_ entry: (file: InodeNumber, since: UInt64)) -> Bool { files[entry.file]?.since == entry.since }

    /// Drops stale entries once they are most of the queue (amortised O(1) per change).
    private func compactIfStale() {
        guard queue.count > 64, queue.count > 2 * files.count else { return }
        queue = queue[head...].filter(isLive)
        head = 0
    }
}
