// fsck --verify-data: reads data in chunks, not block by block (one read per block made fsck of a
// 30 MiB file system on a 512-byte-block null_blk device take 150 s in the QEMU guest), and still
// names exactly the block that does not match its checksum or cannot be read.

import Testing
import ZonedBackendFile
import ZonedCore
import ZonedEngine
@testable import ZonedFS

/// Passes everything to `inner`; counts reads, flips a byte of the block at `corrupt` in what
/// reads return, and fails every read that covers `unreadable`.
final class ReadSpy: ZonedDevice, @unchecked Sendable {
    let inner: any ZonedDevice
    var reads = 0
    var corrupt: DeviceOffset?
    var unreadable: DeviceOffset?
    init(_ inner: any ZonedDevice) { self.inner = inner }

    var geometry: DeviceGeometry { inner.geometry }
    var kind: DeviceKind { inner.kind }
    var path: String { inner.path }
    func reportZones(from first: ZoneID, count: Int) throws(DeviceError) -> [Zone] { try inner.reportZones(from: first, count: count) }
    func reset(_ zone: ZoneID) throws(DeviceError) { try inner.reset(zone) }
    func openZone(_ zone: ZoneID) throws(DeviceError) { try inner.openZone(zone) }
    func closeZone(_ zone: ZoneID) throws(DeviceError) { try inner.closeZone(zone) }
    func finish(_ zone: ZoneID) throws(DeviceError) { try inner.finish(zone) }
    func write(_ data: UnsafeRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) { try inner.write(data, at: offset) }
    func append(_ data: UnsafeRawBufferPointer, to zone: ZoneID) throws(DeviceError) -> DeviceOffset { try inner.append(data, to: zone) }
    func flush() throws(DeviceError) { try inner.flush() }
    func close() { inner.close() }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) {
        reads += 1
        let end = offset + ByteCount(buffer.count)
        if let u = unreadable, offset <= u, u < end { throw DeviceError.io(.read, "test: unreadable block at \(u)") }
        try inner.read(into: buffer, at: offset)
        if let c = corrupt, offset <= c, c < end { buffer[Int((c - offset).bytes)] ^= 0xFF }
    }
}

@Suite("fsck data verification", .timeLimit(.minutes(10)))
struct FsckDataTests {
    /// A formatted device with one 384 KiB file written in 64 KiB direct writes (it crosses zones
    /// of 224 KiB capacity); returns the device offsets of the file's blocks 37 and 70.
    func prepare(_ s: Scratch) throws -> (blocks: Int, block37: DeviceOffset, block70: DeviceOffset) {
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: smallZoned(zones: 24))
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false))
        let n = try fs.createFile("/f")
        let data = bytes(384 << 10, seed: 7)
        for off in stride(from: 0, to: data.count, by: 64 << 10) {
            try fs.write(n, at: UInt64(off), bytes: Array(data[off..<(off + (64 << 10))]), direct: true)
        }
        let extents = try fs.engine.extents(n)
        func device(ofBlock b: Int) -> DeviceOffset {
            let at = UInt64(b * 4096)
            let e = extents.first { $0.fileOffset <= at && at < $0.fileOffset + $0.length }!
            return e.device + ByteCount(at - e.fileOffset)
        }
        let zones = Set(extents.compactMap { dev.geometry.zone(containing: $0.device) })
        #expect(zones.count >= 2, "the file should cross zones")
        let r = (data.count / 4096, device(ofBlock: 37), device(ofBlock: 70))
        try fs.unmount()
        return r
    }

    @Test func readsInChunksAndNamesTheBadBlock() throws {
        let s = Scratch()
        let (blocks, block37, _) = try prepare(s)
        let spy = ReadSpy(try EmulatedZonedDevice.open(path: s.path("img")))
        let plain = try Fsck.check(device: spy, verifyData: false)
        #expect(plain.clean)
        let structural = spy.reads
        spy.reads = 0
        let clean = try Fsck.check(device: spy, verifyData: true)
        #expect(clean.clean, "\(clean.problems)")
        #expect(clean.blocksVerified == blocks)
        let dataReads = spy.reads - structural
        #expect(dataReads <= 8, "fsck read \(blocks) data blocks in \(dataReads) reads")

        spy.corrupt = block37
        let bad = try Fsck.check(device: spy, verifyData: true)
        #expect(bad.problems.count == 1 && bad.problems[0].contains("block at file offset \(37 * 4096) (device \(block37)) does not match its checksum"),
                "\(bad.problems)")
        #expect(bad.blocksVerified == blocks)
    }

    @Test func unreadableBlockIsNamedAndTheRestVerified() throws {
        let s = Scratch()
        let (blocks, _, block70) = try prepare(s)
        let spy = ReadSpy(try EmulatedZonedDevice.open(path: s.path("img")))
        spy.unreadable = block70
        let r = try Fsck.check(device: spy, verifyData: true)
        #expect(r.problems.count == 1 && r.problems[0].contains("block at \(block70) cannot be read"), "\(r.problems)")
        #expect(r.blocksVerified == blocks - 1)
    }
}
