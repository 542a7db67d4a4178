// `zbdfs df`, `zbdfs zones` on a zbdfs device and `zbdfs zonemap`: figures, JSON, the SVG, and
// that looking never changes the device.

import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing

@Suite("zbdfs df, zones and zonemap", .timeLimit(.minutes(15)))
struct MonitorTests {
    @Test func dfZonesAndZonemapReadWithoutWriting() throws {
        let img = tempImage("monitor")
        let svg = img + ".svg"
        defer { try? FileManager.default.removeItem(atPath: img); try? FileManager.default.removeItem(atPath: svg) }
        #expect(try zbdfs("emulate", "create", img, "--size", "128M", "--zone-size", "8M", "--max-active", "6", "--max-open", "6").status == 0)
        #expect(try zbdfs("format", img).status == 0)
        #expect(try runDemoFiles(img).status == 0)
        let before = try contents(img)

        let df = try zbdfs("df", img, "--json")
        #expect(df.status == 0, "\(df.err)")
        let o = try jsonObject(df.out)
        let size = try #require(o["size_bytes"] as? Int), used = try #require(o["used_bytes"] as? Int)
        let free = try #require(o["free_bytes"] as? Int), garbage = try #require(o["garbage_bytes"] as? Int)
        let unusable = try #require(o["unusable_bytes"] as? Int)
        #expect(free + used + garbage + unusable == size)
        #expect((o["live_data_bytes"] as? Int ?? 0) > 3 << 20, "the demo files are there")
        #expect((o["zones_by_role"] as? [String: Int])?["superblock"] == 2)
        #expect(try zbdfs("df", img).out.contains("space amp"))

        let zones = try zbdfs("zones", img, "--json")
        let entries = try #require(try jsonObject(zones.out)["zones"] as? [[String: Any]])
        #expect(entries.count == 16 && entries.allSatisfy { $0["role"] is String && $0["live_bytes"] is Int && $0["garbage_bytes"] is Int })
        #expect(try zbdfs("zones", img).out.contains("ROLE"))

        let map = try zbdfs("zonemap", img, "--svg", svg)
        #expect(map.status == 0, "\(map.err)")
        let parser = ZoneCells(data: try contents(svg))
        #expect(parser.parse(), "the SVG is well-formed XML")
        #expect(parser.cells.count == 16 && Set(parser.cells) == Set(0..<16), "one cell per zone")
        #expect(parser.root == "svg")

        #expect(try contents(img) == before, "df, zones and zonemap leave the image's bytes and zone table unchanged")
        // Not a zbdfs device: a clear runtime error.
        let plain = tempImage("monitor-plain")
        defer { try? FileManager.default.removeItem(atPath: plain) }
        #expect(try zbdfs("emulate", "create", plain, "--size", "64M", "--zone-size", "8M").status == 0)
        let r = try zbdfs("df", plain)
        #expect(r.status == 1 && r.err.contains("zbdfs format"), "\(r.err)")
    }
}

/// Collects the `data-zone` attribute of every `<g class="zone">`.
final class ZoneCells: NSObject, XMLParserDelegate {
    private let parser: XMLParser
    var cells: [Int] = []
    var root: String?
    init(data: Data) {
        parser = XMLParser(data: data)
        super.init()
        parser.delegate = self
    }
    func parse() -> Bool { parser.parse() }
    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String]) {
        if root == nil { root = name }
        if name == "g", attributes["class"] == "zone", let z = attributes["data-zone"].flatMap(Int.init) { cells.append(z) }
    }
}
