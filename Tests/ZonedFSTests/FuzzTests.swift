// Fuzzing the on-device decoders (superblock, log frame header, frame, record payload) with seeded
// mutations of valid encodings: bit flips, byte overwrites, truncation, extension, length-field
// rewrites, and record splicing — half of them with checksums recomputed so the structural checks
// behind the checksums are reached. Every input must give a typed DecodeError or a value that
// re-encodes to exactly the input bytes; a trap fails the run. ZBDFS_FUZZ_INPUTS overrides the
// total (default 100,000).

import Foundation
import Testing
import ZonedCore
import ZonedEngine
import ZonedIndex
@testable import ZonedFS

@Suite("Decoder fuzzing", .timeLimit(.minutes(15)))
struct FuzzTests {
    static var total: Int { Int(ProcessInfo.processInfo.environment["ZBDFS_FUZZ_INPUTS"] ?? "") ?? 100_000 }

    static func sampleRecords(_ rng: inout SeededRandom) -> [LogRecord] {
        let name = try! EntryName("n\(rng.below(1000))")
        var a = InodeAttributes(number: 2 + rng.below(50), kind: .file, mode: 0o644, uid: 1000, gid: 100, nlink: 1, time: 1_700_000_000_000_000_000)
        if rng.chance(0.3) { a.kind = .symlink; a.target = Array("/target/\(rng.below(99))".utf8) }
        let crcs = (0..<Int(1 + rng.below(4))).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
        let ext = FileExtent(fileOffset: rng.below(100) * 4096, length: UInt64(crcs.count) * 4096, device: DeviceOffset(rng.below(1000) * 4096))
        var counters = LifetimeCounters()
        counters.userBytesWritten = rng.below(1 << 40); counters.dataBytesWritten = rng.below(1 << 40)
        counters.metadataBytesWritten = rng.below(1 << 30); counters.zonesReclaimed = rng.below(1000)
        let all: [LogRecord] = [
            .zoneHeader(previous: rng.chance(0.5) ? nil : ZoneID(UInt32(rng.below(64)))), .next(zone: ZoneID(UInt32(rng.below(64)))),
            .checkpointBegin(nextInode: rng.below(1 << 20)), .checkpointEnd, .inode(a),
            .link(parent: 1, name: name, inode: a.number), .unlink(parent: 1, name: name),
            .rename(fromParent: 1, fromName: name, toParent: 3, toName: try! EntryName("m")),
            .exchange(parentA: 1, nameA: name, parentB: 4, nameB: try! EntryName("x")), .removeInode(a.number),
            .file(a.number, .mapped(ext, checksums: crcs, sizeAtLeast: ext.fileEnd)),
            .file(a.number, .mapped(FileExtent(fileOffset: 0, length: 8192, device: DeviceOffset(UInt64(4096)), kind: .prealloc), checksums: [], sizeAtLeast: 0)),
            .file(a.number, .truncated(to: rng.below(1 << 30))), .file(a.number, .punched(at: 4096, length: 8192)),
            .file(a.number, .extended(to: rng.below(1 << 30))),
            .counters(counters),
            .tableAdded(TableDescriptor(id: rng.below(1 << 20), level: Int(rng.below(7)),
                                        location: TableLocation(address: rng.below(1 << 20) * 4096, length: (2 + rng.below(64)) * 4096),
                                        firstKey: .inode(rng.below(100)), lastKey: .entry(parent: rng.below(100), name: name.bytes),
                                        entryCount: 1 + rng.below(1 << 20), maxSequence: rng.below(1 << 40))),
            .tableRemoved(id: rng.below(1 << 20)), .indexCounters(nextTableID: rng.below(1 << 20)),
            .checkpointExtent(a.number, ext),
            .checkpointChecksums(ChecksumRun(at: DeviceOffset(rng.below(1 << 20) * 4096), crcs: crcs.isEmpty ? [7] : crcs)),
        ]
        return (0..<Int(1 + rng.below(6))).map { _ in all[Int(rng.below(UInt64(all.count)))] }
    }

