// Recognising what a device already holds, so `zbdfs format` can refuse to destroy it unasked.
//
// Invariants:
// - `detect` only reads (zone reports and block-aligned reads of at most the device's max IO
//   size, each inside one zone); it never writes, resets or opens a zone. Reading past a
//   sequential zone's write pointer gives zeros, which match no magic; probes that fall past the
//   end of the device or into an offline zone are skipped.
// - Only facts about other formats are used: where their magic numbers live and what they are
//   (btrfs "_BHRfS_M" at byte 64 of a superblock, the primary one at 64 KiB and, on zoned btrfs,
//   a superblock log at the start of zones 0 and 1; f2fs 0xF2F52010 little-endian at 1024 and in
//   its backup copy one 4 KiB block later; ext2/3/4 0xEF53 little-endian at 1024 + 56; xfs
//   "XFSB" at byte 0).
// - A valid zbdfs superblock copy owns its bytes — in a sequential zone the whole zone, which the
//   superblock ring resets, writes and finishes — so a foreign probe that lands there is not
//   reported (a label can hold any text, even "_BHRfS_M" at the btrfs offset).
// - Results are in a fixed order (zbdfs first, then by kind and offset), never in Dictionary order.
// - `erase` writes only zeros, only into conventional superblock zones (where every probe lands:
//   zones are at least 64 KiB), and only past the zbdfs superblock copy at their start; format
//   resets sequential zones itself.

import ZonedCore

/// One file system (or trace of one) found on a device.
public struct FoundSignature: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable, Comparable {
        /// `ext4` stands for ext2, ext3 and ext4 (one magic).
        case zbdfs, btrfs, f2fs, ext4, xfs

        public static func < (a: Kind, b: Kind) -> Bool {
            allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
        }
    }

    public var kind: Kind
    /// Where the magic (or for zbdfs, the superblock copy) starts on the device.
    public var offset: DeviceOffset
    /// What was seen, for a person: "label 'data', generation 4", "magic _BHRfS_M at 0x10040".
    public var detail: String
    /// zbdfs only: the newest valid copy's label and generation (nil when no copy is valid).
    public var label: String?
    public var generation: UInt64?

    public init(kind: Kind, offset: DeviceOffset, detail: String, label: String? = nil, generation: UInt64? = nil) {
        self.kind = kind
        self.offset = offset
        self.detail = detail
        self.label = label
        self.generation = generation
    }

    public var description: String { "\(kind.rawValue) (\(detail))" }
}

public enum Signatures {
    /// One foreign magic: where it lives and the bytes it must match.
    struct Probe {
        var kind: FoundSignature.Kind
        var offset: UInt64
        var magic: [UInt8]
        var what: String
    }

    static let btrfsMagic = Array("_BHRfS_M".utf8)
    static let f2fsMagic: [UInt8] = [0x10, 0x20, 0xF5, 0xF2]  // 0xF2F52010, little-endian
    static let extMagic: [UInt8] = [0x53, 0xEF]  // 0xEF53, little-endian
    static let xfsMagic = Array("XFSB".utf8)

    /// Every place a foreign magic is looked for on `g`.
    static func probes(_ g: DeviceGeometry) -> [Probe] {
        var p: [Probe] = [
            Probe(kind: .xfs, offset: 0, magic: xfsMagic, what: "magic XFSB"),
            Probe(kind: .f2fs, offset: 1024, magic: f2fsMagic, what: "magic 0xF2F52010"),
            Probe(kind: .f2fs, offset: 4096 + 1024, magic: f2fsMagic, what: "magic 0xF2F52010 (backup superblock)"),
            Probe(kind: .ext4, offset: 1024 + 56, magic: extMagic, what: "ext2/3/4 magic 0xEF53"),
            Probe(kind: .btrfs, offset: 65536 + 64, magic: btrfsMagic, what: "magic _BHRfS_M (primary superblock)"),
            // Zoned btrfs keeps its superblock log in zones 0 and 1 (the first copy at the start).
            Probe(kind: .btrfs, offset: 64, magic: btrfsMagic, what: "magic _BHRfS_M (zoned superblock log, zone 0)"),
        ]
        if g.zoneCount > 1 {
            p.append(Probe(kind: .btrfs, offset: g.zoneStart(ZoneID(1)).bytes + 64, magic: btrfsMagic,
                           what: "magic _BHRfS_M (zoned superblock log, zone 1)"))
        }
        return p
    }

