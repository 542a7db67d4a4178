// The identify and zone report decoders on hand-made byte buffers (the layouts of the NVMe base and
// ZNS specifications), then a seeded fuzz: bad bytes give a DecodeError or a value, never a trap.

import Foundation
import Testing
import ZonedCore
@testable import ZonedBackendNVMe

/// Identify structures as a device would send them, built field by field.
enum IdentifyBytes {
    static func put<T: FixedWidthInteger>(_ v: T, at offset: Int, in b: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { for (i, x) in $0.enumerated() { b[offset + i] = x } }
    }

    /// Identify Namespace: `formats` LBA formats of 2^lbads bytes, format `current` in use.
    static func namespace(blocks: UInt64, lbads: [UInt8], metadata: [UInt16]? = nil, current: Int) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 4096)
        put(blocks, at: 0, in: &b)   // NSZE
        put(blocks, at: 8, in: &b)   // NCAP
        b[25] = UInt8(lbads.count - 1)                                     // NLBAF, 0-based
        b[26] = UInt8(current & 0xF) | UInt8((current >> 4) & 0x3) << 5   // FLBAS
        for (i, l) in lbads.enumerated() {
            let ms = UInt32(metadata?[i] ?? 0)
            put(UInt32(l) << 16 | ms, at: 128 + 4 * i, in: &b)
        }
        return b
    }

    static func zonedNamespace(mor: UInt32, mar: UInt32, zoneBlocks: [UInt64]) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 4096)
        put(mar, at: 4, in: &b)
        put(mor, at: 8, in: &b)
        for (i, z) in zoneBlocks.enumerated() { put(z, at: 2816 + 16 * i, in: &b) }
        return b
    }

    static func controller(mdts: UInt8, vwc: Bool = true) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 4096)
        b[77] = mdts
        b[525] = vwc ? 1 : 0
        return b
    }

    static func zonedController(zasl: UInt8) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 4096)
        b[0] = zasl
        return b
    }
}

@Suite("NVMe decoders", .timeLimit(.minutes(10)))
struct DecoderTests {
    @Test func identifyNamespaceTakesTheCurrentFormat() throws {
        let bytes = IdentifyBytes.namespace(blocks: 131072, lbads: [9, 12], current: 1)
        let ns = try NVMeNamespaceIdentity.decode(bytes)
        #expect(ns == NVMeNamespaceIdentity(sizeBlocks: 131072, formatIndex: 1, blockSize: ByteCount(4096), metadataBytes: 0))
    }

    @Test func identifyNamespaceUsesFLBASHighBitsBeyondSixteenFormats() throws {
        var lbads = [UInt8](repeating: 9, count: 20)
        lbads[18] = 12
        let ns = try NVMeNamespaceIdentity.decode(IdentifyBytes.namespace(blocks: 8, lbads: lbads, current: 18))
        #expect(ns.formatIndex == 18 && ns.blockSize == ByteCount(4096))
        // With 16 formats or fewer the high bits are reserved and ignored.
        var small = IdentifyBytes.namespace(blocks: 8, lbads: [9, 12], current: 1)
        small[26] |= 0x60
        #expect(try NVMeNamespaceIdentity.decode(small).formatIndex == 1)
    }

    @Test func identifyNamespaceRefusesWhatItCannotUse() {
        var b = IdentifyBytes.namespace(blocks: 8, lbads: [9], current: 0)
        b[26] = 3  // format 3 of 1
        #expect(throws: DecodeError.self) { try NVMeNamespaceIdentity.decode(b) }
        let huge = IdentifyBytes.namespace(blocks: 8, lbads: [40], current: 0)
        #expect(throws: DecodeError.self) { try NVMeNamespaceIdentity.decode(huge) }
        let tiny = IdentifyBytes.namespace(blocks: 8, lbads: [8], current: 0)
        #expect(throws: DecodeError.self) { try NVMeNamespaceIdentity.decode(tiny) }
        #expect(throws: DecodeError.self) { try NVMeNamespaceIdentity.decode(Array(b.prefix(100))) }
        let meta = IdentifyBytes.namespace(blocks: 8, lbads: [12], metadata: [8], current: 0)
        #expect((try? NVMeNamespaceIdentity.decode(meta))?.metadataBytes == 8)
    }

    @Test func zonedNamespaceLimitsAreOneBasedAndAllOnesIsNoLimit() throws {
        let b = IdentifyBytes.zonedNamespace(mor: 13, mar: 13, zoneBlocks: [32768, 4096])
        let z = try NVMeZonedNamespaceIdentity.decode(b, formatIndex: 1)
        #expect(z == NVMeZonedNamespaceIdentity(maxOpenZones: 14, maxActiveZones: 14, zoneSizeBlocks: 4096))
        let none = try NVMeZonedNamespaceIdentity.decode(IdentifyBytes.zonedNamespace(mor: .max, mar: .max, zoneBlocks: [1]), formatIndex: 0)
        #expect(none.maxOpenZones == 0 && none.maxActiveZones == 0)
        #expect(throws: DecodeError.self) { try NVMeZonedNamespaceIdentity.decode(b, formatIndex: 64) }
        #expect(throws: DecodeError.self) { try NVMeZonedNamespaceIdentity.decode(Array(b.prefix(2900)), formatIndex: 10) }
    }

