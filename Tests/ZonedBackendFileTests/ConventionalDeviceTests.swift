// The conventional-device mode over a regular file.

import Foundation
import Testing
import ZonedCore
@testable import ZonedBackendFile

@Suite(.timeLimit(.minutes(10))) struct ConventionalDeviceTests {
    @Test func fileBecomesConventionalZonesIgnoringTheLastPartialOne() throws {
        let s = Scratch()
        let path = s.path("c.img")
        try ConventionalDevice.create(path: path, size: .mib(8) + .kib(512))
        let dev = try ConventionalDevice.open(path: path, zoneSize: .mib(1))
        defer { dev.close() }
        #expect(dev.kind == .conventional)
        #expect(dev.geometry.zoneCount == 8 && dev.geometry.conventionalZoneCount == 8)
        #expect(dev.geometry.maxOpenZones == 0 && dev.geometry.maxActiveZones == 0 && !dev.geometry.supportsZoneAppend)
        let zones = try dev.reportAllZones()
        #expect(zones.allSatisfy { $0.type == .conventional && $0.condition == .notWritePointer })
        #expect(zones[7].end == DeviceOffset(8 << 20))
    }

    @Test func randomWritesReadBackAndPersist() throws {
        let s = Scratch()
        let path = s.path("c.img")
        try ConventionalDevice.create(path: path, size: .mib(4))
        let dev = try ConventionalDevice.open(path: path, zoneSize: .mib(1))
        let g = dev.geometry
        try dev.write(bytes: pattern(1, blocks: 2), at: at(3, 7, g))
        try dev.write(bytes: pattern(2), at: at(3, 2, g))
        try dev.write(bytes: pattern(3), at: at(3, 7, g))  // overwrite in place
        try dev.flush()
        dev.close()
        #expect(failure { _ = try dev.readBytes(bs, at: .zero) }?.errno == EIO)
        let again = try ConventionalDevice.open(path: path, zoneSize: .mib(1))
        defer { again.close() }
        #expect(try again.readBytes(bs, at: at(3, 2, g)) == pattern(2))
        #expect(try again.readBytes(2 * bs, at: at(3, 7, g)) == pattern(3) + Array(pattern(1, blocks: 2)[bs...]))
    }

    @Test func zoneManagementAppendAndMisalignedIOAreRefused() throws {
        let s = Scratch()
        let path = s.path("c.img")
        try ConventionalDevice.create(path: path, size: .mib(2))
        let dev = try ConventionalDevice.open(path: path, zoneSize: .mib(1), maxWriteBytes: .kib(64))
        defer { dev.close() }
        for op in [dev.reset, dev.openZone, dev.closeZone, dev.finish] as [(ZoneID) throws -> Void] {
            #expect(failure { try op(0) }?.errno == EINVAL)
        }
        #expect(failure { _ = try dev.append(bytes: pattern(1), to: 0) }?.errno == EOPNOTSUPP)
        #expect(failure { try dev.write(bytes: pattern(1), at: DeviceOffset(512)) }?.errno == EINVAL)
        #expect(failure { try dev.write(bytes: [1, 2, 3], at: .zero) }?.errno == EINVAL)
        #expect(failure { try dev.write(bytes: pattern(1, blocks: 2), at: at(0, 255, dev.geometry)) }?.errno == EINVAL)
        #expect(failure { try dev.write(bytes: pattern(1, blocks: 17), at: .zero) }?.errno == EINVAL)
        #expect(failure { _ = try dev.readBytes(bs, at: DeviceOffset(2 << 20)) }?.errno == EINVAL)
    }

    @Test func tooSmallOrExistingTargetsAreRefused() throws {
        let s = Scratch()
        let path = s.path("c.img")
        try ConventionalDevice.create(path: path, size: .kib(512))
        #expect(failure { _ = try ConventionalDevice.open(path: path, zoneSize: .mib(1)) }?.errno == EINVAL)
        #expect(failure { try ConventionalDevice.create(path: path, size: .mib(1)) }?.errno == EEXIST)
        #expect(failure { _ = try ConventionalDevice.open(path: s.path("missing"), zoneSize: .mib(1)) }?.errno == ENOENT)
    }
}
