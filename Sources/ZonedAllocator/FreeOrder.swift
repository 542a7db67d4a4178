// Zones ordered by (free bytes, index), for the allocator's choices among active zones: the
// tightest fit is a binary search, the fullest zone the first entry, the roomiest the last run.
//
// Invariants (checked by `problem()`):
// - `keys` is strictly increasing by (free, index): each zone appears at most once, and among
//   zones with equal free bytes the lowest index comes first (the allocator's tie-break).
// A sorted array: inserts and removals move the entries after the spot, which is cheap because
// only active zones are kept here (at most the device's max active zones, e.g. 14 or 128, plus
// conventional zones that still have room).

struct FreeKey: Comparable, Sendable, Hashable {
    var free: UInt64
    var index: Int
    static func < (a: FreeKey, b: FreeKey) -> Bool { (a.free, a.index) < (b.free, b.index) }
}

struct FreeOrder: Sendable, Equatable {
    private(set) var keys: [FreeKey] = []

    var count: Int { keys.count }
    var isEmpty: Bool { keys.isEmpty }

    /// Position of the first key >= `key` (keys.count when none).
    func lowerBound(_ key: FreeKey) -> Int {
        var lo = 0, hi = keys.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if keys[mid] < key { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    func contains(_ key: FreeKey) -> Bool {
        let at = lowerBound(key)
        return at < keys.count && keys[at] == key
    }

    mutating func insert(_ key: FreeKey) {
        let at = lowerBound(key)
        precondition(at == keys.count || keys[at] != key, "zone \(key.index) is already ordered")
        keys.insert(key, at: at)
    }

    mutating func remove(_ key: FreeKey) {
        let at = lowerBound(key)
        precondition(at < keys.count && keys[at] == key, "zone \(key.index) with \(key.free) B free is not ordered")
        keys.remove(at: at)
    }

    /// Zone indexes with at least `bytes` free, tightest first (ascending free, then index).
    func fitting(_ bytes: UInt64) -> ArraySlice<FreeKey> { keys[lowerBound(FreeKey(free: bytes, index: Int.min))...] }

    /// The zone with the most free bytes, the lowest index among equals; nil when empty.
    var roomiest: FreeKey? {
        guard let top = keys.last else { return nil }
        return keys[lowerBound(FreeKey(free: top.free, index: Int.min))]
    }

    func problem() -> String? {
        for (a, b) in zip(keys, keys.dropFirst()) where !(a < b) {
            return "zones \(a.index) and \(b.index) are out of (free, index) order"
        }
        return nil
    }
}
