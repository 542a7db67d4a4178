// A drive-sized device end to end through the commands a user runs (issue 15): a 20 TiB
// discard-data image of 80,000 zones of 256 MiB (a host-managed SMR drive), formatted, mounted
// through FUSE, written, watched and checked. The image needs a few MiB of disk.
//
// Invariants:
// - Checks are about output and exit status (zone counts, sizes, the file written); the only
//   time bounds are each command's hang guard (`sh` timeouts), not pass criteria.

import Foundation
import Testing

@Suite("FUSE at drive size", .serialized, .enabled(if: fuseUnavailable == nil, "\(fuseUnavailable ?? "")"), .timeLimit(.minutes(10)))
struct DriveSizeTests {
    @Test func formatMountWriteWatchAndCheckEightyThousandZones() throws {
        let s = Scratch("drive")
        let dev = s.path("drive.img")
        let made = try zbdfs("emulate", "create", dev, "--size", "20000G", "--zone-size", "256M", "--max-open", "128",
                             "--max-active", "128", "--discard-data")
        #expect(made.status == 0, "\(made.err)")
        let f = try sh("exec \"$ZBDFS\" format \(quote(dev))", timeout: 60)
        #expect(f.status == 0, "\(f.err)")
        let m = try sh("exec \"$ZBDFS\" mount \(quote(dev)) \(quote(s.mnt))", timeout: 60)
        #expect(m.status == 0, "\(m.err)")
        #expect(m.err.contains("discard-data"), "the mount warns that data is not kept: \(m.err)")
        let w = try sh("dd if=/dev/zero of=$1/zeros bs=1M count=64 oflag=direct status=none && stat -c %s $1/zeros",
                       timeout: 60, argsScript: [s.mnt])
        #expect(w.status == 0 && w.out.trimmingCharacters(in: .whitespacesAndNewlines) == "\(64 << 20)", "\(w.err)")

        let df = try json(try zbdfs("df", s.mnt, "--json").out)
        #expect(int(df, "live_data_bytes") == 64 << 20, "\(df)")
        #expect(int(df, "size_bytes") > 19 << 40 && int(df, "size_bytes") <= 20_000 << 30, "\(int(df, "size_bytes"))")
        let summary = try zbdfs("zones", dev, "--summary")
        #expect(summary.status == 0, "\(summary.err)")
        #expect(summary.out.contains("80,000 × 256 MiB"), "\(summary.out)")
        #expect(summary.out.split(separator: "\n").count < 16, "a summary, not a line per zone")
        let svg = s.path("map.svg")
        let map = try sh("exec \"$ZBDFS\" zonemap \(quote(dev)) --svg \(quote(svg))", timeout: 60)
        let picture = (try? String(contentsOfFile: svg, encoding: .utf8)) ?? ""
        #expect(map.status == 0 && picture.contains("<svg") && picture.contains("1 cell = 20 zones"), "\(map.err)")
        let top = try sh("exec \"$ZBDFS\" top \(quote(s.mnt)) --count 1", timeout: 60)
        #expect(top.status == 0 && top.out.contains("/128") && top.out.contains("zones"), "\(top.out.prefix(800)) \(top.err)")
        try umount(s.mnt)
        let check = try zbdfs("fsck", dev)
        #expect(check.status == 0 && check.out.contains("clean"), "\(check.out) \(check.err)")
    }
}
