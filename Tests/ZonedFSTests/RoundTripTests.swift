// Format → write → unmount → mount → read gives the same bytes, on the emulated zoned device and on
// conventional mode; the namespace (directories, symlinks, hard links, renames) survives too.

import Testing
import ZonedBackendFile
import ZonedCore
import ZonedEngine
@testable import ZonedFS

@Suite("File system round trip", .timeLimit(.minutes(10)))
struct RoundTripTests {
    func workload(_ fs: FileSystem) throws -> [String: [UInt8]] {
        var expected: [String: [UInt8]] = [:]
        try fs.makeDirectory("/d")
        try fs.makeDirectory("/d/e")
        let a = try fs.createFile("/d/a")
        expected["/d/a"] = bytes(300_000, seed: 1)
        try fs.write(a, at: 0, bytes: expected["/d/a"]!, direct: true)
        let b = try fs.createFile("/b")
        expected["/b"] = bytes(5000, seed: 2)
        try fs.write(b, at: 0, bytes: expected["/b"]!)  // unaligned: buffered path
        _ = try fs.link(b, into: try fs.resolve("/d/e"), as: try EntryName("b-link"))
        expected["/d/e/b-link"] = expected["/b"]
        _ = try fs.create(rootInode, try EntryName("sym"), kind: .symlink, mode: 0o777, uid: 0, gid: 0, target: Array("/d/a".utf8))
        let c = try fs.createFile("/c")
        try fs.write(c, at: 0, bytes: bytes(8192, seed: 3), direct: true)
        try fs.rename(rootInode, try EntryName("c"), to: try fs.resolve("/d"), try EntryName("c2"))
        expected["/d/c2"] = bytes(8192, seed: 3)
        try fs.truncate(a, to: 100_000)
        expected["/d/a"] = Array(expected["/d/a"]![0..<100_000])
        let gone = try fs.createFile("/gone")
        try fs.write(gone, at: 0, bytes: bytes(4096, seed: 9), direct: true)
        try fs.unlink(rootInode, try EntryName("gone"))
        return expected
    }

    func check(_ fs: FileSystem, _ expected: [String: [UInt8]]) throws {
        for (path, want) in expected {
            #expect(try fs.readAll(try fs.resolve(path)) == want, "\(path)")
        }
        #expect(try fs.readLink(try fs.resolve("/sym")) == Array("/d/a".utf8))
        #expect(try fs.stat(try fs.resolve("/b")).attributes.nlink == 2)
        #expect(try fs.stat(try fs.resolve("/d")).attributes.nlink == 3)
        #expect((try? fs.resolve("/gone")) == nil)
        #expect(try fs.walk().map(\.path) == ["/b", "/d/", "/d/a", "/d/c2", "/d/e/", "/d/e/b-link", "/sym"])
    }

    @Test func emulatedZoned() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: smallZoned(zones: 24))
        try FileSystem.format(device: dev, options: FormatOptions(label: "t", uuid: testUUID))
        let fs = try FileSystem.mount(device: dev)
        let expected = try workload(fs)
        try check(fs, expected)
        try fs.unmount()
        let again = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")))
        try check(again, expected)
        #expect(again.engine.allocator.problem() == nil)
        try again.unmount()
    }

    @Test func conventionalMode() throws {
        let s = Scratch()
        try ConventionalDevice.create(path: s.path("conv"), size: .mib(8))
        let zoned = try ConventionalDevice.open(path: s.path("conv"), zoneSize: .kib(512))
        try FileSystem.format(device: zoned, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: zoned)
        let expected = try workload(fs)
        try fs.unmount()
        let again = try FileSystem.mount(device: try ConventionalDevice.open(path: s.path("conv"), zoneSize: .kib(512)))
        try check(again, expected)
        try again.unmount()
    }

    @Test func namesAndAttributesSurviveARemount() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: smallZoned(zones: 16))
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false))
        // Any byte but '/' and NUL, up to 255 of them (not even UTF-8).
        let odd = try EntryName(validating: (1...255).map { UInt8($0 == 47 ? 48 : $0) })
        let n = try fs.create(rootInode, odd, kind: .file, mode: 0o4751, uid: 1234, gid: 5678).number
        _ = try fs.setAttributes(n, AttributeChanges(atime: 1_000_000_007, mtime: 2_000_000_009))
        #expect(throws: DeviceError.self) { _ = try EntryName(validating: [UInt8](repeating: 65, count: 256)) }
        #expect((try? EntryName("a/b")) == nil && (try? EntryName(validating: [65, 0])) == nil)
        let before = try fs.stat(n).attributes
        try fs.unmount()
        let again = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")), options: MountOptions(backgroundReclaim: false))
        let a = try again.lookup(rootInode, odd).attributes
        #expect(a == before)
        #expect(a.mode == 0o4751 && a.uid == 1234 && a.gid == 5678 && a.atime == 1_000_000_007 && a.mtime == 2_000_000_009 && a.nlink == 1)
        try again.unmount()
    }

    /// File times and the superblock's creation time are dates: with the default clock (SystemClock,
    /// CLOCK_MONOTONIC, which engine decisions use) they come from the wall clock, not from the time
    /// since boot (which `ls -l` would show as 1970). An injected clock drives them instead, so a
    /// test's run stays deterministic.
    @Test func fileTimesAreWallClockDatesOrTheInjectedClock() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: smallZoned())
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false))
        let wall = Int64(WallClock().nowNanoseconds)
        let a = try fs.stat(try fs.createFile("/dated")).attributes
        let created = Int64(fs.superblock.createdNanoseconds)
        try fs.unmount()
        let minute: Int64 = 60_000_000_000
        for (what, t) in [("atime", a.atime), ("mtime", a.mtime), ("ctime", a.ctime), ("superblock created", created)] {
            #expect(abs(t - wall) < minute, "\(what) \(t) is not a wall-clock date near \(wall)")
        }

        let clock = ManualClock(start: 7_000_000_000)
        let dev2 = try EmulatedZonedDevice.create(path: s.path("img2"), geometry: smallZoned())
        try FileSystem.format(device: dev2, options: FormatOptions(uuid: testUUID), clock: clock)
        let fs2 = try FileSystem.mount(device: dev2, options: MountOptions(backgroundReclaim: false), clock: clock)
        clock.advance(nanoseconds: 5)
        let b = try fs2.stat(try fs2.createFile("/manual")).attributes
        #expect(b.atime == 7_000_000_005 && b.mtime == 7_000_000_005 && b.ctime == 7_000_000_005, "\(b)")
        #expect(fs2.superblock.createdNanoseconds == 7_000_000_000)
        try fs2.unmount()
    }
}
