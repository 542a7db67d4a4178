// The bounded cache of decoded data blocks every table reader shares.
//
// Invariants:
// - `bytes` (the device size of the blocks held) never exceeds `capacity` after an insert
//   returns: the least recently used blocks go first. A block larger than the whole capacity is
//   not kept.
// - Blocks are immutable (a table never changes once written, and its id is never reused), so a
//   cached block is never stale; dropping a table drops its blocks (`forget`).
// - One lock, a leaf: nothing else is taken while it is held.

import ZonedCore

public final class BlockCache: @unchecked Sendable {
    private struct Key: Hashable { var table: UInt64; var offset: UInt64 }
    private final class Node {
        let key: Key
        let entries: [IndexEntry]
        let bytes: Int
        var newer: Node?
        weak var older: Node?
        init(_ key: Key, _ entries: [IndexEntry], _ bytes: Int) { self.key = key; self.entries = entries; self.bytes = bytes }
    }

    public let capacity: Int
    private let lock = ConditionLock(rank: .leaf)
    private var nodes: [Key: Node] = [:]
    /// Least recently used end (evicted first) and most recently used end.
    private var oldest: Node?
    private var newest: Node?
    private var held = 0
    private var counts = (hits: UInt64(0), misses: UInt64(0), evictions: UInt64(0))

    public init(capacity: Int) { self.capacity = capacity }

    public var bytes: Int { lock.withLock { held } }
    public var blockCount: Int { lock.withLock { nodes.count } }
    public var stats: (hits: UInt64, misses: UInt64, evictions: UInt64) { lock.withLock { counts } }

    func entries(_ table: UInt64, _ offset: UInt64) -> [IndexEntry]? {
        lock.withLock {
            guard let n = nodes[Key(table: table, offset: offset)] else { counts.misses += 1; return nil }
            counts.hits += 1
            unlink(n)
            append(n)
            return n.entries
        }
    }

    func insert(_ table: UInt64, _ offset: UInt64, _ entries: [IndexEntry], bytes: Int) {
        guard bytes <= capacity else { return }
        lock.withLock {
            let key = Key(table: table, offset: offset)
            if let old = nodes.removeValue(forKey: key) { unlink(old); held -= old.bytes }
            let n = Node(key, entries, bytes)
            nodes[key] = n
            append(n)
            held += bytes
            while held > capacity, let victim = oldest {
                unlink(victim)
                nodes[victim.key] = nil
                held -= victim.bytes
                counts.evictions += 1
            }
        }
    }

    /// Drops every block of `table` (the table was removed).
    public func forget(table: UInt64) {
        lock.withLock {
            for (k, n) in nodes where k.table == table {
                unlink(n)
                nodes[k] = nil
                held -= n.bytes
            }
        }
    }

    // MARK: The recency list (under the lock)

    private func unlink(_ n: Node) {
        if let o = n.older { o.newer = n.newer } else { oldest = n.newer }
        if let w = n.newer { w.older = n.older } else { newest = n.older }
        n.newer = nil
        n.older = nil
    }

    private func append(_ n: Node) {
        n.older = newest
        newest?.newer = n
        newest = n
        if oldest == nil { oldest = n }
    }
}
