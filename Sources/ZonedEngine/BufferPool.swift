// Scratch buffers for IO that cannot go straight from the caller's memory (unaligned buffers,
// partial blocks). Reusing them avoids an mmap, 256 page faults and a zero-fill per 1 MiB call.
//
// Invariants: a buffer is owned by exactly one caller between `take` and `give`; its contents are
// undefined (callers overwrite or zero what they use); at most `keep` buffers are cached.

import ZonedCore

final class BufferPool: @unchecked Sendable {
    private let lock = ConditionLock(rank: .leaf)
    private var free: [AlignedBuffer] = []
    private let keep: Int

    init(keep: Int = 16) { self.keep = keep }

    /// A buffer of at least `count` bytes.
    func take(_ count: Int) -> AlignedBuffer {
        let cached: AlignedBuffer? = lock.withLock {
            guard let i = free.firstIndex(where: { $0.count >= count }) else { return nil }
            return free.remove(at: i)
        }
        return cached ?? AlignedBuffer(count: count, zeroed: false)
    }

    func give(_ b: AlignedBuffer) {
        lock.withLock {
            if free.count < keep { free.append(b) }
        }
    }
}