    /// What `device` holds at its start: zbdfs (label and generation of the newest valid
    /// superblock copy, or a copy that carries the zbdfs magic but does not decode) and the magic
    /// numbers of btrfs, f2fs, ext2/3/4 and xfs. Empty when nothing is recognised.
    public static func detect(device: any ZonedDevice) throws(DeviceError) -> [FoundSignature] {
        let g = device.geometry
        var found: [FoundSignature] = []
        // Byte ranges owned by valid zbdfs superblock copies.
        var owned: [Range<UInt64>] = []
        if g.zoneCount >= 2, try readable(device, zone: ZoneID(0)), try readable(device, zone: ZoneID(1)) {
            let result = try SuperblockIO.newest(device: device)
            let (a, b) = SuperblockIO.zones(for: g)
            let copySize = UInt64(Superblock.copySize(block: g.logicalBlockSize.bytes))
            var damaged: [ZoneID] = []
            for (i, c) in result.copies.enumerated() {
                let zone = i == 0 ? a : b
                switch c {
                case .valid:
                    // A sequential superblock zone holds one copy and is then finished, so the
                    // rest of it is ours too (and may read back as stale bytes of its earlier
                    // life on a device that does not zero what a reset discarded).
                    let start = g.zoneStart(zone).bytes
                    owned.append(start..<(start + (g.isConventional(zone) ? copySize : g.zoneSize.bytes)))
                case .invalid:
                    // A copy that starts with our magic but does not decode is still ours (damaged).
                    if let head = try read(device, at: g.zoneStart(zone).bytes, count: Superblock.magic.count),
                       head == Superblock.magic {
                        damaged.append(zone)
                    }
                case .otherVersion:
                    damaged.append(zone)
                case .empty:
                    break
                }
            }
            if let (sb, slot) = result.best {
                let zone = slot == 0 ? a : b
                found.append(FoundSignature(kind: .zbdfs, offset: g.zoneStart(zone),
                                            detail: "label '\(sb.label)', generation \(sb.generation)",
                                            label: sb.label, generation: sb.generation))
            } else if let v = SuperblockIO.otherVersion(result.copies), let zone = damaged.first {
                found.append(FoundSignature(kind: .zbdfs, offset: g.zoneStart(zone),
                                            detail: "on-device format version \(v) (this zbdfs reads \(Superblock.version))"))
            } else if let zone = damaged.first {
                found.append(FoundSignature(kind: .zbdfs, offset: g.zoneStart(zone),
                                            detail: "a damaged superblock in \(zone)"))
            }
        }
        var foreign: [FoundSignature] = []
        for p in probes(g) {
            let range = p.offset..<(p.offset + UInt64(p.magic.count))
            if owned.contains(where: { $0.overlaps(range) }) { continue }
            guard let bytes = try read(device, at: p.offset, count: p.magic.count), bytes == p.magic else { continue }
            foreign.append(FoundSignature(kind: p.kind, offset: DeviceOffset(p.offset), detail: "\(p.what) at \(DeviceOffset(p.offset))"))
        }
        foreign.sort { ($0.kind, $0.offset) < ($1.kind, $1.offset) }
        return found + foreign
    }

    /// Zeroes the blocks holding the foreign magic numbers in `found` where that is possible
    /// without touching zbdfs: conventional zones only, outside the superblock copies. Returns
    /// what it could not erase (sequential zones: format's zone resets discard those).
    @discardableResult
    public static func erase(_ found: [FoundSignature], device: any ZonedDevice) throws(DeviceError) -> [FoundSignature] {
        let g = device.geometry
        let block = g.logicalBlockSize.bytes
        let copySize = UInt64(Superblock.copySize(block: block))
        var left: [FoundSignature] = []
        var done = Set<UInt64>()
        for s in found where s.kind != .zbdfs {
            let at = s.offset.bytes / block * block
            // Every probe lands in a superblock zone; zbdfs uses only the copy at its start.
            guard let zone = g.zone(containing: DeviceOffset(at)), g.isConventional(zone), isSuperblockZone(zone, g),
                  at - g.zoneStart(zone).bytes >= copySize else {
                left.append(s)
                continue
            }
            if done.insert(at).inserted {
                try device.write(AlignedBuffer(count: Int(block)), at: DeviceOffset(at))
            }
        }
        if !done.isEmpty { try device.flush() }
        return left
    }

    static func isSuperblockZone(_ z: ZoneID, _ g: DeviceGeometry) -> Bool {
        let (a, b) = SuperblockIO.zones(for: g)
        return z == a || z == b
    }

    /// False for an offline zone (reads would fail; nothing can be recognised there).
    static func readable(_ device: any ZonedDevice, zone: ZoneID) throws(DeviceError) -> Bool {
        try device.zone(zone).condition != .offline
    }

    /// `count` bytes at byte `offset`, read in block-aligned pieces that stay inside one zone and
    /// within the device's max IO size; nil when the range runs past the device or into an
    /// offline zone.
    static func read(_ device: any ZonedDevice, at offset: UInt64, count: Int) throws(DeviceError) -> [UInt8]? {
        let g = device.geometry
        let block = g.logicalBlockSize.bytes
        let end = offset + UInt64(count)
        guard count > 0, end <= g.totalBytes.bytes else { return nil }
        let first = offset / block * block
        let last = (end + block - 1) / block * block
        let buffer = AlignedBuffer(count: Int(last - first))
        var at = first
        while at < last {
            let zone = g.zone(containing: DeviceOffset(at))!
            guard try readable(device, zone: zone) else { return nil }
            let zoneEnd = g.zoneStart(zone).bytes + g.zoneSize.bytes
            let n = min(last - at, zoneEnd - at, g.maxWriteBytes.bytes)
            try device.read(into: buffer.slice(Int(at - first), Int(n)), at: DeviceOffset(at))
            at += n
        }
        let from = Int(offset - first)
        return Array(buffer.readOnly[from..<(from + count)])
    }
}
