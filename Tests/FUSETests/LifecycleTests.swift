// A mount's life: one mount per device (the second fails naming the first), the ways it ends
// (zbdfs umount, fusermount3 -u, SIGTERM, SIGINT) all flushing, foreground mode, errors of a
// mount that cannot happen, and a daemon killed with SIGKILL mid-workload losing nothing fsync'd.

import Foundation
import Testing
import ZonedBackendFile

@Suite("FUSE lifecycle", .serialized, .enabled(if: fuseUnavailable == nil, "\(fuseUnavailable ?? "")"), .timeLimit(.minutes(15)))
struct LifecycleTests {
    @Test func secondMountOfADeviceFailsNamingTheFirst() throws {
        let s = Scratch("excl")
        let dev = s.path("dev.img"), other = s.path("mnt2")
        try makeDevice(dev, .emulated)
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        try mount(dev, s.mnt, .emulated)
        defer { forceUnmount(other) }
        let second = try zbdfs("mount", dev, other)
        #expect(second.status == 1)
        #expect(second.err.contains("already mounted at \(s.mnt)"), "\(second.err)")
        #expect(!isMounted(other))
        // Another name of the same image (a hard link) is the same device.
        try sh("ln \(quote(dev)) \(quote(s.path("alias.img")))")
        let alias = try zbdfs("mount", s.path("alias.img"), other)
        #expect(alias.status == 1 && alias.err.contains(s.mnt), "\(alias.err)")
        // Commands that write (a format too) claim the device and name the mount.
        let reset = try zbdfs("zone", "reset", dev, "all", "--yes")
        #expect(reset.status == 1 && reset.err.contains("mounted at \(s.mnt)") && reset.err.contains("zbdfs umount"), "\(reset.err)")
        let format = try zbdfs("format", dev, "--force")
        #expect(format.status == 1 && format.err.contains("mounted at \(s.mnt)"), "\(format.err)")
        let fsckMounted = try zbdfs("fsck", dev)
        #expect(fsckMounted.status != 0 && fsckMounted.err.contains("mounted at \(s.mnt)"), "\(fsckMounted.err)")
        // A report only reads: while mounted, the mount answers it (live).
        let zones = try zbdfs("zones", dev)
        #expect(zones.status == 0 && zones.out.contains("live from the mount at \(s.mnt)"), "\(zones.err)")
        try umount(s.mnt)
        try mount(dev, other, .emulated)
        try umount(other)
    }

    @Test(arguments: ["zbdfs umount", "fusermount3 -u", "kill -TERM", "kill -INT"])
    func everyWayOutFlushes(_ how: String) throws {
        let s = Scratch("end")
        let dev = s.path("dev.img")
        try makeDevice(dev, .emulated)
        try mount(dev, s.mnt, .emulated)
        // Buffered data that nothing fsync'd: only the shutdown flush makes it durable.
        try sh("head -c 300000 /dev/urandom > \(quote(s.path("src"))); cp \(quote(s.path("src"))) \(quote(s.mnt))/f")
        let down: Run
        if how.hasPrefix("kill") {
            let pid = try #require(daemonPID(dev), "no daemon for \(dev)")
            down = try sh("\(how) \(pid) && while grep -q \(quote(" \(s.mnt) ")) /proc/self/mountinfo; do sleep 0.05; done", timeout: 20)
        } else if how == "fusermount3 -u" {
            down = try sh("fusermount3 -u \(quote(s.mnt))")
        } else {
            down = try zbdfs("umount", s.mnt)
        }
        #expect(down.status == 0, "\(how): \(down.err)")
        #expect(waitUntilReleased(dev), "\(how): the daemon still holds the device")
        try mount(dev, s.mnt, .emulated)
        #expect(try sh("cmp \(quote(s.path("src"))) \(quote(s.mnt))/f").status == 0, "\(how) lost unsynced data")
        try umount(s.mnt)
        #expect(try fsck(dev, .emulated).clean)
    }

