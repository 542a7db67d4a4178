// `zbdfs zones`: the zone report, read-only.

import ArgumentParser
import ZonedCore
import ZonedFUSE
import ZonedMonitor

struct Zones: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show every zone: type, condition, write pointer, capacity and fill, and open/active zones against the limits.",
        discussion: """
        Reads the zone report only; it never writes to the device. The backend is detected:
        a zoned block device, an emulated image, otherwise conventional mode (zones of
        --zone-size). --json prints the same report as JSON; README.md documents its fields.
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
        let report = ZoneReport(path: target.device, kind: device.kind, geometry: device.geometry, zones: zones)
        print(json ? report.json() : report.text())
        if !json, device.kind == .emulated, let m = target.mountOfDevice() {
            print("note: mounted at \(m.mountPoint); the zones are as of the mount's last flush (fsync a file or `zbdfs umount` for the current state)")
        }
    }
}
