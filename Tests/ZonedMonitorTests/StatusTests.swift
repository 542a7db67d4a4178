// The live figures a mount serves (FileSystemStatus), the top view and the Prometheus metrics,
// checked against known workloads on an emulated device through the library.

import Foundation
import Testing
import ZonedBackendFile
import ZonedCore
import ZonedFS
@testable import ZonedMonitor

private final class Scratch: @unchecked Sendable {
    let dir = "/dev/shm/zbdfs-monitor-\(UUID().uuidString)"
    init() { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
    deinit { try? FileManager.default.removeItem(atPath: dir) }
    func path(_ n: String) -> String { dir + "/" + n }
}

private func pattern(_ n: Int, seed: UInt64) -> [UInt8] {
    var r = SeededRandom(seed: seed)
    return r.bytes(n)
}

/// 24 zones of 256 KiB (224 KiB capacity), max open/active 4.
private func makeFS(_ s: Scratch) throws -> FileSystem {
    let g = DeviceGeometry(zoneCount: 24, zoneSize: .kib(256), zoneCapacity: .kib(224), logicalBlockSize: .kib(4),
                           maxOpenZones: 4, maxActiveZones: 4, maxWriteBytes: .kib(64), conventionalZoneCount: 0)
    let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: g)
    try FileSystem.format(device: dev, options: FormatOptions(uuid: Array(0..<16)))
    return try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false))
}

private func remount(_ s: Scratch) throws -> FileSystem {
    try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")), options: MountOptions(backgroundReclaim: false))
}

@Suite("Live status", .timeLimit(.minutes(10)))
struct StatusTests {
    @Test func liveFiguresFollowTheWorkload() throws {
        let s = Scratch()
        let fs = try makeFS(s)
        let n = 1 << 20
        let a = try fs.createFile("/a"), b = try fs.createFile("/b")
        try fs.write(a, at: 0, bytes: pattern(n / 2, seed: 1), direct: true)
        try fs.write(b, at: 0, bytes: pattern(n / 2, seed: 2), direct: true)
        var st = try FileSystemStatus.live(fs, path: "img", mountPoint: "/mnt")
        #expect(st.space.liveDataBytes == UInt64(n), "live data is what was written")
        #expect(st.space.usedBytes == UInt64(n) + st.space.metadataBytes)
        #expect(st.space.garbageBytes == 0)
        #expect(st.space.freeBytes + st.space.usedBytes + st.space.garbageBytes + st.space.unusableBytes == st.space.sizeBytes)
        #expect(st.activity?.userBytesWritten == UInt64(n))
        #expect(st.zones.zones.count == 24 && st.zones.zones.filter { $0.role == "superblock" }.count == 2)

        // Overwrite every other 32 KiB of /a: that much becomes garbage, live and uncommitted.
        var replaced: UInt64 = 0
        for off in stride(from: 0, to: n / 2, by: 64 << 10) {
            try fs.write(a, at: UInt64(off), bytes: pattern(32 << 10, seed: UInt64(off)), direct: true)
            replaced += 32 << 10
        }
        st = try FileSystemStatus.live(fs, path: "img", mountPoint: "/mnt")
        #expect(st.space.garbageBytes == replaced, "garbage \(st.space.garbageBytes) is the replaced \(replaced) bytes")
        #expect(st.space.liveDataBytes == UInt64(n))
        #expect(st.space.freeBytes + st.space.usedBytes + st.space.garbageBytes + st.space.unusableBytes == st.space.sizeBytes)
        // Per zone, the grid's numbers add up to the totals.
        #expect(st.zones.zones.compactMap(\.garbageBytes).reduce(0, +) == st.space.garbageBytes)

        // The same figures from the device after unmount (the log says the same as the memory did).
        try fs.unmount()
        let dev = try EmulatedZonedDevice.open(path: s.path("img"))
        let off = try #require(try FileSystemStatus.read(device: dev, path: "img"))
        dev.close()
        #expect(off.space.liveDataBytes == st.space.liveDataBytes && off.space.garbageBytes == st.space.garbageBytes)
        #expect(off.source == "device" && off.activity == nil && st.source == "mount")
    }

