// The same fio jobs through mounted file systems: zbdfs through FUSE (`zbdfs mount` of an
// emulated zoned device and of conventional mode, images in --dir) and Linux btrfs on a loop
// device over a file in --dir. fio runs direct=1 on a file in the mount: 1 MiB sequential writes
// and 4 KiB random writes, the workloads O_DIRECT users of a mount care about.
//
// Every mount is taken down before the function returns, also when a job fails. btrfs needs root,
// mkfs.btrfs (btrfs-progs), losetup and the btrfs kernel module; when one is missing its column
// says why instead of a figure.

import Foundation
import ZonedBackendFile
import ZonedCore
import ZonedFS

/// The workloads measured through a mount.
let mountWorkloads: [Workload] = [.seqWrite1, .randWrite]

/// Runs `command` (through /usr/bin/env); returns its status and stderr.
@discardableResult
func run(_ command: [String]) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = command
    let err = Pipe()
    p.standardOutput = FileHandle.nullDevice
    p.standardError = err
    try p.run()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: e, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
}

/// The zbdfs binary built beside this one.
func zbdfsBinary() -> String {
    URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent("zbdfs").path
}

/// fio through `zbdfs mount` of a freshly formatted device of `kind` ("zoned" or "conventional").
func benchFUSE(kind: String, o: Options) throws -> [Workload: Measurement] {
    let image = "\(o.dir)/zbdfs-bench-fuse-\(kind)-\(getpid()).img"
    let mnt = "\(o.dir)/zbdfs-bench-fuse-mnt-\(getpid())"
    try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
    defer {
        _ = try? run(["fusermount3", "-u", mnt])
        try? FileManager.default.removeItem(atPath: mnt)
        unlink(image)
    }
    try formatBenchDevice(kind: kind, path: image, size: o.size)
    let (status, err) = try run([zbdfsBinary(), "mount", image, mnt])
    guard status == 0 else { throw BenchError.fio("zbdfs mount failed: \(err)") }
    var out: [Workload: Measurement] = [:]
    for w in mountWorkloads { out[w] = try fio(w, file: "\(mnt)/\(w.rawValue).dat", o: o) }
    let (ustatus, uerr) = try run([zbdfsBinary(), "umount", mnt])
    guard ustatus == 0 else { throw BenchError.fio("zbdfs umount failed: \(uerr)") }
    return out
}

/// An image like BenchDevice's (64 MiB zones, max active 14, 1 MiB writes), formatted, closed.
func formatBenchDevice(kind: String, path: String, size: ByteCount) throws {
    let device = try makeBenchDevice(kind: kind, path: path, deviceSize: size * 2 + .gib(1))
    defer { device.close() }
    try FileSystem.format(device: device)
}

/// Why btrfs on a loop device cannot run here, or nil.
func btrfsUnavailable() -> String? {
    if getuid() != 0 { return "needs root (losetup, mount)" }
    for tool in ["mkfs.btrfs", "losetup"] where (try? run(["which", tool]))?.0 != 0 {
        return tool == "mkfs.btrfs" ? "no mkfs.btrfs (apt-get install btrfs-progs)" : "no losetup (util-linux)"
    }
    let fs = (try? String(contentsOfFile: "/proc/filesystems", encoding: .utf8)) ?? ""
    if !fs.contains("btrfs"), (try? run(["modprobe", "btrfs"]))?.0 != 0 { return "the kernel has no btrfs module" }
    return nil
}

/// fio on btrfs made on a loop device over a file in --dir, mounted in --dir.
func benchBtrfs(o: Options) throws -> [Workload: Measurement] {
    let image = "\(o.dir)/zbdfs-bench-btrfs-\(getpid()).img"
    let mnt = "\(o.dir)/zbdfs-bench-btrfs-mnt-\(getpid())"
    try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
    guard FileManager.default.createFile(atPath: image, contents: nil),
          truncate(image, off_t((o.size * 2 + .gib(1)).bytes)) == 0 else { throw BenchError.fio("cannot create \(image)") }
    var loop = ""
    defer {
        _ = try? run(["umount", mnt])
        if !loop.isEmpty { _ = try? run(["losetup", "-d", loop]) }
        try? FileManager.default.removeItem(atPath: mnt)
        unlink(image)
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["losetup", "--find", "--show", image]
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = FileHandle.nullDevice
    try p.run()
    loop = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    p.waitUntilExit()
    guard p.terminationStatus == 0, !loop.isEmpty else { throw BenchError.fio("losetup of \(image) failed") }
    for step in [["mkfs.btrfs", "-q", "-f", loop], ["mount", "-t", "btrfs", loop, mnt]] {
        let (status, err) = try run(step)
        guard status == 0 else { throw BenchError.fio("\(step[0]) failed: \(err)") }
    }
    var out: [Workload: Measurement] = [:]
    for w in mountWorkloads { out[w] = try fio(w, file: "\(mnt)/\(w.rawValue).dat", o: o) }
    return out
}
