// NVMe commands as values: which opcode, which blocks, which command dwords. Building them is
// pure arithmetic, so it is tested on the host; NVMeRing and NVMeAdmin only carry them.
//
// Invariants:
// - Block counts are 1-based here and 0-based on the wire (NLB in CDW12 bits 15:0, as the
//   specification stores it), converted in exactly one place (`blockRange`); a command of 0 or
//   more than 65536 blocks cannot be built (the callers' max IO size keeps far below that).
// - The starting LBA goes in CDW10 (low 32 bits) and CDW11 (high 32 bits); for a zone append it
//   is the zone's start LBA (ZSLBA), and the device answers with the LBA it chose.
// - The data direction Linux uses for a passthrough command comes from the opcode's two low bits
//   (01b host to device, 10b device to host), so opcodes are the specification's, never invented.

import CZonedShim
import ZonedCore

public enum NVMeOpcode: UInt8, Sendable {
    case flush = 0x00
    case write = 0x01
    case read = 0x02
    case zoneManagementSend = 0x79
    case zoneManagementReceive = 0x7A
    case zoneAppend = 0x7D
}

/// Zone Send Action (CDW13 bits 7:0 of Zone Management Send).
public enum NVMeZoneSendAction: UInt8, Sendable {
    case close = 0x1
    case finish = 0x2
    case open = 0x3
    case reset = 0x4
}

/// One IO command: what `zbdfs_nvme_prep_io` puts into a 128-byte SQE.
public struct NVMeIOCommand: Equatable, Sendable {
    public var opcode: NVMeOpcode
    public var nsid: UInt32
    /// User memory the data moves from or to (0 when there is none).
    public var address: UInt64
    public var dataLength: UInt32
    public var cdw10: UInt32 = 0
    public var cdw11: UInt32 = 0
    public var cdw12: UInt32 = 0
    public var cdw13: UInt32 = 0

    /// Largest block count one command carries (NLB is 16 bits, 0-based).
    public static let maxBlocks = 65536

    public static func read(nsid: UInt32, block: UInt64, blocks: Int, into buffer: UnsafeMutableRawPointer,
                            length: Int) -> NVMeIOCommand {
        var c = NVMeIOCommand(opcode: .read, nsid: nsid, address: UInt64(UInt(bitPattern: buffer)),
                              dataLength: UInt32(length))
        c.blockRange(block, blocks)
        return c
    }

    public static func write(nsid: UInt32, block: UInt64, blocks: Int, from buffer: UnsafeRawPointer,
                             length: Int) -> NVMeIOCommand {
        var c = NVMeIOCommand(opcode: .write, nsid: nsid, address: UInt64(UInt(bitPattern: buffer)),
                              dataLength: UInt32(length))
        c.blockRange(block, blocks)
        return c
    }

    /// Zone Append to the zone starting at `zoneStartBlock`; the completion's result (CQE DW0-DW1)
    /// is the LBA where the data landed.
    public static func append(nsid: UInt32, zoneStartBlock: UInt64, blocks: Int, from buffer: UnsafeRawPointer,
                              length: Int) -> NVMeIOCommand {
        var c = NVMeIOCommand(opcode: .zoneAppend, nsid: nsid, address: UInt64(UInt(bitPattern: buffer)),
                              dataLength: UInt32(length))
        c.blockRange(zoneStartBlock, blocks)
        return c
    }

    /// SLBA in CDW10/11 and the 0-based NLB in CDW12.
    private mutating func blockRange(_ block: UInt64, _ blocks: Int) {
        precondition(blocks >= 1 && blocks <= Self.maxBlocks, "NVMe command of \(blocks) blocks")
        cdw10 = UInt32(truncatingIfNeeded: block)
        cdw11 = UInt32(truncatingIfNeeded: block >> 32)
        cdw12 = UInt32(blocks - 1)
    }

    /// The starting LBA the command names.
    public var startBlock: UInt64 { UInt64(cdw11) << 32 | UInt64(cdw10) }
    /// The number of blocks it moves (1-based), for commands that move blocks.
    public var blockCount: Int { Int(cdw12 & 0xFFFF) + 1 }

    /// The C shim's view of the command.
    var shim: zbdfs_nvme_io {
        var s = zbdfs_nvme_io()
        s.opcode = opcode.rawValue
        s.nsid = nsid
        s.addr = address
        s.data_len = dataLength
        s.cdw10 = cdw10
        s.cdw11 = cdw11
        s.cdw12 = cdw12
        s.cdw13 = cdw13
        return s
    }
}
