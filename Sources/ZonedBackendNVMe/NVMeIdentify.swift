// Decoders for the Identify data structures this backend reads (NVMe base and ZNS command set
// specifications): Identify Namespace (CNS 00h), Identify Controller (CNS 01h), and the ZNS
// command set's Identify Namespace (CNS 05h, CSI 02h) and Identify Controller (CNS 06h, CSI 02h).
//
// Invariants:
// - Decoding never traps: every field is read through `FieldReader`, which bounds-checks, and
//   every value that later becomes a shift, a multiplication or an index is range-checked here
//   first; bad bytes give a DecodeError naming the field and its byte offset.
// - Only the fields zbdfs uses are decoded; everything else (reserved or not) is ignored, because
//   these structures come from the device and grow with every revision of the specification.
// - Counts the specification stores 0-based (NLBAF, MOR, MAR) are made 1-based here, once; the
//   "no limit" encodings (MOR/MAR = FFFFFFFFh) become 0, which is what DeviceGeometry means by
//   "no limit".

import ZonedCore

/// Bounds-checked little-endian reads at fixed offsets of a device-returned structure.
struct FieldReader {
    let bytes: [UInt8]
    /// Names the structure in errors: "identify namespace".
    let structure: String

    init(_ bytes: [UInt8], _ structure: String) {
        self.bytes = bytes
        self.structure = structure
    }

    func u8(_ offset: Int, _ field: @autoclosure () -> String) throws(DecodeError) -> UInt8 {
        UInt8(try uint(offset, 1, field()))
    }
    func u16(_ offset: Int, _ field: @autoclosure () -> String) throws(DecodeError) -> UInt16 {
        UInt16(try uint(offset, 2, field()))
    }
    func u32(_ offset: Int, _ field: @autoclosure () -> String) throws(DecodeError) -> UInt32 {
        UInt32(try uint(offset, 4, field()))
    }
    func u64(_ offset: Int, _ field: @autoclosure () -> String) throws(DecodeError) -> UInt64 {
        try uint(offset, 8, field())
    }

    private func uint(_ offset: Int, _ width: Int, _ field: @autoclosure () -> String) throws(DecodeError) -> UInt64 {
        guard offset >= 0, width <= 8, offset <= bytes.count - width else {
            throw DecodeError("\(structure): \(bytes.count) bytes is too short for \(field())", at: offset)
        }
        var v: UInt64 = 0
        for i in 0..<width { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        return v
    }
}

/// Identify Namespace (NVM command set): the namespace's size and its current LBA format.
public struct NVMeNamespaceIdentity: Equatable, Sendable {
    /// NSZE: namespace size in logical blocks.
    public var sizeBlocks: UInt64
    /// Index of the LBA format in use (FLBAS).
    public var formatIndex: Int
    /// Logical block (LBA data) size of that format.
    public var blockSize: ByteCount
    /// Metadata bytes per block of that format (0 for the formats zbdfs can use).
    public var metadataBytes: Int

    public static let byteCount = 4096

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> NVMeNamespaceIdentity {
        let r = FieldReader(bytes, "identify namespace")
        let nsze = try r.u64(0, "NSZE")
        let formats = Int(try r.u8(25, "NLBAF")) + 1  // 0-based count
        let flbas = try r.u8(26, "FLBAS")
        // FLBAS bits 3:0 are the index's low bits; with more than 16 formats bits 6:5 are its high bits.
        let index = Int(flbas & 0x0F) | (formats > 16 ? Int((flbas >> 5) & 0x3) << 4 : 0)
        guard index < formats, index < 64 else {
            throw DecodeError("identify namespace: FLBAS selects LBA format \(index) of \(formats)", at: 26)
        }
        let lbaf = try r.u32(128 + 4 * index, "LBAF\(index)")
        let metadata = Int(lbaf & 0xFFFF)
        let lbads = Int((lbaf >> 16) & 0xFF)
        // LBADS is log2 of the block size; the specification allows 9 (512 B) and up.
        guard lbads >= 9, lbads <= 16 else {
            throw DecodeError("identify namespace: LBA format \(index) has LBADS \(lbads) (block size 2^\(lbads) B)",
                              at: 128 + 4 * index + 2)
        }
        return NVMeNamespaceIdentity(sizeBlocks: nsze, formatIndex: index,
                                     blockSize: ByteCount(UInt64(1) << UInt64(lbads)), metadataBytes: metadata)
    }
}

/// Identify Controller (CNS 01h): the limits of one data transfer, and whether there is a cache.
public struct NVMeControllerIdentity: Equatable, Sendable {
    /// MDTS: the largest transfer as a power of two in units of the controller's minimum memory
    /// page size; 0 = no limit.
    public var mdts: UInt8
    /// VWC bit 0: a volatile write cache is present (Flush matters).
    public var volatileWriteCache: Bool

    public static let byteCount = 4096

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> NVMeControllerIdentity {
        let r = FieldReader(bytes, "identify controller")
        return NVMeControllerIdentity(mdts: try r.u8(77, "MDTS"), volatileWriteCache: try r.u8(525, "VWC") & 1 != 0)
    }
}

/// ZNS Identify Namespace (CNS 05h, CSI 02h): zone resources and the zone size per LBA format.
public struct NVMeZonedNamespaceIdentity: Equatable, Sendable {
    /// Max open resources; 0 = no limit.
    public var maxOpenZones: Int
    /// Max active resources; 0 = no limit.
    public var maxActiveZones: Int
    /// ZSZE of the LBA format in use: zone size in logical blocks.
    public var zoneSizeBlocks: UInt64

    public static let byteCount = 4096
    /// Where the LBA format extensions start (16 bytes each, 64 of them).
    static let formatExtensionOffset = 2816

    public static func decode(_ bytes: [UInt8], formatIndex: Int) throws(DecodeError) -> NVMeZonedNamespaceIdentity {
        let r = FieldReader(bytes, "ZNS identify namespace")
        guard formatIndex >= 0, formatIndex < 64 else {
            throw DecodeError("ZNS identify namespace: LBA format \(formatIndex) has no extension", at: formatExtensionOffset)
        }
        let mar = try r.u32(4, "MAR")
        let mor = try r.u32(8, "MOR")
        let zsze = try r.u64(formatExtensionOffset + 16 * formatIndex, "ZSZE of LBA format \(formatIndex)")
        return NVMeZonedNamespaceIdentity(maxOpenZones: resourceLimit(mor), maxActiveZones: resourceLimit(mar),
                                          zoneSizeBlocks: zsze)
    }

    /// MOR/MAR are 0-based; FFFFFFFFh means no limit. Clamped to Int32 so later arithmetic on
    /// zone counts cannot overflow whatever the device says.
    static func resourceLimit(_ raw: UInt32) -> Int {
        raw == UInt32.max ? 0 : Int(min(raw, UInt32(Int32.max - 1))) + 1
    }
}

/// ZNS Identify Controller (CNS 06h, CSI 02h).
public struct NVMeZonedControllerIdentity: Equatable, Sendable {
    /// ZASL: the largest zone append as a power of two in units of the minimum memory page size;
    /// 0 = MDTS applies.
    public var zasl: UInt8

    public static let byteCount = 4096

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> NVMeZonedControllerIdentity {
        NVMeZonedControllerIdentity(zasl: try FieldReader(bytes, "ZNS identify controller").u8(0, "ZASL"))
    }
}