    @Test func writeAmplificationSoFarSurvivesRemounts() throws {
        let s = Scratch()
        var fs = try makeFS(s)
        let n = 512 << 10
        let a = try fs.createFile("/a")
        try fs.write(a, at: 0, bytes: pattern(n, seed: 3), direct: true)
        try fs.unmount()
        var dev = try EmulatedZonedDevice.open(path: s.path("img"))
        var st = try #require(try FileSystemStatus.read(device: dev, path: "img"))
        dev.close()
        #expect(st.lifetime.userBytesWritten == UInt64(n))
        #expect(st.lifetime.dataBytesWritten == UInt64(n))
        #expect(st.lifetime.metadataBytesWritten > 0)
        let wa = try #require(st.writeAmplification)
        #expect(wa > 1 && abs(wa - Double(n + Int(st.lifetime.metadataBytesWritten)) / Double(n)) < 0.001)

        fs = try remount(s)
        try fs.write(a, at: 0, bytes: pattern(n, seed: 4), direct: true)  // replaces it all
        try fs.unmount()
        dev = try EmulatedZonedDevice.open(path: s.path("img"))
        st = try #require(try FileSystemStatus.read(device: dev, path: "img"))
        dev.close()
        #expect(st.lifetime.userBytesWritten == UInt64(2 * n), "counters carry over the remount")
        #expect(st.lifetime.dataBytesWritten == UInt64(2 * n))
    }

    @Test func jsonRoundTrips() throws {
        let s = Scratch()
        let fs = try makeFS(s)
        try fs.write(try fs.createFile("/a"), at: 0, bytes: pattern(64 << 10, seed: 5), direct: true)
        let st = try FileSystemStatus.live(fs, path: "img", mountPoint: "/mnt/x")
        let back = try FileSystemStatus.decode(Array(st.json().utf8)).get()
        #expect(back == st)
        #expect(st.json().contains("\"live_data_bytes\""))
        if case .success = FileSystemStatus.decode(Array("{\"error\": 1}".utf8)) { Issue.record("a non-status decoded") }
        try fs.unmount()
    }

    @Test func topGridGroupsZonesToFitAndSaysSo() throws {
        let s = Scratch()
        let fs = try makeFS(s)
        defer { try? fs.unmount() }
        // A status of 80,000 zones: the small device's zones repeated, renumbered.
        var big = try FileSystemStatus.live(fs, path: "img", mountPoint: "/mnt")
        let small = big.zones.zones
        big.zones.zones = (0..<80_000).map { i in
            var e = small[i % small.count]
            e.index = UInt32(i)
            return e
        }
        let view = TopView(current: big, previous: nil, width: 100, style: .plain, gridRows: 30)
        let lines = view.lines()
        let grid = lines.filter { $0.contains(" | ") }
        #expect(grid.count <= 30, "the grid fits its rows: \(grid.count)")
        let cells = grid.flatMap { $0.split(separator: "|")[1].split(separator: " ") }
        #expect(cells.count * view.zonesPerCell >= 80_000 && (cells.count - 1) * view.zonesPerCell < 80_000)
        #expect(view.zonesPerCell > 1)
        #expect(lines.contains { $0.hasPrefix("1 cell = \(view.zonesPerCell) zones") }, "\(lines.suffix(3))")
        #expect(lines.allSatisfy { $0.count <= 100 })
        // A small device keeps one cell per zone and says nothing about groups.
        big.zones.zones = small
        #expect(!TopView(current: big, previous: nil, width: 100, style: .plain, gridRows: 30).lines().contains { $0.contains("1 cell =") })
    }

    @Test func topFrameHasOneCellPerZoneAndTheLimits() throws {
        let s = Scratch()
        let fs = try makeFS(s)
        let a = try fs.createFile("/a")
        try fs.write(a, at: 0, bytes: pattern(256 << 10, seed: 6), direct: true)
        var before = try FileSystemStatus.live(fs, path: "img", mountPoint: "/mnt")
        try fs.write(a, at: 256 << 10, bytes: pattern(1 << 20, seed: 7), direct: true)
        let after = try FileSystemStatus.live(fs, path: "img", mountPoint: "/mnt")
        before.sampledAtNanoseconds = after.sampledAtNanoseconds - 1_000_000_000  // one second apart

        let plain = TopView(current: after, previous: before, width: 60, style: .plain).lines()
        let grid = plain.filter { $0.contains(" | ") }
        let cells = grid.flatMap { $0.split(separator: "|")[1].split(separator: " ") }
        #expect(cells.count == 24, "one cell per zone: \(grid)")
        #expect(cells.allSatisfy { $0.count == 2 && "EoOCFRXN".contains($0.first!) && $0.last!.isNumber })
        let s0 = after.zones.summary
        #expect(plain.contains { $0.contains("open \(s0.openZones)/4") && $0.contains("active \(s0.activeZones)/4") })
        #expect(plain.contains { $0.contains("write 1 MiB/s") }, "rate from two snapshots: \(plain)")
        #expect(plain.allSatisfy { $0.count <= 60 && !$0.contains("\u{1B}") })

        let tty = TopView(current: after, previous: nil, width: 80, style: .terminal).lines()
        #expect(tty.joined().contains("\u{1B}[34;1m"), "full zones are drawn blue")
        #expect(tty.contains { $0.contains("write -") }, "no rate without a previous snapshot")
        try fs.unmount()
    }

