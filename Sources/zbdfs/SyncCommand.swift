// `zbdfs sync MOUNTPOINT`: makes everything written to a mount durable now. sync(1) and syncfs(2)
// never reach a FUSE daemon, so without this a program that did not fsync waits for the periodic
// commit (`-o commit=SECONDS`). The mount does the work (through its control file); the device is
// never opened here.

import ArgumentParser
import Foundation
import ZonedCore
import ZonedFUSE

struct Sync: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make everything written to a mounted zbdfs file system durable now.",
        discussion: """
        Writes back every file's cached data, waits for it, flushes the device and commits the
        metadata log, as fsync does for one file. Needed because sync(1) and syncfs(2) never
        reach a FUSE file system: the kernel does not pass them on. Without it, data nobody
        fsync'd becomes durable at the next periodic commit (`-o commit=SECONDS`, default 5).
        Use it before a planned power-off, before copying the device, or in scripts that
        must know their writes are safe. An idle mount writes nothing. --json prints what it
        did (sizes in bytes, times in nanoseconds).
        """
    )

    @Argument(help: ArgumentHelp("The mount point (or its device).", valueName: "mountpoint"))
    var mountpoint: String

    @Flag(help: "Print JSON (sizes in bytes, times in nanoseconds).") var json = false

    func run() throws {
        let mnt = try servingMountPoint(mountpoint, for: "sync")
        let bytes: [UInt8]
        do { bytes = try ControlFile.run("sync", mountPoint: mnt) } catch {
            throw CLIError.runtime("the sync of \(mnt) failed: \(error). What was durable before stays durable; see the mount's log (syslog) and `zbdfs df \(mnt)`")
        }
        let dec = JSONDecoder()
        dec.keyDecodingStrategy = .convertFromSnakeCase
        guard let r = try? dec.decode(SyncResult.self, from: Data(bytes)) else {
            throw CLIError.runtime("the mount at \(mnt) answered something else than a sync result; it may run another zbdfs version — remount it with this one")
        }
        if json {
            print(jsonText(r))
            return
        }
        let what = r.hadUncommittedChanges
            ? "wrote back \(ByteCount.format(r.cachedBytesWrittenBack)) of cached data and committed"
            : "nothing to write: already durable"
        print("synced     \(mnt): \(what) in \(r.durationNanoseconds / 1_000_000) ms")
    }
}
