// The entries logged since the last flush, newest per key, kept in key order.
//
// Invariants:
// - `chunks` are non-empty (except that there are none when the memtable is empty), each sorted
//   by strictly increasing key, each at most `chunkLimit` entries, and every key of a chunk is
//   below every key of the next: the concatenation is one sorted run with unique keys. Inserting
//   costs a binary search over chunks and a move within one chunk, never a move of everything.
// - A key holds the entry with the highest sequence given for it; an older one is ignored.
// - `bytes` is the sum of the entries' encoded sizes, what a flush will write (before blocks).

struct Memtable: Sendable {
    static let chunkLimit = 256
    private(set) var chunks: [[IndexEntry]] = []
    private(set) var count = 0
    private(set) var bytes = 0

    var isEmpty: Bool { count == 0 }

    /// The chunk `key` belongs in: the last whose first key is at or before it (0 when before all).
    private func chunkIndex(_ key: IndexKey) -> Int {
        var lo = 0, hi = chunks.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if key < chunks[mid][0].key { hi = mid } else { lo = mid + 1 }
        }
        return max(0, lo - 1)
    }

    private static func position(_ key: IndexKey, in chunk: [IndexEntry]) -> Int {
        var lo = 0, hi = chunk.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if chunk[mid].key < key { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    mutating func insert(_ e: IndexEntry) {
        guard !chunks.isEmpty else {
            chunks = [[e]]
            count = 1
            bytes = e.encodedSize
            return
        }
        let c = chunkIndex(e.key)
        let p = Memtable.position(e.key, in: chunks[c])
        if p < chunks[c].count, chunks[c][p].key == e.key {
            guard e.sequence >= chunks[c][p].sequence else { return }
            bytes += e.encodedSize - chunks[c][p].encodedSize
            chunks[c][p] = e
            return
        }
        chunks[c].insert(e, at: p)
        count += 1
        bytes += e.encodedSize
        if chunks[c].count > Memtable.chunkLimit {
            let upper = Array(chunks[c][(Memtable.chunkLimit / 2)...])
            chunks[c].removeSubrange((Memtable.chunkLimit / 2)...)
            chunks.insert(upper, at: c + 1)
        }
    }

    func get(_ key: IndexKey) -> IndexEntry? {
        guard !chunks.isEmpty else { return nil }
        let chunk = chunks[chunkIndex(key)]
        let p = Memtable.position(key, in: chunk)
        return p < chunk.count && chunk[p].key == key ? chunk[p] : nil
    }

    /// Entries at or after `from`, in key order, while `more` accepts their keys.
    func scan(from: IndexKey, while more: (IndexKey) -> Bool) -> [IndexEntry] {
        guard !chunks.isEmpty else { return [] }
        var out: [IndexEntry] = []
        var c = chunkIndex(from)
        var p = Memtable.position(from, in: chunks[c])
        while c < chunks.count {
            while p < chunks[c].count {
                guard more(chunks[c][p].key) else { return out }
                out.append(chunks[c][p])
                p += 1
            }
            c += 1
            p = 0
        }
        return out
    }

    /// Every entry in key order (a flush).
    var sorted: [IndexEntry] { chunks.flatMap { $0 } }

    /// What breaks the invariants, or nil. O(entries).
    func problem() -> String? {
        var last: IndexKey?
        var n = 0, b = 0
        for (i, chunk) in chunks.enumerated() {
            if chunk.isEmpty || chunk.count > Memtable.chunkLimit { return "memtable chunk \(i) holds \(chunk.count) entries" }
            for e in chunk {
                if let last, !(last < e.key) { return "memtable keys out of order at \(e.key)" }
                last = e.key
                n += 1
                b += e.encodedSize
            }
        }
        return n == count && b == bytes ? nil : "memtable counts \(count) entries, \(bytes) B; holds \(n), \(b) B"
    }
}