    @Test func controllers() throws {
        #expect(try NVMeControllerIdentity.decode(IdentifyBytes.controller(mdts: 7)) == NVMeControllerIdentity(mdts: 7, volatileWriteCache: true))
        #expect(try NVMeZonedControllerIdentity.decode(IdentifyBytes.zonedController(zasl: 5)).zasl == 5)
        #expect(throws: DecodeError.self) { try NVMeControllerIdentity.decode([UInt8](repeating: 0, count: 77)) }
        #expect(throws: DecodeError.self) { try NVMeZonedControllerIdentity.decode([]) }
    }

    static let zoneBlocks: UInt64 = 4096  // 16 MiB of 4 KiB blocks

    @Test func zoneReportRoundTripsAndMaps() throws {
        let ds = [
            NVMeZoneDescriptor(type: 2, state: 0x1, capacityBlocks: 3072, startBlock: 0, writePointerBlock: 0),
            NVMeZoneDescriptor(type: 2, state: 0x2, capacityBlocks: 3072, startBlock: 4096, writePointerBlock: 4096 + 10),
            NVMeZoneDescriptor(type: 2, state: 0xE, capacityBlocks: 3072, startBlock: 8192, writePointerBlock: 8192 + 4096),
            NVMeZoneDescriptor(type: 2, state: 0xD, capacityBlocks: 3072, startBlock: 12288, writePointerBlock: .max),
        ]
        let bytes = NVMeZoneReport.encode(ds)
        #expect(bytes.count == 64 + 4 * 64)
        #expect(try NVMeZoneReport.decode(bytes) == ds)
        let zones = try ds.map { try NVMeZoneReport.zone($0, blockSize: ByteCount(4096), zoneSizeBlocks: Self.zoneBlocks) }
        #expect(zones.map(\.id) == [0, 1, 2, 3].map { ZoneID(UInt32($0)) })
        #expect(zones.map(\.condition) == [.empty, .implicitlyOpen, .full, .readOnly])
        #expect(zones[1].writePointer == DeviceOffset(UInt64(4096 + 10) * 4096))
        #expect(zones[2].writePointer == zones[2].start + ByteCount.mib(12))  // full: capacity end, not zone end
        #expect(zones[3].writePointer == zones[3].start + ByteCount.mib(12))  // wild wp clamped
        #expect(zones.allSatisfy { $0.size == .mib(16) && $0.capacity == .mib(12) && $0.type == .sequentialWriteRequired })
    }

    @Test func zoneReportTrustsOnlyWholeDescriptorsInTheBuffer() throws {
        let d = NVMeZoneDescriptor(type: 2, state: 1, capacityBlocks: 1, startBlock: 0, writePointerBlock: 0)
        let overcounted = NVMeZoneReport.encode([d, d], reportedCount: 1000)
        #expect(try NVMeZoneReport.decode(overcounted).count == 2)
        #expect(try NVMeZoneReport.decode(Array(overcounted.dropLast(1))).count == 1)
        #expect(try NVMeZoneReport.decode(Array(overcounted.prefix(40))).isEmpty)
        #expect(throws: DecodeError.self) { try NVMeZoneReport.decode([1, 2, 3]) }
    }

    @Test func zoneMappingRefusesNonsense() {
        func map(_ d: NVMeZoneDescriptor) -> Zone? {
            try? NVMeZoneReport.zone(d, blockSize: ByteCount(4096), zoneSizeBlocks: Self.zoneBlocks)
        }
        let ok = NVMeZoneDescriptor(type: 2, state: 1, capacityBlocks: 100, startBlock: 4096, writePointerBlock: 4096)
        #expect(map(ok) != nil)
        var d = ok; d.type = 1; #expect(map(d) == nil)                  // conventional: not ZNS
        d = ok; d.state = 0x7; #expect(map(d) == nil)                   // undefined state
        d = ok; d.startBlock = 4097; #expect(map(d) == nil)             // not on a zone boundary
        d = ok; d.capacityBlocks = 0; #expect(map(d) == nil)
        d = ok; d.capacityBlocks = 4097; #expect(map(d) == nil)         // capacity above the zone size
        d = ok; d.startBlock = UInt64.max - 4095; #expect(map(d) == nil) // past 2^64 bytes / zone numbers
        #expect((try? NVMeZoneReport.zone(ok, blockSize: ByteCount(4096), zoneSizeBlocks: 0)) == nil)
    }

