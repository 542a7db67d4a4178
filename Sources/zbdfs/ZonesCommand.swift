// `zbdfs zones`: the zone report, read-only.

import ArgumentParser
import ZonedBackendFile
import ZonedCore
import ZonedFS
import ZonedFUSE
import ZonedMonitor

struct Zones: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show every zone: type, condition, write pointer, capacity and fill, and open/active zones against the limits.",
        discussion: """
        Reads the zone report only; it never writes to the device. The backend is detected:
        a zoned block device, an emulated image, otherwise conventional mode (zones of the size
        its zbdfs file system was formatted with, else --zone-size). On a zbdfs device each zone also shows its role (superblock, metadata, data,
        free) and its live and garbage bytes, from the file system's log (read, never replayed
        into the device). --json prints the same report as JSON; README.md documents its fields.
        On a mounted file system (give the mount point or the device) the report comes live from
        the mount: the device is not opened.
        """
    )

    @OptionGroup var target: DeviceOptions

    @Flag(help: "Print the report as JSON (sizes in bytes).")
    var json = false

    @Flag(help: "Print counts by condition and role, limits and capacity instead of one line per zone (for devices of many thousand zones).")
    var summary = false

    func run() throws {
        try target.requireDeviceOrMount()
        // A mounted file system answers from its memory (live, and the device is not opened).
        if let m = target.servingMount() {
            let status = try liveStatus(mountPoint: m.mountPoint)
            let live = "\n\nlive from the mount at \(m.mountPoint)"
            if summary {
                let brief = ZoneReportSummary(status.zones)
                print(json ? brief.json() : brief.text() + live)
            } else {
                print(json ? status.zones.json() : status.zones.text() + live)
            }
            return
        }
        // A report only reads, so it does not claim the device.
        let device = try target.open(exclusive: false)
        defer { device.close() }
        let zones: [Zone]
        do {
            zones = try device.reportAllZones()
        } catch {
            throw runtimeFailure("zone report of \(target.device)", error)
        }
        var report = ZoneReport(path: target.device, kind: device.kind, geometry: device.geometry, zones: zones)
        if (device as? EmulatedZonedDevice)?.discardsData == true { report.discardsData = true }
        if let usage = try? FileSystemUsage.read(device: device, zones: zones) { report.annotate(usage) }
        if summary {
            let brief = ZoneReportSummary(report)
            print(json ? brief.json() : brief.text())
        } else {
            print(json ? report.json() : report.text())
        }
    }
}