    @Test func foregroundModeLogsAndStaysAttached() throws {
        let s = Scratch("fg")
        let dev = s.path("dev.img")
        try makeDevice(dev, .emulated)
        let r = try sh("""
            "$ZBDFS" mount \(quote(dev)) \(quote(s.mnt)) --foreground 2> \(quote(s.path("log"))) &
            pid=$!
            for i in $(seq 100); do grep -q ' \(s.mnt) ' /proc/self/mountinfo && break; sleep 0.05; done
            echo hi > \(quote(s.mnt))/f
            kill -0 $pid && echo attached
            "$ZBDFS" umount \(quote(s.mnt))
            wait $pid; echo "exit $?"
            cat \(quote(s.path("log")))
            """)
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("attached") && r.out.contains("exit 0"), "\(r.out)")
        #expect(r.out.contains("mounted at \(s.mnt)") && r.out.contains("everything flushed"), "\(r.out)")
    }

    /// O_DIRECT writes reach the engine's direct path (nothing through its page cache); unaligned
    /// ones take the buffered fallback; plain writes go through the page cache. The daemon's
    /// closing log line says which.
    @Test func oDirectGoesDownTheDirectPath() throws {
        let s = Scratch("odirect")
        let dev = s.path("dev.img")
        try makeDevice(dev, .emulated)
        func session(_ commands: String) throws -> String {
            let r = try sh("""
                "$ZBDFS" mount \(quote(dev)) \(quote(s.mnt)) --foreground 2> \(quote(s.path("log"))) &
                pid=$!
                for i in $(seq 100); do grep -q ' \(s.mnt) ' /proc/self/mountinfo && break; sleep 0.05; done
                cd \(quote(s.mnt))
                \(commands)
                cd /
                "$ZBDFS" umount \(quote(s.mnt))
                wait $pid
                tail -1 \(quote(s.path("log")))
                """)
            #expect(r.status == 0, "\(r.err)")
            return r.out
        }
        let direct = try session("dd if=/dev/urandom of=d bs=1M count=4 oflag=direct status=none")
        #expect(direct.contains("written 4 MiB, of it 0 B through the page cache; 0 unaligned"), "\(direct)")
        let unaligned = try session("dd if=/dev/urandom of=u bs=1000 count=10 oflag=direct status=none")
        #expect(unaligned.contains("10 unaligned O_DIRECT writes took the buffered fallback"), "\(unaligned)")
        let buffered = try session("dd if=/dev/urandom of=b bs=1M count=2 status=none")
        #expect(buffered.contains("written 2 MiB, of it 2 MiB through the page cache"), "\(buffered)")
    }

    @Test func mountsThatCannotHappenSayWhy() throws {
        let s = Scratch("bad")
        let blank = s.path("blank.img")
        try sh("\"$ZBDFS\" emulate create \(quote(blank)) --size 64M --zone-size 4M")
        let unformatted = try zbdfs("mount", blank, s.mnt)
        #expect(unformatted.status == 1 && unformatted.err.contains("zbdfs format"), "\(unformatted.err)")
        #expect(unformatted.err.split(separator: "\n").count == 1, "one line: \(unformatted.err)")
        let noDir = try zbdfs("mount", blank, s.path("nowhere"))
        #expect(noDir.status == 2 && noDir.err.contains("mkdir -p"), "\(noDir.err)")
        let badOption = try zbdfs("mount", blank, s.mnt, "-o", "bogus")
        #expect(badOption.status == 2 && badOption.err.contains("unknown mount option 'bogus'"), "\(badOption.err)")
        let notMounted = try zbdfs("umount", s.mnt)
        #expect(notMounted.status == 2 && notMounted.err.contains("not a mount point"), "\(notMounted.err)")
        #expect(!isMounted(s.mnt))
    }

    /// SIGKILL during a write-and-fsync workload: every file whose fsync returned reads back
    /// exactly after remount, and fsck is clean.
    @Test(arguments: [Backing.emulated, .conventional])
    func sigkillLosesNothingFsynced(_ kind: Backing) throws {
        let s = Scratch("kill")
        let dev = s.path("dev.img"), input = s.path("in")
        try makeDevice(dev, kind)
        try sh("mkdir -p \(quote(input)); for i in $(seq 60); do head -c $(( (i * 7919) % 400000 + 1 )) /dev/urandom > \(quote(input))/f$i; done")
        try mount(dev, s.mnt, kind)
        // Files go in by cp + sync FILE (fsync), every third by dd oflag=direct conv=fsync; a
        // name is logged only after its fsync returned. The daemon dies once 20 are logged.
        let r = try sh("""
            in=\(quote(input)); mnt=\(quote(s.mnt)); log=\(quote(s.path("synced")))
            : > "$log"
            (
              for i in $(seq 60); do
                if [ $((i % 3)) = 0 ]; then dd if="$in/f$i" of="$mnt/f$i" bs=64k oflag=direct conv=fsync status=none
                else cp "$in/f$i" "$mnt/f$i" && sync "$mnt/f$i"; fi || exit 0
                echo "f$i" >> "$log"
                head -c 100000 /dev/urandom > "$mnt/unsynced$i" || exit 0
              done
            ) 2>/dev/null &
            writer=$!
            while [ "$(wc -l < "$log")" -lt 20 ]; do sleep 0.01; done
            kill -KILL \(try #require(daemonPID(dev), "no daemon for \(dev)"))
            wait $writer || true
            wc -l < "$log"
            """, timeout: 60)
        #expect(r.status == 0, "\(r.err)")
        let synced = try String(contentsOfFile: s.path("synced"), encoding: .utf8).split(separator: "\n")
        #expect(synced.count >= 20 && synced.count < 60, "the kill came too late: \(synced.count)")
        // The dead mount ("Transport endpoint is not connected") goes with zbdfs umount too.
        let down = try zbdfs("umount", s.mnt)
        #expect(down.status == 0 && down.err.contains("is gone"), "\(down.err)")
        #expect(!isMounted(s.mnt))
        try mount(dev, s.mnt, kind)
        let check = try sh("cd \(quote(s.mnt)); for f in \(synced.joined(separator: " ")); do cmp -s \(quote(input))/$f $f || echo \"bad $f\"; done")
        #expect(check.status == 0 && check.out.isEmpty, "fsync'd files differ after SIGKILL: \(check.out)\(check.err)")
        try umount(s.mnt)
        let report = try fsck(dev, kind)
        #expect(report.clean, "fsck after SIGKILL: \(report.problems)")
    }
}

/// The mount daemon serving `device` (found by its command line).
func daemonPID(_ device: String) -> Int32? {
    let procs = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    for name in procs {
        guard let pid = Int32(name), let raw = FileManager.default.contents(atPath: "/proc/\(name)/cmdline") else { continue }
        let argv = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        if argv.contains("--daemon-child"), argv.contains(device) { return pid }
    }
    return nil
}

/// Waits (up to 20 s) until no process holds the device's claim.
func waitUntilReleased(_ device: String) -> Bool {
    for _ in 0..<400 {
        if !DeviceClaim.isHeld(path: device) { return true }
        usleep(50_000)
    }
    return false
}
