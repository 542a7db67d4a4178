// Zone append under the file system: with seeded out-of-order append completions, files written
// direct and buffered read back exactly, every extent holds the file's bytes where the device
// put them, and that stays so after a crash right after fsync (the mount replays the log's
// `.mapped` records, landed addresses and checksums) and after a clean remount; fsck verifies
// every data block against its checksum.

import Testing
import ZonedBackendFile
import ZonedCore
import ZonedEngine
@testable import ZonedFS

@Suite("Zone append through the file system", .serialized, .timeLimit(.minutes(10)))
struct ZoneAppendFSTests {
    /// The small zoned device with 16 KiB zone appends (writes stay 64 KiB).
    static var geometry: DeviceGeometry {
        var g = smallZoned(zones: 24)
        g.maxAppendBytes = .kib(16)
        return g
    }

    /// Each extent of each file holds, on the device, exactly the file's bytes.
    func expectOnDevice(_ fs: FileSystem, _ files: [InodeNumber: [UInt8]], _ when: String,
                        sourceLocation: SourceLocation = #_sourceLocation) throws {
        for (n, want) in files.sorted(by: { $0.key < $1.key }) {
            for x in try fs.engine.extents(n) {
                let buffer = AlignedBuffer(count: Int(x.length))
                var done = 0
                while done < buffer.count {
                    let k = min(fs.device.geometry.maxWriteBytes.int, buffer.count - done)
                    try fs.device.read(into: buffer.slice(done, k), at: x.device + ByteCount(UInt64(done)))
                    done += k
                }
                // The last block of a file holds zeros past its size.
                let inFile = Array(want[min(want.count, Int(x.fileOffset))..<min(want.count, Int(x.fileEnd))])
                let expected = inFile + [UInt8](repeating: 0, count: Int(x.length) - inFile.count)
                let same = Array(buffer.readOnly) == expected  // a Bool: a failure must not print megabytes
                #expect(same,
                        "\(when): extent \(x) of inode \(n) does not hold the file's bytes on the device", sourceLocation: sourceLocation)
            }
        }
    }

    @Test("out-of-order appends: exact bytes, extents where the data landed, after replay and remount",
          arguments: [UInt64(1), 2, 3])
    func outOfOrderAppendsSurviveReplayAndRemount(seed: UInt64) throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: Self.geometry)
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        dev.setFaultPlan(FaultPlan(seed: seed, outOfOrderAppends: true))
        let fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false))
        #expect(fs.engine.allocator.usesZoneAppend)
        var files: [InodeNumber: [UInt8]] = [:]
        let big = try fs.createFile("/big")
        files[big] = bytes(300 << 10, seed: seed)
        try fs.write(big, at: 0, bytes: files[big]!, direct: true)
        let patch = bytes(72 << 10, seed: seed + 10)
        try fs.write(big, at: 40 << 10, bytes: patch, direct: true)
        files[big]!.replaceSubrange((40 << 10)..<(112 << 10), with: patch)
        let odd = try fs.createFile("/odd")
        files[odd] = bytes(50_001, seed: seed + 20)
        try fs.write(odd, at: 0, bytes: files[odd]!)  // buffered: written back through the same path
        for n in files.keys { try fs.fsync(n) }
        #expect(fs.engine.stats.landedApartSplits > 0, "the permuted completions must make pieces land apart")
        try expectOnDevice(fs, files, "mounted")
        for (n, want) in files { let same = try fs.readAll(n) == want; #expect(same, "inode \(n)") }

        // A crash right after the fsyncs: the process goes without unmounting; mount replays the log.
        dev.close()
        let replayed = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")),
                                            options: MountOptions(backgroundReclaim: false))
        #expect(replayed.mountReport.recordsReplayed > 0)
        try expectOnDevice(replayed, files, "replayed")
        for (n, want) in files { let same = try replayed.readAll(n) == want; #expect(same, "inode \(n) after replay") }
        #expect(try Fsck.check(device: replayed.device, verifyData: true).clean)
        try replayed.unmount()

        let again = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")),
                                         options: MountOptions(backgroundReclaim: false))
        try expectOnDevice(again, files, "remounted")
        for (n, want) in files { let same = try again.readAll(n) == want; #expect(same, "inode \(n) after remount") }
        #expect(again.engine.allocator.problem() == nil)
        try again.unmount()
    }

    @Test func writeAtThePointerIsAMountOption() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: Self.geometry)
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        var options = MountOptions(backgroundReclaim: false)
        options.engine.zoneAppend = false
        let fs = try FileSystem.mount(device: dev, options: options)
        #expect(!fs.engine.allocator.usesZoneAppend)
        let f = try fs.createFile("/f")
        try fs.write(f, at: 0, bytes: bytes(256 << 10, seed: 1), direct: true)
        try fs.fsync(f)
        #expect(fs.engine.allocator.stats.deviceAppends == 0, "neither data nor the log appended")
        try fs.unmount()
        let again = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")))
        let same = try again.readAll(try again.resolve("/f")) == bytes(256 << 10, seed: 1)
        #expect(same)
        try again.unmount()
    }
}
