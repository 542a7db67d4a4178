// Errors the allocator handles itself are counted and reported, never dropped: a zone report that
// fails while the allocator re-reads a zone after a failed write.

import Foundation
import Testing
import ZonedAllocator
import ZonedBackendFile
import ZonedCore

/// Fails every write, and every zone report once `failReports` is set.
final class FailingWritesAndReports: ForwardingDevice, @unchecked Sendable {
    nonisolated(unsafe) var failReports = false
    override func submit(_ batch: [DeviceIO]) -> [IOCompletion] {
        batch.indices.map { IOCompletion(index: $0, result: .failure(.io(.write, "injected write failure"))) }
    }
    override func reportZones(from first: ZoneID, count: Int) throws(DeviceError) -> [Zone] {
        if failReports { throw .io(.report, "injected report failure") }
        return try inner.reportZones(from: first, count: count)
    }
}

final class Lines: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    func add(_ s: String) { lock.withLock { stored.append(s) } }
    var all: [String] { lock.withLock { stored } }
}

@Suite("Handled allocator errors", .timeLimit(.minutes(10)))
struct HandledErrorTests {
    @Test func aFailedResyncIsCountedAndLogged() throws {
        let g = DeviceGeometry(zoneCount: 8, zoneSize: .kib(256), zoneCapacity: .kib(192), maxWriteBytes: .kib(64))
        let (emu, path) = try device(g)
        defer { emu.close(); try? FileManager.default.removeItem(atPath: path) }
        let dev = FailingWritesAndReports(emu)
        let a = try ZoneAllocator(device: dev)
        let lines = Lines()
        a.errorSink = { lines.add($0) }
        dev.failReports = true
        let gr = try a.grant(.kib(16))
        let r = a.submit(gr, [block(4, 1).readOnly])
        if case .success = r[0] { Issue.record("the write was meant to fail") }
        a.complete(gr, written: .zero)
        #expect(a.stats.resyncFailures == 1)
        #expect(lines.all.count == 1 && lines.all[0].contains("zone \(gr.zone.int)") && lines.all[0].contains("injected report failure"), "\(lines.all)")
    }
}
