// Geometry from identify data and queue limits, command dwords, and the sysfs name rules: the
// arithmetic the device cannot check for us.

import Testing
import ZonedCore
@testable import ZonedBackendNVMe

@Suite("NVMe geometry and commands", .timeLimit(.minutes(10)))
struct GeometryAndCommandTests {
    /// The QEMU namespace the guest suite uses: 512 MiB, 16 MiB zones, 4 KiB blocks, 14/14, zasl=5, mdts=7.
    static func qemu(mdts: UInt8 = 7, zasl: UInt8 = 5, mor: Int = 14, mar: Int = 14) -> NVMeIdentity {
        NVMeIdentity(namespace: NVMeNamespaceIdentity(sizeBlocks: 131072, formatIndex: 0, blockSize: ByteCount(4096), metadataBytes: 0),
                     zoned: NVMeZonedNamespaceIdentity(maxOpenZones: mor, maxActiveZones: mar, zoneSizeBlocks: 4096),
                     controller: NVMeControllerIdentity(mdts: mdts, volatileWriteCache: true),
                     zonedController: NVMeZonedControllerIdentity(zasl: zasl))
    }

    @Test func qemuNamespace() throws {
        let g = try NVMeGeometry.geometry(Self.qemu(), limits: NVMeQueueLimits(maxHardwareBytes: 512 << 10, maxSegments: 127),
                                          capacity: .mib(12)).get()
        #expect(g.zoneCount == 32 && g.zoneSize == .mib(16) && g.zoneCapacity == .mib(12))
        #expect(g.maxOpenZones == 14 && g.maxActiveZones == 14 && g.conventionalZoneCount == 0 && g.commandSet == .zns)
        #expect(g.maxAppendBytes == .kib(128))   // zasl=5: 2^5 x 4 KiB
        #expect(g.maxWriteBytes == .kib(504))    // 126 pages: a buffer off a page boundary spans one more
    }

    @Test func transferLimits() {
        let id = Self.qemu()
        #expect(NVMeGeometry.maxTransferBytes(id, NVMeQueueLimits(maxHardwareBytes: 256 << 10, maxSegments: 1000)) == .kib(256))
        #expect(NVMeGeometry.maxTransferBytes(Self.qemu(mdts: 5), NVMeQueueLimits()) == .kib(128))
        // No MDTS limit and no sysfs: 127 segments assumed.
        #expect(NVMeGeometry.maxTransferBytes(Self.qemu(mdts: 0), NVMeQueueLimits()) == .kib(504))
        // ZASL 0: appends as large as any transfer; ZASL above MDTS: capped by it.
        let t = NVMeGeometry.maxTransferBytes(id, NVMeQueueLimits())
        #expect(NVMeGeometry.maxAppendBytes(Self.qemu(zasl: 0), maxTransfer: t) == t)
        #expect(NVMeGeometry.maxAppendBytes(Self.qemu(zasl: 9), maxTransfer: t) == t)
        // Absurd values stay in range.
        #expect(NVMeGeometry.maxTransferBytes(Self.qemu(mdts: 255), NVMeQueueLimits(maxSegments: 1 << 30)) == ByteCount(65536 * 4096))
        #expect(NVMeGeometry.maxAppendBytes(Self.qemu(zasl: 255), maxTransfer: .mib(1)) == .mib(1))
        #expect(NVMeGeometry.maxTransferBytes(id, NVMeQueueLimits(maxHardwareBytes: 100, maxSegments: 0)) == .kib(4))
    }

    @Test func refusals() {
        var id = Self.qemu()
        id.namespace.sizeBlocks = 131072 + 100
        #expect(throws: DeviceError.self) { try NVMeGeometry.geometry(id, limits: NVMeQueueLimits(), capacity: .mib(12)).get() }
        id = Self.qemu()
        id.namespace.metadataBytes = 8
        #expect(throws: DeviceError.self) { try NVMeGeometry.geometry(id, limits: NVMeQueueLimits(), capacity: .mib(12)).get() }
        id = Self.qemu()
        id.zoned.zoneSizeBlocks = 3000  // 3000 x 4 KiB is not a power of two
        id.namespace.sizeBlocks = 30000
        #expect(throws: DeviceError.self) { try NVMeGeometry.geometry(id, limits: NVMeQueueLimits(), capacity: .mib(1)).get() }
        id = Self.qemu()
        id.zoned.zoneSizeBlocks = 0
        #expect(throws: DeviceError.self) { try NVMeGeometry.geometry(id, limits: NVMeQueueLimits(), capacity: .mib(1)).get() }
        // Open above active is bounded by active; limits above the zone count mean none.
        let g = try? NVMeGeometry.geometry(Self.qemu(mor: 20, mar: 10), limits: NVMeQueueLimits(), capacity: .mib(12)).get()
        #expect(g?.maxOpenZones == 10 && g?.maxActiveZones == 10)
        let none = try? NVMeGeometry.geometry(Self.qemu(mor: 100, mar: 100), limits: NVMeQueueLimits(), capacity: .mib(12)).get()
        #expect(none?.maxOpenZones == 0 && none?.maxActiveZones == 0)
    }

    @Test func commandDwords() {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 8192, alignment: 4096)
        defer { buf.deallocate() }
        let r = NVMeIOCommand.read(nsid: 1, block: 0x1_2345_6789, blocks: 2, into: buf, length: 8192)
        #expect(r.opcode == .read && r.nsid == 1 && r.dataLength == 8192)
        #expect(r.cdw10 == 0x2345_6789 && r.cdw11 == 0x1 && r.cdw12 == 1)
        #expect(r.startBlock == 0x1_2345_6789 && r.blockCount == 2)
        #expect(r.address == UInt64(UInt(bitPattern: buf)))
        let a = NVMeIOCommand.append(nsid: 3, zoneStartBlock: 4096, blocks: 32, from: buf, length: 131072)
        #expect(a.opcode.rawValue == 0x7D && a.cdw10 == 4096 && a.cdw12 == 31)
        let w = NVMeIOCommand.write(nsid: 1, block: 7, blocks: NVMeIOCommand.maxBlocks, from: buf, length: 0)
        #expect(w.opcode.rawValue == 0x01 && w.cdw12 == 0xFFFF)
        // Data directions Linux derives from the opcode's low bits.
        #expect(NVMeOpcode.write.rawValue & 3 == 1 && NVMeOpcode.zoneAppend.rawValue & 3 == 1)
        #expect(NVMeOpcode.read.rawValue & 3 == 2 && NVMeOpcode.zoneManagementReceive.rawValue & 3 == 2)
    }

    @Test func namesOfNVMeNodes() {
        #expect(NVMePaths.parseName("ng0n1", prefix: "ng")! == (0, 1))
        #expect(NVMePaths.parseName("nvme12n3", prefix: "nvme")! == (12, 3))
        for bad in ["nvme0c1n2", "ng0n1p1", "ng0", "ngn1", "nvme0n", "sda", "ng0n1n2"] {
            #expect(NVMePaths.parseName(bad, prefix: bad.hasPrefix("ng") ? "ng" : "nvme") == nil, "\(bad)")
        }
        #expect(NVMePaths.dirname("/sys/devices/x/nvme/nvme0/ng0n1") == "/sys/devices/x/nvme/nvme0")
        #expect(NVMePaths.basename("/sys/devices/x/ng0n1") == "ng0n1")
        #expect(!NVMePaths.isGenericCharDevice("/dev/null"))
        #expect(NVMePaths.genericCharDevice(for: "/dev/null") == nil)
        #expect(NVMePaths.genericCharDevice(for: "/nonexistent") == nil)
    }
}
