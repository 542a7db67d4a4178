// A set of zone indexes as a two-level bitset, for the allocator's empty zones: 80,000 zones take
// 1,250 words, and the lowest or highest member is found by scanning a summary of 20 words, not
// every zone.
//
// Invariants (checked by `problem()`):
// - Bit i of `words[i / 64]` is set <=> i is a member; members are in 0..<capacity.
// - Bit w of `summary[w / 64]` is set <=> `words[w]` is non-zero.
// - `count` is the number of members.
// Iteration order is index order only (ascending or descending): nothing about it depends on
// insertion order or hashing, so choices made from it are deterministic.

struct ZoneBitSet: Sendable, Equatable {
    private var words: [UInt64]
    private var summary: [UInt64]
    private(set) var count = 0
    let capacity: Int

    init(capacity: Int) {
        precondition(capacity >= 0)
        self.capacity = capacity
        words = Array(repeating: 0, count: (capacity + 63) / 64)
        summary = Array(repeating: 0, count: (words.count + 63) / 64)
    }

    var isEmpty: Bool { count == 0 }

    func contains(_ i: Int) -> Bool {
        precondition(i >= 0 && i < capacity, "zone index \(i) outside the set's \(capacity)")
        return words[i >> 6] & (1 << UInt64(i & 63)) != 0
    }

    mutating func insert(_ i: Int) {
        guard !contains(i) else { return }
        words[i >> 6] |= 1 << UInt64(i & 63)
        summary[i >> 12] |= 1 << UInt64((i >> 6) & 63)
        count += 1
    }

    mutating func remove(_ i: Int) {
        guard contains(i) else { return }
        words[i >> 6] &= ~(1 << UInt64(i & 63))
        if words[i >> 6] == 0 { summary[i >> 12] &= ~(1 << UInt64((i >> 6) & 63)) }
        count -= 1
    }

    /// The lowest member >= `i`, or nil.
    func first(atOrAfter i: Int = 0) -> Int? {
        guard i < capacity else { return nil }
        let from = max(0, i)
        var w = from >> 6
        // The rest of the word holding `from`.
        let here = words[w] & (~0 << UInt64(from & 63))
        if here != 0 { return w << 6 + here.trailingZeroBitCount }
        // The next non-zero word, through the summary.
        w += 1
        guard w < words.count else { return nil }
        var s = w >> 6
        var bits = summary[s] & (~0 << UInt64(w & 63))
        while bits == 0 {
            s += 1
            guard s < summary.count else { return nil }
            bits = summary[s]
        }
        let word = s << 6 + bits.trailingZeroBitCount
        return word << 6 + words[word].trailingZeroBitCount
    }

    /// The highest member <= `i`, or nil.
    func last(atOrBefore i: Int) -> Int? {
        guard i >= 0 else { return nil }
        let from = min(i, capacity - 1)
        guard from >= 0 else { return nil }
        var w = from >> 6
        let shift = UInt64(63 - (from & 63))
        let here = words[w] & (~0 >> shift)
        if here != 0 { return w << 6 + 63 - here.leadingZeroBitCount }
        w -= 1
        guard w >= 0 else { return nil }
        var s = w >> 6
        var bits = summary[s] & (~0 >> UInt64(63 - (w & 63)))
        while bits == 0 {
            s -= 1
            guard s >= 0 else { return nil }
            bits = summary[s]
        }
        let word = s << 6 + 63 - bits.leadingZeroBitCount
        return word << 6 + 63 - words[word].leadingZeroBitCount
    }

    /// The highest member, or nil.
    var last: Int? { last(atOrBefore: capacity - 1) }

    /// Every member in increasing order (through the summary: O(members + capacity / 4096)).
    var members: [Int] {
        var out: [Int] = []
        out.reserveCapacity(count)
        var at = 0
        while let i = first(atOrAfter: at) {
            out.append(i)
            at = i + 1
        }
        return out
    }

    /// The first broken invariant, or nil. Reads every word: for tests and debug checks.
    func problem() -> String? {
        if let p = problem(in: 0..<capacity) { return p }
        let n = words.reduce(0) { $0 + $1.nonzeroBitCount }
        if n != count { return "count \(count) but \(n) members" }
        return nil
    }

    /// The summary bits of the words holding `zones` (a debug check's window: a change checks a
    /// window, not every word, so debug builds stay usable at 80,000 zones).
    func problem(in zones: Range<Int>) -> String? {
        guard !zones.isEmpty, !words.isEmpty else { return nil }
        let first = max(0, zones.lowerBound) >> 6, last = min(words.count - 1, (zones.upperBound - 1) >> 6)
        guard first <= last else { return nil }
        for w in first...last where (summary[w >> 6] >> UInt64(w & 63)) & 1 != (words[w] != 0 ? 1 : 0) {
            return "summary bit of word \(w) disagrees with it"
        }
        if last == words.count - 1, capacity & 63 != 0, words[last] >> UInt64(capacity & 63) != 0 { return "members past the capacity \(capacity)" }
        return nil
    }
}