    @Test func perZoneSeriesAreOffPastAThousandZonesUnlessAskedFor() throws {
        let s = Scratch()
        let fs = try makeFS(s)
        defer { try? fs.unmount() }
        // The status of a device of 2,000 zones: the small device's first zone, renumbered.
        var big = try FileSystemStatus.live(fs, path: "img", mountPoint: "/mnt")
        let first = big.zones.zones[0]
        big.zones.zones = (0..<2_000).map { i in
            var e = first
            e.index = UInt32(i)
            return e
        }
        big.zones.summary.byCondition = [first.condition: 2_000]
        let snapshot = big
        let automatic = try PrometheusText.parse(FileSystemMetrics { snapshot }.render())
        #expect(!automatic.keys.contains { $0.contains("{zone=") }, "no per-zone series past \(FileSystemMetrics.perZoneLimit) zones")
        #expect(automatic["zbdfs_zones{condition=\"\(first.condition)\"}"] == 2_000, "the aggregates are always there")
        #expect(automatic["zbdfs_space_size_bytes"] != nil && automatic["zbdfs_zones_active_limit"] != nil)
        let forced = try PrometheusText.parse(FileSystemMetrics(perZone: .always) { snapshot }.render())
        #expect(forced.keys.filter { $0.hasPrefix("zbdfs_zone_written_bytes{") }.count == 2_000)
        #expect(forced["zbdfs_zones{condition=\"\(first.condition)\"}"] == 2_000)
        // At the limit the default still serves them.
        big.zones.zones = Array(big.zones.zones.prefix(FileSystemMetrics.perZoneLimit))
        let atLimit = big
        let small = try PrometheusText.parse(FileSystemMetrics { atLimit }.render())
        #expect(small.keys.filter { $0.hasPrefix("zbdfs_zone_written_bytes{") }.count == FileSystemMetrics.perZoneLimit)
    }

    @Test func metricsExposeTheFiguresWithPrometheusNames() throws {
        let s = Scratch()
        let fs = try makeFS(s)
        let a = try fs.createFile("/a")
        try fs.write(a, at: 0, bytes: pattern(128 << 10, seed: 8), direct: true)
        let metrics = FileSystemMetrics { try FileSystemStatus.live(fs, path: "img", mountPoint: "/mnt") }
        var samples = try PrometheusText.parse(metrics.render())
        let st = try FileSystemStatus.live(fs, path: "img", mountPoint: "/mnt")
        #expect(samples["zbdfs_space_size_bytes"] == Double(st.space.sizeBytes))
        #expect(samples["zbdfs_user_written_bytes_total"] == Double(128 << 10))
        #expect(samples["zbdfs_zones_active_limit"] == 4)
        #expect(samples.keys.filter { $0.hasPrefix("zbdfs_zone_written_bytes{") }.count == 24)
        #expect(samples.keys.allSatisfy { $0.hasPrefix("zbdfs_") })
        // The exposed names are an interface (dashboards, alerts): exactly these, each typed.
        let types = String(decoding: metrics.render(), as: UTF8.self).split(separator: "\n")
            .filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] }.sorted()
        #expect(types == ["zbdfs_checksum_errors_total", "zbdfs_device_written_bytes_total", "zbdfs_reclaim_failed_passes_total",
                          "zbdfs_reclaim_moved_bytes_total", "zbdfs_reclaim_passes_total", "zbdfs_reclaim_writer_wait_seconds_total", "zbdfs_reclaim_writer_waits_total",
                          "zbdfs_reclaim_zones_total", "zbdfs_space_amplification_ratio", "zbdfs_space_free_bytes",
                          "zbdfs_space_garbage_bytes", "zbdfs_space_live_data_bytes", "zbdfs_space_metadata_bytes",
                          "zbdfs_space_size_bytes", "zbdfs_space_unusable_bytes", "zbdfs_space_used_bytes", "zbdfs_user_read_bytes_total",
                          "zbdfs_user_written_bytes_total", "zbdfs_write_amplification_ratio", "zbdfs_zone_active",
                          "zbdfs_zone_capacity_bytes", "zbdfs_zone_finish_wait_seconds_total", "zbdfs_zone_finish_waits_total",
                          "zbdfs_zone_garbage_bytes", "zbdfs_zone_live_bytes", "zbdfs_zone_resync_failures_total", "zbdfs_zone_written_bytes", "zbdfs_zones", "zbdfs_zones_active",
                          "zbdfs_zones_active_limit", "zbdfs_zones_finished_total", "zbdfs_zones_open", "zbdfs_zones_open_limit",
                          "zbdfs_zones_reset_total"], "\(types)")

        try fs.write(a, at: 128 << 10, bytes: pattern(64 << 10, seed: 9), direct: true)
        samples = try PrometheusText.parse(metrics.render())
        #expect(samples["zbdfs_user_written_bytes_total"] == Double(192 << 10), "a counter follows the mount's count")
        try fs.unmount()
    }
}
