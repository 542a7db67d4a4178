// What buffered (not yet fsync'd) data looks like through a mount: it has blocks (`du`, `tar -S`).

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
}
