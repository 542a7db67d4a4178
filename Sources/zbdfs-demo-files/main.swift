// tools/demo's file step: files written, read back and listed through the ZonedFS library on a
// formatted device (an emulated image or a conventional-mode file).
//
// Usage: zbdfs-demo-files DEVICE [--zone-size SIZE]   (--zone-size: conventional mode only)
//
// Mounts, makes /docs and /docs/deep, writes three files — one with aligned direct IO from an
// aligned buffer (straight to the device), one unaligned (the engine's buffered path), one small
// text file — syncs and unmounts; then mounts again, reads every file back and compares CRC-32C
// with what was written, and prints a listing (path, size, inode, crc32c). Exits 1 on a mismatch
// or any error, with one line that says what failed.

import Foundation
import ZonedBackendFile
import ZonedCore
import ZonedEngine
import ZonedFS

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("zbdfs-demo-files: \(message)\n".utf8))
    exit(1)
}

let args = CommandLine.arguments
guard args.count == 2 || (args.count == 4 && args[2] == "--zone-size") else {
    fail("usage: zbdfs-demo-files DEVICE [--zone-size SIZE]")
}
let path = args[1]

func openDevice() throws(DeviceError) -> any ZonedDevice {
    if EmulatedZonedDevice.isEmulatedImage(path: path) { return try EmulatedZonedDevice.open(path: path) }
    let zoneSize = args.count == 4 ? ByteCount(parsing: args[3]) : .mib(64)
    guard let zoneSize else { fail("--zone-size \(args[3]) is not a size; write e.g. 16M") }
    return try ConventionalDevice.open(path: path, zoneSize: zoneSize)
}

/// A deterministic pattern (xorshift), so every run writes the same bytes.
func pattern(_ count: Int, seed: UInt64) -> [UInt8] {
    var x = seed | 1
    return (0..<count).map { _ in
        x ^= x << 13; x ^= x >> 7; x ^= x << 17
        return UInt8(truncatingIfNeeded: x)
    }
}

func hex(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 8 - s.count) + s
}

do {
    let device = try openDevice()
    let block = Int(device.geometry.logicalBlockSize.bytes)
    var expected: [String: UInt32] = [:]

    // Write.
    let fs = try FileSystem.mount(device: device)
    try fs.makeDirectory("/docs")
    try fs.makeDirectory("/docs/deep")

    // 3 MiB in 1 MiB direct writes from an aligned buffer: whole blocks at block offsets.
    let direct = try fs.createFile("/docs/direct.bin")
    let chunk = AlignedBuffer(count: 1 << 20)
    var crc: UInt32 = 0
    for i in 0..<3 {
        let bytes = pattern(chunk.count, seed: UInt64(i + 1))
        bytes.withUnsafeBytes { chunk.mutable.copyMemory(from: $0) }
        var done = 0
        while done < chunk.count {
            let n = try fs.write(direct, at: UInt64(i * chunk.count + done),
                                 UnsafeRawBufferPointer(rebasing: chunk.readOnly[done...]), flags: [.direct])
            guard n > 0 else { fail("short direct write to /docs/direct.bin") }
            done += n
        }
        crc = CRC32C.update(crc, chunk.readOnly)
    }
    expected["/docs/direct.bin"] = crc
    guard fs.engine.stats.bufferedFallbacks == 0 else { fail("an aligned direct write fell back to the buffered path") }
    print("wrote     /docs/direct.bin          3 MiB as three 1 MiB direct writes from an aligned buffer")

    // 100,003 bytes at offset 7: neither offset nor length is a block multiple (buffered path).
    let unaligned = try fs.createFile("/docs/deep/unaligned.bin")
    let odd = pattern(100_003, seed: 42)
    try fs.write(unaligned, at: 7, bytes: odd)
    expected["/docs/deep/unaligned.bin"] = CRC32C.checksum([UInt8](repeating: 0, count: 7) + odd)
    print("wrote     /docs/deep/unaligned.bin  \(odd.count) B at offset 7, buffered (neither is a multiple of the \(block)-byte block)")

    let text = Array("Hello from a zoned device. Written through ZonedFS, read back after a remount.\n".utf8)
    let hello = try fs.createFile("/hello.txt")
    try fs.write(hello, at: 0, bytes: text)
    expected["/hello.txt"] = CRC32C.checksum(text)
    print("wrote     /hello.txt                \(text.count) B, buffered")

    try fs.sync()
    print("synced    \(fs.engine.stats.deviceBytesWritten) B of file data on the device; unmounting")
    try fs.unmount()

    // Read back after a remount.
    let again = try FileSystem.mount(device: try openDevice())
    print("mounted   again: the log replayed \(again.mountReport.framesReplayed) frames, \(again.mountReport.recordsReplayed) records")
    var mismatches: [String] = []
    print("")
    print("PATH                          SIZE     INODE  CRC32C    CHECK")
    for (p, inode) in try again.walk() {
        let st = try again.stat(inode)
        var crcText = "-", check = ""
        if st.kind == .file {
            let got = CRC32C.checksum(try again.readAll(inode))
            crcText = hex(got)
            if let want = expected[p] {
                check = got == want ? "ok" : "MISMATCH (wrote \(hex(want)))"
                if got != want { mismatches.append(p) }
            }
        }
        print("\(p.padding(toLength: 28, withPad: " ", startingAt: 0))  \(String(st.size).leftPadded(7))  \(String(inode).leftPadded(6))  \(crcText.padding(toLength: 8, withPad: " ", startingAt: 0))  \(check)")
    }
    let listed = Set(try again.walk().map(\.path))
    for p in expected.keys.sorted() where !listed.contains(p) { mismatches.append(p + " (missing)") }
    try again.unmount()
    if !mismatches.isEmpty { fail("read back differs from what was written: \(mismatches.joined(separator: ", "))") }
    print("")
    print("read back \(expected.count) files after remount: every checksum matches")
} catch {
    fail("\(path): \(error)")
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
