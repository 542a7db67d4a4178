// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every on-device
// structure and data block. The CPU's CRC-32C instruction when it has one (through the C shim:
// an intrinsic Swift cannot call), else table-driven slicing by 8 (`software`).
// Check value (RFC 3720 / iSCSI): crc32c("123456789") == 0xE3069283.

import CZonedShim

public enum CRC32C {
    /// Whether `update` uses the CPU instruction.
    public static let usesHardware = zbdfs_crc32c_hw_available() == 1

    private static let tables: [[UInt32]] = {
        var t = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[0][i] = c
        }
        for i in 0..<256 {
            for k in 1..<8 { t[k][i] = (t[k - 1][i] >> 8) ^ t[0][Int(t[k - 1][i] & 0xFF)] }
        }
        return t
    }()

    /// Continues a running checksum (start with 0).
    public static func update(_ crc: UInt32, _ data: UnsafeRawBufferPointer) -> UInt32 {
        guard usesHardware, let base = data.baseAddress else { return software(crc, data) }
        return ~zbdfs_crc32c_hw(~crc, base, data.count)
    }

    /// The table-driven computation (what `update` does without the CPU instruction).
    public static func software(_ crc: UInt32, _ data: UnsafeRawBufferPointer) -> UInt32 {
        var c = ~crc
        let t = tables
        var i = 0
        let n = data.count
        t.withUnsafeBufferPointer { tp in
            let t0 = tp[0], t1 = tp[1], t2 = tp[2], t3 = tp[3], t4 = tp[4], t5 = tp[5], t6 = tp[6], t7 = tp[7]
            while n - i >= 8 {
                let lo = UInt32(data[i]) | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2]) << 16 | UInt32(data[i + 3]) << 24
                let hi = UInt32(data[i + 4]) | UInt32(data[i + 5]) << 8 | UInt32(data[i + 6]) << 16 | UInt32(data[i + 7]) << 24
                let x = lo ^ c
                c = t7[Int(x & 0xFF)] ^ t6[Int((x >> 8) & 0xFF)] ^ t5[Int((x >> 16) & 0xFF)] ^ t4[Int(x >> 24)]
                    ^ t3[Int(hi & 0xFF)] ^ t2[Int((hi >> 8) & 0xFF)] ^ t1[Int((hi >> 16) & 0xFF)] ^ t0[Int(hi >> 24)]
                i += 8
            }
            while i < n {
                c = t0[Int((c ^ UInt32(data[i])) & 0xFF)] ^ (c >> 8)
                i += 1
            }
        }
        return ~c
    }

    public static func checksum(_ data: UnsafeRawBufferPointer) -> UInt32 { update(0, data) }

    /// The checksum of each consecutive `block`-byte block of `data` (the last may be shorter).
    /// With the CPU instruction, three blocks are computed at once.
    public static func blockChecksums(_ data: UnsafeRawBufferPointer, block: Int) -> [UInt32] {
        let whole = data.count / block
        var out = [UInt32](repeating: 0, count: (data.count + block - 1) / block)
        if usesHardware, block % 8 == 0, whole > 0, let base = data.baseAddress {
            out.withUnsafeMutableBufferPointer { zbdfs_crc32c_hw_blocks(base, block, whole, $0.baseAddress!) }
        } else {
            for i in 0..<whole { out[i] = checksum(UnsafeRawBufferPointer(rebasing: data[(i * block)..<((i + 1) * block)])) }
        }
        if whole < out.count { out[whole] = checksum(UnsafeRawBufferPointer(rebasing: data[(whole * block)...])) }
        return out
    }
    public static func checksum(_ bytes: [UInt8]) -> UInt32 { bytes.withUnsafeBytes { checksum($0) } }
}
