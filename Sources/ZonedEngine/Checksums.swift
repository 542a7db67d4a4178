// Data checksums: one CRC-32C per logical block of copy-on-write data, kept by device address
// (like btrfs's checksum tree keyed by disk byte number), so splitting, merging or sharing file
// extents never touches them.
//
// Invariants:
// - Every block of every `.data` extent in any file map has its checksum stored before the extent
//   is inserted (live writes) or before the first read (mount), so a read can always verify it.
// - A read of a `.data` extent whose bytes do not match is EIO, never wrong bytes.
// - Where checksums live is the `ChecksumStorage` the engine is given: `ChecksumStore` below (all
//   in memory, for an engine used on its own) or the file system's on-device metadata index
//   (ZonedFS/Index/IndexChecksums.swift), which holds a bounded part of them in memory.
// - `set` is called under an inode's state lock (LockOrder: inodeState, then the storage's own).

import ZonedCore

/// Where the engine keeps one CRC-32C per data block, by device address.
public protocol ChecksumStorage: AnyObject, Sendable {
    /// Stores `crcs` for consecutive blocks starting at `at` (inside one zone).
    func set(_ at: DeviceOffset, _ crcs: [UInt32])
    /// The checksums of `count` blocks starting at `at` (inside one zone); zero for blocks never set.
    func get(_ at: DeviceOffset, count: Int) throws(DeviceError) -> [UInt32]
}

/// Every checksum in memory, a table per zone on first use; a zone's entries are simply
/// overwritten after a reset. 4 B of RAM per block: for an engine used on its own, not a mount.
public final class ChecksumStore: ChecksumStorage, @unchecked Sendable {
    private let lock = ConditionLock(rank: .checksums)
    private let geometry: DeviceGeometry
    private let block: UInt64
    private var zones: [[UInt32]]

    public init(geometry: DeviceGeometry) {
        self.geometry = geometry
        self.block = geometry.logicalBlockSize.bytes
        self.zones = Array(repeating: [], count: geometry.zoneCount)
    }

    private func locate(_ at: DeviceOffset) -> (zone: Int, index: Int) {
        let z = Int(at.bytes / geometry.zoneSize.bytes)
        return (z, Int((at.bytes % geometry.zoneSize.bytes) / block))
    }

    public func set(_ at: DeviceOffset, _ crcs: [UInt32]) {
        guard !crcs.isEmpty else { return }
        let (z, i) = locate(at)
        lock.withLock {
            if zones[z].isEmpty { zones[z] = Array(repeating: 0, count: Int(geometry.zoneSize.bytes / block)) }
            zones[z].replaceSubrange(i..<(i + crcs.count), with: crcs)
        }
    }

    public func get(_ at: DeviceOffset, count: Int) -> [UInt32] {
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
        let expected = try checksums.get(at, count: bytes.count / Int(block))
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

    /// The stored checksums of a `.data` extent.
    public func checksums(of extent: FileExtent) throws(DeviceError) -> [UInt32] {
        guard extent.kind == .data else { return [] }
        return try checksums.get(extent.device, count: Int(extent.length / block))
    }
}

private func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }
