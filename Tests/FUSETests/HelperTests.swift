// mount(8) integration: `mount -t fuse.zbdfs DEVICE MOUNTPOINT -o OPTIONS` and an fstab line,
// through the helper tools/mount.fuse.zbdfs installed as /sbin/mount.fuse.zbdfs.
//
// mount(8) finds helpers only in /sbin, so the test links the checkout's helper there when no
// helper is installed, and removes the link again afterwards. An installed helper that is not a
// link to a zbdfs checkout is left alone and the test is skipped.

import Foundation
import Testing

let installedHelper = "/sbin/mount.fuse.zbdfs"

/// The checkout's helper script (Tests/FUSETests/ → tools/).
let checkoutHelper = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("tools/mount.fuse.zbdfs").path

/// Why the helper test cannot run here, or nil.
let helperUnavailable: String? = {
    if let f = fuseUnavailable { return f }
    if getuid() != 0 { return "mount(8) with a helper needs root" }
    if FileManager.default.fileExists(atPath: installedHelper),
       (try? FileManager.default.destinationOfSymbolicLink(atPath: installedHelper))?.hasSuffix("tools/mount.fuse.zbdfs") != true {
        return "\(installedHelper) exists and is not a link to a zbdfs checkout's helper"
    }
    return nil
}()

@Suite("mount(8) helper", .serialized, .enabled(if: helperUnavailable == nil, "\(helperUnavailable ?? "")"), .timeLimit(.minutes(15)))
struct HelperTests {
    @Test(arguments: [Backing.emulated, .conventional])
    func mountTypeAndFstabLine(_ kind: Backing) throws {
        let s = Scratch("helper")
        let dev = s.path("dev.img")
        try makeDevice(dev, kind)
        let linked = !FileManager.default.fileExists(atPath: installedHelper)
        if linked { try FileManager.default.createSymbolicLink(atPath: installedHelper, withDestinationPath: checkoutHelper) }
        defer { if linked { try? FileManager.default.removeItem(atPath: installedHelper) } }
        let env = ["ZBDFS_BIN": try zbdfsBinary()]

        let byType = try sh("mount -t fuse.zbdfs -o ro,noatime \(quote(dev)) \(quote(s.mnt)) && grep ' \(s.mnt) ' /proc/self/mountinfo", env: env)
        #expect(byType.status == 0, "mount -t fuse.zbdfs: \(byType.err)")
        #expect(byType.out.contains("fuse.zbdfs \(dev) ro"), "\(byType.out)")
        try umount(s.mnt)

        try "\(dev) \(s.mnt) fuse.zbdfs defaults,noauto,nofail,allow_other 0 0\n".write(toFile: s.path("fstab"), atomically: true, encoding: .utf8)
        let byFstab = try sh("""
            mount -T \(quote(s.path("fstab"))) \(quote(s.mnt))
            echo via-fstab > \(quote(s.mnt))/f
            grep ' \(s.mnt) ' /proc/self/mountinfo
            umount \(quote(s.mnt))
            """, env: env)
        #expect(byFstab.status == 0, "fstab mount: \(byFstab.err)")
        #expect(byFstab.out.contains("allow_other"), "\(byFstab.out)")
        #expect(waitUntilReleased(dev))
        try mount(dev, s.mnt, kind)
        #expect(try sh("cat \(quote(s.mnt))/f").out == "via-fstab\n")
        try umount(s.mnt)
    }
}
