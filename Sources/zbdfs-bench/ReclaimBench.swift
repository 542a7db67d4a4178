// The reclaim benchmark: write amplification of random 4 KiB overwrites through the file system at
// 50% and 80% device utilisation, with the cost-benefit policy and with greedy, on the same seeded
// sequence of writes (80% of the writes go to 20% of the data: the hot/cold skew under which the
// two policies differ; under uniform writes they coincide).
//
// Write amplification = (bytes the user wrote + bytes reclaim moved) / bytes the user wrote.

import Foundation
import ZonedBackendFile
import ZonedCore
import ZonedEngine
import ZonedFS

struct ReclaimResult {
    var utilisation: Double
    var policy: ReclaimPolicy
    var userBytes: UInt64
    var movedBytes: UInt64
    var zonesReclaimed: UInt64
    var seconds: Double
    var writeAmplification: Double { Double(userBytes + movedBytes) / Double(max(1, userBytes)) }
}

func benchReclaim(dir: String, utilisation: Double, policy: ReclaimPolicy) throws -> ReclaimResult {
    let path = "\(dir)/zbdfs-bench-reclaim-\(getpid()).img"
    defer { unlink(path) }
    let g = DeviceGeometry(zoneCount: 64, zoneSize: .mib(4), maxOpenZones: 8, maxActiveZones: 8, maxWriteBytes: .mib(1))
    let dev = try EmulatedZonedDevice.create(path: path, geometry: g, overwrite: true)
    let report = try FileSystem.format(device: dev, options: FormatOptions(uuid: Array(repeating: 7, count: 16)))
    var options = MountOptions(backgroundReclaim: false)
    options.reclaimPolicy = policy
    let fs = try FileSystem.mount(device: dev, options: options)
    let files = 16
    let perFile = Int(Double(report.dataCapacity.bytes) * utilisation) / files / 4096 * 4096
    let block = AlignedBuffer(count: 1 << 20)
    var rng = SeededRandom(seed: 99)
    rng.fill(block.mutable)
    var inodes: [InodeNumber] = []
    for f in 0..<files {
        let n = try fs.createFile("/f\(f)")
        var off = 0
        while off < perFile {
            let len = min(1 << 20, perFile - off)
            _ = try fs.write(n, at: UInt64(off), UnsafeRawBufferPointer(block.slice(0, len)), flags: [.direct])
            off += len
        }
        inodes.append(n)
    }
    try fs.sync()
    let small = AlignedBuffer(count: 4096)
    let blocksPerFile = UInt64(perFile / 4096)
    let hotFiles = max(1, files / 5)
    let total = g.totalBytes.bytes * 2
    var written: UInt64 = 0
    let t0 = Date()
    while written < total {
        let hot = rng.below(10) < 8
        let f = hot ? Int(rng.below(UInt64(hotFiles))) : hotFiles + Int(rng.below(UInt64(files - hotFiles)))
        rng.fill(small.mutable)
        _ = try fs.write(inodes[f], at: rng.below(blocksPerFile) * 4096, small.readOnly, flags: [.direct])
        written += 4096
    }
    let seconds = Date().timeIntervalSince(t0)
    let stats = fs.reclaimStats
    try fs.unmount()
    return ReclaimResult(utilisation: utilisation, policy: policy, userBytes: written, movedBytes: stats.bytesMoved,
                         zonesReclaimed: stats.zonesReclaimed, seconds: seconds)
}

func printReclaim(_ results: [ReclaimResult]) {
    print("zbdfs-bench: reclaim write amplification, random 4 KiB overwrites (80% to 20% of the data) of 2x the device, 64 zones of 4 MiB")
    print("utilisation  policy          user MiB  moved MiB  zones reclaimed      WA   vs greedy")
    for r in results {
        let greedy = results.first { $0.utilisation == r.utilisation && $0.policy == .greedy }
        let vs = greedy.map { String(format: "%.2f", r.writeAmplification / $0.writeAmplification) } ?? "-"
        let policy = r.policy.rawValue.padding(toLength: 14, withPad: " ", startingAt: 0)
        print(String(format: "%10.0f%%  ", r.utilisation * 100) + policy
              + String(format: "  %8llu  %9llu  %15llu  %6.2f  ", r.userBytes >> 20, r.movedBytes >> 20, r.zonesReclaimed, r.writeAmplification)
              + String(repeating: " ", count: max(0, 10 - vs.count)) + vs)
    }
}
