// Runs the one device conformance suite (Sources/ZonedConformance) against every backend this
// machine can reach: emulated images in several limit profiles, discard-data images among them,
// and conventional mode on the host; a kernel zoned block device when ZBDFS_TEST_KERNEL_DEVICE
// names one (the QEMU guest sets it).
// Each profile lists the checks it expects to skip, so a backend cannot pass by skipping, and says
// whether its image discards data, so a discard-data profile cannot pass on a full image.

import Foundation
import Testing
import ZonedBackendFile
import ZonedBackendKernel
import ZonedConformance
import ZonedCore

struct Profile: Sendable, CustomTestStringConvertible {
    var name: String
    var make: @Sendable (String) throws -> any ZonedDevice
    var reopen: @Sendable (String) throws -> any ZonedDevice
    var expectedSkips: Set<String>
    /// A discard-data emulated image (KeptBlocks.swift: only non-zero blocks are stored).
    var discardsData = false
    var testDescription: String { name }

    static func emulated(_ name: String, _ g: DeviceGeometry, discardData: Bool = false, skips: Set<String>) -> Profile {
        Profile(name: name,
                make: { path in try EmulatedZonedDevice.create(path: path, geometry: g, overwrite: true, discardData: discardData) },
                reopen: { path in try EmulatedZonedDevice.open(path: path) },
                expectedSkips: skips, discardsData: discardData)
    }

    static let sequentialOnly: Set<String> = ["conventional-random-writes", "conventional-management"]

    /// Both limits, conventional zones and zone append: every check applies.
    static let limits = DeviceGeometry(
        zoneCount: 16, zoneSize: .mib(1), zoneCapacity: .kib(768), maxOpenZones: 3, maxActiveZones: 5,
        maxWriteBytes: .kib(128), maxAppendBytes: .kib(64), conventionalZoneCount: 2)

    /// A drive's limits (128 open = 128 active, 1 MiB writes, some conventional zones) on 4,096
    /// zones. Not the drive's 80,000 zones of 256 MiB: that profile passes too but takes 35 s,
    /// because each open, close, finish and reset rewrites the whole zone table (1.3 MB at 80,000
    /// zones) and filling one 256 MiB zone takes 5 s in a debug build.
    static let manyZones = DeviceGeometry(
        zoneCount: 4096, zoneSize: .mib(16), maxOpenZones: 128, maxActiveZones: 128,
        maxWriteBytes: .mib(1), maxAppendBytes: .kib(512), conventionalZoneCount: 40)

    static let all: [Profile] = {
        var p: [Profile] = [
            .emulated("emulated-limits", limits, skips: []),
            .emulated("emulated-no-limits", DeviceGeometry(
                zoneCount: 8, zoneSize: .kib(512), maxWriteBytes: .kib(64)),
                skips: sequentialOnly.union(["implicit-open-limit", "explicit-open-limit", "active-limit"])),
            .emulated("emulated-open-equals-active", DeviceGeometry(
                zoneCount: 12, zoneSize: .kib(256), zoneCapacity: .kib(192), logicalBlockSize: ByteCount(512),
                maxOpenZones: 4, maxActiveZones: 4, maxWriteBytes: .kib(32), conventionalZoneCount: 1),
                skips: ["implicit-open-limit"]),
            // The data checks write seeded random blocks (never all zeros), which a discard-data
            // image keeps, and conventional-random-writes writes zeros over them, which it drops:
            // every check holds there as on a full image, so only the geometry skips any.
            .emulated("emulated-discard-data", limits, discardData: true, skips: []),
            .emulated("emulated-discard-data-many-zones", manyZones, discardData: true, skips: ["implicit-open-limit"]),
            Profile(name: "conventional",
                    make: { path in try ConventionalDevice.create(path: path, size: .mib(8)); return try ConventionalDevice.open(path: path, zoneSize: .mib(1)) },
                    reopen: { path in try ConventionalDevice.open(path: path, zoneSize: .mib(1)) },
                    expectedSkips: Set(ConformanceSuite.checks.map(\.name)).subtracting(
                        ["geometry", "report-range", "alignment", "conventional-random-writes", "conventional-management"])),
        ]
        if let dev = ProcessInfo.processInfo.environment["ZBDFS_TEST_KERNEL_DEVICE"], !dev.isEmpty {
            p.append(Profile(name: "kernel \(dev)",
                             make: { _ in try KernelZonedDevice.open(path: dev) },
                             reopen: { _ in try KernelZonedDevice.open(path: dev) },
                             expectedSkips: []))
        }
        return p
    }()
}

func scratchPath(_ tag: String) -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zbdfs-tests-\(getpid())")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent("\(tag)-\(UUID().uuidString).img").path
}

@Suite("Device conformance", .timeLimit(.minutes(10)))
struct ConformanceTests {
    @Test("each rule holds", arguments: Profile.all, ConformanceSuite.checks.map(\.name))
    func rule(profile: Profile, checkName: String) throws {
        let check = try #require(ConformanceSuite.checks.first { $0.name == checkName })
        let path = scratchPath(profile.name)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let target = ConformanceTarget(device: try profile.make(path), reopen: { try profile.reopen(path) })
        defer { target.device.close() }
        let outcome = check.run(on: target)
        switch outcome {
        case .passed:
            #expect(!profile.expectedSkips.contains(checkName), "\(checkName) ran on \(profile.name) but was expected to skip; update the profile")
        case .skipped(let why):
            #expect(profile.expectedSkips.contains(checkName), "\(checkName) skipped on \(profile.name): \(why)")
        case .failed(let why):
            Issue.record("\(checkName) failed on \(profile.name): \(why)")
        }
    }

