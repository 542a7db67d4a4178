// Shared helpers for the file-backend tests: scratch directories under TMPDIR, block patterns,
// byte-array IO and error capture.

import Foundation
import Testing
import ZonedCore
@testable import ZonedBackendFile

/// A fresh directory under the temporary directory, removed when released.
final class Scratch {
    let url: URL
    init() {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("zbdfs-file-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
}

let bs = 4096

/// 8 zones of 1 MiB (768 KiB capacity), 2 conventional, 3 open / 4 active, 256 KiB writes, 64 KiB appends.
let testGeometry = DeviceGeometry(zoneCount: 8, zoneSize: .mib(1), zoneCapacity: .kib(768),
                                  logicalBlockSize: ByteCount(bs), maxOpenZones: 3, maxActiveZones: 4,
                                  maxWriteBytes: .kib(256), maxAppendBytes: .kib(64), conventionalZoneCount: 2)

/// `blocks` blocks of a recognisable, non-zero pattern (differs for each tag and block).
func pattern(_ tag: UInt8, blocks: Int = 1) -> [UInt8] {
    (0..<(blocks * bs)).map { i in UInt8(truncatingIfNeeded: Int(tag) &* 37 &+ i / bs &* 11 &+ i % 251) | 1 }
}

/// Device offset of block `n` of zone `zone`.
func at(_ zone: Int, _ n: Int = 0, _ g: DeviceGeometry = testGeometry) -> DeviceOffset {
    g.zoneStart(ZoneID(zone)) + ByteCount(n * bs)
}

/// The DeviceError a call throws, or nil (any other error is a test failure).
func failure(_ body: () throws -> Void) -> DeviceError? {
    do { try body(); return nil } catch let e as DeviceError { return e } catch {
        Issue.record("expected a DeviceError, got \(error)")
        return nil
    }
}

extension ZonedDevice {
    func write(bytes: [UInt8], at offset: DeviceOffset) throws(DeviceError) {
        let failure: DeviceError? = bytes.withUnsafeBytes { b in
            do throws(DeviceError) { try write(b, at: offset); return nil } catch { return error }
        }
        if let failure { throw failure }
    }

    func append(bytes: [UInt8], to zone: ZoneID) throws(DeviceError) -> DeviceOffset {
        let result: Result<DeviceOffset, DeviceError> = bytes.withUnsafeBytes { b in
            do throws(DeviceError) { return .success(try append(b, to: zone)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    func readBytes(_ count: Int, at offset: DeviceOffset) throws(DeviceError) -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: count)
        let failure: DeviceError? = out.withUnsafeMutableBytes { b in
            do throws(DeviceError) { try read(into: b, at: offset); return nil } catch { return error }
        }
        if let failure { throw failure }
        return out
    }

    func wp(_ zone: Int) throws -> DeviceOffset { try self.zone(ZoneID(zone)).writePointer }
    func condition(_ zone: Int) throws -> ZoneCondition { try self.zone(ZoneID(zone)).condition }
}

/// Flips the bits of one byte of a file in place.
func corrupt(_ path: String, at offset: UInt64, xor: UInt8 = 0xFF) throws {
    let h = try #require(FileHandle(forUpdatingAtPath: path))
    defer { try? h.close() }
    try h.seek(toOffset: offset)
    let b = try #require(try h.read(upToCount: 1)).first ?? 0
    try h.seek(toOffset: offset)
    try h.write(contentsOf: [b ^ xor])
}
