// The mount-wide bound on the page cache (`EngineConfig.dirtyLimit`): many files, each under the
// per-file limit, together far over the mount-wide one. The engine alone (no thread) must keep the
// cache under the limit after every write, write back the oldest files first, and lose no byte.

import Foundation
import Testing
import ZonedAllocator
import ZonedBackendFile
import ZonedCore
@testable import ZonedEngine

/// 64 zones of 1 MiB: room for what the tests write many times over.
private let roomy = DeviceGeometry(zoneCount: 64, zoneSize: .mib(1), zoneCapacity: .kib(960), maxOpenZones: 6,
                                   maxActiveZones: 6, maxWriteBytes: .kib(64))

@Suite("Page cache bound", .timeLimit(.minutes(10)))
struct DirtyLimitTests {
    static let limit = ByteCount.kib(256)

    @Test func manyFilesTogetherNeverCacheMoreThanTheLimit() throws {
        let s = Scratch()
        let e = try Engine(device: try s.emulated(roomy), config: EngineConfig(dirtyLimit: Self.limit))
        var expected: [InodeNumber: [UInt8]] = [:]
        // 48 files of 100 000 bytes (each far under the 4 MiB per-file limit; 4.6 MiB together),
        // in unaligned pieces, so every write goes through the page cache.
        for i in 0..<48 {
            let f = e.createFile()
            let data = bytes(100_000, seed: UInt64(i))
            for off in stride(from: 0, to: data.count, by: 30_000) {
                let piece = Array(data[off..<min(data.count, off + 30_000)])
                #expect(try e.write(f, UInt64(off), piece, []) == piece.count)
                #expect(e.cachedBytes <= Self.limit, "file \(i) at \(off): \(e.cachedBytes) cached, limit \(Self.limit)")
            }
            expected[f] = data
        }
        #expect(e.stats.writeBacks > 0, "the limit was reached, so files were written back")
        for (f, want) in expected { #expect(try e.read(f, 0, want.count, []) == want, "file \(f)") }
        try e.flushAll()
        #expect(e.cachedBytes == .zero)
        for (f, want) in expected { #expect(try e.read(f, 0, want.count) == want, "file \(f) after the flush") }
    }

    @Test func theOldestFilesAreWrittenBackFirst() throws {
        let s = Scratch()
        let e = try Engine(device: try s.emulated(roomy), config: EngineConfig(dirtyLimit: Self.limit))
        // Four files of 64 KiB fill the limit exactly; the fifth needs room: only the first goes.
        let files = (0..<5).map { _ in e.createFile() }
        for (i, f) in files.enumerated() { try e.write(f, 0, bytes(64 << 10, seed: UInt64(i)), []) }
        let mapped = try files.map { try e.layout($0).map.mappedBytes }
        #expect(mapped == [64 << 10, 0, 0, 0, 0], "only the oldest file went to the device: \(mapped)")
        #expect(e.cachedBytes == Self.limit)
        // Writing to a cached file again does not make it younger than it is.
        try e.write(files[1], 0, [1], [])
        try e.write(files[0], 0, bytes(4096, seed: 9), [])
        #expect(try e.layout(files[1]).map.mappedBytes == 64 << 10, "file 1 was the oldest cached one")
        #expect(try e.layout(files[2]).map.mappedBytes == 0)
    }

    /// Writers of different files at once: each makes room by writing back other files' caches,
    /// never holding its own inode lock meanwhile (no deadlock); the cache stays within the limit
    /// plus the writes in flight.
    @Test func concurrentWritersKeepTheBoundAndTheirBytes() throws {
        let s = Scratch()
        let e = try Engine(device: try s.emulated(roomy), config: EngineConfig(dirtyLimit: Self.limit))
        let writers = 4, filesEach = 12, size = 40_000, piece = 10_000
        let files = (0..<(writers * filesEach)).map { _ in e.createFile() }
        let failures = ConditionLock()
        nonisolated(unsafe) var errors: [String] = []
        nonisolated(unsafe) var peak = ByteCount.zero
        nonisolated(unsafe) var done = false
        let watcher = Thread {
            while failures.withLock({ !done }) {
                let c = e.cachedBytes
                failures.withLock { peak = max(peak, c) }
                usleep(200)
            }
        }
        watcher.start()
        DispatchQueue.concurrentPerform(iterations: writers) { w in
            for k in 0..<filesEach {
                let f = files[w * filesEach + k]
                let data = bytes(size, seed: f)
                for off in stride(from: 0, to: size, by: piece) {
                    do { try e.write(f, UInt64(off), Array(data[off..<(off + piece)]), []) } catch {
                        failures.withLock { errors.append("file \(f): \(error)") }
                    }
                }
            }
        }
        failures.withLock { done = true }
        #expect(errors.isEmpty, "\(errors)")
        // Each writer may have one write's blocks (3 pages) cached beyond the limit at a time.
        let slack = ByteCount(UInt64(writers * 4) * 4096)
        #expect(failures.withLock { peak } <= Self.limit + slack, "peak \(failures.withLock { peak })")
        #expect(e.cachedBytes <= Self.limit)
        for f in files { #expect(try e.read(f, 0, size, []) == bytes(size, seed: f), "file \(f)") }
    }
}
