// Test support for real FUSE mounts: the built `zbdfs` binary, shell scripts with a time limit,
// devices formatted through the library, and mounts that are always taken down.
//
// Invariants:
// - Every mount a test makes is unmounted in its cleanup (`fusermount3 -u`, then `umount -l`
//   as the fallback), so a failing test never leaves a stale mount behind.
// - Every shell command runs under timeout(1): a hung mount fails the test instead of hanging it.

import Foundation
import Testing
import ZonedBackendFile
import ZonedCore
import ZonedFS
import ZonedTestSupport

typealias Run = ProgramRun

/// The zbdfs binary built beside the test bundle (or $ZBDFS_BIN).
func zbdfsBinary() throws -> String { try builtProgram("zbdfs", environmentOverride: "ZBDFS_BIN") }

/// Why FUSE tests cannot run here, or nil.
let fuseUnavailable: String? = {
    if !FileManager.default.fileExists(atPath: "/dev/fuse") { return "/dev/fuse is missing (no fuse kernel module)" }
    return nil
}()

/// Runs `script` with bash under `timeout` ($1... are `argsScript`); stdout and stderr are captured.
@discardableResult
func sh(_ script: String, timeout: Int = 60, env environment: [String: String] = [:], argsScript: [String] = []) throws -> Run {
    var env = environment
    env["ZBDFS"] = try zbdfsBinary()
    return try runProgram("/usr/bin/timeout", ["-k", "5", String(timeout), "/bin/bash", "-euo", "pipefail", "-c", script, "zbdfs-test"] + argsScript,
                          environment: env)
}

/// Runs `zbdfs ARGS`.
@discardableResult
func zbdfs(_ args: String..., timeout: Int = 60) throws -> Run {
    try sh("exec \"$ZBDFS\" " + args.map(quote).joined(separator: " "), timeout: timeout)
}

func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

/// A scratch folder with a mount point, removed (after unmounting) at the end.
final class Scratch {
    let dir: String
    let mnt: String
    init(_ tag: String) {
        dir = "/tmp/zbdfs-fuse-\(getpid())-\(tag)-\(UUID().uuidString.prefix(8))"
        mnt = dir + "/mnt"
        try? FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { dir + "/" + name }
    deinit {
        forceUnmount(mnt)
        // Never delete through a mount that would not go away: that would empty the device (or
        // hang on a dead one). Leave the folder for a look instead.
        if !isMounted(mnt) { try? FileManager.default.removeItem(atPath: dir) }
    }
}

/// Takes a mount down whatever state it is in (also a dead one whose daemon was killed).
func forceUnmount(_ mnt: String) {
    for _ in 0..<3 where isMounted(mnt) {
        _ = try? sh("fusermount3 -u \(quote(mnt)) 2>/dev/null || umount -l \(quote(mnt)) 2>/dev/null || true", timeout: 20)
    }
}

func isMounted(_ mnt: String) -> Bool {
    let text = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
    return text.split(separator: "\n").contains { $0.split(separator: " ").count > 4 && $0.split(separator: " ")[4] == mnt }
}

enum Backing {
    case emulated
    case conventional

    /// Zone size the tests use (conventional mode needs it again at mount).
    static let zoneSize = ByteCount.mib(4)

    /// Extra `zbdfs mount` arguments this device needs: none (conventional mode reads its zone
    /// size from the superblock).
    var mountArguments: [String] { [] }
}

/// Creates and formats a device of `zones` zones of 4 MiB (256 MiB by default) at `path` through
/// the library.
func makeDevice(_ path: String, _ kind: Backing, zones: Int = 64) throws {
    let dev: any ZonedDevice
    switch kind {
    case .emulated:
        // Zones of 4 MiB with 3.5 MiB capacity and a tight active-zone budget, like a ZNS drive.
        let g = DeviceGeometry(zoneCount: zones, zoneSize: Backing.zoneSize, zoneCapacity: .kib(3584),
                               logicalBlockSize: .kib(4), maxOpenZones: 6, maxActiveZones: 8,
                               maxWriteBytes: .kib(512), conventionalZoneCount: 0)
        dev = try EmulatedZonedDevice.create(path: path, geometry: g, overwrite: true)
    case .conventional:
        try ConventionalDevice.create(path: path, size: Backing.zoneSize * UInt64(zones), overwrite: true)
        dev = try ConventionalDevice.open(path: path, zoneSize: Backing.zoneSize)
    }
    defer { dev.close() }
    try FileSystem.format(device: dev, options: FormatOptions(label: "fuse-test"))
}

/// Opens the (unmounted) device and runs fsck through the library.
func fsck(_ path: String, _ kind: Backing) throws -> FsckReport {
    let dev: any ZonedDevice = kind == .emulated
        ? try EmulatedZonedDevice.open(path: path)
        : try ConventionalDevice.open(path: path, zoneSize: Backing.zoneSize)
    defer { dev.close() }
    return try Fsck.check(device: dev, verifyData: true)
}

/// Mounts `device` at `mnt` in the background; records a failure with zbdfs's message.
func mount(_ device: String, _ mnt: String, _ kind: Backing, options: [String] = [],
           sourceLocation: SourceLocation = #_sourceLocation) throws {
    var args = ["mount", device, mnt] + kind.mountArguments
    for o in options { args += ["-o", o] }
    let r = try sh("exec \"$ZBDFS\" " + args.map(quote).joined(separator: " "), timeout: 30)
    #expect(r.status == 0, "mount failed: \(r.err)", sourceLocation: sourceLocation)
    #expect(isMounted(mnt), "not in the mount table after zbdfs mount returned", sourceLocation: sourceLocation)
}

func umount(_ mnt: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let r = try zbdfs("umount", mnt)
    #expect(r.status == 0, "umount failed: \(r.err)", sourceLocation: sourceLocation)
    #expect(!isMounted(mnt), sourceLocation: sourceLocation)
}

/// A JSON object a command printed (the test fails if it is not one).
func json(_ text: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
}

/// An integer field of a JSON object; -1 when it is missing, so a `> 0` check fails.
func int(_ o: [String: Any], _ k: String) -> Int { (o[k] as? NSNumber)?.intValue ?? -1 }
