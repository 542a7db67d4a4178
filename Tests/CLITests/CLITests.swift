// End-to-end tests of the `zbdfs` binary: output, exit status (0 ok, 1 runtime, 2 usage), one-line
// errors that name a fix, and bad input leaving the image untouched.

import Foundation
import Testing
import ZonedTestSupport

typealias Run = ProgramRun

/// The zbdfs binary built beside the test bundle (or $ZBDFS_BIN).
func zbdfsBinary() throws -> String { try builtProgram("zbdfs", environmentOverride: "ZBDFS_BIN") }

@discardableResult
func zbdfs(_ args: String...) throws -> Run { try runProgram(try zbdfsBinary(), args) }

func tempImage(_ tag: String) -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zbdfs-cli-\(getpid())")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent("\(tag)-\(UUID().uuidString).zimg").path
}

func zonesJSON(_ image: String) throws -> [String: Any] {
    let r = try zbdfs("zones", image, "--json")
    #expect(r.status == 0, "zones --json failed: \(r.err)")
    return try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
}

func condition(_ report: [String: Any], _ zone: Int) -> String? {
    ((report["zones"] as? [[String: Any]])?[zone])?["condition"] as? String
}

/// Asserts a usage error: status 2, exactly one line on stderr containing `mentions`, no trace.
func expectUsageError(_ r: Run, mentions: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(r.status == 2, "status \(r.status), stderr: \(r.err)", sourceLocation: sourceLocation)
    #expect(r.err.contains(mentions), "stderr does not mention \(mentions): \(r.err)", sourceLocation: sourceLocation)
    let lines = r.err.split(separator: "\n").filter { !$0.hasPrefix("Usage:") && !$0.hasPrefix("  See '") && !$0.isEmpty }
    #expect(lines.count == 1, "expected one error line, got: \(r.err)", sourceLocation: sourceLocation)
    #expect(!r.err.contains("Fatal error") && !r.err.contains("Stack dump"), sourceLocation: sourceLocation)
}

@Suite("zbdfs CLI", .serialized, .timeLimit(.minutes(15)))
struct CLITests {
    @Test func createShowAndManageZones() throws {
        let img = tempImage("basic")
        defer { try? FileManager.default.removeItem(atPath: img) }
        let c = try zbdfs("emulate", "create", img, "--size", "64M", "--zone-size", "4M", "--zone-capacity", "3M",
                          "--conventional-zones", "2", "--max-open", "3", "--max-active", "4", "--zone-append")
        #expect(c.status == 0, "\(c.err)")
        #expect(c.out.contains("16 × 4 MiB"))

        var report = try zonesJSON(img)
        let g = try #require(report["geometry"] as? [String: Any])
        #expect(g["zone_count"] as? Int == 16)
        #expect(g["zone_capacity_bytes"] as? Int == 3 << 20)
        #expect(g["max_append_bytes"] as? Int == 128 << 10)
        #expect(condition(report, 0) == "not-wp")
        #expect(condition(report, 2) == "empty")

        #expect(try zbdfs("zone", "open", img, "2-3").status == 0)
        report = try zonesJSON(img)
        #expect(condition(report, 2) == "explicit-open" && condition(report, 3) == "explicit-open")
        #expect((report["summary"] as? [String: Any])?["open_zones"] as? Int == 2)

        #expect(try zbdfs("zone", "finish", img, "2").status == 0)
        #expect(try zbdfs("zone", "close", img, "3").status == 0)
        report = try zonesJSON(img)
        #expect(condition(report, 2) == "full")
        #expect(condition(report, 3) == "empty", "closing an unwritten zone leaves it empty")

        #expect(try zbdfs("zone", "reset", img, "all", "--yes").status == 0)
        #expect(condition(try zonesJSON(img), 2) == "empty")

        let text = try zbdfs("zones", img)
        #expect(text.status == 0)
        #expect(text.out.contains("max open 3, max active 4"))
        #expect(text.out.contains("summary"))
    }

