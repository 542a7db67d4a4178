// `zbdfs zones`: the zone report, read-only.

import ArgumentParser
import ZonedCore
import ZonedFS
import ZonedFUSE
import ZonedMonitor

struct Zones: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show every zone: type, condition, write pointer, capacity and fill, and open/active zones against the limits.",
        discussion: """
        Reads the zone report only; it never writes to the device. The backend is detected:
        a zoned block device, an emulated image, otherwise conventional mode (zones of
        --zone-size). On a zbdfs device each zone also shows its role (superblock, metadata, data,
        free) and its live and garbage bytes, from the file system's log (read, never replayed
        into the device). --json prints the same report as JSON; README.md documents its fields.
        On a mounted emulated device it shows the zone table as of the mount's last flush.
        """
    )

    @OptionGroup var target: DeviceOptions

    @Flag(help: "Print the report as JSON (sizes in bytes).")
    var json = false

    func run() throws {
        // A report only reads, so it does not claim the device: it works while it is mounted.
        let device = try target.open(exclusive: false)
        defer { device.close() }
        let zones: [Zone]
        do {
            zones = try device.reportAllZones()
        } catch {
            throw runtimeFailure("zone report of \(target.device)", error)
        }
        var report = ZoneReport(path: target.device, kind: device.kind, geometry: device.geometry, zones: zones)
        if let usage = try? FileSystemUsage.read(device: device) {
            report.annotate(Dictionary(uniqueKeysWithValues: usage.zones.map {
                ($0.zone.index, (role: $0.role.rawValue, live: $0.live.bytes, garbage: $0.garbage.bytes))
            }))
        }
        print(json ? report.json() : report.text())
        if !json, device.kind == .emulated, let m = target.mountOfDevice() {
            print("note: mounted at \(m.mountPoint); the zones are as of the mount's last flush (fsync a file or `zbdfs umount` for the current state)")
        }
    }
}
