// zbdfs-conformance: runs the device conformance suite against one device, outside `swift test`.
// Built with --static-swift-stdlib it runs inside the QEMU guest against null_blk and NVMe ZNS
// (its block device through the kernel backend, its char device /dev/ngXnY through the nvme one).
//
//   zbdfs-conformance DEVICE [--backend kernel|nvme|emulated|conventional] [--zone-size BYTES] [--only NAME]
//
// Without --backend: nvme for an NVMe generic char device, else kernel.
//
// It DESTROYS the data on DEVICE. Output: one line per check (PASS / SKIP reason / FAIL reason),
// then "N passed, N failed, N skipped". Exit 0 when nothing failed, 1 when a check failed, 2 on
// bad usage or when the device cannot be opened.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ZonedBackendFile
import ZonedBackendKernel
import ZonedBackendNVMe
import ZonedConformance
import ZonedCore

func fail(_ message: String) -> Never {
    let line = "zbdfs-conformance: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(2)
}

@MainActor func value(_ option: String) -> String {
    guard !args.isEmpty else { fail("\(option) needs a value") }
    return args.removeFirst()
}

var args = Array(CommandLine.arguments.dropFirst())
var backend: String?
var zoneSize = ByteCount.mib(64)
var only: String?
var path: String?
while !args.isEmpty {
    let a = args.removeFirst()
    switch a {
    case "--backend": backend = value(a)
    case "--zone-size":
        guard let v = args.isEmpty ? nil : ByteCount(parsing: args.removeFirst()) else { fail("--zone-size needs a size") }
        zoneSize = v
    case "--only": only = value(a)
    case "-h", "--help":
        print("usage: zbdfs-conformance DEVICE [--backend kernel|nvme|emulated|conventional] [--zone-size SIZE] [--only CHECK]")
        print("checks: " + ConformanceSuite.checks.map(\.name).joined(separator: " "))
        exit(0)
    default:
        if a.hasPrefix("-") || path != nil { fail("unexpected argument \(a); see --help") }
        path = a
    }
}
guard let path else { fail("name the device to test; see --help") }

let opener: () throws -> any ZonedDevice
switch backend ?? (NVMeZonedDevice.isPassthroughDevice(path: path) ? "nvme" : "kernel") {
case "kernel": opener = { try KernelZonedDevice.open(path: path) }
case "nvme": opener = { try NVMeZonedDevice.open(path: path) }
case "emulated": opener = { try EmulatedZonedDevice.open(path: path) }
case "conventional": opener = { try ConventionalDevice.open(path: path, zoneSize: zoneSize) }
default: fail("unknown backend \(backend ?? ""); use kernel, nvme, emulated or conventional")
}

let target: ConformanceTarget
do {
    target = ConformanceTarget(device: try opener(), reopen: opener)
} catch {
    fail("cannot open \(path): \(error)")
}
let g = target.device.geometry
print("device \(path) (\(target.device.kind.rawValue)): \(g.zoneCount) zones × \(g.zoneSize), capacity \(g.zoneCapacity), "
    + "\(g.conventionalZoneCount) conventional, max open \(g.maxOpenZones), max active \(g.maxActiveZones), "
    + "max write \(g.maxWriteBytes), append \(g.maxAppendBytes), command set \(g.commandSet.rawValue)")
if let nvme = target.device as? NVMeZonedDevice {
    print("nvme: commands to \(nvme.charDevicePath), namespace \(nvme.namespaceID); block device claimed: \(nvme.claimedBlockDevice ?? "none")")
}
// Said because `zbdfs mount` warns such an image keeps no file data: the device still keeps every
// non-zero block, so the data checks judge it like a full image and none is skipped for it.
if (target.device as? EmulatedZonedDevice)?.discardsData == true {
    print("emulated: discard-data image: only non-zero blocks are stored, zeros are dropped and read back as zeros; the data checks apply")
}

var passed = 0, failed = 0, skipped = 0
for check in ConformanceSuite.checks where only == nil || check.name == only {
    switch check.run(on: target) {
    case .passed: passed += 1; print("PASS \(check.name)")
    case .skipped(let why): skipped += 1; print("SKIP \(check.name): \(why)")
    case .failed(let why): failed += 1; print("FAIL \(check.name): \(why)")
    }
}
try? resetSequentialZones(target.device)
target.device.close()
print("\(passed) passed, \(failed) failed, \(skipped) skipped")
exit(failed == 0 ? 0 : 1)
