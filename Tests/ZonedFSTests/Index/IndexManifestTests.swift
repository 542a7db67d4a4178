// The metadata index's manifest in the log: tables added and removed are replayed, survive
// checkpoints (every mount writes one) and power cuts after a durable commit, and a removal of
// a table the manifest does not hold is a replay problem, not a silent repair.

import Testing
import ZonedBackendFile
import ZonedCore
import ZonedIndex
import ZonedTestSupport
@testable import ZonedFS

private func geometry() -> DeviceGeometry {
    DeviceGeometry(zoneCount: 32, zoneSize: .mib(1), zoneCapacity: .kib(960), logicalBlockSize: .kib(4),
                   maxOpenZones: 6, maxActiveZones: 6, maxWriteBytes: .kib(64))
}

private func table(_ id: UInt64, level: Int = 0) -> TableDescriptor {
    TableDescriptor(id: id, level: level, location: TableLocation(address: (20 + id) << 20, length: 8192 * id),
                    firstKey: .inode(id), lastKey: .inode(id * 100), entryCount: id * 3, maxSequence: id * 7)
}

@Suite(.timeLimit(.minutes(10))) struct IndexManifestTests {
    @Test func theManifestSurvivesRemountsCheckpointsAndAPowerCut() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: geometry())
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        var fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false))
        try fs.nsLock.withLock { () throws(DeviceError) in
            try fs.log([.tableAdded(table(1)), .tableAdded(table(2))])
            try fs.log([.tableAdded(table(3, level: 1))])
            try fs.log([.tableRemoved(id: 1)])
        }
        try fs.commit(durable: true)
        let want = [2: table(2), 3: table(3, level: 1)] as [UInt64: TableDescriptor]
        #expect(fs.indexManifest.tables == want && fs.indexManifest.nextTableID == 4)
        try fs.unmount()
        // Remounted twice: each mount replays, then starts the log afresh with a checkpoint.
        for round in 0..<2 {
            fs = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")), options: MountOptions(backgroundReclaim: false))
            #expect(fs.indexManifest.tables == want && fs.indexManifest.nextTableID == 4, "round \(round)")
            try fs.unmount()
        }
        // One more table, committed, then a power cut.
        let raw = try EmulatedZonedDevice.open(path: s.path("img"))
        fs = try FileSystem.mount(device: raw, options: MountOptions(backgroundReclaim: false))
        try fs.nsLock.withLock { () throws(DeviceError) in try fs.log([.tableAdded(table(9)), .tableRemoved(id: 2)]) }
        try fs.commit(durable: true)
        try raw.powerCut(tornLastBlock: true, seed: 5)
        let after = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")), options: MountOptions(backgroundReclaim: false))
        #expect(after.indexManifest.tables == [3: table(3, level: 1), 9: table(9)] && after.indexManifest.nextTableID == 10)
        #expect(try Fsck.check(device: after.device).clean)
        try after.unmount()
    }

    @Test func aRemovalOfAnAbsentTableOrATwiceAddedOneIsAProblem() throws {
        var m = IndexManifest()
        try m.apply(.tableAdded(table(4)))
        #expect(throws: ReplayProblem.self) { try m.apply(.tableAdded(table(4))) }
        #expect(throws: ReplayProblem.self) { try m.apply(.tableRemoved(id: 5)) }
        try m.apply(.indexCounters(nextTableID: 40))
        try m.apply(.tableRemoved(id: 4))
        #expect(m.tables.isEmpty && m.nextTableID == 40)
    }

    @Test func manifestRecordsRoundTripByteForByte() throws {
        for r: LogRecord in [.tableAdded(table(7, level: 3)), .tableRemoved(id: 77), .indexCounters(nextTableID: 99)] {
            var w = ByteWriter()
            r.encode(into: &w)
            var rd = ByteReader(w.bytes)
            let back = try LogRecord.decode(&rd)
            #expect(back == r && rd.remaining == 0)
            var again = ByteWriter()
            back.encode(into: &again)
            #expect(again.bytes == w.bytes)
        }
    }
}
