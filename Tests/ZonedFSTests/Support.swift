// Shared helpers for the file system tests: scratch images, formatting, byte patterns.

import Foundation
import Testing
import ZonedBackendFile
import ZonedCore
import ZonedEngine
@testable import ZonedFS

final class Scratch: @unchecked Sendable {
    let dir: String
    /// In /dev/shm when there is one: the emulated device fsyncs its image on every flush, and the
    /// crash test flushes thousands of times.
    init() {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm/" : NSTemporaryDirectory()
        dir = base + "zbdfs-fs-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: dir) }
    func path(_ name: String) -> String { dir + "/" + name }
}

/// A small zoned device: 16 zones of 256 KiB (capacity 224 KiB), max active 4, max open 4.
func smallZoned(zones: Int = 16, zoneSize: ByteCount = .kib(256), capacity: ByteCount? = .kib(224),
                maxActive: Int = 4, conventional: Int = 0) -> DeviceGeometry {
    DeviceGeometry(zoneCount: zones, zoneSize: zoneSize, zoneCapacity: capacity, logicalBlockSize: .kib(4),
                   maxOpenZones: maxActive, maxActiveZones: maxActive, maxWriteBytes: .kib(64),
                   conventionalZoneCount: conventional)
}

let testUUID: [UInt8] = Array(0..<16)

func bytes(_ n: Int, seed: UInt64) -> [UInt8] {
    var r = SeededRandom(seed: seed)
    return r.bytes(n)
}
