// Buffered (not yet fsync'd) data through a mount: it has blocks (`du`, `tar -S`), however
// many files hold it the daemon's memory stays bounded, and the periodic commit (`-o commit=`)
// makes it durable though nobody fsyncs (sync(1) never reaches a FUSE daemon).

import Foundation
import Testing
import ZonedTestSupport

@Suite("FUSE buffered data and durability", .serialized, .enabled(if: fuseUnavailable == nil, "\(fuseUnavailable ?? "")"), .timeLimit(.minutes(15)))
struct DurabilityTests {
    /// A freshly written file has st_blocks before any fsync, so `tar -S` (which takes a file
    /// whose st_blocks is 0 for one hole) archives its bytes, not zeros.
    @Test func bufferedDataHasBlocksAndSurvivesTarSparse() throws {
        let s = Scratch("blocks")
        let dev = s.path("dev.img")
        try makeDevice(dev, .emulated)
        try mount(dev, s.mnt, .emulated)
        let r = try sh("""
            head -c 1048576 /dev/urandom > "$1/a"
            stat -c %b "$1/a"
            tar -S -cf "$2/x.tar" -C "$1" a
            mkdir "$2/out" && tar -xf "$2/x.tar" -C "$2/out"
            cmp "$1/a" "$2/out/a" && echo same
            """, argsScript: [s.mnt, s.dir])
        let lines = r.out.split(separator: "\n")
        #expect(r.status == 0, "\(r.out)\(r.err)")
        #expect(Int(lines.first ?? "") ?? 0 >= 2048, "st_blocks of 1 MiB of buffered data: \(r.out)")
        #expect(lines.last == "same", "tar -S round trip: \(r.out)\(r.err)")
        try umount(s.mnt)
    }

    /// 160 MiB written to 80 files without fsync: the daemon's peak memory grows by about the
    /// mount-wide page cache limit (64 MiB), not by what was written.
    @Test func daemonMemoryStaysBoundedWhileManyFilesAreWritten() throws {
        let s = Scratch("rss")
        let dev = s.path("dev.img")
        try makeDevice(dev, .emulated, zones: 128)
        try mount(dev, s.mnt, .emulated)
        let pid = try #require(daemonPID(dev), "no daemon for \(dev)")
        let before = try #require(memoryFigure(pid, "VmRSS"))
        let w = try sh("for i in $(seq 80); do head -c 2097152 /dev/zero > \"$1/f$i\"; done", timeout: 180, argsScript: [s.mnt])
        #expect(w.status == 0, "\(w.err)")
        let peak = try #require(memoryFigure(pid, "VmHWM"))
        #expect(peak - before < 128 << 20, "the daemon grew from \(before >> 20) MiB to a peak of \(peak >> 20) MiB")
        try umount(s.mnt)
    }

    /// Changes older than the commit interval survive a kill -9 of the daemon without any fsync:
    /// `mkdir d; echo hello > d/f` comes back, and an `rm -rf` made before the last periodic
    /// commit stays done.
    @Test func changesOlderThanTheCommitIntervalSurviveSIGKILL() throws {
        let s = Scratch("commit")
        let dev = s.path("dev.img")
        try makeDevice(dev, .emulated)
        try mount(dev, s.mnt, .emulated, options: ["commit=1"])
        let setup = try sh("mkdir \"$1/old\" && head -c 300000 /dev/urandom > \"$1/old/x\"", argsScript: [s.mnt])
        #expect(setup.status == 0, "\(setup.err)")
        let first = try #require(committed(s.mnt, after: 0), "no periodic commit: \(String(describing: durability(s.mnt)))")
        let change = try sh("rm -rf \"$1/old\" && mkdir \"$1/d\" && echo hello > \"$1/d/f\"", argsScript: [s.mnt])
        #expect(change.status == 0, "\(change.err)")
        #expect(committed(s.mnt, after: first) != nil, "no second periodic commit: \(String(describing: durability(s.mnt)))")
        let pid = try #require(daemonPID(dev), "no daemon for \(dev)")
        kill(pid, SIGKILL)
        #expect(waitUntilReleased(dev), "the killed daemon still holds the device")
        let down = try zbdfs("umount", s.mnt)
        #expect(down.status == 0, "\(down.err)")
        try mount(dev, s.mnt, .emulated)
        let check = try sh("cat \"$1/d/f\"; [ -e \"$1/old\" ] && echo 'old is back'; true", argsScript: [s.mnt])
        #expect(check.out == "hello\n", "after SIGKILL: \(check.out)\(check.err)")
        try umount(s.mnt)
        #expect(try fsck(dev, .emulated).clean)
    }

