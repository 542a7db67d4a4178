// Format refuses devices that cannot hold zbdfs, with a message that names the need, and leaves
// them untouched; a formatted device mounts empty with its label.

import Foundation
import Testing
import ZonedBackendFile
import ZonedCore
@testable import ZonedFS

@Suite("Format", .timeLimit(.minutes(10)))
struct FormatTests {
    @Test(arguments: [
        (smallZoned(zones: 6), "at least 8"),
        (smallZoned(zones: 16, zoneSize: .kib(32), capacity: .kib(32)), "too small for the metadata log"),
        (smallZoned(zones: 16, maxActive: 2), "needs at least 3"),
    ])
    func refusesDevicesThatCannotHoldIt(_ g: DeviceGeometry, _ why: String) throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: g)
        let z = try dev.zone(ZoneID(3))
        let data = AlignedBuffer(count: 4096)
        try dev.write(data.readOnly, at: z.writePointer)  // something a refused format must not reset
        try dev.flush()
        dev.close()
        let before = try Data(contentsOf: URL(fileURLWithPath: s.path("img")))
        let again = try EmulatedZonedDevice.open(path: s.path("img"))
        let e = #expect(throws: DeviceError.self) { try FileSystem.format(device: again) }
        #expect(e?.kind == .invalidArgument && e?.detail.contains(why) == true, "\(String(describing: e))")
        again.close()
        #expect(try Data(contentsOf: URL(fileURLWithPath: s.path("img"))) == before)
    }

    @Test func formattedDeviceMountsEmptyWithItsLabel() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: smallZoned(zones: 16, conventional: 2))
        let report = try FileSystem.format(device: dev, options: FormatOptions(label: "scratch", uuid: testUUID))
        #expect(report.superblock.label == "scratch" && report.dataCapacity.bytes > 0)
        let fs = try FileSystem.mount(device: dev)
        #expect(try fs.walk().isEmpty)
        #expect(fs.superblock.label == "scratch" && fs.superblock.uuid == testUUID)
        #expect(try fs.stat(rootInode).attributes.kind == .directory)
        try fs.unmount()
    }

    /// A device of the previous on-device format (version 1: every checksum in the log) is never
    /// read as this one: mount and fsck say which version it is and what to do, format's check
    /// still finds a zbdfs file system there.
    @Test func anOlderFormatVersionIsAClearErrorNotAMisreading() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: smallZoned(zones: 16))
        try FileSystem.format(device: dev, options: FormatOptions(label: "old", uuid: testUUID))
        let g = dev.geometry
        for zone in [ZoneID(0), ZoneID(1)] {
            guard case .valid(let sb) = try SuperblockIO.read(zone: zone, device: dev) else { continue }
            var bytes = sb.encode(copySize: Superblock.copySize(block: g.logicalBlockSize.bytes))
            bytes[8] = 1; bytes[9] = 0; bytes[10] = 0; bytes[11] = 0
            let crc = CRC32C.checksum(Array(bytes[0..<Superblock.checksumOffset]))
            for k in 0..<4 { bytes[Superblock.checksumOffset + k] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(k))) }
            let buffer = AlignedBuffer(count: bytes.count)
            bytes.withUnsafeBytes { buffer.slice(0, bytes.count).copyMemory(from: $0) }
            try dev.reset(zone)
            try dev.write(buffer.readOnly, at: g.zoneStart(zone))
            try dev.finish(zone)
        }
        let e = #expect(throws: DeviceError.self) { _ = try FileSystem.mount(device: dev) }
        #expect(e?.errno == EINVAL && e?.detail.contains("on-device format version 1") == true
                && e?.detail.contains("reads version 2") == true && e?.detail.contains("zbdfs format") == true, "\(String(describing: e))")
        let check = try Fsck.check(device: dev)
        #expect(!check.clean && check.problems.first?.contains("format version 1") == true, "\(check.problems)")
        let found = try Signatures.detect(device: dev)
        #expect(found.first?.kind == .zbdfs && found.first?.detail.contains("version 1") == true, "\(found)")
    }
}
