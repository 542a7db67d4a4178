// The commands a user touches, on devices of drive size (80,000 zones of 256 MiB, a 20 TB SMR
// drive) made as discard-data images, so a test needs a few MiB of disk, not 20 TiB.
//
// Invariants:
// - Every check is about output and exit status; a time bound appears only as a hang guard.

import Foundation
import FoundationXML
import Testing
import ZonedTestSupport

/// A 20 TiB, 80,000-zone discard-data image; the caller removes it.
func driveImage(_ tag: String) throws -> String {
    let img = tempImage(tag)
    let c = try zbdfs("emulate", "create", img, "--size", "20000G", "--zone-size", "256M", "--max-open", "128",
                      "--max-active", "128", "--discard-data")
    #expect(c.status == 0, "\(c.err)")
    return img
}

func jsonObject(_ r: Run) throws -> [String: Any] {
    #expect(r.status == 0, "\(r.err)")
    return try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
}

@Suite("zbdfs at drive size", .serialized, .timeLimit(.minutes(10)))
struct ScaleTests {
    @Test func zonesSummaryCountsEightyThousandZonesInAFewLines() throws {
        let img = try driveImage("summary")
        defer { try? FileManager.default.removeItem(atPath: img) }
        let text = try zbdfs("zones", img, "--summary")
        #expect(text.status == 0, "\(text.err)")
        #expect(text.out.split(separator: "\n").count < 12, "a summary, not one line per zone: \(text.out.prefix(400))")
        #expect(text.out.contains("empty 80,000"))
        #expect(text.out.contains("open 0/128, active 0/128"))
        #expect(text.out.contains("data       discarded"))

        let j = try jsonObject(try zbdfs("zones", img, "--summary", "--json"))
        #expect(j["zones"] == nil, "no per-zone entries in the summary")
        #expect((j["geometry"] as? [String: Any])?["zone_count"] as? Int == 80_000)
        let byCondition = try #require((j["summary"] as? [String: Any])?["by_condition"] as? [String: Int])
        #expect(byCondition.values.reduce(0, +) == 80_000)
        #expect(j["capacity_bytes"] as? Int == 80_000 << 28)
        #expect(j["written_bytes"] as? Int == 0)
        #expect(j["by_role"] == nil, "an unformatted device has no roles")
        #expect(j["discards_data"] as? Bool == true)
    }

    @Test func zonesSummaryCountsRolesOnAFormattedDevice() throws {
        let img = tempImage("roles")
        defer { try? FileManager.default.removeItem(atPath: img) }
        #expect(try zbdfs("emulate", "create", img, "--size", "64M", "--zone-size", "4M").status == 0)
        #expect(try zbdfs("format", img).status == 0)
        let full = try zonesJSON(img)
        var expected: [String: Int] = [:]
        for z in full["zones"] as? [[String: Any]] ?? [] { if let r = z["role"] as? String { expected[r, default: 0] += 1 } }
        let j = try jsonObject(try zbdfs("zones", img, "--summary", "--json"))
        let byRole = try #require(j["by_role"] as? [String: Int])
        #expect(byRole == expected, "the summary's roles are the full report's")
        #expect(byRole.values.reduce(0, +) == 16)
        #expect(byRole["superblock"] ?? 0 > 0 && byRole["free"] ?? 0 > 0)
        #expect(try zbdfs("zones", img, "--summary").out.contains("role       superblock"))
    }
}

/// Collects the cells of a zone map: `data-zone` (one zone) or `data-zones` (a group "a-b").
final class ZoneMapCells: NSObject, XMLParserDelegate {
    var cells: [ClosedRange<Int>] = []
    var scale = ""
    private var inScale = false
    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String]) {
        inScale = name == "text" && attributes["class"] == "scale"
        guard name == "g", attributes["class"] == "zone" else { return }
        if let z = attributes["data-zone"].flatMap(Int.init) { cells.append(z...z) }
        if let r = attributes["data-zones"]?.split(separator: "-").compactMap({ Int($0) }), r.count == 2 { cells.append(r[0]...r[1]) }
    }
    func parser(_ parser: XMLParser, foundCharacters string: String) { if inScale { scale += string } }
    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) { inScale = false }
}

extension ScaleTests {
    @Test func zonemapOfEightyThousandZonesDrawsGroupsAndSaysTheGroupSize() throws {
        let img = try driveImage("zonemap")
        defer { try? FileManager.default.removeItem(atPath: img) }
        let f = try zbdfs("format", img)
        #expect(f.status == 0, "\(f.err)")
        let svg = img + ".svg"
        defer { try? FileManager.default.removeItem(atPath: svg) }
        let map = try zbdfs("zonemap", img, "--svg", svg)
        #expect(map.status == 0, "\(map.err)")
        #expect(map.out.contains("80,000 zones, 1 cell = 20 zones"), "\(map.out)")
        let cells = ZoneMapCells()
        let parser = XMLParser(data: try Data(contentsOf: URL(fileURLWithPath: svg)))
        parser.delegate = cells
        #expect(parser.parse(), "the SVG is well-formed XML")
        #expect(cells.cells.count == 4_000, "80,000 zones in groups of 20")
        #expect(cells.cells.first == 0...19 && cells.cells.last == 79_980...79_999)
        // The groups tile the zones: each starts where the one before ends.
        #expect(zip(cells.cells, cells.cells.dropFirst()).allSatisfy { $0.upperBound + 1 == $1.lowerBound })
        #expect(cells.scale.hasPrefix("1 cell = 20 zones"), "\(cells.scale)")
    }
}