    @Test func aDiscardDataDriveOfEightyThousandZonesIsCreatedInASmallFile() throws {
        let img = tempImage("drive")
        defer { try? FileManager.default.removeItem(atPath: img) }
        let c = try zbdfs("emulate", "create", img, "--size", "20000G", "--zone-size", "256M", "--max-open", "128",
                          "--max-active", "128", "--discard-data", "--json")
        #expect(c.status == 0, "\(c.err)")
        let made = try #require(try JSONSerialization.jsonObject(with: Data(c.out.utf8)) as? [String: Any])
        #expect(made["zone_count"] as? Int == 80_000)
        #expect(made["discards_data"] as? Bool == true)
        var st = stat()
        #expect(stat(img, &st) == 0)
        #expect(Int(st.st_size) < 8 << 20, "\(st.st_size) bytes for a discard-data image")
        let report = try zonesJSON(img)
        #expect(report["discards_data"] as? Bool == true)
        #expect((report["zones"] as? [Any])?.count == 80_000)
        #expect(try zbdfs("zones", img).out.contains("data     discarded"))
        let plain = tempImage("plain")
        defer { try? FileManager.default.removeItem(atPath: plain) }
        let p = try zbdfs("emulate", "create", plain, "--size", "64M", "--zone-size", "4M")
        #expect(p.status == 0 && !p.out.contains("discarded"))
        #expect(try zonesJSON(plain)["discards_data"] == nil)
        let small = tempImage("small")
        defer { try? FileManager.default.removeItem(atPath: small) }
        #expect(try zbdfs("emulate", "create", small, "--size", "64M", "--zone-size", "4M", "--discard-data").out.contains("data     discarded"))
    }

    @Test func openLimitIsARuntimeErrorNamingTheFix() throws {
        let img = tempImage("limits")
        defer { try? FileManager.default.removeItem(atPath: img) }
        #expect(try zbdfs("emulate", "create", img, "--size", "32M", "--zone-size", "4M", "--max-open", "2", "--max-active", "4").status == 0)
        let r = try zbdfs("zone", "open", img, "0-2")
        #expect(r.status == 1, "\(r.err)")
        #expect(r.err.contains("ETOOMANYREFS"))
        #expect(r.err.contains("zbdfs zone close"))
    }

    @Test func badSizesAreUsageErrors() throws {
        let img = tempImage("bad")
        expectUsageError(try zbdfs("emulate", "create", img, "--size", "64M", "--zone-size", "3M"), mentions: "power of two")
        expectUsageError(try zbdfs("emulate", "create", img, "--size", "100M", "--zone-size", "64M"), mentions: "whole number")
        expectUsageError(try zbdfs("emulate", "create", img, "--size", "64M", "--zone-size", "4M", "--zone-capacity", "5M"), mentions: "at most the zone size")
        expectUsageError(try zbdfs("emulate", "create", img, "--size", "64M", "--zone-size", "4M", "--zone-capacity", "1000"), mentions: "multiple of the 4096")
        expectUsageError(try zbdfs("emulate", "create", img, "--size", "lots"), mentions: "not a size")
        expectUsageError(try zbdfs("emulate", "create", img, "--size", "64M", "--zone-size", "4M", "--max-open", "5", "--max-active", "2"), mentions: "--max-open")
        #expect(!FileManager.default.fileExists(atPath: img), "a refused create must not leave a file")
    }

