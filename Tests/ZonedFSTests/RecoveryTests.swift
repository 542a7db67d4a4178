// Recovery: a mount that crashes midway and runs again ends the same; corruption is refused with a
// clear error and the device untouched; checksums turn bit rot into EIO; fsync and rename keep
// their promises across a power cut.

import Foundation
import Testing
@testable import ZonedBackendFile
import ZonedCore
import ZonedEngine
@testable import ZonedFS

/// Paths, inodes and contents: everything a user sees.
func visibleState(_ fs: FileSystem) throws -> [String] {
    try fs.walk().map { e in
        e.path.hasSuffix("/") ? "\(e.path) \(e.inode)" : "\(e.path) \(e.inode) \(CRC32C.checksum(try fs.readAll(e.inode)))"
    }
}

@Suite("Recovery", .serialized, .timeLimit(.minutes(15)))
struct RecoveryTests {
    @Test("a mount cut at each of its IOs, then mounted again, ends in the same state")
    func recoveryThatCrashesEndsTheSame() throws {
        let s = Scratch()
        var checked = 0
        for k: UInt64 in [97, 151, 230, 333] {  // crash points of seed 1 inside writes, fsyncs and a roll-over
            _ = try CrashTests.run(s.path("base"), seed: 1, ops: 240, cut: FaultPlan.PowerCut(atIO: k, tornLastBlock: true))
            try? FileManager.default.removeItem(atPath: s.path("ref"))
            try FileManager.default.copyItem(atPath: s.path("base"), toPath: s.path("ref"))
            let refDev = try EmulatedZonedDevice.open(path: s.path("ref"))
            let ref = try FileSystem.mount(device: refDev, options: MountOptions(backgroundReclaim: false, backgroundWriteBack: false), clock: ManualClock())
            let mountIOs = refDev.ioCount
            let expected = try visibleState(ref)
            try ref.unmount()
            #expect(mountIOs > 5)
            for m in 1...mountIOs {
                try? FileManager.default.removeItem(atPath: s.path("b"))
                try FileManager.default.copyItem(atPath: s.path("base"), toPath: s.path("b"))
                let dev = try EmulatedZonedDevice.open(path: s.path("b"), faults: FaultPlan(seed: m, powerCut: .init(atIO: m, tornLastBlock: m % 2 == 1)))
                #expect(throws: DeviceError.self) { _ = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false, backgroundWriteBack: false), clock: ManualClock()) }
                dev.close()
                let again = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("b")), options: MountOptions(backgroundReclaim: false, backgroundWriteBack: false), clock: ManualClock())
                let got = try visibleState(again)
                #expect(got == expected, "crash point \(k), mount cut at IO \(m)")
                #expect(try Fsck.check(device: again.device).clean, "crash point \(k), mount cut at IO \(m)")
                try again.unmount()
                checked += 1
            }
        }
        print("recovery: \(checked) mounts cut midway, each remounted to the same state")
    }

    @Test func writePointerBehindTheLogIsCorruptionAndMountRefuses() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: smallZoned(zones: 16))
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: dev)
        let f = try fs.createFile("/f")
        try fs.write(f, at: 0, bytes: bytes(64 << 10, seed: 5), direct: true)
        try fs.fsync(f)
        let zone = dev.geometry.zone(containing: try fs.engine.extents(f)[0].device)!
        try fs.unmount()
        // The device loses the data the log points at: reset the zone behind the file system's back.
        let raw = try EmulatedZonedDevice.open(path: s.path("img"))
        try raw.reset(zone)
        raw.close()
        let before = try Data(contentsOf: URL(fileURLWithPath: s.path("img")))
        let again = try EmulatedZonedDevice.open(path: s.path("img"))
        let error = #expect(throws: DeviceError.self) { _ = try FileSystem.mount(device: again) }
        #expect(error?.kind == .corrupted)
        #expect(error?.detail.contains("write pointer of zone \(zone.int)") == true, "\(String(describing: error))")
        #expect(error?.detail.contains("zbdfs fsck") == true)
        let report = try Fsck.check(device: again)
        #expect(!report.clean && report.problems.contains { $0.contains("write pointer") })
        again.close()
        #expect(try Data(contentsOf: URL(fileURLWithPath: s.path("img"))) == before, "a refused mount leaves the device untouched")
    }

    @Test func damagedSuperblocksAndLogAreClearErrors() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: smallZoned(zones: 16))
        // Not formatted at all.
        let e1 = #expect(throws: DeviceError.self) { _ = try FileSystem.mount(device: dev) }
        #expect(e1?.detail.contains("no zbdfs file system here") == true)
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: dev)
        try fs.makeDirectory("/x")
        try fs.sync()
        let logZone = fs.superblock.logStartZone
        try fs.unmount()
        // Damage the middle of the log: a frame that is not the last thing in its zone.
        let raw = try EmulatedZonedDevice.open(path: s.path("img"))
        let start = raw.geometry.zoneStart(logZone)
        let z = try raw.zone(logZone)
        #expect(z.writePointer - start >= ByteCount.kib(12), "header, checkpoint and one more frame")
        let imageOffset = ImageFormat.dataStart(zoneCount: raw.geometry.zoneCount)
        raw.close()
        let file = try FileHandle(forUpdating: URL(fileURLWithPath: s.path("img")))
        try file.seek(toOffset: imageOffset + start.bytes + 4096 + 100)  // inside the checkpoint frame's payload
        try file.write(contentsOf: Data([0xFF, 0xFF, 0xFF, 0xFF]))
        try file.close()
        let again = try EmulatedZonedDevice.open(path: s.path("img"))
        let e2 = #expect(throws: DeviceError.self) { _ = try FileSystem.mount(device: again) }
        #expect(e2?.kind == .corrupted && e2?.detail.contains("metadata log is damaged") == true, "\(String(describing: e2))")
        #expect(!(try Fsck.check(device: again)).clean)
        again.close()
    }

    @Test func bitRotIsEIONeverWrongBytes() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: smallZoned(zones: 16))
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: dev)
        let f = try fs.createFile("/f")
        let data = bytes(128 << 10, seed: 8)
        try fs.write(f, at: 0, bytes: data, direct: true)
        try fs.fsync(f)
        #expect(try fs.readAll(f) == data)
        dev.setFaultPlan(FaultPlan(seed: 3, bitRotProbability: 1))
        let e = #expect(throws: DeviceError.self) { _ = try fs.readAll(f) }
        #expect(e?.errno == EIO && e?.detail.contains("checksum mismatch") == true)
        #expect(fs.engine.stats.checksumErrors > 0)
        dev.setFaultPlan(nil)
        #expect(try fs.readAll(f) == data, "the media kept the right bytes")
        try fs.unmount()
    }

    @Test func fsyncedDataAndAtomicRenameSurviveAPowerCut() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: smallZoned(zones: 16))
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: dev)
        let a = try fs.createFile("/a")
        try fs.write(a, at: 0, bytes: bytes(40_000, seed: 1))
        try fs.fsync(a)
        let tmp = try fs.createFile("/a.tmp")
        try fs.write(tmp, at: 0, bytes: bytes(30_000, seed: 2))
        try fs.fsync(tmp)
        try fs.rename(rootInode, try EntryName("a.tmp"), to: rootInode, try EntryName("a"))
        try fs.write(try fs.createFile("/later"), at: 0, bytes: bytes(10_000, seed: 3))  // never synced
        try dev.powerCut(tornLastBlock: true, seed: 4)
        let again = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")))
        let content = try again.readAll(try again.resolve("/a"))
        // The rename was not synced: /a is the old file or the new one, whole either way.
        #expect(content == bytes(40_000, seed: 1) || content == bytes(30_000, seed: 2))
        let tmpThere = (try? again.resolve("/a.tmp")) != nil
        #expect(tmpThere == (content == bytes(40_000, seed: 1)), "exactly one of the two names holds the new file")
        #expect(try Fsck.check(device: again.device).clean)
    }
}
