// Many threads using one file system while the metadata log rolls over and checkpoints (which
// quiesce every operation): no deadlock, and everything synced reads back after a remount.

import Foundation
import Testing
import ZonedBackendFile
import ZonedCore
import ZonedEngine
@testable import ZonedFS

@Suite("File system concurrency")
struct FSConcurrencyTests {
    @Test("8 threads create, write (direct and buffered), fsync, rename and unlink during log roll-overs")
    func threadsDuringRollOvers() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: smallZoned(zones: 48, zoneSize: .kib(64), capacity: .kib(64), maxActive: 4))
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: dev)
        let threads = 8, perThread = 30
        let failures = ConditionLock()
        nonisolated(unsafe) var errors: [String] = []
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            do {
                let dir = try fs.makeDirectory("/t\(t)")
                for i in 0..<perThread {
                    let name = try EntryName("f\(i)")
                    let n = try fs.create(dir, name, kind: .file, mode: 0o644, uid: 0, gid: 0).number
                    let data = bytes(i % 2 == 0 ? 12_288 : 5_000, seed: UInt64(t * 1000 + i))
                    try fs.write(n, at: 0, bytes: data, direct: i % 2 == 0)
                    if i % 3 == 0 { try fs.fsync(n) }
                    if i % 5 == 4 { try fs.unlink(dir, name) }
                    if i % 7 == 6 { try fs.rename(dir, name, to: dir, try EntryName("r\(i)")) }
                }
            } catch {
                failures.withLock { errors.append("thread \(t): \(error)") }
            }
        }
        #expect(errors.isEmpty, "\(errors)")
        #expect(fs.journalCounters.checkpoints >= 3, "the log rolled over with checkpoints while threads ran: \(fs.journalCounters)")
        try fs.unmount()
        let again = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")))
        for t in 0..<threads {
            for i in 0..<perThread where i % 5 != 4 {
                let path = "/t\(t)/" + (i % 7 == 6 ? "r\(i)" : "f\(i)")
                let want = bytes(i % 2 == 0 ? 12_288 : 5_000, seed: UInt64(t * 1000 + i))
                #expect(try again.readAll(try again.resolve(path)) == want, "\(path)")
            }
        }
        #expect(try Fsck.check(device: again.device, verifyData: true).clean)
        try again.unmount()
    }
}
