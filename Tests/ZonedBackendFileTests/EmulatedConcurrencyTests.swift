// A smoke test of the locking: threads writing and reading different zones at once end with
// exact write pointers and data.

import Foundation
import Testing
import ZonedCore
@testable import ZonedBackendFile

@Suite(.timeLimit(.minutes(10))) struct EmulatedConcurrencyTests {
    @Test func parallelWritersToDifferentZones() throws {
        let s = Scratch()
        let g = DeviceGeometry(zoneCount: 8, zoneSize: .mib(1), maxWriteBytes: .kib(64), maxAppendBytes: .kib(64))
        let dev = try EmulatedZonedDevice.create(path: s.path("a.zimg"), geometry: g)
        defer { dev.close() }
        let errors = Mutex2()
        DispatchQueue.concurrentPerform(iterations: 8) { z in
            for n in 0..<32 {
                do {
                    if z % 2 == 0 {
                        try dev.write(bytes: pattern(UInt8(z * 32 + n)), at: at(z, n, g))
                    } else {
                        _ = try dev.append(bytes: pattern(UInt8(z * 32 + n)), to: ZoneID(z))
                    }
                    _ = try dev.readBytes(bs, at: at(z, n, g))
                } catch { errors.add("\(error)") }
            }
        }
        #expect(errors.all.isEmpty)
        for z in 0..<8 {
            #expect(try dev.wp(z) == at(z, 32, g))
            #expect(try dev.readBytes(32 * bs, at: at(z, 0, g)) == (0..<32).flatMap { pattern(UInt8(z * 32 + $0)) })
        }
    }
}

final class Mutex2: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
}
