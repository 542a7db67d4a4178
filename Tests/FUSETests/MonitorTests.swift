// Monitoring a live mount: the figures it serves (df, zones, zonemap through the control file),
// the Prometheus endpoint, `zbdfs top` in a pseudo-terminal, `zbdfs reclaim` by hand, and the
// promise that none of it writes the device.

import Foundation
import Testing
import ZonedBackendFile
import ZonedCore
import ZonedMonitor

/// A TCP port nobody listens on right now (bound to port 0, then released).
private func freePort() throws -> UInt16 {
    let server = try MetricsServer(address: "127.0.0.1", port: 0) { [] }
    let p = server.port
    server.stop()
    return p
}

@Suite("FUSE monitoring", .serialized, .enabled(if: fuseUnavailable == nil, "\(fuseUnavailable ?? "")"), .timeLimit(.minutes(15)))
struct MountMonitorTests {
    @Test func liveFiguresFromTheMountAndMonitoringWritesNothing() throws {
        let s = Scratch("mon")
        let dev = s.path("dev.img"), port = try freePort()
        try makeDevice(dev, .emulated)
        let args = ["mount", dev, s.mnt, "--metrics", "127.0.0.1:\(port)"]
        let m = try sh("exec \"$ZBDFS\" " + args.map(quote).joined(separator: " "), timeout: 30)
        #expect(m.status == 0, "\(m.err)")
        // 6 MiB in fresh files, then 2 MiB of /a replaced: known used and garbage.
        try sh("""
            dd if=/dev/urandom of=$1/a bs=1M count=4 oflag=direct status=none
            dd if=/dev/urandom of=$1/b bs=1M count=2 oflag=direct status=none
            dd if=/dev/urandom of=$1/a bs=1M count=2 oflag=direct conv=notrunc status=none
            sync $1/a $1/b
            """, argsScript: [s.mnt])
        let df = try json(try zbdfs("df", s.mnt, "--json").out)
        #expect(df["source"] as? String == "mount" && df["mount_point"] as? String == s.mnt)
        #expect(int(df, "live_data_bytes") == 6 << 20, "\(df)")
        #expect(int(df, "used_bytes") == (6 << 20) + int(df, "metadata_bytes"))
        #expect(int(df, "garbage_bytes") == 2 << 20, "the replaced 2 MiB")
        #expect(int(df, "free_bytes") + int(df, "used_bytes") + int(df, "garbage_bytes") + int(df, "unusable_bytes") == int(df, "size_bytes"))
        #expect(int(df, "user_bytes_written") == 8 << 20 && (df["write_amplification"] as? Double ?? 0) >= 1)

        // Everything a monitor can do, twice over; the image's bytes must not move.
        let before = try sh("sha256sum < \(quote(dev))").out
        let zonesBefore = try zbdfs("zones", s.mnt, "--json").out
        for _ in 0..<2 {
            #expect(try zbdfs("df", s.mnt).status == 0)
            #expect(try zbdfs("df", dev, "--json").out.contains("\"source\" : \"mount\""), "a mounted device is answered by its mount")
            #expect(try zbdfs("zones", dev).out.contains("live from the mount"))
            #expect(try zbdfs("zonemap", s.mnt, "--svg", s.path("map.svg")).status == 0)
            #expect(try zbdfs("top", s.mnt, "--count", "2", "--interval", "0.2").status == 0)
            #expect(try sh("cat \(quote(s.mnt))/.zbdfs-control").out.contains("\"zones\""))
            _ = try sh("exec 3<>/dev/tcp/127.0.0.1/\(port); printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3 >/dev/null")
        }
        #expect(try sh("sha256sum < \(quote(dev))").out == before, "monitoring changed the device's bytes")
        #expect(try zbdfs("zones", s.mnt, "--json").out == zonesBefore, "monitoring changed the zone table")
        let svg = try String(contentsOfFile: s.path("map.svg"), encoding: .utf8)
        #expect(svg.components(separatedBy: "class=\"zone\"").count - 1 == 64, "one cell per zone")

        // The control file is nobody's file: not listed, not removable, not replaceable.
        let ls = try sh("ls -a \(quote(s.mnt)); find \(quote(s.mnt))").out
        #expect(!ls.contains(".zbdfs-control"), "\(ls)")
        #expect(try sh("rm -f \(quote(s.mnt))/.zbdfs-control", timeout: 10).status != 0)
        #expect(try sh("mv \(quote(s.mnt))/b \(quote(s.mnt))/.zbdfs-control", timeout: 10).status != 0)
        #expect(try sh("echo bogus > \(quote(s.mnt))/.zbdfs-control", timeout: 10).status != 0, "an unknown command fails")

        // The metrics endpoint: parse it and compare with df.
        let scrape = try sh("exec 3<>/dev/tcp/127.0.0.1/\(port); printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3").out
        #expect(scrape.hasPrefix("HTTP/1.1 200 OK"), "\(scrape.prefix(200))")
        let body = scrape.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        let samples = try PrometheusText.parse(Array(body.utf8))
        #expect(samples["zbdfs_space_size_bytes"] == Double(int(df, "size_bytes")))
        #expect(samples["zbdfs_space_garbage_bytes"] == Double(2 << 20))
        #expect(samples["zbdfs_user_written_bytes_total"] == Double(8 << 20))
        #expect(samples["zbdfs_zones_active_limit"] == 8 && samples["zbdfs_zones_open_limit"] == 6)
        #expect(samples.keys.filter { $0.hasPrefix("zbdfs_zone_live_bytes{zone=") }.count == 64)
        try umount(s.mnt)
        #expect(try fsck(dev, .emulated).clean)
    }

