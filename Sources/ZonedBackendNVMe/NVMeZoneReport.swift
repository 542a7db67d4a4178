// The Report Zones data of NVMe Zone Management Receive (ZNS command set), decoded and mapped
// to ZonedCore's Zone.
//
// Invariants:
// - Layout: a 64-byte header (bytes 0-7: number of zones, little endian) and then one 64-byte
//   zone descriptor per zone: byte 0 zone type (bits 3:0), byte 1 zone state (bits 7:4), byte 2
//   zone attributes, bytes 8-15 zone capacity, 16-23 zone start LBA, 24-31 write pointer (LBAs).
//   We always ask for the plain (not extended) report, so descriptors are exactly 64 bytes apart.
// - Decoding never traps: the header's count is trusted only as far as the buffer holds whole
//   descriptors (a device may count zones it did not transfer); an unknown type or state is a
//   DecodeError, never a guess; LBA arithmetic that would overflow is a DecodeError.
// - The mapped Zone keeps ZonedCore's rules where the descriptor's write pointer is undefined by
//   the specification: a full zone's write pointer is its capacity end, a read-only or offline
//   zone's is clamped into [start, capacity end], as ZonedBackendKernel does for the kernel's
//   report of the same device.
// - A zone's id is its start LBA divided by the zone size; a start that is not a zone boundary is
//   a DecodeError (it would misnumber every zone after it).

import ZonedCore

/// One zone descriptor, as the device sent it (LBAs, raw codes).
public struct NVMeZoneDescriptor: Equatable, Sendable {
    /// Bits 3:0 of byte 0; 2 = sequential write required (the only type ZNS defines).
    public var type: UInt8
    /// Bits 7:4 of byte 1.
    public var state: UInt8
    public var attributes: UInt8
    public var capacityBlocks: UInt64
    public var startBlock: UInt64
    public var writePointerBlock: UInt64

    public static let byteCount = 64

    public init(type: UInt8, state: UInt8, attributes: UInt8 = 0, capacityBlocks: UInt64,
                startBlock: UInt64, writePointerBlock: UInt64) {
        self.type = type
        self.state = state
        self.attributes = attributes
        self.capacityBlocks = capacityBlocks
        self.startBlock = startBlock
        self.writePointerBlock = writePointerBlock
    }

    /// The 64 bytes the device would send for this descriptor (test fixtures, and the fake
    /// controller of the host tests).
    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: Self.byteCount)
        w.u8(type & 0x0F)
        w.u8(state << 4)
        w.u8(attributes)
        w.zeros(5)
        w.u64(capacityBlocks)
        w.u64(startBlock)
        w.u64(writePointerBlock)
        w.zeros(32)
        return w.bytes
    }
}

public enum NVMeZoneReport {
    public static let headerBytes = 64
    public static let sequentialWriteRequired: UInt8 = 0x2

    /// The bytes a report of `descriptors` would be (test fixtures, the host tests' fake device).
    public static func encode(_ descriptors: [NVMeZoneDescriptor], reportedCount: UInt64? = nil) -> [UInt8] {
        var w = ByteWriter(capacity: headerBytes + descriptors.count * NVMeZoneDescriptor.byteCount)
        w.u64(reportedCount ?? UInt64(descriptors.count))
        w.zeros(headerBytes - 8)
        for d in descriptors { w.raw(d.encoded) }
        return w.bytes
    }

    /// The descriptors in a Report Zones buffer: as many as the header counts and the buffer holds.
    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> [NVMeZoneDescriptor] {
        let r = FieldReader(bytes, "zone report")
        let counted = try r.u64(0, "number of zones")
        let held = UInt64(max(0, bytes.count - headerBytes) / NVMeZoneDescriptor.byteCount)
        let n = Int(min(counted, held))
        var out: [NVMeZoneDescriptor] = []
        out.reserveCapacity(n)
        for i in 0..<n {
            let at = headerBytes + i * NVMeZoneDescriptor.byteCount
            out.append(NVMeZoneDescriptor(
                type: try r.u8(at, "zone type of descriptor \(i)") & 0x0F,
                state: try r.u8(at + 1, "zone state of descriptor \(i)") >> 4,
                attributes: try r.u8(at + 2, "zone attributes of descriptor \(i)"),
                capacityBlocks: try r.u64(at + 8, "zone capacity of descriptor \(i)"),
                startBlock: try r.u64(at + 16, "zone start of descriptor \(i)"),
                writePointerBlock: try r.u64(at + 24, "write pointer of descriptor \(i)")))
        }
        return out
    }

    /// ZNS zone state → ZonedCore condition; nil for a code the specification does not define.
    public static func condition(_ state: UInt8) -> ZoneCondition? {
        switch state {
        case 0x1: return .empty
        case 0x2: return .implicitlyOpen
        case 0x3: return .explicitlyOpen
        case 0x4: return .closed
        case 0xD: return .readOnly
        case 0xE: return .full
        case 0xF: return .offline
        default: return nil
        }
    }

    /// The zone `d` describes, on a namespace of `blockSize` blocks and `zoneSizeBlocks` zones.
    public static func zone(_ d: NVMeZoneDescriptor, blockSize: ByteCount,
                            zoneSizeBlocks: UInt64) throws(DecodeError) -> Zone {
        guard zoneSizeBlocks > 0, d.startBlock % zoneSizeBlocks == 0 else {
            throw DecodeError("zone report: zone start LBA \(d.startBlock) is not a multiple of the zone size \(zoneSizeBlocks)", at: 16)
        }
        let index = d.startBlock / zoneSizeBlocks
        guard index <= UInt64(UInt32.max) else {
            throw DecodeError("zone report: zone start LBA \(d.startBlock) is past any zone number", at: 16)
        }
        let id = ZoneID(UInt32(index))
        guard d.type == sequentialWriteRequired else {
            throw DecodeError("zone report: \(id) has zone type \(d.type); ZNS defines only 2 (sequential write required)", at: 0)
        }
        guard let cond = condition(d.state) else {
            throw DecodeError("zone report: \(id) has unknown zone state 0x\(String(d.state, radix: 16))", at: 1)
        }
        guard d.capacityBlocks > 0, d.capacityBlocks <= zoneSizeBlocks else {
            throw DecodeError("zone report: \(id) capacity \(d.capacityBlocks) blocks is not in (0, zone size \(zoneSizeBlocks)]", at: 8)
        }
        let bs = blockSize.bytes
        let (startBytes, o1) = d.startBlock.multipliedReportingOverflow(by: bs)
        let (sizeBytes, o2) = zoneSizeBlocks.multipliedReportingOverflow(by: bs)
        let (_, o3) = startBytes.addingReportingOverflow(sizeBytes)
        guard !o1, !o2, !o3 else {
            throw DecodeError("zone report: \(id) lies past 2^64 bytes", at: 16)
        }
        let start = DeviceOffset(startBytes)
        let capacity = ByteCount(d.capacityBlocks * bs)  // <= zone size: cannot overflow
        let capEnd = start + capacity
        let wp: DeviceOffset
        switch cond {
        case .full: wp = capEnd
        case .empty: wp = start
        default:
            // Clamp in LBAs before multiplying: a wild write pointer must not overflow.
            let rel = d.writePointerBlock < d.startBlock ? 0 : min(d.writePointerBlock - d.startBlock, d.capacityBlocks)
            wp = start + ByteCount(rel * bs)
        }
        return Zone(id: id, type: .sequentialWriteRequired, condition: cond, start: start,
                    size: ByteCount(sizeBytes), capacity: capacity, writePointer: wp)
    }
}
