// Reading and writing superblock copies on the device.
//
// Invariants:
// - Superblock zones are the first two conventional zones when the device has two, else zones 0
//   and 1 (DESIGN.md: "conventional zones when the device has them").
// - Writing a copy into a sequential zone is reset, write, finish, flush: the zone holds exactly
//   one copy and never stays active. Into a conventional zone it is write, flush.
// - Reading never writes and never trusts a copy that does not decode (torn, rotted, foreign).

import ZonedCore

public enum SuperblockIO {
    /// Zones 0 and 1: conventional zones come first on every zoned device, so these are the
    /// conventional ones whenever the device has two.
    public static func zones(for g: DeviceGeometry) -> (ZoneID, ZoneID) { (ZoneID(0), ZoneID(1)) }

    static func write(_ sb: Superblock, zone: ZoneID, device: any ZonedDevice) throws(DeviceError) {
        let g = device.geometry
        let bytes = sb.encode(copySize: Superblock.copySize(block: g.logicalBlockSize.bytes))
        let buffer = AlignedBuffer(count: bytes.count)
        bytes.withUnsafeBytes { buffer.slice(0, bytes.count).copyMemory(from: $0) }
        let sequential = !g.isConventional(zone)
        if sequential { try device.reset(zone) }
        var done = 0
        while done < bytes.count {
            let n = min(g.maxWriteBytes.int, bytes.count - done)
            try device.write(UnsafeRawBufferPointer(buffer.slice(done, n)), at: g.zoneStart(zone) + ByteCount(done))
            done += n
        }
        if sequential { try device.finish(zone) }
        try device.flush()
    }

    /// What one superblock zone holds.
    public enum Copy: Sendable {
        case valid(Superblock)
        case empty
        case invalid(String)
        /// A zbdfs superblock of another on-device format version (never read as this one).
        case otherVersion(UInt32)
    }

    public static func read(zone: ZoneID, device: any ZonedDevice) throws(DeviceError) -> Copy {
        let g = device.geometry
        let size = Superblock.copySize(block: g.logicalBlockSize.bytes)
        if !g.isConventional(zone) {
            let z = try device.zone(zone)
            if z.condition == .empty { return .empty }
            if z.condition != .full, z.writePointer < z.start + ByteCount(size) { return .invalid("the zone holds less than one copy") }
        }
        let buffer = AlignedBuffer(count: size, zeroed: true)
        var done = 0
        while done < size {
            let n = min(g.maxWriteBytes.int, size - done)
            try device.read(into: buffer.slice(done, n), at: g.zoneStart(zone) + ByteCount(done))
            done += n
        }
        let bytes = Array(buffer.readOnly)
        if bytes.allSatisfy({ $0 == 0 }) { return .empty }
        if Array(bytes[0..<8]) == Superblock.magic {
            let v = (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[8 + $1]) << (8 * UInt32($1)) }
            if v != Superblock.version, v != 0 { return .otherVersion(v) }
        }
        do { return .valid(try Superblock.decode(bytes)) } catch { return .invalid(error.description) }
    }

    /// The newest valid copy and which slot (0/1) holds it, plus what each slot held.
    public static func newest(device: any ZonedDevice) throws(DeviceError) -> (best: (Superblock, Int)?, copies: [Copy]) {
        let (a, b) = zones(for: device.geometry)
        let copies = [try read(zone: a, device: device), try read(zone: b, device: device)]
        var best: (Superblock, Int)?
        for (i, c) in copies.enumerated() {
            if case .valid(let sb) = c, best == nil || sb.generation > best!.0.generation { best = (sb, i) }
        }
        return (best, copies)
    }

    /// The other format version the copies hold, when no copy is of this version's.
    public static func otherVersion(_ copies: [Copy]) -> UInt32? {
        for c in copies { if case .otherVersion(let v) = c { return v } }
        return nil
    }

    /// What to tell someone whose device holds format version `v`.
    public static func versionProblem(_ v: UInt32) -> String {
        let who = v < Superblock.version ? "an older zbdfs" : "a newer zbdfs"
        return "this device holds a zbdfs file system of on-device format version \(v), made by \(who); this zbdfs reads version \(Superblock.version) only (see docs/ON-DISK.md). There is no migration: copy the files off with the zbdfs that made it, then `zbdfs format --force` the device"
    }
}