    @Test func topInAPseudoTerminalShowsTheGridAndLimitsAndQuitsOnQ() throws {
        guard (try? sh("command -v tmux"))?.status == 0 else {
            Issue.record("tmux is missing: run tools/setup")
            return
        }
        let s = Scratch("top")
        let dev = s.path("dev.img"), session = "zbdfs-top-\(getpid())"
        try makeDevice(dev, .emulated)
        try mount(dev, s.mnt, .emulated)
        try sh("dd if=/dev/urandom of=$1/a bs=1M count=5 oflag=direct status=none", argsScript: [s.mnt])
        // The tmux server outlives this command: it must not inherit our descriptors (Foundation's
        // Process waits for every copy of one of them to close before it reaps the child).
        try sh("""
            for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done
            tmux new-session -d -s \(session) -x 100 -y 40 "$ZBDFS top \(quote(s.mnt))"
            """)
        defer { _ = try? sh("tmux kill-session -t \(session) 2>/dev/null || true") }
        var screen = ""
        for _ in 0..<50 {  // up to 10 s for the first frame
            usleep(200_000)
            screen = try sh("tmux capture-pane -p -t \(session)").out
            if screen.contains("active ") && screen.contains(" | ") { break }
        }
        #expect(screen.contains("zbdfs top"), "\(screen)")
        #expect(screen.range(of: #"open \d+/6  active \d+/8"#, options: .regularExpression) != nil, "limits: \(screen)")
        let cells = screen.split(separator: "\n").filter { $0.contains(" | ") }
            .flatMap { $0.split(separator: "|", maxSplits: 1)[1].split(separator: " ") }
        #expect(cells.count == 64, "one cell per zone: \(screen)")
        #expect(cells.allSatisfy { ".▁▂▃▄▅▆▇█".contains($0) }, "\(cells)")
        try sh("tmux send-keys -t \(session) q")
        var gone = false
        for _ in 0..<25 where !gone {
            usleep(200_000)
            gone = (try sh("tmux has-session -t \(session) 2>/dev/null")).status != 0
        }
        #expect(gone, "top did not quit on q")
        try umount(s.mnt)
    }

    @Test func reclaimByHandEmptiesGarbageZonesAndKeepsTheData() throws {
        let s = Scratch("reclaim")
        let dev = s.path("dev.img")
        try makeDevice(dev, .emulated)
        try mount(dev, s.mnt, .emulated)
        // /a and /b interleaved in 512 KiB pieces, so removing /b leaves zones half garbage.
        try sh("""
            for i in $(seq 0 27); do
              dd if=/dev/urandom of=$1/a bs=512K count=1 seek=$i oflag=direct conv=notrunc status=none
              dd if=/dev/urandom of=$1/b bs=512K count=1 seek=$i oflag=direct conv=notrunc status=none
            done
            sync $1/a; sha256sum $1/a > $2
            rm $1/b; sync $1/a
            """, timeout: 120, argsScript: [s.mnt, s.path("a.sum")])
        let before = try json(try zbdfs("df", s.mnt, "--json").out)
        #expect(int(before, "garbage_bytes") > 0, "\(before)")
        let r = try zbdfs("reclaim", s.mnt, "--json")
        #expect(r.status == 0, "\(r.err)")
        let out = try json(r.out)
        #expect(int(out, "zones_reclaimed") > 0 && int(out, "bytes_moved") > 0, "\(out)")
        #expect(int(out, "garbage_bytes_after") < int(out, "garbage_bytes_before"))
        #expect(int(out, "free_bytes_after") > int(out, "free_bytes_before"))
        #expect(int(out, "total_zones_reclaimed") >= int(out, "zones_reclaimed"))
        #expect((out["reclaim_write_amplification"] as? Double ?? 0) > 1)
        let text = try zbdfs("reclaim", s.mnt)
        #expect(text.status == 0 && text.out.contains("reclaim write amplification"), "\(text.out)")
        #expect(try sh("sha256sum -c \(quote(s.path("a.sum")))").status == 0, "data intact after the moves")
        try umount(s.mnt)
        try mount(dev, s.mnt, .emulated)
        #expect(try sh("sha256sum -c \(quote(s.path("a.sum")))").status == 0, "data intact after remount")
        try umount(s.mnt)
        #expect(try fsck(dev, .emulated).clean)
        // Not mounted: reclaim says how to get there.
        let unmounted = try zbdfs("reclaim", s.mnt)
        #expect(unmounted.status == 2 && unmounted.err.contains("zbdfs mount"), "\(unmounted.err)")
    }
}
