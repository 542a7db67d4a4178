// The metadata index's tables in zones of role `index`: written whole at write pointers, read
// back from the device (also by a fresh allocator and index after a reopen), never spanning a
// zone, and zones whose tables compaction dropped become dead (nothing live) for a reset.

import Testing
import ZonedAllocator
import ZonedBackendFile
import ZonedCore
import ZonedIndex
import ZonedTestSupport
@testable import ZonedFS

/// 24 zones of 256 KiB, a drive's limits scaled down: room for several index zones.
private func geometry() -> DeviceGeometry {
    DeviceGeometry(zoneCount: 24, zoneSize: .kib(256), maxOpenZones: 6, maxActiveZones: 6)
}

private func config() -> IndexConfig {
    var c = IndexConfig()
    c.memtableBytes = 8 << 10
    c.tableBytes = 24 << 10
    c.level0Tables = 2
    c.levelBaseBytes = 64 << 10
    c.fanout = 3
    return c
}

@Suite(.timeLimit(.minutes(10))) struct ZoneTableStoreTests {
    @Test func tablesLiveInIndexZonesAndReadBackAfterAReopen() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: geometry())
        let allocator = try ZoneAllocator(device: dev)
        let store = ZoneTableStore(allocator: allocator, device: dev)
        let index = try MetadataIndex(store: store, cache: BlockCache(capacity: 64 << 10), config: config())
        var rng = SeededRandom(seed: 16)
        var model: [UInt64: [UInt8]] = [:]
        for seq in 1...4_000 {
            let n = rng.below(900)
            if rng.chance(0.2), model[n] != nil {
                index.apply(.delete(.inode(n), sequence: UInt64(seq)))
                model[n] = nil
            } else {
                let v = (0..<Int(16 + rng.below(48))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                index.apply(.put(.inode(n), v, sequence: UInt64(seq)))
                model[n] = v
            }
            if index.memtableBytes >= index.config.memtableBytes {
                _ = try index.flush()
                while try !index.compact().isEmpty {}
                index.releaseRetired()
            }
        }
        _ = try index.flush()
        for n in 0..<900 { #expect(try index.get(.inode(UInt64(n))) == model[UInt64(n)]) }

        // Every table in one index zone, inside its written part; live bytes are the tables'.
        var liveByZone: [ZoneID: UInt64] = [:]
        for d in index.manifest {
            let z = try #require(dev.geometry.zone(containing: DeviceOffset(d.location.address)))
            #expect(allocator.account(z).role == .index)
            #expect(d.location.address + d.location.length <= (dev.geometry.zoneStart(z) + allocator.account(z).written).bytes,
                    "table \(d.id) runs past its zone's written bytes")
            liveByZone[z, default: 0] += d.location.length
        }
        let indexZones = allocator.accounts.filter { $0.role == .index }
        for a in indexZones { #expect(a.live.bytes == liveByZone[a.id] ?? 0, "\(a.id): live \(a.live) vs tables \(liveByZone[a.id] ?? 0)") }
        #expect(indexZones.count >= 2, "compaction filled more than one zone")
        let dead = indexZones.filter { $0.live.bytes == 0 && $0.phase == .full }.map(\.id)
        #expect(!dead.isEmpty, "a zone whose tables were all dropped is dead")
        // The journal resets dead zones after a durable commit: index zones are among them.
        #expect(Set(dead).isSubset(of: allocator.deadDataZones))
        for z in dead { #expect(try allocator.resetIfUnused(z)) }
        for n in 0..<900 { #expect(try index.get(.inode(UInt64(n))) == model[UInt64(n)], "after the dead zones' reset") }

        // A fresh allocator and index over the same device, from the manifest: the same answers.
        let manifest = index.manifest, next = index.tableIDsUsed
        dev.close()
        let again = try EmulatedZonedDevice.open(path: s.path("img"))
        defer { again.close() }
        let allocator2 = try ZoneAllocator(device: again)
        let reopened = try MetadataIndex(store: ZoneTableStore(allocator: allocator2, device: again),
                                         cache: BlockCache(capacity: 64 << 10), config: config(), manifest: manifest, nextTableID: next)
        for n in 0..<900 { #expect(try reopened.get(.inode(UInt64(n))) == model[UInt64(n)]) }
    }

    /// A table larger than the room left in the active index zone goes whole into the next one.
    @Test func aTableNeverSpansTwoZones() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: geometry())
        defer { dev.close() }
        let allocator = try ZoneAllocator(device: dev)
        let store = ZoneTableStore(allocator: allocator, device: dev)
        let big = [UInt8](repeating: 3, count: 160 << 10)
        let a = try store.write(tableID: 1, big)
        let b = try store.write(tableID: 2, big)
        let za = dev.geometry.zone(containing: DeviceOffset(a.address)), zb = dev.geometry.zone(containing: DeviceOffset(b.address))
        #expect(za != zb)
        #expect(allocator.account(za!).phase == .full, "the first zone was finished: it had no room for the second table")
        #expect(b.address == dev.geometry.zoneStart(zb!).bytes)
        #expect(try store.source(b).read(offset: 0, length: big.count) == big)
        #expect(throws: DeviceError.self) { try store.write(tableID: 3, [UInt8](repeating: 1, count: 512 << 10)) }
    }
}