    @Test func maxAppendIsTakenByCreateAndShownByZones() throws {
        let img = tempImage("append")
        defer { try? FileManager.default.removeItem(atPath: img) }
        let c = try zbdfs("emulate", "create", img, "--size", "32M", "--zone-size", "4M", "--max-write", "256K", "--max-append", "64K")
        #expect(c.status == 0, "\(c.err)")
        #expect(c.out.contains("max write 256 KiB, zone append up to 64 KiB"), "\(c.out)")
        let created = try zbdfs("emulate", "create", img, "--size", "32M", "--zone-size", "4M", "--max-append", "64K", "--force", "--json")
        #expect(created.out.contains("\"max_append_bytes\" : 65536"), "\(created.out)")
        let text = try zbdfs("zones", img)
        #expect(text.status == 0 && text.out.contains("zone append up to 64 KiB"), "\(text.out)")
        #expect((try zonesJSON(img)["geometry"] as? [String: Any])?["max_append_bytes"] as? Int == 64 << 10)
        // Without append: "no" and 0.
        #expect(try zbdfs("emulate", "create", img, "--size", "32M", "--zone-size", "4M", "--force").status == 0)
        #expect(try zbdfs("zones", img).out.contains("zone append no"))
        #expect((try zonesJSON(img)["geometry"] as? [String: Any])?["max_append_bytes"] as? Int == 0)
        expectUsageError(try zbdfs("emulate", "create", img, "--size", "32M", "--zone-size", "4M", "--max-append", "6000", "--force"),
                         mentions: "--max-append")
        expectUsageError(try zbdfs("emulate", "create", img, "--size", "32M", "--zone-size", "4M", "--zone-capacity", "2M",
                                   "--max-append", "3M", "--force"), mentions: "zone capacity")
    }

    @Test func existingImageIsNotOverwrittenWithoutForce() throws {
        let img = tempImage("exists")
        defer { try? FileManager.default.removeItem(atPath: img) }
        #expect(try zbdfs("emulate", "create", img, "--size", "16M", "--zone-size", "4M").status == 0)
        #expect(try zbdfs("zone", "finish", img, "1").status == 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: img))
        expectUsageError(try zbdfs("emulate", "create", img, "--size", "32M", "--zone-size", "4M"), mentions: "--force")
        #expect(try Data(contentsOf: URL(fileURLWithPath: img)) == before)
        #expect(try zbdfs("emulate", "create", img, "--size", "32M", "--zone-size", "4M", "--force").status == 0)
        #expect((try zonesJSON(img)["geometry"] as? [String: Any])?["zone_count"] as? Int == 8)
    }

    @Test func zoneOutOfRangeLeavesTheImageUntouched() throws {
        let img = tempImage("range")
        defer { try? FileManager.default.removeItem(atPath: img) }
        #expect(try zbdfs("emulate", "create", img, "--size", "16M", "--zone-size", "4M").status == 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: img))
        expectUsageError(try zbdfs("zone", "finish", img, "1", "9"), mentions: "out of range")
        #expect(try Data(contentsOf: URL(fileURLWithPath: img)) == before, "zone 1 must not be finished when zone 9 is bad")
        expectUsageError(try zbdfs("zone", "finish", img, "x"), mentions: "not a zone")
        expectUsageError(try zbdfs("zone", "reset", img, "1"), mentions: "--yes")
    }

    @Test func wrongPathsAreUsageErrors() throws {
        expectUsageError(try zbdfs("zones", "/nonexistent/dev.zimg"), mentions: "no such file")
        let plain = tempImage("plain")
        defer { try? FileManager.default.removeItem(atPath: plain) }
        #expect(FileManager.default.createFile(atPath: plain, contents: Data(count: 8 << 20)))
        expectUsageError(try zbdfs("zones", plain, "--backend", "emulated"), mentions: "not an emulated zoned image")
        expectUsageError(try zbdfs("zones", plain, "--backend", "kernel"), mentions: "not a zoned block device")
        let conv = try zbdfs("zones", plain, "--zone-size", "1M", "--json")
        #expect(conv.status == 0, "\(conv.err)")
        #expect(conv.out.contains("\"backend\" : \"conventional\""))
        let r = try zbdfs("zone", "finish", plain, "0", "--zone-size", "1M")
        #expect(r.status == 1 && r.err.contains("sequential zones only"), "\(r.err)")
    }

    @Test func helpTeachesAndVersionPrints() throws {
        let h = try zbdfs("--help")
        #expect(h.status == 0 && h.out.contains("emulate") && h.out.contains("Exit status"))
        let e = try zbdfs("emulate", "create", "--help")
        #expect(e.status == 0 && e.out.contains("--zone-capacity") && e.out.contains("Examples"))
        #expect(try zbdfs("--version").out.contains("zbdfs"))
    }
}
