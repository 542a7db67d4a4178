// The parts of ZonedCore the kernel and NVMe backends share (LeasePool, DeviceContract,
// WritePointerFloors), checked on their own: the backends' tests reach them only through a device.

import Synchronization
import Testing
import ZonedCore

#if canImport(Glibc)
import Glibc
#endif

/// A pooled resource that says which one it is.
private final class Token: Sendable {
    let id: Int
    init(_ id: Int) { self.id = id }
}

@Suite(.timeLimit(.minutes(10))) struct LeasePoolTests {
    @Test func idleResourcesAreReusedUnlessBrokenAndReleaseWaitsForTheLastLease() throws {
        let released = Atomic<Int>(0)
        let made = Atomic<Int>(0)
        let pool = LeasePool(first: Token(0), idleLimit: 1) { released.add(1, ordering: .relaxed) }
        let make = { () throws(DeviceError) -> Token in Token(100 + made.add(1, ordering: .relaxed).newValue) }

        let first = try pool.withLease(.read, path: "/dev/x", resource: true, make: make) {
            t throws(DeviceError) -> (Int, broken: Bool) in (t!.id, false)
        }
        #expect(first == 0, "the first resource is the idle one")
        let again = try pool.withLease(.read, path: "/dev/x", resource: true, make: make) {
            t throws(DeviceError) -> (Int, broken: Bool) in (t!.id, true)
        }
        #expect(again == 0 && made.load(ordering: .relaxed) == 0)
        let fresh = try pool.withLease(.read, path: "/dev/x", resource: true, make: make) {
            t throws(DeviceError) -> (Int, broken: Bool) in (t!.id, false)
        }
        #expect(fresh == 101, "a broken resource is not reused")
        let none = try pool.withLease(.flush, path: "/dev/x", resource: false, make: make) {
            t throws(DeviceError) -> (Bool, broken: Bool) in (t == nil, false)
        }
        #expect(none)

        // Close inside a lease: released only when that lease ends, and only once.
        try pool.withLease(.write, path: "/dev/x", resource: true, make: make) {
            _ throws(DeviceError) -> ((), broken: Bool) in
            pool.close()
            pool.close()
            #expect(released.load(ordering: .relaxed) == 0)
            return ((), false)
        }
        #expect(released.load(ordering: .relaxed) == 1)
        pool.close()
        #expect(released.load(ordering: .relaxed) == 1)

        #expect(throws: DeviceError(errno: EBADF, .read, "/dev/x is closed")) {
            try pool.withLease(.read, path: "/dev/x", resource: true, make: make) {
                _ throws(DeviceError) -> ((), broken: Bool) in ((), false)
            }
        }
    }

    @Test func aLeaseWhoseBodyThrowsStillEnds() {
        let released = Atomic<Int>(0)
        let pool = LeasePool(first: Token(0), idleLimit: 4) { released.add(1, ordering: .relaxed) }
        #expect(throws: DeviceError.self) {
            try pool.withLease(.write, path: "/dev/x", resource: true, make: { () throws(DeviceError) in Token(1) }) {
                _ throws(DeviceError) -> ((), broken: Bool) in throw .io(.write, "boom")
            }
        }
        pool.close()
        #expect(released.load(ordering: .relaxed) == 1, "no lease is left active")
    }
}

@Suite(.timeLimit(.minutes(10))) struct DeviceContractTests {
    let g = DeviceGeometry(zoneCount: 4, zoneSize: .mib(1), logicalBlockSize: ByteCount(4096), maxWriteBytes: .kib(64))

    func problem(_ write: Bool, _ length: UInt64, at offset: UInt64) -> String? {
        DeviceContract.problem(g, write: write, length: ByteCount(length), at: DeviceOffset(offset), maxWriteNote: "(note)")
    }

    @Test func refusesWhatTheContractRefuses() {
        #expect(problem(true, 4096, at: 0) == nil)
        #expect(problem(false, 1 << 20, at: 1 << 20) == nil, "reads are not limited by max write")
        #expect(problem(true, 0, at: 0) == "empty IO")
        #expect(problem(true, 512, at: 0)?.contains("multiples of the 4096-byte block size") == true)
        #expect(problem(true, 4096, at: 512)?.contains("multiples") == true)
        #expect(problem(false, 4096, at: 4 << 20)?.hasPrefix("past the end of the device") == true)
        #expect(problem(false, 8192, at: (1 << 20) - 4096)?.contains("one IO must stay inside one zone") == true)
        #expect(problem(true, 128 << 10, at: 0) == "larger than the device's max write of 64 KiB (note)")
    }
}

@Suite(.timeLimit(.minutes(10))) struct WritePointerFloorsTests {
    let zoneSize = ByteCount.mib(1)

    func zone(_ i: UInt32, wp: UInt64) -> Zone {
        let start = DeviceOffset(UInt64(i) << 20)
        return Zone(id: ZoneID(i), type: .sequentialWriteRequired, condition: wp == 0 ? .empty : .closed,
                    start: start, size: zoneSize, capacity: zoneSize, writePointer: start + ByteCount(wp))
    }

    @Test func aRaiseThatRacedAResetIsDropped() {
        let floors = WritePointerFloors([zone(0, wp: 8192), zone(1, wp: 0)])
        let seen = floors.floor(ZoneID(0))
        #expect(seen.offset == 8192)
        floors.raise(ZoneID(0), to: DeviceOffset(4096), since: seen)
        #expect(floors.floor(ZoneID(0)).offset == 8192, "a floor never goes down by a raise")
        floors.raise(ZoneID(0), to: DeviceOffset(16384), since: seen)
        #expect(floors.floor(ZoneID(0)).offset == 16384)
        let beforeReset = floors.floor(ZoneID(0))
        floors.lowerForReset(ZoneID(0), to: DeviceOffset(0))
        floors.raise(ZoneID(0), to: DeviceOffset(65536), since: beforeReset)
        #expect(floors.floor(ZoneID(0)).offset == 0, "the write that raced the reset cannot raise it")
    }

    @Test func readsPastTheWritePointerAskOnlyAboveTheFloor() {
        let floors = WritePointerFloors([zone(0, wp: 8192)])
        var reports = 0
        let report = { () throws(DeviceError) -> [Zone] in reports += 1; return [zone(0, wp: 12288)] }
        let f = floors.floor(ZoneID(0))
        let below = floors.bytesPastWritePointer(zone: ZoneID(0), from: DeviceOffset(0), length: ByteCount(8192),
                                                 floor: f, report: report)
        #expect(below == .success(nil) && reports == 0)
        let across = floors.bytesPastWritePointer(zone: ZoneID(0), from: DeviceOffset(4096), length: ByteCount(16384),
                                                  floor: f, report: report)
        #expect(across == .success(8192) && reports == 1)
        #expect(floors.floor(ZoneID(0)).offset == 12288, "the report raised the floor")
        let past = floors.bytesPastWritePointer(zone: ZoneID(0), from: DeviceOffset(65536), length: ByteCount(4096),
                                                floor: floors.floor(ZoneID(0)), report: report)
        #expect(past == .success(0))
        let failed = floors.bytesPastWritePointer(zone: ZoneID(0), from: DeviceOffset(65536), length: ByteCount(4096),
                                                  floor: floors.floor(ZoneID(0))) { () throws(DeviceError) -> [Zone] in
            throw .io(.report, "no")
        }
        #expect(failed == .failure(.io(.report, "no")))
    }
}
