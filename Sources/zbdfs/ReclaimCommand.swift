// `zbdfs reclaim MOUNTPOINT`: a reclaim pass by hand, run by the mount (through its control file;
// the device is never opened here), and how the commands that need a mount find it.

import ArgumentParser
import Foundation
import ZonedCore
import ZonedFUSE

/// The mount point serving `path` (a mount point or a mounted device), or a usage error naming the fix.
func servingMountPoint(_ path: String, for command: String) throws -> String {
    let abs = PathKind.absolute(path)
    if let m = servingMount(of: abs) { return m.mountPoint }
    if PathKind.isDirectory(abs) {
        throw CLIError.usage("\(path) is not a zbdfs mount point; mount one first with `zbdfs mount DEVICE \(path)`")
    }
    throw CLIError.usage("\(path) is not mounted; `zbdfs \(command)` works on a running mount (`zbdfs mount \(path) MOUNTPOINT`)")
}

struct Reclaim: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a zone reclaim pass on a mounted zbdfs file system now.",
        discussion: """
        Reclaim moves the live data out of zones that are mostly garbage (cost-benefit order:
        emptiest and coldest first) and resets them, so their space is free again. It also runs
        by itself, in the background when free space is low and whenever a writer finds no
        space. This asks the mount for a pass at once and waits for it; the mount keeps serving
        meanwhile. Prints what the pass did and the totals since mount: zones reclaimed, bytes
        moved, reclaim write amplification ((file data + moved) / file data, since format), and
        the time writers spent waiting for reclaim. --json prints the same, sizes in bytes.
        """
    )

    @Argument(help: ArgumentHelp("The mount point (or its device).", valueName: "mountpoint"))
    var mountpoint: String

    @Flag(help: "Print JSON (sizes in bytes, times in nanoseconds).") var json = false

    func run() throws {
        let mnt = try servingMountPoint(mountpoint, for: "reclaim")
        if !json { printError("reclaiming on \(mnt)…") }
        let bytes: [UInt8]
        do { bytes = try ControlFile.run("reclaim", mountPoint: mnt) } catch {
            throw CLIError.runtime("the reclaim pass on \(mnt) failed: \(error). The file system keeps its data; see the mount's log (syslog) and `zbdfs df \(mnt)`")
        }
        let dec = JSONDecoder()
        dec.keyDecodingStrategy = .convertFromSnakeCase
        guard let r = try? dec.decode(ReclaimResult.self, from: Data(bytes)) else {
            throw CLIError.runtime("the mount at \(mnt) answered something else than a reclaim result; it may run another zbdfs version — remount it with this one")
        }
        if json {
            print(jsonText(r))
            return
        }
        func f(_ b: UInt64) -> String { ByteCount.format(b) }
        print("reclaimed  \(r.zonesReclaimed) zones, moved \(f(r.bytesMoved)) in \(r.durationNanoseconds / 1_000_000) ms")
        print("free       \(f(r.freeBytesBefore)) -> \(f(r.freeBytesAfter)); garbage \(f(r.garbageBytesBefore)) -> \(f(r.garbageBytesAfter))")
        print("since mount \(r.totalZonesReclaimed) zones reclaimed, \(f(r.totalBytesMoved)) moved; writers waited for reclaim \(r.writerWaits) times, \(r.writerWaitNanoseconds / 1_000_000) ms")
        print("reclaim write amplification \(r.reclaimWriteAmplification.map { String(format: "%.3f", $0) } ?? "-") since format")
    }
}
