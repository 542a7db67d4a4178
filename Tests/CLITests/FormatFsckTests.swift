// End-to-end tests of `zbdfs format` and `zbdfs fsck` through the built binary: the report and its
// JSON, refusals (an existing zbdfs, foreign file systems, devices zbdfs cannot use) that leave the
// device byte for byte as it was, fsck's exit status (0 clean, 1 problems, 2 cannot read) and that
// fsck never changes the image.
//
// Exit status of refusals, as README.md documents: format exits 2 (nothing written) both for a
// device zbdfs cannot use and for a file system found without --force.

import Foundation
import Testing
import ZonedTestSupport

/// The zbdfs-demo-files binary built beside zbdfs (writes files through the library).
func demoFilesBinary() throws -> String {
    let p = URL(fileURLWithPath: try zbdfsBinary()).deletingLastPathComponent().appendingPathComponent("zbdfs-demo-files").path
    guard FileManager.default.isExecutableFile(atPath: p) else {
        throw ProgramMissing(message: "zbdfs-demo-files not found at \(p); run `swift build` first")
    }
    return p
}

func runDemoFiles(_ args: String...) throws -> Run { try runProgram(try demoFilesBinary(), args) }

func contents(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

func jsonObject(_ text: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not a JSON object: \(text)")
}

/// Writes `bytes` at `offset` of the file at `path` (which must exist).
func patch(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    try h.seek(toOffset: offset)
    try h.write(contentsOf: Data(bytes))
    try h.close()
}

/// A plain file of `size` bytes (conventional mode), zero-filled.
func plainFile(_ tag: String, size: Int = 16 << 20) -> String {
    let p = tempImage(tag)
    _ = FileManager.default.createFile(atPath: p, contents: nil)
    let h = FileHandle(forWritingAtPath: p)!
    h.truncateFile(atOffset: UInt64(size))
    h.closeFile()
    return p
}

/// Where device offset 0 lives in an emulated image of `zones` zones (ImageFormat.swift: a
/// 4096-byte header, then two zone-table slots of 24 + 16 per zone + 4 bytes rounded up to 4096).
func imageDataStart(zones: Int) -> UInt64 {
    let slot = UInt64((24 + 16 * zones + 4 + 4095) / 4096 * 4096)
    return 4096 + 2 * slot
}

/// Asserts a refusal: `status`, one line on stderr containing every string of `mentions`.
func expectRefusal(_ r: Run, status: Int32 = 2, mentions: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(r.status == status, "status \(r.status), stderr: \(r.err)", sourceLocation: sourceLocation)
    for m in mentions {
        #expect(r.err.contains(m), "stderr does not mention \(m): \(r.err)", sourceLocation: sourceLocation)
    }
    #expect(r.err.split(separator: "\n").count == 1, "expected one error line, got: \(r.err)", sourceLocation: sourceLocation)
    #expect(r.out.isEmpty, "a refusal prints no report: \(r.out)", sourceLocation: sourceLocation)
    #expect(!r.err.contains("Fatal error") && !r.err.contains("Stack dump"), sourceLocation: sourceLocation)
}

@Suite("zbdfs format and fsck", .serialized, .timeLimit(.minutes(15)))
struct FormatFsckTests {
    @Test func formatPrintsGeometryAndSpace() throws {
        let img = tempImage("format")
        defer { try? FileManager.default.removeItem(atPath: img) }
        #expect(try zbdfs("emulate", "create", img, "--size", "64M", "--zone-size", "4M", "--zone-capacity", "3M",
                          "--conventional-zones", "2", "--max-open", "4", "--max-active", "6").status == 0)
        let r = try zbdfs("format", img, "--label", "photos")
        #expect(r.status == 0, "\(r.err)")
        for text in ["label 'photos'", "uuid ", "16 zones × 4 MiB", "capacity 3 MiB", "block 4096 B", "2 conventional",
                     "max open 4, max active 6", "for file data in 10 zones", "1 zone kept empty for reclaim", "metadata log 3 zones", "superblocks in zones 0 and 1"] {
            #expect(r.out.contains(text), "format output lacks \(text):\n\(r.out)")
        }

        let j = try zbdfs("format", img, "--force", "--json", "--label", "again")
        #expect(j.status == 0, "\(j.err)")
        let o = try jsonObject(j.out)
        #expect(Set(o.keys) == ["backend", "device", "geometry", "label", "replaced_signatures", "space", "superblock_generation", "uuid"])
        #expect(o["backend"] as? String == "emulated")
        #expect(o["label"] as? String == "again")
        let uuid = try #require(o["uuid"] as? String)
        #expect(uuid.count == 36 && uuid.split(separator: "-").map(\.count) == [8, 4, 4, 4, 12], "\(uuid)")
        #expect(o["superblock_generation"] as? Int != nil)
        let g = try #require(o["geometry"] as? [String: Any])
        #expect(g["zone_count"] as? Int == 16)
        #expect(g["zone_size_bytes"] as? Int == 4 << 20)
        #expect(g["zone_capacity_bytes"] as? Int == 3 << 20)
        #expect(g["logical_block_size_bytes"] as? Int == 4096)
        #expect(g["max_active_zones"] as? Int == 6)
        let space = try #require(o["space"] as? [String: Any])
        #expect(Set(space.keys) == ["data_capacity_bytes", "data_zones", "log_start_zone", "metadata_zones", "superblock_zones"])
        #expect(space["data_zones"] as? Int == 10, "16 zones less 2 superblock, 3 metadata, 1 reclaim reserve")
        #expect(space["metadata_zones"] as? Int == 3)
        #expect(space["data_capacity_bytes"] as? Int == 10 * (3 << 20))
        #expect(space["superblock_zones"] as? [Int] == [0, 1])
        let replaced = try #require(o["replaced_signatures"] as? [[String: Any]])
        #expect(replaced.count == 1 && replaced.first?["kind"] as? String == "zbdfs", "\(replaced)")
        #expect((replaced.first?["detail"] as? String)?.contains("photos") == true, "the old label is named")
        // Keys are sorted: the text is exactly what a sorted re-encoding gives.
        let resorted = try JSONSerialization.data(withJSONObject: o, options: [.prettyPrinted, .sortedKeys])
        #expect(try jsonObject(String(decoding: resorted, as: UTF8.self)).keys.sorted() == o.keys.sorted())
        let keyOrder = j.out.split(separator: "\n").filter { $0.hasPrefix("  \"") }.map { $0.split(separator: "\"")[1] }
        #expect(keyOrder == keyOrder.sorted(), "top-level keys in order: \(keyOrder)")
    }

    @Test func formatRefusesZbdfsWithoutForce() throws {
        let img = tempImage("refuse-zbdfs")
        defer { try? FileManager.default.removeItem(atPath: img) }
        #expect(try zbdfs("emulate", "create", img, "--size", "64M", "--zone-size", "4M", "--max-active", "6").status == 0)
        #expect(try zbdfs("format", img, "--label", "keep-me").status == 0)
        let before = try contents(img)
        expectRefusal(try zbdfs("format", img), mentions: ["holds zbdfs (label 'keep-me'", "--force"])
        #expect(try contents(img) == before, "a refused format must not touch the device")
        let forced = try zbdfs("format", img, "--force")
        #expect(forced.status == 0, "\(forced.err)")
        #expect(forced.out.contains("replaced   zbdfs (label 'keep-me'"), "\(forced.out)")
        #expect(try zbdfs("fsck", img).status == 0)
    }

    @Test(arguments: [
        ("btrfs", UInt64(65536 + 64), Array("_BHRfS_M".utf8)),
        ("btrfs", UInt64((1 << 20) + 64), Array("_BHRfS_M".utf8)),  // zoned btrfs: superblock log in zone 1
        ("f2fs", UInt64(1024), [0x10, 0x20, 0xF5, 0xF2] as [UInt8]),
        ("ext4", UInt64(1024 + 56), [0x53, 0xEF] as [UInt8]),
        ("xfs", UInt64(0), Array("XFSB".utf8)),
    ])
    func formatRefusesForeignFileSystems(name: String, offset: UInt64, magic: [UInt8]) throws {
        let file = plainFile("foreign")  // no file system name in the path: the message must name it
        defer { try? FileManager.default.removeItem(atPath: file) }
        try patch(file, at: offset, magic)
        let before = try contents(file)
        expectRefusal(try zbdfs("format", file, "--zone-size", "1M"), mentions: [name, "0x" + String(offset, radix: 16), "--force"])
        #expect(try contents(file) == before, "a refused format must not touch the device")

        let forced = try zbdfs("format", file, "--zone-size", "1M", "--force", "--json")
        #expect(forced.status == 0, "\(forced.err)")
        let replaced = try #require(try jsonObject(forced.out)["replaced_signatures"] as? [[String: Any]])
        #expect(replaced.map { $0["kind"] as? String } == [name])
        #expect((replaced.first?["offset_bytes"] as? NSNumber)?.uint64Value == offset)
        // The old magic is gone: only zbdfs is found now.
        let again = try zbdfs("format", file, "--zone-size", "1M")
        expectRefusal(again, mentions: ["holds zbdfs"])
        #expect(!again.err.contains(name), "\(name) should be erased: \(again.err)")
        #expect(try zbdfs("fsck", file, "--zone-size", "1M").status == 0)
    }

    @Test func formatRefusesDevicesZbdfsCannotUse() throws {
        // Too few zones.
        let few = tempImage("few")
        defer { try? FileManager.default.removeItem(atPath: few) }
        #expect(try zbdfs("emulate", "create", few, "--size", "16M", "--zone-size", "4M").status == 0)
        var before = try contents(few)
        expectRefusal(try zbdfs("format", few), mentions: ["4 zones", "at least 8", "Nothing was written"])
        #expect(try contents(few) == before)

        // Zones too small (conventional mode, 32 KiB zones).
        let small = plainFile("small", size: 1 << 20)
        defer { try? FileManager.default.removeItem(atPath: small) }
        before = try contents(small)
        expectRefusal(try zbdfs("format", small, "--zone-size", "32K"), mentions: ["zone capacity 32 KiB is too small", "--zone-size"])
        #expect(try contents(small) == before)

        // Too few active zones.
        let tight = tempImage("tight")
        defer { try? FileManager.default.removeItem(atPath: tight) }
        #expect(try zbdfs("emulate", "create", tight, "--size", "64M", "--zone-size", "4M", "--max-active", "2").status == 0)
        before = try contents(tight)
        expectRefusal(try zbdfs("format", tight), mentions: ["2 active zones", "at least 3"])
        #expect(try contents(tight) == before)

        // Too few open zones.
        let open = tempImage("open")
        defer { try? FileManager.default.removeItem(atPath: open) }
        #expect(try zbdfs("emulate", "create", open, "--size", "64M", "--zone-size", "4M", "--max-open", "2").status == 0)
        expectRefusal(try zbdfs("format", open), mentions: ["2 open zones", "at least 3"])

        expectUsageError(try zbdfs("format", few, "--label", String(repeating: "x", count: 65)), mentions: "at most 64 bytes")
    }

    @Test func fsckOfAFreshAndAUsedFileSystemIsCleanAndWritesNothing() throws {
        let img = tempImage("fsck-clean")
        defer { try? FileManager.default.removeItem(atPath: img) }
        #expect(try zbdfs("emulate", "create", img, "--size", "128M", "--zone-size", "8M", "--zone-capacity", "6M",
                          "--max-open", "4", "--max-active", "6").status == 0)
        #expect(try zbdfs("format", img, "--label", "fresh").status == 0)
        var before = try contents(img)
        let fresh = try zbdfs("fsck", img)
        #expect(fresh.status == 0, "\(fresh.out)\n\(fresh.err)")
        #expect(fresh.out.contains(": clean") && fresh.out.contains("label 'fresh'") && fresh.out.contains("1 inode"), "\(fresh.out)")
        #expect(fresh.err.contains("fsck: checking superblocks"), "progress goes to stderr: \(fresh.err)")
        #expect(try contents(img) == before, "fsck must not change a byte of the image")

        // With files written through the library (direct and buffered).
        let files = try runDemoFiles(img)
        #expect(files.status == 0, "\(files.out)\n\(files.err)")
        before = try contents(img)
        let used = try zbdfs("fsck", img, "--verify-data", "--json")
        #expect(used.status == 0, "\(used.out)\n\(used.err)")
        let o = try jsonObject(used.out)
        #expect(Set(o.keys) == ["backend", "blocks_verified", "clean", "data_verified", "device", "directories", "extents",
                                "files", "garbage_bytes", "inodes", "label", "live_bytes", "log_end", "log_frames",
                                "log_records", "log_zones", "notes", "problems", "superblock_generation", "symlinks"])
        #expect(o["clean"] as? Bool == true)
        #expect((o["problems"] as? [String])?.isEmpty == true)
        #expect(o["files"] as? Int == 3 && o["directories"] as? Int == 3 && o["inodes"] as? Int == 6)
        #expect(o["label"] as? String == "fresh")
        #expect((o["live_bytes"] as? Int ?? 0) >= 3 << 20)
        #expect((o["blocks_verified"] as? Int ?? 0) >= 768 && o["data_verified"] as? Bool == true)
        #expect(!((o["log_zones"] as? [Int]) ?? []).isEmpty)
        #expect(try contents(img) == before, "fsck --verify-data must not change a byte of the image")
    }

    @Test func fsckOfADamagedSuperblockExitsOneAndNamesIt() throws {
        let img = tempImage("fsck-damaged")
        defer { try? FileManager.default.removeItem(atPath: img) }
        #expect(try zbdfs("emulate", "create", img, "--size", "64M", "--zone-size", "4M", "--max-active", "6").status == 0)
        #expect(try zbdfs("format", img).status == 0)
        // Both superblock copies (the start of zones 0 and 1, sequential here): bytes 16..<32 hold
        // the generation and uuid, under the copy's checksum.
        let start = imageDataStart(zones: 16)
        for zone in [UInt64(0), 1] { try patch(img, at: start + zone * (4 << 20) + 16, [UInt8](repeating: 0xA5, count: 16)) }
        let before = try contents(img)

        let r = try zbdfs("fsck", img)
        #expect(r.status == 1, "\(r.out)\n\(r.err)")
        #expect(r.out.contains("no valid superblock"), "\(r.out)")
        #expect(r.out.contains("problems (1)") && r.out.contains("superblock  none valid"), "\(r.out)")
        #expect(r.out.contains("notes (1)") && r.out.contains("is not valid"), "the damaged copy is a note: \(r.out)")

        let j = try zbdfs("fsck", img, "--json")
        #expect(j.status == 1)
        let o = try jsonObject(j.out)
        #expect(o["clean"] as? Bool == false)
        #expect(o["superblock_generation"] is NSNull, "no generation without a valid superblock: \(String(describing: o["superblock_generation"]))")
        #expect(((o["problems"] as? [String]) ?? []).contains { $0.contains("no valid superblock") })
        #expect(try contents(img) == before)

        // Format still sees that this was zbdfs.
        expectRefusal(try zbdfs("format", img), mentions: ["holds zbdfs (a damaged superblock"])
    }

    @Test("conventional mode: fsck, zones, df and zonemap take the zone size from the superblock")
    func conventionalZoneSizeFromTheSuperblock() throws {
        // 16 MiB zones, not the 64 MiB --zone-size defaults to: without the superblock's size the
        // device would be cut wrongly and look damaged.
        let file = plainFile("conv-16m", size: 256 << 20)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let formatted = try zbdfs("format", file, "--zone-size", "16M", "--label", "sixteen")
        #expect(formatted.status == 0, "\(formatted.err)")
        // Files, written through the library (two mounts: both superblock zones hold a copy).
        let demo = try runDemoFiles(file, "--zone-size", "16M")
        #expect(demo.status == 0, "\(demo.err)")
        let before = try contents(file)

        let r = try zbdfs("fsck", file)
        #expect(r.status == 0, "\(r.out)\n\(r.err)")
        #expect(r.out.contains("(conventional): clean") && r.out.contains("label 'sixteen'"), "\(r.out)")
        let j = try zbdfs("fsck", file, "--json")
        #expect(j.status == 0, "\(j.out)\n\(j.err)")
        let o = try jsonObject(j.out)
        #expect(o["clean"] as? Bool == true && (o["problems"] as? [String])?.isEmpty == true, "\(j.out)")

        let zones = try zbdfs("zones", file, "--json")
        #expect(zones.status == 0, "\(zones.err)")
        let report = try jsonObject(zones.out)
        #expect((report["geometry"] as? [String: Any])?["zone_size_bytes"] as? Int == 16 << 20, "\(zones.out.prefix(600))")
        let entries = try #require(report["zones"] as? [[String: Any]])
        #expect(entries.count == 16 && entries.allSatisfy { $0["role"] is String }, "each zone's role comes from the file system")
        let df = try zbdfs("df", file, "--json")
        #expect(df.status == 0, "\(df.err)")
        #expect((try jsonObject(df.out)["zones_by_role"] as? [String: Int])?["superblock"] == 2, "\(df.out)")
        let svg = file + ".svg"
        defer { try? FileManager.default.removeItem(atPath: svg) }
        let map = try zbdfs("zonemap", file, "--svg", svg)
        #expect(map.status == 0, "\(map.err)")
        #expect(try zbdfs("fsck", file, "--zone-size", "16M").status == 0, "the right size, given, is fine")

        // A size that contradicts the superblock is refused, naming both and the fix.
        let wrong = try zbdfs("fsck", file, "--zone-size", "64M")
        expectRefusal(wrong, mentions: ["--zone-size 64 MiB", "16 MiB zones", "drop --zone-size"])
        expectRefusal(try zbdfs("zones", file, "--zone-size", "4M"), mentions: ["--zone-size 4 MiB", "16 MiB zones"])
        #expect(try contents(file) == before, "none of these wrote to the device")

        // Zone 0's copy damaged (a crash while it was rewritten): zone 1's copy names the size.
        try patch(file, at: 64, [0xFF, 0xFF, 0xFF, 0xFF])
        let damaged = try zbdfs("fsck", file, "--json")
        #expect(damaged.status == 0, "\(damaged.out)\n\(damaged.err)")
        #expect(((try jsonObject(damaged.out)["notes"] as? [String]) ?? []).contains { $0.contains("zone 0 is not valid") }, "\(damaged.out)")
    }

    @Test func fsckOfSomethingElseOrUnreadable() throws {
        // A plain file with no file system: a problem (exit 1), not a read failure.
        let plain = plainFile("fsck-plain")
        defer { try? FileManager.default.removeItem(atPath: plain) }
        let r = try zbdfs("fsck", plain, "--zone-size", "1M")
        #expect(r.status == 1 && r.out.contains("no valid superblock"), "\(r.out)\n\(r.err)")

        // An emulated image whose header is damaged cannot be opened: exit 2.
        let img = tempImage("fsck-unreadable")
        defer { try? FileManager.default.removeItem(atPath: img) }
        #expect(try zbdfs("emulate", "create", img, "--size", "64M", "--zone-size", "4M").status == 0)
        try patch(img, at: 20, [0xFF, 0xFF])
        let bad = try zbdfs("fsck", img)
        #expect(bad.status == 2, "\(bad.err)")
        #expect(bad.err.contains("cannot open") && bad.err.split(separator: "\n").count == 1, "\(bad.err)")

        expectUsageError(try zbdfs("fsck", "/nonexistent/dev.zimg"), mentions: "no such file")
    }
}
