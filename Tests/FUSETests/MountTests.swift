// `zbdfs mount` end to end: real mounts of an emulated zoned device and of conventional mode,
// driven by standard tools.

import Foundation
import Testing

@Suite("FUSE mount", .serialized, .enabled(if: fuseUnavailable == nil, "\(fuseUnavailable ?? "")"), .timeLimit(.minutes(15)))
struct MountTests {
    @Test(arguments: [Backing.emulated, .conventional])
    func copyListReadBack(_ kind: Backing) throws {
        let s = Scratch("basic")
        let dev = s.path("dev.img")
        try makeDevice(dev, kind)
        try mount(dev, s.mnt, kind)
        let r = try sh("""
            cd \(quote(s.mnt))
            echo hello > a.txt
            cat a.txt
            mkdir d
            cp a.txt d/b.txt
            ls -la . d
            """)
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.hasPrefix("hello\n"))
        try umount(s.mnt)
        try mount(dev, s.mnt, kind)
        #expect(try sh("cat \(quote(s.mnt))/d/b.txt").out == "hello\n")
        try umount(s.mnt)
        let report = try fsck(dev, kind)
        #expect(report.clean, "\(report.problems)")
    }
}
