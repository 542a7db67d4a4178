// `zbdfs emulate create`: make an emulated zoned device in a regular file.

import ArgumentParser
import Foundation
import ZonedBackendFile
import ZonedCore

struct Emulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create emulated zoned devices in regular files.",
        subcommands: [Create.self]
    )

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an emulated host-managed zoned device in IMAGE.",
            discussion: """
            The image is a sparse file: a header, a zone table that keeps write pointers and zone
            conditions across runs, and the data. It enforces the rules of a host-managed device:
            writes only at the write pointer, nothing past zone capacity, and the open/active zone
            limits with the kernel's errors (ETOOMANYREFS, EOVERFLOW).

            Sizes take K, M, G, T suffixes (powers of 1024). Examples:
              zbdfs emulate create dev.zimg --size 4G --zone-size 64M
              zbdfs emulate create zns.zimg --size 1G --zone-size 64M --zone-capacity 62M \\
                  --max-open 14 --max-active 14 --zone-append
              zbdfs emulate create smr.zimg --size 2G --zone-size 256M --conventional-zones 1
              zbdfs emulate create drive.zimg --size 20000G --zone-size 256M \\
                  --max-open 128 --max-active 128 --discard-data

            --discard-data keeps only the zone table and blocks that are not all zeros: a
            drive-sized device (80,000 zones) in a few MiB, for scale and speed work. Reads of a
            block of zeros, or of one never kept, give zeros. Data written as zeros costs nothing;
            do not keep files you care about on such a device.
            """
        )

        @Argument(help: ArgumentHelp("Path of the image file to create.", valueName: "image"))
        var image: String

        @Option(help: "Device size: a whole number of zones.")
        var size: String

        @Option(help: "Zone size: a power of two and a multiple of the block size.")
        var zoneSize: String = "64M"

        @Option(help: "Writable bytes per sequential zone (default: the zone size), like NVMe ZNS zone capacity.")
        var zoneCapacity: String?

        @Option(help: "Leading zones that take random writes.")
        var conventionalZones: Int = 0

        @Option(help: "Max open zones (0 = no limit).")
        var maxOpen: Int = 0

        @Option(help: "Max active zones (0 = no limit).")
        var maxActive: Int = 0

        @Option(help: "Logical block size in bytes: 512 or 4096.")
        var blockSize: Int = 4096

        @Option(help: "Largest single write the device takes.")
        var maxWrite: String = "1M"

        @Flag(help: "Enable zone append (with --max-append as its size limit).")
        var zoneAppend = false

        @Option(help: "Largest zone append (at most the zone capacity); implies --zone-append. `zbdfs zones` shows it.")
        var maxAppend: String?

        @Flag(help: "Keep only the zone table and non-zero blocks (scale and speed work; zeros are not stored).")
        var discardData = false

        @Flag(help: "Overwrite IMAGE if it exists (its contents are lost).")
        var force = false

        @Flag(help: "Print the created geometry as JSON.")
        var json = false

        func validate() throws {
            _ = try geometry()
            if FileManager.default.fileExists(atPath: image), !force {
                throw ValidationError("\(image) already exists; pass --force to overwrite it (its contents are lost), or choose another path.")
            }
            if PathKind.isBlockDevice(image) {
                throw ValidationError("\(image) is a block device; `emulate create` makes an image in a regular file.")
            }
        }

        /// Builds and checks the geometry from the options; errors name the option and the fix.
        func geometry() throws -> DeviceGeometry {
            let total = try parse(size, "--size")
            let zs = try parse(zoneSize, "--zone-size")
            let bs = ByteCount(UInt64(max(0, blockSize)))
            guard blockSize == 512 || blockSize == 4096 else {
                throw ValidationError("--block-size \(blockSize) is not supported; use 512 or 4096.")
            }
            guard zs.isPowerOfTwo else {
                throw ValidationError("--zone-size \(zoneSize) is not a power of two; use e.g. 64M or 256M.")
            }
            guard zs.isMultiple(of: bs) else {
                throw ValidationError("--zone-size \(zoneSize) is not a multiple of the \(blockSize)-byte block size.")
            }
            guard total.isMultiple(of: zs), total >= zs else {
                let down = (total.bytes / zs.bytes) * zs.bytes, up = down + zs.bytes
                throw ValidationError("--size \(size) is not a whole number of \(zs) zones; use \(down > 0 ? "\(ByteCount(down)) or " : "")\(ByteCount(up)).")
            }
            let cap = try zoneCapacity.map { try parse($0, "--zone-capacity") } ?? zs
            guard cap <= zs, cap.bytes > 0 else {
                throw ValidationError("--zone-capacity \(zoneCapacity ?? "") is above the zone size \(zs); it must be at most the zone size.")
            }
            guard cap.isMultiple(of: bs) else {
                throw ValidationError("--zone-capacity \(zoneCapacity ?? "") is not a multiple of the \(blockSize)-byte block size.")
            }
            let maxW = try parse(maxWrite, "--max-write")
            guard maxW.isMultiple(of: bs), maxW >= bs else {
                throw ValidationError("--max-write \(maxWrite) is not a multiple of the \(blockSize)-byte block size.")
            }
            var append = ByteCount.zero
            if let a = maxAppend {
                append = try parse(a, "--max-append")
                guard append.isMultiple(of: bs), append >= bs else {
                    throw ValidationError("--max-append \(a) is not a positive multiple of the \(blockSize)-byte block size.")
                }
                // One append never crosses a zone, so a larger limit could never be used.
                guard append <= cap else {
                    throw ValidationError("--max-append \(a) is above the zone capacity \(cap); use at most the zone capacity, e.g. 128K.")
                }
            } else if zoneAppend {
                append = min(.kib(128), cap)
            }
            let zoneCount = Int(total.bytes / zs.bytes)
            guard conventionalZones >= 0, conventionalZones <= zoneCount else {
                throw ValidationError("--conventional-zones \(conventionalZones) does not fit in \(zoneCount) zones.")
            }
            guard maxOpen >= 0, maxActive >= 0 else { throw ValidationError("--max-open and --max-active cannot be negative.") }
            if maxOpen > 0, maxActive > 0, maxOpen > maxActive {
                throw ValidationError("--max-open \(maxOpen) exceeds --max-active \(maxActive); an open zone is also active.")
            }
            let g = DeviceGeometry(zoneCount: zoneCount, zoneSize: zs, zoneCapacity: cap, logicalBlockSize: bs,
                                   maxOpenZones: maxOpen, maxActiveZones: maxActive, maxWriteBytes: maxW,
                                   maxAppendBytes: append, conventionalZoneCount: conventionalZones)
            if let p = g.problem() { throw ValidationError(p) }
            return g
        }

        private func parse(_ text: String, _ option: String) throws -> ByteCount {
            guard let v = ByteCount(parsing: text) else {
                throw ValidationError("\(option) \(text) is not a size; write e.g. 4096, 64M or 4G.")
            }
            return v
        }

        func run() throws {
            let g = try geometry()
            do {
                let dev = try EmulatedZonedDevice.create(path: image, geometry: g, overwrite: force, discardData: discardData)
                dev.close()
            } catch {
                throw CLIError.runtime("cannot create \(image): \(error). Check that its folder exists and is writable.")
            }
            let report = ZoneReportSummaryPrinter(path: image, geometry: g, discardsData: discardData)
            print(json ? report.json() : report.text())
        }
    }
}

