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
}
