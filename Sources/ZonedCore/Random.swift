// Seeded randomness. Engine decisions and fault injection draw only from these generators, so a
// seed replays a run exactly (no SystemRandomNumberGenerator outside tests' seed pickers).

/// SplitMix64: expands one 64-bit seed into well-mixed words (used to seed Xoshiro).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// xoshiro256**: fast, small-state generator for workloads and fault plans.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64
    public let seed: UInt64

    public init(seed: UInt64) {
        self.seed = seed
        var sm = SplitMix64(seed: seed)
        s0 = sm.next(); s1 = sm.next(); s2 = sm.next(); s3 = sm.next()
    }

    @inline(__always) private static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    public mutating func next() -> UInt64 {
        let result = SeededRandom.rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = SeededRandom.rotl(s3, 45)
        return result
    }

    /// True with probability `p` (0...1).
    public mutating func chance(_ p: Double) -> Bool {
        guard p > 0 else { return false }
        guard p < 1 else { return true }
        return Double(next() >> 11) / Double(UInt64(1) << 53) < p
    }

    /// Fills `buffer` with random bytes, a word at a time.
    public mutating func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress else { return }
        var i = 0
        while buffer.count - i >= 8 {
            base.storeBytes(of: next().littleEndian, toByteOffset: i, as: UInt64.self)
            i += 8
        }
        if i < buffer.count {
            var w = next().littleEndian
            withUnsafeBytes(of: &w) { src in
                for j in 0..<(buffer.count - i) { base.storeBytes(of: src[j], toByteOffset: i + j, as: UInt8.self) }
            }
        }
    }

    /// `count` random bytes.
    public mutating func bytes(_ count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buf, initialized in
            fill(UnsafeMutableRawBufferPointer(buf))
            initialized = count
        }
    }
}

extension SeededRandom {
    /// Uniform in 0..<n (n > 0); modulo bias is irrelevant at these sizes.
    public mutating func below(_ n: UInt64) -> UInt64 {
        precondition(n > 0)
        return next() % n
    }

    /// A permutation of `items` (Fisher–Yates, our own so the order never depends on the
    /// standard library's shuffle algorithm).
    public mutating func permuted<T>(_ items: [T]) -> [T] {
        var a = items
        guard a.count > 1 else { return a }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            let j = Int(below(UInt64(i + 1)))
            a.swapAt(i, j)
        }
        return a
    }
}
