// The metadata index's manifest in the log: tables added and removed are replayed, survive
// checkpoints (every mount writes one) and power cuts after a durable commit, and a removal of
// a table the manifest does not hold is a replay problem, not a silent repair.

import Testing
import ZonedBackendFile
import ZonedCore
import ZonedEngine
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
    /// Data checksums go into index tables once the memtable holds its (here tiny) bound; the
    /// tables the log lists survive remounts (each a checkpoint, which carries no checksums of
    /// its own for them) and a power cut after a durable commit, and every block still verifies.
    @Test func tablesOfChecksumsSurviveRemountsCheckpointsAndAPowerCut() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: geometry())
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        var options = MountOptions(backgroundReclaim: false)
        options.index.memtableBytes = 600
        options.index.level0Tables = 1
        var fs = try FileSystem.mount(device: dev, options: options)
        var files: [(InodeNumber, [UInt8])] = []
        for i in 0..<12 {
            let f = try fs.create(rootInode, try EntryName("f\(i)"), kind: .file, mode: 0o644, uid: 0, gid: 0).number
            let data = bytes(96 << 10, seed: UInt64(i))
            try fs.write(f, at: 0, bytes: data, direct: true)
            try fs.sync()
            files.append((f, data))
        }
        let tables = fs.indexManifest.tables
        #expect(tables.count >= 1, "memtable flushes wrote tables: \(tables.count)")
        #expect(fs.indexManifest.nextTableID - 1 > UInt64(tables.count) && tables.values.contains { $0.level > 0 },
                "compactions replaced tables: \(tables.count) of \(fs.indexManifest.nextTableID - 1) left")
        #expect(fs.index.manifest.map(\.id).sorted() == tables.keys.sorted(), "the log's manifest is the index's")
        try fs.unmount()
        for round in 0..<2 {
            fs = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")), options: options)
            #expect(fs.mountReport.indexTables == fs.indexManifest.tables.count && fs.mountReport.indexTables > 0, "round \(round)")
            for (f, data) in files { #expect(try fs.readAll(f) == data, "round \(round)") }
            try fs.unmount()
        }
        // More data, made durable, then a power cut: the tables and the log tail together hold it.
        let raw = try EmulatedZonedDevice.open(path: s.path("img"))
        fs = try FileSystem.mount(device: raw, options: options)
        let g = try fs.create(rootInode, try EntryName("late"), kind: .file, mode: 0o644, uid: 0, gid: 0).number
        let late = bytes(160 << 10, seed: 99)
        try fs.write(g, at: 0, bytes: late, direct: true)
        try fs.fsync(g)
        try raw.powerCut(tornLastBlock: true, seed: 5)
        let after = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")), options: options)
        for (f, data) in files { #expect(try after.readAll(f) == data) }
        #expect(try after.readAll(g) == late)
        let check = try Fsck.check(device: after.device, verifyData: true)
        #expect(check.clean, "\(check.problems)")
        #expect(check.indexTables > 0 && check.indexEntries > 0 && check.blocksVerified == (12 * 96 + 160) / 4)
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
