// Where the metadata index keeps its tables: zones of role `index` (docs/ON-DISK.md, "Index
// zones and their space").
//
// Invariants:
// - Calls come from the index under its lock (MetadataIndex.lock), one at a time: the store keeps
//   no lock of its own. Reads (`source`) take none either: a table's bytes never change.
// - A table is written whole into one zone, at its write pointer, through the allocator (one
//   grant, pieces in order): it never spans zones. When the active index zone has no room for a
//   table, that zone is finished and the next table starts an empty one.
// - A table's bytes are live in its zone's account from the write until `release`, which makes
//   them garbage; a zone whose tables are all released is dead and is reset by the journal after
//   the durable commit that holds the removals (the caller logs the edit before it releases).

import ZonedAllocator
import ZonedCore
import ZonedIndex

final class ZoneTableStore: TableStore, @unchecked Sendable {
    private let allocator: ZoneAllocator
    private let device: any ZonedDevice
    /// The zone the next table goes to, while it has room.
    private var zone: ZoneID?

    init(allocator: ZoneAllocator, device: any ZonedDevice) {
        self.allocator = allocator
        self.device = device
    }

    func write(tableID: UInt64, _ bytes: [UInt8]) throws(DeviceError) -> TableLocation {
        let size = ByteCount(UInt64(bytes.count))
        guard size <= device.geometry.zoneCapacity else {
            throw .invalid(.write, "table \(tableID) of \(size) does not fit in a zone of \(device.geometry.zoneCapacity)")
        }
        // A short grant means the zone lacks room for the whole table: finish it and take another
        // (twice at most: the second grant is in a fresh zone, which holds any table that fits one).
        for _ in 0..<3 {
            let grant = try allocator.grant(size, role: .index, hint: zone)
            guard grant.length == size else {
                allocator.complete(grant, written: .zero)
                try allocator.finish(grant.zone)
                zone = nil
                continue
            }
            zone = grant.zone
            return TableLocation(address: try put(bytes, grant).bytes, length: UInt64(bytes.count))
        }
        throw .noSpace(.write, "no index zone takes table \(tableID) of \(size)")
    }

    /// Writes the table in pieces at the zone's write pointer; returns where it starts.
    private func put(_ bytes: [UInt8], _ grant: ZoneGrant) throws(DeviceError) -> DeviceOffset {
        let buffer = AlignedBuffer(count: bytes.count)
        bytes.withUnsafeBytes { buffer.slice(0, bytes.count).copyMemory(from: $0) }
        let piece = allocator.pieceLimit(grant.zone).int
        var done = 0
        var start: DeviceOffset?
        var failure: DeviceError?
        while done < bytes.count {
            let n = min(piece, bytes.count - done)
            do {
                let at = try allocator.append(grant, UnsafeRawBufferPointer(buffer.slice(done, n)))
                if start == nil { start = at }
            } catch { failure = error; break }
            done += n
        }
        allocator.complete(grant, written: ByteCount(UInt64(done)))
        if let failure {
            // What landed is a table nobody will name: garbage.
            if done > 0 { allocator.discard(grant.zone, ByteCount(UInt64(done))) }
            zone = nil
            throw failure
        }
        return start!
    }

    func source(_ location: TableLocation) -> any TableSource { DeviceTableSource(device: device, base: location.address) }

    func release(_ location: TableLocation) {
        guard let z = device.geometry.zone(containing: DeviceOffset(location.address)) else { return }
        allocator.discard(z, ByteCount(location.length))
        if z == zone, allocator.account(z).free.bytes == 0 { zone = nil }
    }
}

/// A table's bytes read from the device (block-aligned reads into an aligned buffer).
struct DeviceTableSource: TableSource {
    let device: any ZonedDevice
    let base: UInt64

    func read(offset: UInt64, length: Int) throws(DeviceError) -> [UInt8] {
        let buffer = AlignedBuffer(count: length)
        try device.read(into: buffer, at: DeviceOffset(base + offset))
        return buffer.bytes
    }
}

/// Tables read where they lie, never written (fsck: a check never writes the device).
final class ReadOnlyTableStore: TableStore, @unchecked Sendable {
    let device: any ZonedDevice
    init(device: any ZonedDevice) { self.device = device }

    func write(tableID: UInt64, _ bytes: [UInt8]) throws(DeviceError) -> TableLocation {
        throw .invalid(.write, "internal: a read-only check tried to write index table \(tableID)")
    }

    func source(_ location: TableLocation) -> any TableSource { DeviceTableSource(device: device, base: location.address) }
    func release(_ location: TableLocation) {}
}