/// What `emulate create` prints: the geometry it made.
struct ZoneReportSummaryPrinter {
    var path: String
    var geometry: DeviceGeometry
    var discardsData = false

    func text() -> String {
        let g = geometry
        let data = discardsData ? "\ndata     discarded: only non-zero blocks are kept (for scale and speed work)" : ""
        return """
        created  \(path): emulated zoned device, \(g.totalBytes)
        zones    \(g.zoneCount) × \(g.zoneSize), capacity \(g.zoneCapacity), block \(g.logicalBlockSize.bytes) B, \(g.conventionalZoneCount) conventional
        limits   max open \(g.maxOpenZones == 0 ? "unlimited" : String(g.maxOpenZones)), max active \(g.maxActiveZones == 0 ? "unlimited" : String(g.maxActiveZones)), max write \(g.maxWriteBytes), zone append \(g.supportsZoneAppend ? "up to \(g.maxAppendBytes)" : "no")\(data)
        """
    }

    func json() -> String {
        let g = geometry
        let fields: [(String, String)] = [
            ("device", "\"\(path.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\""),
            ("backend", "\"emulated\""), ("zone_count", "\(g.zoneCount)"), ("zone_size_bytes", "\(g.zoneSize.bytes)"),
            ("zone_capacity_bytes", "\(g.zoneCapacity.bytes)"), ("logical_block_size_bytes", "\(g.logicalBlockSize.bytes)"),
            ("device_size_bytes", "\(g.totalBytes.bytes)"), ("conventional_zones", "\(g.conventionalZoneCount)"),
            ("max_open_zones", "\(g.maxOpenZones)"), ("max_active_zones", "\(g.maxActiveZones)"),
            ("max_write_bytes", "\(g.maxWriteBytes.bytes)"), ("max_append_bytes", "\(g.maxAppendBytes.bytes)"),
            ("discards_data", "\(discardsData)"),
        ]
        return "{\n" + fields.map { "  \"\($0.0)\" : \($0.1)" }.joined(separator: ",\n") + "\n}"
    }
}
