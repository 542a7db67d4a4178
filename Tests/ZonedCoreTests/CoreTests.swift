import Foundation
import Testing
import ZonedCore

#if canImport(Glibc)
import Glibc
#endif

@Suite(.timeLimit(.minutes(10))) struct UnitsTests {
    @Test func parsesSizes() {
        #expect(ByteCount(parsing: "4096") == ByteCount(UInt64(4096)))
        #expect(ByteCount(parsing: "64M") == .mib(64))
        #expect(ByteCount(parsing: "62MiB") == .mib(62))
        #expect(ByteCount(parsing: "4G") == .gib(4))
        #expect(ByteCount(parsing: " 1.5G ") == ByteCount(UInt64(3) << 29))
        #expect(ByteCount(parsing: "12Q") == nil)
        #expect(ByteCount(parsing: "") == nil)
        #expect(ByteCount(parsing: "M") == nil)
        #expect(ByteCount(parsing: "0.3K") == nil, "fractions that are not whole bytes are refused")
        #expect(ByteCount(parsing: "99999999999999999999T") == nil)
    }

    @Test func formatsSizes() {
        #expect(ByteCount.mib(64).description == "64 MiB")
        #expect(ByteCount(UInt64(1536) << 20).description == "1.5 GiB")
        #expect(ByteCount(UInt64(100)).description == "100 B")
    }

    @Test func offsetArithmetic() {
        let a = DeviceOffset(4096)
        #expect(a + .kib(4) == DeviceOffset(8192))
        #expect(DeviceOffset(8192) - a == .kib(4))
        #expect(a.isAligned(to: .kib(4)) && !DeviceOffset(4097).isAligned(to: .kib(4)))
    }
}

@Suite(.timeLimit(.minutes(10))) struct GeometryTests {
    @Test func acceptsAValidGeometry() {
        let g = DeviceGeometry(zoneCount: 16, zoneSize: .mib(64), zoneCapacity: .mib(62), maxOpenZones: 8, maxActiveZones: 12,
                               conventionalZoneCount: 4)
        #expect(g.problem() == nil)
        #expect(g.totalBytes == .gib(1))
        #expect(g.zone(containing: DeviceOffset(UInt64(65) << 20)) == ZoneID(1))
        #expect(g.zone(containing: DeviceOffset(UInt64(1) << 30)) == nil)
        #expect(g.isConventional(ZoneID(3)) && !g.isConventional(ZoneID(4)))
    }

    @Test(arguments: [
        DeviceGeometry(zoneCount: 4, zoneSize: ByteCount(UInt64(3) << 20)),
        DeviceGeometry(zoneCount: 4, zoneSize: .mib(1), zoneCapacity: .mib(2)),
        DeviceGeometry(zoneCount: 4, zoneSize: .mib(1), zoneCapacity: ByteCount(UInt64(1000))),
        DeviceGeometry(zoneCount: 4, zoneSize: .mib(1), maxOpenZones: 5, maxActiveZones: 2),
        DeviceGeometry(zoneCount: 4, zoneSize: .mib(1), conventionalZoneCount: 5),
        DeviceGeometry(zoneCount: 4, zoneSize: .mib(1), logicalBlockSize: ByteCount(UInt64(3000))),
        DeviceGeometry(zoneCount: 0, zoneSize: .mib(1)),
    ])
    func rejectsBadGeometry(_ g: DeviceGeometry) {
        #expect(g.problem() != nil)
    }
}