    /// Seeded mutations of valid structures: every input decodes or throws; nothing traps. Zone
    /// descriptors that decode also go through the mapping, and re-encode byte for byte.
    @Test func fuzzDecodersNeverTrap() {
        let total = Int(ProcessInfo.processInfo.environment["ZBDFS_FUZZ_INPUTS"] ?? "") ?? 20_000
        var rng = SeededRandom(seed: 0x4E56_4D65)
        let seeds: [[UInt8]] = [
            IdentifyBytes.namespace(blocks: 131072, lbads: [9, 12, 12], current: 1),
            IdentifyBytes.zonedNamespace(mor: 13, mar: 13, zoneBlocks: [4096, 4096, 32768]),
            IdentifyBytes.controller(mdts: 7),
            NVMeZoneReport.encode((0..<4).map {
                NVMeZoneDescriptor(type: 2, state: [1, 2, 4, 0xE][$0], capacityBlocks: 3072,
                                   startBlock: UInt64($0) * 4096, writePointerBlock: UInt64($0) * 4096 + 7)
            }),
        ]
        var decoded = 0
        for i in 0..<total {
            var b = seeds[i % seeds.count]
            for _ in 0..<Int(1 + rng.below(4)) {
                switch rng.below(5) {
                case 0 where !b.isEmpty: b[Int(rng.below(UInt64(b.count)))] ^= UInt8(1) << UInt8(rng.below(8))
                case 1 where !b.isEmpty: b[Int(rng.below(UInt64(b.count)))] = [0, 0x0F, 0x80, 0xFF][Int(rng.below(4))]
                case 2 where !b.isEmpty: b = Array(b.prefix(Int(rng.below(UInt64(b.count)))))
                case 3: b += rng.bytes(Int(rng.below(130)))
                default:
                    // Hit the fields that drive arithmetic: counts, FLBAS, LBAF, ZSZE, MDTS, LBAs.
                    let hot = [0, 8, 16, 24, 25, 26, 77, 128, 132, 2816, 2832, 64 + 8, 64 + 16, 64 + 24, 128 + 16]
                    let at = hot[Int(rng.below(UInt64(hot.count)))]
                    if at + 8 <= b.count { IdentifyBytes.put(rng.next() >> UInt64(rng.below(64)), at: at, in: &b) }
                }
            }
            if (try? NVMeNamespaceIdentity.decode(b)) != nil { decoded += 1 }
            _ = try? NVMeZonedNamespaceIdentity.decode(b, formatIndex: Int(rng.below(70)))
            _ = try? NVMeControllerIdentity.decode(b)
            _ = try? NVMeZonedControllerIdentity.decode(b)
            // Plain checks in the loop (an #expect per input would dominate the run time).
            if let ds = try? NVMeZoneReport.decode(b) {
                // A 4 KiB identify buffer read as a report holds 63 descriptors; a few show as much.
                for d in ds.prefix(4) {
                    let back = try? NVMeZoneReport.decode(NVMeZoneReport.encode([d]))
                    if d.encoded.count != NVMeZoneDescriptor.byteCount || back != [d] {
                        Issue.record("descriptor \(d) does not re-encode to itself (input \(i))")
                    }
                    for bs in [UInt64(512), 4096, 65536] {
                        if let z = try? NVMeZoneReport.zone(d, blockSize: ByteCount(bs), zoneSizeBlocks: 1 + rng.below(1 << 20)),
                           !(z.capacity <= z.size && z.start <= z.writePointer && z.writePointer <= z.start + z.capacity) {
                            Issue.record("descriptor \(d) maps to an impossible zone \(z) (input \(i))")
                        }
                    }
                }
            }
            if let id = identity(b, rng: &rng) {
                let lim = NVMeQueueLimits(maxHardwareBytes: rng.chance(0.5) ? rng.below(1 << 24) : nil,
                                          maxSegments: rng.chance(0.5) ? Int(rng.below(300)) : nil)
                if case .success(let g) = NVMeGeometry.geometry(id, limits: lim, capacity: ByteCount(4096 * (1 + rng.below(8)))),
                   let p = g.problem() {
                    Issue.record("geometry accepted with a problem: \(p) (input \(i))")
                }
            }
        }
        #expect(decoded > 0)
    }

    /// An identity from fuzzed bytes where they decode, to drive the geometry arithmetic too.
    private func identity(_ b: [UInt8], rng: inout SeededRandom) -> NVMeIdentity? {
        guard let ns = try? NVMeNamespaceIdentity.decode(b) else { return nil }
        let zoned = NVMeZonedNamespaceIdentity(maxOpenZones: Int(rng.below(20)), maxActiveZones: Int(rng.below(20)),
                                               zoneSizeBlocks: rng.chance(0.5) ? ns.sizeBlocks / max(1, rng.below(64)) : rng.next())
        return NVMeIdentity(namespace: ns, zoned: zoned,
                            controller: NVMeControllerIdentity(mdts: UInt8(truncatingIfNeeded: rng.next()), volatileWriteCache: true),
                            zonedController: NVMeZonedControllerIdentity(zasl: UInt8(truncatingIfNeeded: rng.next())))
    }
}
