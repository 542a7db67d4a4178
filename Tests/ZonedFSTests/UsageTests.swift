// Space usage figures (`zbdfs df`, `zbdfs zones` roles) against known workloads.

import Foundation
import Testing
import ZonedBackendFile
import ZonedCore
@testable import ZonedFS

@Suite("Usage", .timeLimit(.minutes(10)))
struct UsageTests {
    @Test func usedGarbageAndTotalsFollowTheWorkload() throws {
        let s = Scratch()
        let g = smallZoned(zones: 24, zoneSize: .kib(256), capacity: .kib(224), maxActive: 6)
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: g)
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false))
        let n = 1 << 20
        let a = try fs.createFile("/a"), b = try fs.createFile("/b")
        try fs.write(a, at: 0, bytes: bytes(n / 2, seed: 1), direct: true)
        try fs.write(b, at: 0, bytes: bytes(n / 2, seed: 2), direct: true)
        try fs.unmount()
        var u = try #require(try FileSystemUsage.read(device: try EmulatedZonedDevice.open(path: s.path("img"))))
        #expect(u.liveData.bytes == UInt64(n), "live data is what was written")
        #expect(u.used == ByteCount(UInt64(n)) + u.metadata)
        #expect(u.garbage.bytes == 0)
        #expect(u.free + u.used + u.garbage + u.unusable == u.capacity)
        #expect(u.zones.filter { $0.role == .superblock }.count == 2 && u.zones.contains { $0.role == .metadata })

        // Overwrite every other 32 KiB of /a: that much becomes garbage (no zone empties, so none is reset).
        let again = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")), options: MountOptions(backgroundReclaim: false))
        var replaced: UInt64 = 0
        for off in stride(from: 0, to: n / 2, by: 64 << 10) {
            try again.write(a, at: UInt64(off), bytes: bytes(32 << 10, seed: UInt64(off)), direct: true)
            replaced += 32 << 10
        }
        try again.unmount()
        u = try #require(try FileSystemUsage.read(device: try EmulatedZonedDevice.open(path: s.path("img"))))
        #expect(u.garbage.bytes == replaced, "garbage \(u.garbage) is the replaced \(replaced) bytes")
        #expect(u.liveData.bytes == UInt64(n))
        #expect(u.free + u.used + u.garbage + u.unusable == u.capacity)
        #expect(u.spaceAmplification > 1)
    }
}