    static func mutate(_ input: [UInt8], _ rng: inout SeededRandom) -> [UInt8] {
        var b = input
        for _ in 0..<Int(1 + rng.below(3)) {
            switch rng.below(6) {
            case 0 where !b.isEmpty:  // flip a bit
                let i = Int(rng.below(UInt64(b.count)))
                b[i] ^= UInt8(1) << UInt8(rng.below(8))
            case 1 where !b.isEmpty:  // overwrite a byte with an edge value
                let i = Int(rng.below(UInt64(b.count)))
                b[i] = [0, 1, 0x7F, 0x80, 0xFF, UInt8(truncatingIfNeeded: rng.next())][Int(rng.below(6))]
            case 2 where !b.isEmpty:  // truncate
                b = Array(b[0..<Int(rng.below(UInt64(b.count)))])
            case 3:  // extend
                b += rng.bytes(Int(1 + rng.below(16)))
            case 4 where b.count >= 4:  // rewrite a 32-bit field (lengths, counts) with an edge value
                let i = Int(rng.below(UInt64(b.count - 3)))
                let v: UInt32 = [0, 1, 255, 256, 0xFFFF, 0xFFFF_FFFF, UInt32(truncatingIfNeeded: rng.next() % 300)][Int(rng.below(7))]
                withUnsafeBytes(of: v.littleEndian) { for k in 0..<4 { b[i + k] = $0[k] } }
            default:  // duplicate a slice (splices records)
                guard b.count > 2 else { continue }
                let s = Int(rng.below(UInt64(b.count - 1)))
                let e = s + Int(1 + rng.below(UInt64(min(32, b.count - s))))
                b.insert(contentsOf: b[s..<min(e, b.count)], at: Int(rng.below(UInt64(b.count))))
            }
        }
        return b
    }

    @Test("100,000 mutated inputs: a typed error or an exact re-encoding, never a trap")
    func decodersNeverTrapAndRoundTrip() throws {
        var rng = SeededRandom(seed: 0xF022)
        var decoded = [0, 0, 0, 0], rejected = [0, 0, 0, 0]
        let g = DeviceGeometry(zoneCount: 64, zoneSize: .mib(4), zoneCapacity: .mib(3), logicalBlockSize: .kib(4))
        let sb = Superblock(generation: 7, uuid: Array(0..<16), label: "fuzz", geometry: g, superblockZones: (0, 1),
                            logStartZone: 5, logStartSequence: 42, createdNanoseconds: 123)
        let sbBytes = sb.encode(copySize: 4096)
        for i in 0..<Self.total {
            switch i % 4 {
            case 0:  // superblock, checksum recomputed half of the time
                var m = Self.mutate(sbBytes, &rng)
                if rng.chance(0.5), m.count >= Superblock.checksumOffset + 4 {
                    let crc = CRC32C.checksum(Array(m[0..<Superblock.checksumOffset]))
                    withUnsafeBytes(of: crc.littleEndian) { for k in 0..<4 { m[Superblock.checksumOffset + k] = $0[k] } }
                }
                do {
                    let d = try Superblock.decode(m)
                    let same = d.encode(copySize: m.count) == m
                    #expect(same, "superblock input \(i) decoded but does not re-encode")
                    decoded[0] += 1
                } catch { rejected[0] += 1 }
            case 1:  // frame header
                let h = LogFrameHeader(fsid: rng.next(), sequence: rng.next(), payloadLength: UInt32(rng.below(1 << 20)), payloadCRC: UInt32(truncatingIfNeeded: rng.next()))
                var m = Self.mutate(h.encode(), &rng)
                if rng.chance(0.5), m.count >= 36 {
                    let crc = CRC32C.checksum(Array(m[0..<32]))
                    withUnsafeBytes(of: crc.littleEndian) { for k in 0..<4 { m[32 + k] = $0[k] } }
                }
                do {
                    let d = try LogFrameHeader.decode(m)
                    let same = d.encode() == m
                    #expect(same, "header input \(i) decoded but does not re-encode")
                    decoded[1] += 1
                } catch { rejected[1] += 1 }
            case 2:  // record payload (no checksum in the way)
                let m = Self.mutate(LogFrame.payload(Self.sampleRecords(&rng)), &rng)
                do {
                    let d = try LogFrame.decodePayload(m)
                    let same = LogFrame.payload(d) == m
                    #expect(same, "payload input \(i) decoded but does not re-encode")
                    decoded[2] += 1
                } catch { rejected[2] += 1 }
            default:  // whole frame; half rebuilt around the mutated payload with valid checksums
                let payload = LogFrame.payload(Self.sampleRecords(&rng))
                let m = rng.chance(0.5)
                    ? LogFrame.encode(fsid: 9, sequence: UInt64(i), payload: Self.mutate(payload, &rng), block: 512)
                    : Self.mutate(LogFrame.encode(fsid: 9, sequence: UInt64(i), payload: payload, block: 512), &rng)
                do {
                    let (h, records) = try LogFrame.decode(m, block: 512)
                    let same = LogFrame.encode(fsid: h.fsid, sequence: h.sequence, payload: LogFrame.payload(records), block: 512) == m
                    #expect(same, "frame input \(i) decoded but does not re-encode")
                    decoded[3] += 1
                } catch { rejected[3] += 1 }
            }
        }
        // The mutations must reach both outcomes for every decoder, or the fuzzing tests nothing.
        for k in 0..<4 { #expect(decoded[k] > 0 && rejected[k] > 0, "decoder \(k): \(decoded[k]) decoded, \(rejected[k]) rejected") }
        print("fuzz: \(Self.total) inputs; decoded \(decoded), rejected \(rejected) (superblock, header, payload, frame)")
    }
}
