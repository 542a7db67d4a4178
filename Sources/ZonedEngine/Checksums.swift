// Data checksums: one CRC-32C per logical block of copy-on-write data, kept by device address
// (like btrfs's checksum tree keyed by disk byte number), so splitting, merging or sharing file
// extents never touches them.
//
// Invariants:
// - Every block of every `.data` extent in any file map has its checksum stored here before the
//   extent is inserted (live writes) or restored (mount), so a read can always verify it.
// - A read of a `.data` extent whose bytes do not match is EIO, never wrong bytes.
// - Zones get their table on first use; a zone's entries are simply overwritten after a reset.

import ZonedCore

final class ChecksumStore: @unchecked Sendable {
    private let lock = ConditionLock(rank: .checksums)
    private let geometry: DeviceGeometry
    private let block: UInt64
    private var zones: [[UInt32]]

    init(geometry: DeviceGeometry) {
        self.geometry = geometry
        self.block = geometry.logicalBlockSize.bytes
        self.zones = Array(repeating: [], count: geometry.zoneCount)
    }

    private func locate(_ at: DeviceOffset) -> (zone: Int, index: Int) {
        let z = Int(at.bytes / geometry.zoneSize.bytes)
        return (z, Int((at.bytes % geometry.zoneSize.bytes) / block))
    }

    /// Stores `crcs` for consecutive blocks starting at `at` (inside one zone).
    func set(_ at: DeviceOffset, _ crcs: [UInt32]) {
        guard !crcs.isEmpty else { return }
        let (z, i) = locate(at)
        lock.withLock {
            if zones[z].isEmpty { zones[z] = Array(repeating: 0, count: Int(geometry.zoneSize.bytes / block)) }
            zones[z].replaceSubrange(i..<(i + crcs.count), with: crcs)
        }
    }

    /// The checksums of `count` blocks starting at `at`.
    func get(_ at: DeviceOffset, count: Int) -> [UInt32] {
        let (z, i) = locate(at)
        return lock.withLock { zones[z].isEmpty ? Array(repeating: 0, count: count) : Array(zones[z][i..<(i + count)]) }
    }

    /// One CRC-32C per `block` bytes of `data` (a whole number of blocks).
    static func compute(_ data: UnsafeRawBufferPointer, block: Int) -> [UInt32] {
        CRC32C.blockChecksums(data, block: block)
    }
}

extension Engine {
    /// Checks blocks read from `at` against their stored checksums; EIO on the first mismatch.
    func verify(_ at: DeviceOffset, _ bytes: UnsafeRawBufferPointer, inode: InodeNumber, fileOffset: UInt64) throws(DeviceError) {
        let expected = checksums.get(at, count: bytes.count / Int(block))
        let actual = CRC32C.blockChecksums(bytes, block: Int(block))
        for (i, want) in expected.enumerated() {
            let o = i * Int(block)
            let got = actual[i]
            if got != want {
                count { $0.checksumErrors += 1 }
                throw DeviceError.io(.read, "checksum mismatch in inode \(inode) at file offset \(fileOffset + UInt64(o)) (device \(at + ByteCount(UInt64(o)))): stored \(hex(want)), read \(hex(got))")
            }
        }
    }

    /// The stored checksums of a `.data` extent (for the metadata log's checkpoints).
    public func checksums(of extent: FileExtent) -> [UInt32] {
        guard extent.kind == .data else { return [] }
        return checksums.get(extent.device, count: Int(extent.length / block))
    }

    /// Restores checksums at mount (from the metadata log).
    public func restoreChecksums(at: DeviceOffset, _ crcs: [UInt32]) { checksums.set(at, crcs) }
}

private func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }
