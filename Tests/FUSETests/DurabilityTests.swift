// Buffered (not yet fsync'd) data through a mount: it has blocks (`du`, `tar -S`), and however
// many files hold it, the daemon's memory stays bounded.

import Foundation
import Testing

@Suite("FUSE buffered data and durability", .serialized, .enabled(if: fuseUnavailable == nil, "\(fuseUnavailable ?? "")"))
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
}

/// A figure of /proc/PID/status in bytes (VmRSS, VmHWM: given there in kB).
func memoryFigure(_ pid: Int32, _ name: String) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }),
          let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return nil }
    return kb << 10
}