    @Test("each profile's device discards data exactly when the profile says so", arguments: Profile.all)
    func discardsDataAsDeclared(profile: Profile) throws {
        let path = scratchPath(profile.name)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let device = try profile.make(path)
        defer { device.close() }
        #expect(((device as? EmulatedZonedDevice)?.discardsData ?? false) == profile.discardsData)
    }

    /// The suite must be able to fail: a device that breaks a rule is caught.
    @Test("a device that ignores the write pointer fails the suite")
    func brokenDeviceFails() throws {
        let path = scratchPath("broken")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let inner = try EmulatedZonedDevice.create(path: path, geometry: DeviceGeometry(zoneCount: 4, zoneSize: .kib(256), maxWriteBytes: .kib(64)), overwrite: true)
        let broken = WritesAnywhere(inner)
        defer { broken.close() }
        let check = try #require(ConformanceSuite.checks.first { $0.name == "write-off-write-pointer" })
        guard case .failed = check.run(on: ConformanceTarget(device: broken)) else {
            Issue.record("the write-pointer check passed on a device that accepts writes off the write pointer")
            return
        }
    }
}

extension ConformanceTests {
    /// The close rule depends on the command set: a device that claims NVMe ZNS but empties an
    /// unwritten zone on close (as ZBC does) is caught, and so is the ZBC device that keeps it.
    @Test("explicit-open-close holds a device to its own command set")
    func closeRuleFollowsCommandSet() throws {
        let path = scratchPath("zns-claim")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let inner = try EmulatedZonedDevice.create(path: path, geometry: DeviceGeometry(zoneCount: 4, zoneSize: .kib(256), maxWriteBytes: .kib(64)), overwrite: true)
        let check = try #require(ConformanceSuite.checks.first { $0.name == "explicit-open-close" })
        #expect(check.run(on: ConformanceTarget(device: inner)) == .passed)
        let claimsZNS = ClaimsCommandSet(inner, .zns)
        defer { claimsZNS.close() }
        guard case .failed(let why) = check.run(on: ConformanceTarget(device: claimsZNS)) else {
            Issue.record("explicit-open-close passed on a ZNS device whose close empties an unwritten zone")
            return
        }
        #expect(why.contains("should leave it closed"), "\(why)")
    }

    /// The harness releases what a check leaves behind, and fails a device that cannot.
    @Test("a check that leaves zones active is cleaned up; a device whose reset keeps them fails")
    func harnessReleasesZones() throws {
        let path = scratchPath("cleanup")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let dev = try EmulatedZonedDevice.create(path: path, geometry: DeviceGeometry(zoneCount: 4, zoneSize: .kib(256), maxWriteBytes: .kib(64)), overwrite: true)
        defer { dev.close() }
        let leaves = ConformanceCheck("leaves-zones", "opens two zones and writes a third") { t in
            try t.device.openZone(ZoneID(0))
            try t.device.openZone(ZoneID(1))
            try t.device.write(AlignedBuffer(count: 4096), at: t.device.geometry.zoneStart(ZoneID(2)))
        }
        #expect(leaves.run(on: ConformanceTarget(device: dev)) == .passed)
        let after = ZoneSummary(zones: try dev.reportAllZones(), geometry: dev.geometry)
        #expect(after.open == 0 && after.active == 0, "zones left open/active: \(after)")
        try dev.write(AlignedBuffer(count: 4096), at: dev.geometry.zoneStart(ZoneID(3)))
        let noop = ConformanceCheck("no-op", "does nothing") { _ in }
        guard case .failed(let why) = noop.run(on: ConformanceTarget(device: ResetDoesNothing(dev))) else {
            Issue.record("a device whose reset keeps zones active passed the harness cleanup")
            return
        }
        #expect(why.contains("still active"), "\(why)")
    }
}

/// Claims another command set than the device it forwards to follows.
final class ClaimsCommandSet: ForwardingDevice, @unchecked Sendable {
    let claimed: ZoneCommandSet
    init(_ inner: any ZonedDevice, _ claimed: ZoneCommandSet) {
        self.claimed = claimed
        super.init(inner)
    }
    override var geometry: DeviceGeometry {
        var g = inner.geometry
        g.commandSet = claimed
        return g
    }
}

/// A deliberately broken device: reset succeeds but changes nothing.
final class ResetDoesNothing: ForwardingDevice, @unchecked Sendable {
    override func reset(_ zone: ZoneID) throws(DeviceError) {}
}

/// A deliberately broken device: writes off the write pointer are silently accepted (dropped).
final class WritesAnywhere: ForwardingDevice, @unchecked Sendable {
    override func write(_ data: UnsafeRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) {
        do { try inner.write(data, at: offset) } catch where error.kind == .io { /* swallowed: the bug */ }
    }
}