@Suite(.timeLimit(.minutes(10))) struct ZoneModelTests {
    @Test func openAndActiveSets() {
        #expect(ZoneCondition.implicitlyOpen.isOpen && ZoneCondition.explicitlyOpen.isOpen)
        #expect(!ZoneCondition.closed.isOpen && ZoneCondition.closed.isActive)
        #expect(!ZoneCondition.full.isActive && !ZoneCondition.empty.isActive)
        for c in ZoneCondition.allCases { #expect(ZoneCondition(code: c.code) == c) }
        #expect(ZoneCondition(code: 200) == nil)
    }

    @Test func fillAndRemaining() {
        let z = Zone(id: 1, type: .sequentialWriteRequired, condition: .implicitlyOpen, start: DeviceOffset(UInt64(1) << 20),
                     size: .mib(1), capacity: .kib(512), writePointer: DeviceOffset(UInt64(1) << 20) + .kib(128))
        #expect(z.written == .kib(128))
        #expect(z.remaining == .kib(384))
        #expect(z.fillPercent == 25)
        var full = z
        full.condition = .full
        #expect(full.written == .kib(512) && full.remaining == .zero)
    }
}

@Suite(.timeLimit(.minutes(10))) struct DeviceErrorTests {
    @Test func classifiesErrnoInOnePlace() {
        #expect(DeviceError(errno: EIO, .write).kind == .io)
        #expect(DeviceError(errno: ETOOMANYREFS, .write).kind == .tooManyOpenZones)
        #expect(DeviceError(errno: EOVERFLOW, .openZone).kind == .tooManyActiveZones)
        #expect(DeviceError(errno: EINVAL, .read).kind == .invalidArgument)
        #expect(DeviceError(errno: EOPNOTSUPP, .append).kind == .notSupported)
        #expect(DeviceError(errno: EBUSY, .open).kind == .busy)
        #expect(DeviceError(errno: 12345, .open).kind == .other)
        for e in [EIO, ETOOMANYREFS, EOVERFLOW, EINVAL, ENOENT] { #expect(DeviceError(errno: e, .read).errno == e) }
        #expect(DeviceError(errno: ETOOMANYREFS, .write, "zone 3").description.contains("ETOOMANYREFS"))
    }
}

@Suite(.timeLimit(.minutes(10))) struct CodecTests {
    @Test func crc32cKnownValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
    }

    @Test func crc32cHardwareAndSoftwareAgree() {
        var rng = SeededRandom(seed: 77)
        for n in [0, 1, 7, 8, 9, 63, 4096, 65_537] {
            let b = rng.bytes(n)
            b.withUnsafeBytes { raw in
                #expect(CRC32C.update(0, raw) == CRC32C.software(0, raw), "\(n) bytes")
                #expect(CRC32C.update(0x1234_5678, raw) == CRC32C.software(0x1234_5678, raw), "\(n) bytes, running")
            }
        }
        #expect(Array("123456789".utf8).withUnsafeBytes { CRC32C.software(0, $0) } == 0xE306_9283)
        // Per-block checksums (three at a time with the instruction) equal block-by-block ones.
        for blocks in [1, 2, 3, 4, 7] {
            let b = rng.bytes(blocks * 4096 + (blocks == 7 ? 100 : 0))
            b.withUnsafeBytes { raw in
                let each = stride(from: 0, to: raw.count, by: 4096).map { CRC32C.software(0, UnsafeRawBufferPointer(rebasing: raw[$0..<min($0 + 4096, raw.count)])) }
                #expect(CRC32C.blockChecksums(raw, block: 4096) == each, "\(blocks) blocks")
            }
        }
    }

    @Test func crc32cIncrementalEqualsWhole() {
        var rng = SeededRandom(seed: 9)
        let bytes = (0..<1000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let whole = CRC32C.checksum(bytes)
        let part = bytes.withUnsafeBytes { b in
            CRC32C.update(CRC32C.update(0, UnsafeRawBufferPointer(rebasing: b[0..<333])), UnsafeRawBufferPointer(rebasing: b[333...]))
        }
        #expect(whole == part)
    }

    @Test func littleEndianRoundTrip() throws {
        var w = ByteWriter()
        w.u8(0xAB); w.u16(0x1234); w.u32(0xDEAD_BEEF); w.u64(0x0102_0304_0506_0708); w.raw([9, 9]); w.zeros(3)
        #expect(Array(w.bytes.prefix(3)) == [0xAB, 0x34, 0x12])
        var r = ByteReader(w.bytes)
        #expect(try r.u8() == 0xAB)
        #expect(try r.u16() == 0x1234)
        #expect(try r.u32() == 0xDEAD_BEEF)
        #expect(try r.u64() == 0x0102_0304_0506_0708)
        #expect(try r.raw(2) == [9, 9])
        try r.expectZeros(3)
        #expect(r.remaining == 0)
    }

    @Test func readerNeverTrapsOnShortInput() {
        for n in 0..<8 {
            var r = ByteReader([UInt8](repeating: 1, count: n))
            #expect(throws: DecodeError.self) { _ = try r.u64() }
        }
        var r = ByteReader([1, 2, 3])
        #expect(throws: DecodeError.self) { _ = try r.raw(-1) }
        #expect(throws: DecodeError.self) { try r.expectZeros(2) }
    }
}

@Suite(.timeLimit(.minutes(10))) struct RandomTests {
    @Test func sameSeedSameSequence() {
        var a = SeededRandom(seed: 42), b = SeededRandom(seed: 42), c = SeededRandom(seed: 43)
        let sa = (0..<10).map { _ in a.next() }
        #expect(sa == (0..<10).map { _ in b.next() })
        #expect(sa != (0..<10).map { _ in c.next() })
    }

    @Test func chanceIsRoughlyCalibrated() {
        var r = SeededRandom(seed: 1)
        let hits = (0..<10_000).filter { _ in r.chance(0.25) }.count
        #expect(hits > 2_200 && hits < 2_800)
        #expect(!r.chance(0) && r.chance(1))
    }

}

/// The clocks: engine decisions and background timers run on CLOCK_MONOTONIC (it never jumps), only
/// dates users read come from CLOCK_REALTIME (WallClock), and a test's ManualClock moves only when told.
@Suite(.timeLimit(.minutes(10))) struct ClockTests {
    static func read(_ id: clockid_t) -> UInt64 {
        var ts = timespec()
        clock_gettime(id, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    @Test func manualClockMovesOnlyWhenTold() {
        let c = ManualClock(start: 5)
        #expect(c.nowNanoseconds == 5)
        #expect(c.nowNanoseconds == 5, "no time passes by itself")
        c.advance(nanoseconds: 10)
        #expect(c.nowNanoseconds == 15)
    }

    /// SystemClock reads CLOCK_MONOTONIC: its reading lies between two readings of that clock
    /// (CLOCK_MONOTONIC never goes back, so this holds on any machine, loaded or not). The wall
    /// clock (decades since 1970) or the boot clock (counts suspend) would fall outside.
    @Test func systemClockIsTheMonotonicClock() {
        for _ in 0..<100 {
            let before = Self.read(CLOCK_MONOTONIC)
            let now = SystemClock().nowNanoseconds
            let after = Self.read(CLOCK_MONOTONIC)
            guard before <= now && now <= after else {
                Issue.record("SystemClock \(now) outside CLOCK_MONOTONIC [\(before), \(after)]")
                return
            }
        }
    }

    /// WallClock reads CLOCK_REALTIME (dates), not the monotonic clock: within a minute of it.
    @Test func wallClockIsTheRealTimeClock() {
        let real = Self.read(CLOCK_REALTIME)
        let wall = WallClock().nowNanoseconds
        let gap = wall > real ? wall - real : real - wall
        #expect(gap < 60_000_000_000, "WallClock \(wall) is not CLOCK_REALTIME \(real)")
        #expect(wall > 1_600_000_000 * 1_000_000_000, "a date after 2020, not a time since boot")
    }

    /// Timed waits measure CLOCK_MONOTONIC (the condition is made with that clock and the deadline
    /// is taken from it): a wait nobody ends times out after at least its time by that clock. With
    /// the condition on the wall clock the monotonic deadline would lie decades in the past and
    /// the wait would end at once. A broadcast ends a wait early, reporting it woke.
    @Test func conditionLockTimedWaitsRunOnTheMonotonicClock() throws {
        let c = ConditionLock()
        let wait: UInt64 = 50_000_000
        let t0 = Self.read(CLOCK_MONOTONIC)
        let woke = c.withLock { c.wait(nanoseconds: wait) }
        let elapsed = Self.read(CLOCK_MONOTONIC) - t0
        #expect(!woke, "nobody broadcast: the wait timed out")
        #expect(elapsed >= wait, "a wait of \(wait) ns ended after \(elapsed) ns of CLOCK_MONOTONIC")

        nonisolated(unsafe) var waiting = false, result: Bool?
        let waiter = Thread {
            let r = c.withLock { () -> Bool in
                waiting = true
                return c.wait(nanoseconds: 600_000_000_000)
            }
            c.withLock { result = r }
        }
        waiter.start()
        // Once `waiting` is seen under the lock, the waiter sleeps in the wait (it released the lock).
        while !c.withLock({ waiting }) { usleep(100) }
        c.withLock { c.broadcast() }
        while c.withLock({ result == nil }) { usleep(100) }
        #expect(c.withLock { result } == true, "a broadcast ends the wait and says so")
    }
}

@Suite(.timeLimit(.minutes(10))) struct RandomFillTests {
    @Test func fillIsSeededAndCoversOddLengths() {
        var a = SeededRandom(seed: 5), b = SeededRandom(seed: 5), c = SeededRandom(seed: 6)
        let x = a.bytes(13), y = b.bytes(13), z = c.bytes(13)
        #expect(x == y && x != z && x.count == 13)
        #expect(Set(x).count > 4, "13 random bytes are not all alike")
    }
}