    /// `zbdfs sync` is the sync(1) a FUSE mount does not get: with periodic commits off, work
    /// nobody fsync'd survives a kill -9 once it has run, and a second sync finds nothing to do.
    @Test func zbdfsSyncMakesEverythingDurableAtOnce() throws {
        let s = Scratch("sync")
        let dev = s.path("dev.img")
        try makeDevice(dev, .emulated)
        try mount(dev, s.mnt, .emulated, options: ["commit=0"])
        let w = try sh("mkdir \"$1/d\" && head -c 300000 /dev/urandom > \"$1/d/x\" && sha256sum \"$1/d/x\" > \"$2\"",
                       argsScript: [s.mnt, s.path("x.sum")])
        #expect(w.status == 0, "\(w.err)")
        #expect(durability(s.mnt)?.uncommitted == true, "the writes are not durable yet")
        let r = try zbdfs("sync", s.mnt, "--json")
        #expect(r.status == 0, "\(r.err)")
        let out = try json(r.out)
        #expect(out["had_uncommitted_changes"] as? Bool == true && int(out, "cached_bytes_written_back") >= 300_000, "\(out)")
        #expect(durability(s.mnt)?.uncommitted == false, "still not durable after zbdfs sync")
        let again = try zbdfs("sync", s.mnt)
        #expect(again.status == 0 && again.out.contains("already durable"), "\(again.out)\(again.err)")
        let pid = try #require(daemonPID(dev), "no daemon for \(dev)")
        kill(pid, SIGKILL)
        #expect(waitUntilReleased(dev), "the killed daemon still holds the device")
        #expect(try zbdfs("umount", s.mnt).status == 0)
        try mount(dev, s.mnt, .emulated)
        #expect(try sh("sha256sum -c \(quote(s.path("x.sum")))").status == 0, "the synced file after SIGKILL")
        try umount(s.mnt)
        #expect(try fsck(dev, .emulated).clean)
        let unmounted = try zbdfs("sync", s.mnt)
        #expect(unmounted.status == 2 && unmounted.err.contains("zbdfs mount"), "\(unmounted.err)")
    }
}

/// The mount's durability figures from `zbdfs df --json`: periodic commits so far and whether
/// anything is not durable yet.
func durability(_ mnt: String) -> (periodic: Int, uncommitted: Bool)? {
    guard let r = try? zbdfs("df", "--json", mnt), r.status == 0,
          let json = try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any],
          let periodic = json["periodic_commits"] as? Int, let dirty = json["uncommitted_changes"] as? Bool else { return nil }
    return (periodic, dirty)
}

/// Waits (for an event: the mount reports it) until a periodic commit after the `n`th left
/// nothing uncommitted; returns the count then, nil when the watchdog fired.
func committed(_ mnt: String, after n: Int) -> Int? {
    var seen: Int?
    let ok = waitUntil {
        if let d = durability(mnt), d.periodic > n, !d.uncommitted { seen = d.periodic; return true }
        usleep(100_000)  // each poll runs a process: poll gently
        return false
    }
    return ok ? seen : nil
}

/// A figure of /proc/PID/status in bytes (VmRSS, VmHWM: given there in kB).
func memoryFigure(_ pid: Int32, _ name: String) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }),
          let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return nil }
    return kb << 10
}
