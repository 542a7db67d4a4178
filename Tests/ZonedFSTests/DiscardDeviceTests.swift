// A file system on a discard-data emulated device (issue 15): the device keeps only its zone
// table and non-zero blocks, so the file system's metadata survives a remount while gigabytes of
// zeros cost the image nothing. Scale and speed work depend on both halves.

import Foundation
import Testing
import ZonedBackendFile
import ZonedCore
import ZonedFS

@Suite("File system on a discard-data device", .serialized, .timeLimit(.minutes(10)))
struct DiscardDeviceTests {
    /// Format, mount, write 256 MiB of zeros and a small non-zero file, remount: the namespace and
    /// sizes come back, the zeros read as zeros, the non-zero file is intact, fsck is clean, and
    /// the image holds far less than was written.
    @Test func formatWriteZerosAndRemount() throws {
        let s = Scratch()
        let g = DeviceGeometry(zoneCount: 512, zoneSize: .mib(64), logicalBlockSize: .kib(4),
                               maxOpenZones: 14, maxActiveZones: 14, maxWriteBytes: .mib(1))
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: g, discardData: true)
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false))
        let zeros = try fs.createFile("/zeros")
        let chunk = [UInt8](repeating: 0, count: 8 << 20)
        for i in 0..<32 { try fs.write(zeros, at: UInt64(i * chunk.count), bytes: chunk, direct: true) }
        let hello = try fs.createFile("/hello")
        try fs.write(hello, at: 0, bytes: bytes(12_288, seed: 7), direct: true)
        try fs.unmount()

        var st = stat()
        #expect(stat(s.path("img"), &st) == 0)
        let imageBytes = UInt64(st.st_blocks) * 512
        #expect(imageBytes < 32 << 20, "256 MiB of zeros written, the image holds \(imageBytes) B")

        let again = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")),
                                         options: MountOptions(backgroundReclaim: false))
        let z = try again.resolve("/zeros")
        #expect(try again.stat(z).size == 256 << 20)
        var head = [UInt8](repeating: 0xff, count: 1 << 20)
        let got = try head.withUnsafeMutableBytes { b throws(DeviceError) in try again.read(z, at: 100 << 20, into: b) }
        #expect(got == head.count && head.allSatisfy { $0 == 0 })
        #expect(try again.readAll(try again.resolve("/hello")) == bytes(12_288, seed: 7))
        try again.unmount()
        let report = try Fsck.check(device: try EmulatedZonedDevice.open(path: s.path("img")))
        #expect(report.clean, "fsck: \(report.problems)")
    }
}
