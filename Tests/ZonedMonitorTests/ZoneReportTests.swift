import Foundation
import Testing
import ZonedCore
import ZonedMonitor

@Suite(.timeLimit(.minutes(10))) struct ZoneReportTests {
    let geometry = DeviceGeometry(zoneCount: 4, zoneSize: .mib(1), zoneCapacity: .kib(768), maxOpenZones: 2,
                                  maxActiveZones: 3, maxWriteBytes: .kib(128), conventionalZoneCount: 1)

    var zones: [Zone] {
        let g = geometry
        return [
            Zone(id: 0, type: .conventional, condition: .notWritePointer, start: g.zoneStart(0), size: g.zoneSize, capacity: g.zoneSize, writePointer: g.zoneStart(0)),
            Zone(id: 1, type: .sequentialWriteRequired, condition: .implicitlyOpen, start: g.zoneStart(1), size: g.zoneSize, capacity: g.zoneCapacity, writePointer: g.zoneStart(1) + .kib(192)),
            Zone(id: 2, type: .sequentialWriteRequired, condition: .closed, start: g.zoneStart(2), size: g.zoneSize, capacity: g.zoneCapacity, writePointer: g.zoneStart(2) + .kib(4)),
            Zone(id: 3, type: .sequentialWriteRequired, condition: .full, start: g.zoneStart(3), size: g.zoneSize, capacity: g.zoneCapacity, writePointer: g.zoneStart(3) + .kib(768)),
        ]
    }

    @Test func jsonCarriesUnitsAndCounts() throws {
        let r = ZoneReport(path: "/x.img", kind: .emulated, geometry: geometry, zones: zones)
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.json().utf8)) as? [String: Any])
        let g = try #require(obj["geometry"] as? [String: Any])
        #expect(g["zone_size_bytes"] as? Int == 1 << 20)
        #expect(g["zone_capacity_bytes"] as? Int == 768 << 10)
        let zs = try #require(obj["zones"] as? [[String: Any]])
        #expect(zs.count == 4)
        #expect(zs[0]["write_pointer_bytes"] is NSNull || zs[0]["write_pointer_bytes"] == nil)
        #expect(zs[1]["fill_percent"] as? Double == 25)
        #expect(zs[1]["written_bytes"] as? Int == 192 << 10)
        #expect(zs[3]["condition"] as? String == "full")
        let s = try #require(obj["summary"] as? [String: Any])
        #expect(s["open_zones"] as? Int == 1)
        #expect(s["active_zones"] as? Int == 2)
        #expect(s["max_active_zones"] as? Int == 3)
        #expect((s["by_condition"] as? [String: Int])?["closed"] == 1)
    }

    @Test func jsonIsStable() {
        let a = ZoneReport(path: "/x.img", kind: .emulated, geometry: geometry, zones: zones).json()
        let b = ZoneReport(path: "/x.img", kind: .emulated, geometry: geometry, zones: zones).json()
        #expect(a == b)
    }

    @Test func textShowsRowsAndLimits() {
        let t = ZoneReport(path: "/x.img", kind: .emulated, geometry: geometry, zones: zones).text()
        let lines = t.split(separator: "\n")
        #expect(lines.contains { $0.contains("implicit-open") && $0.contains("25.0%") })
        #expect(t.contains("open 1/2, active 2/3"))
        #expect(t.contains("max open 2, max active 3"))
        #expect(lines.filter { $0.contains("seq-req") }.count == 3)
    }
}

@Suite(.timeLimit(.minutes(10))) struct CountTextTests {
    @Test func countsAreGroupedInThrees() {
        #expect(CountText.grouped(0) == "0")
        #expect(CountText.grouped(999) == "999")
        #expect(CountText.grouped(1_000) == "1,000")
        #expect(CountText.grouped(80_000) == "80,000")
        #expect(CountText.grouped(1_234_567) == "1,234,567")
        #expect(CountText.grouped(-45_000) == "-45,000")
        #expect(CountText.limit(0) == "unlimited" && CountText.limit(128) == "128")
    }
}
