// The page cache through the file system: the mount-wide bound on many files at once, the
// flusher's background write-back, and what buffered data looks like before it reaches the device.

import Foundation
import Testing
import ZonedBackendFile
import ZonedCore
import ZonedEngine
@testable import ZonedFS

/// 48 zones of 1 MiB (960 KiB capacity): room for every test here many times over.
private func roomy() -> DeviceGeometry {
    DeviceGeometry(zoneCount: 48, zoneSize: .mib(1), zoneCapacity: .kib(960), logicalBlockSize: .kib(4),
                   maxOpenZones: 6, maxActiveZones: 6, maxWriteBytes: .kib(64))
}

/// Polls `condition` until it holds or `seconds` pass (a watchdog, not a wait for time).
private func eventually(_ seconds: Double = 30, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        if Date() > deadline { return false }
        usleep(2_000)
    }
    return true
}

@Suite("Page cache through the file system", .serialized)
struct PageCacheTests {
    func mounted(_ s: Scratch, _ options: MountOptions) throws -> FileSystem {
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: roomy())
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        return try FileSystem.mount(device: dev, options: options)
    }

    @Test func manyFilesNeverCacheMoreThanTheMountWideLimit() throws {
        let s = Scratch()
        var o = MountOptions(backgroundReclaim: false, backgroundWriteBack: false)
        o.engine.dirtyLimit = .kib(512)
        let fs = try mounted(s, o)
        var expected: [String: [UInt8]] = [:]
        // 60 files of 100 000 bytes: each far under the per-file limit, 6 MB together.
        for i in 0..<60 {
            let path = "/f\(i)", data = bytes(100_000, seed: UInt64(i))
            let f = try fs.createFile(path)
            for off in stride(from: 0, to: data.count, by: 25_000) {
                try fs.write(f, at: UInt64(off), bytes: Array(data[off..<(off + 25_000)]))
                #expect(fs.engine.cachedBytes <= o.engine.dirtyLimit, "\(path) at \(off): \(fs.engine.cachedBytes) cached")
            }
            expected[path] = data
        }
        try fs.unmount()
        let again = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")), options: o)
        for (path, want) in expected { #expect(try again.readAll(try again.resolve(path)) == want, "\(path)") }
        try again.unmount()
    }

    @Test func theFlusherWritesBackOnceTheCachePassesItsThreshold() throws {
        let s = Scratch()
        var o = MountOptions(backgroundReclaim: false)
        o.engine.dirtyLimit = .mib(1)  // the flusher starts past 512 KiB
        let fs = try mounted(s, o)
        // 768 KiB in six files: past the flusher's threshold, under the limit where writers
        // would write back themselves.
        var files: [InodeNumber] = []
        for i in 0..<6 {
            let f = try fs.createFile("/f\(i)")
            try fs.write(f, at: 0, bytes: bytes(128 << 10, seed: UInt64(i)))
            files.append(f)
        }
        #expect(eventually { fs.engine.cachedBytes <= .kib(512) }, "still \(fs.engine.cachedBytes) cached")
        #expect(fs.flusherStats.writeBacks >= 2 && fs.flusherStats.errors == 0, "\(fs.flusherStats)")
        let mapped = try files.map { try fs.engine.layout($0).map.mappedBytes }
        #expect(mapped.prefix(2).allSatisfy { $0 == 128 << 10 }, "the oldest files went first: \(mapped)")
        for (i, f) in files.enumerated() { #expect(try fs.readAll(f) == bytes(128 << 10, seed: UInt64(i))) }
        try fs.unmount()
    }

    /// st_blocks (`FileStat.allocated`) counts buffered data before it reaches the device, or
    /// `du` shows 0 and `tar -S` archives the file as one hole.
    @Test func statCountsCachedBlocksAsAllocatedButNotTwice() throws {
        let s = Scratch()
        let fs = try mounted(s, MountOptions(backgroundReclaim: false, backgroundWriteBack: false))
        let f = try fs.createFile("/f")
        try fs.write(f, at: 0, bytes: bytes(100_000, seed: 1))
        #expect(fs.engine.cachedBytes.bytes > 0, "the bytes are still cached")
        let allocated = try fs.stat(f).allocated
        #expect(allocated >= 100_000, "cached blocks count: \(allocated)")
        #expect(try fs.stat(f).allocated == 25 * 4096)
        try fs.fsync(f)
        #expect(try fs.stat(f).allocated == 25 * 4096, "the same after write-back")
        // A cached block over a mapped one replaces it: counted once. One past EOF over a hole: counted.
        try fs.write(f, at: 8192, bytes: [1, 2, 3])
        try fs.write(f, at: 1 << 20, bytes: [4])
        #expect(try fs.stat(f).allocated == 26 * 4096)
        try fs.fsync(f)
        #expect(try fs.stat(f).allocated == 26 * 4096)
        try fs.unmount()
    }
}
