// Time for the engine, injected. Engine decisions never read the wall clock directly: they take
// an `EngineClock`, so the simulator can drive time by hand and replay a run exactly.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Monotonic nanoseconds since an arbitrary origin.
public protocol EngineClock: Sendable {
    var nowNanoseconds: UInt64 { get }
}

/// CLOCK_MONOTONIC.
public struct SystemClock: EngineClock {
    public init() {}
    public var nowNanoseconds: UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// CLOCK_REALTIME: nanoseconds since the Unix epoch. Only for what users read as dates (file
/// timestamps, a superblock's creation time), never for engine decisions: it can jump backwards.
public struct WallClock: EngineClock {
    public init() {}
    public var nowNanoseconds: UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(max(0, ts.tv_sec)) * 1_000_000_000 + UInt64(max(0, ts.tv_nsec))
    }
}

/// A clock that moves only when told to.
public final class ManualClock: EngineClock {
    private let now = Locked<UInt64>(0)
    public init(start: UInt64 = 0) { now.withLock { $0 = start } }
    public var nowNanoseconds: UInt64 { now.withLock { $0 } }
    public func advance(nanoseconds: UInt64) { now.withLock { $0 += nanoseconds } }
}
