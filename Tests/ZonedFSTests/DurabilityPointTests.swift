// One device flush per durability point: fsync of new data flushes twice (the data before the
// log frames that point at it, then the frames), a metadata-only fsync once, an fsync with
// nothing new not at all. A third flush, back to back with nothing written between, is waste.
// Also: errors the file system handles on its own (a background reclaim pass) are counted and
// logged; and NOWAIT at the file system level never waits for space reclaim could make.

import Foundation
import Testing
import ZonedBackendFile
import ZonedCore
import ZonedEngine
import ZonedTestSupport
@testable import ZonedFS

/// The error a background call ended with, if any.
final class Outcome: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: DeviceError?
    private var mounted: FileSystem?
    /// A file system for a callback made before `mount` returned it.
    var fs: FileSystem? {
        get { lock.withLock { mounted } }
        set { lock.withLock { mounted = newValue } }
    }
    func set(_ e: DeviceError) { lock.withLock { stored = e } }
    var error: DeviceError? { lock.withLock { stored } }
}

/// Counts the flushes that reach the device.
final class FlushCounter: ForwardingDevice, @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    var flushes: Int { lock.withLock { count } }
    override func flush() throws(DeviceError) {
        lock.withLock { count += 1 }
        try inner.flush()
    }
}

final class LogLines: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    func add(_ s: String) { lock.withLock { stored.append(s) } }
    var all: [String] { lock.withLock { stored } }
}

@Suite("Durability points and handled errors", .serialized, .timeLimit(.minutes(10)))
struct DurabilityPointTests {
    @Test func fsyncFlushesOncePerDurabilityPoint() throws {
        let s = Scratch()
        let emu = try EmulatedZonedDevice.create(path: s.path("img"), geometry: smallZoned())
        try FileSystem.format(device: emu, options: FormatOptions(uuid: testUUID))
        let dev = FlushCounter(emu)
        let fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false))
        let n = try fs.createFile("/a")
        try fs.sync()
        var before = dev.flushes
        try fs.write(n, at: 0, bytes: bytes(8192, seed: 1), direct: true)
        try fs.fsync(n)
        #expect(dev.flushes - before == 2, "new data: one flush before the log frames, one after")
        before = dev.flushes
        try fs.rename(rootInode, try EntryName("a"), to: rootInode, try EntryName("b"))
        try fs.fsync(n)
        #expect(dev.flushes - before == 1, "metadata only: the frames' flush")
        before = dev.flushes
        try fs.fsync(n)
        #expect(dev.flushes - before == 0, "nothing new: nothing to flush")
        before = dev.flushes
        try fs.write(n, at: 8192, bytes: bytes(5000, seed: 2), direct: false)
        try fs.fsync(n)
        #expect(dev.flushes - before == 2, "buffered data written back: the same two")
        try fs.unmount()
        let again = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")), options: MountOptions(backgroundReclaim: false))
        #expect(try again.readAll(try again.resolve("/b")) == bytes(8192, seed: 1) + bytes(5000, seed: 2))
        try again.unmount()
    }

    @Test func aFailedBackgroundReclaimPassIsCountedAndLogged() throws {
        let s = Scratch()
        let g = smallZoned(zones: 24, zoneSize: .kib(256), capacity: .kib(256), maxActive: 4)
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: g)
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let lines = LogLines()
        let mounted = Outcome()
        var options = MountOptions(backgroundReclaim: false)
        // Each line notes how many failed passes were counted when it was logged: a reader that
        // sees a failure counted must find its line already there, so the count comes after.
        options.errorLog = { line in lines.add(line + " [counted \(mounted.fs?.reclaimStats.failedPasses ?? 99)]") }
        let fs = try FileSystem.mount(device: dev, options: options)
        mounted.fs = fs
        // 1 MiB written in one go, then every other 4 KiB block of it overwritten: its full zones
        // are now half garbage, half live data a pass must read to move.
        let n = try fs.createFile("/f")
        try fs.write(n, at: 0, bytes: bytes(1 << 20, seed: 1), direct: true)
        for block in stride(from: 0, to: 1 << 20, by: 8192) {
            try fs.write(n, at: UInt64(block), bytes: bytes(4096, seed: UInt64(block)), direct: true)
        }
        #expect(fs.reclaimer.reclaimable.bytes > 0)
        // Every read fails from here on; the background thread (started by hand, so that no pass
        // ran before the fault) is woken with free space under its threshold.
        dev.setFaultPlan(FaultPlan(seed: 7, readErrorProbability: 1))
        fs.reclaimer.start(threshold: 1.0)
        fs.reclaimer.poke()
        #expect(waitUntil { fs.reclaimStats.failedPasses > 0 }, "no background pass failed: \(fs.reclaimStats)")
        #expect(lines.all.contains { $0.contains("background reclaim failed") && $0.hasSuffix("[counted 0]") }, "\(lines.all)")
        fs.reclaimer.stop()
        dev.setFaultPlan(nil)
        try fs.unmount()
        mounted.fs = nil
    }

    @Test func nowaitWriteDuringACheckpointIsEAGAINAndABlockingOneWaits() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: smallZoned(zones: 24, zoneSize: .kib(256), capacity: .kib(256), maxActive: 4))
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false))
        let n = try fs.createFile("/f")
        let data = bytes(4096, seed: 3)
        // Another thread holds what a checkpoint holds while it writes (Journal.quiesce).
        let held = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        let checkpoint = Background {
            _ = fs.fsLock.lock(.exclusive)
            held.signal()
            release.wait()
            fs.fsLock.unlock()
        }
        held.wait()
        // On its own thread, so that a NOWAIT write that waits fails this test instead of hanging it.
        let outcome = Outcome()
        let nowait = Background {
            let r = data.withUnsafeBytes { p in Result { () throws(DeviceError) -> Int in try fs.write(n, at: 0, p, flags: [.direct, .nowait]) } }
            if case .failure(let e) = r { outcome.set(e) }
        }
        guard nowait.finishes(watchdog: 10) else {
            Issue.record("a NOWAIT write waited for the checkpoint lock")
            release.signal()
            return
        }
        #expect(outcome.error?.errno == EAGAIN, "a NOWAIT write went through a held checkpoint lock")
        let waits = fs.fsLock.waits
        let blocking = Background { try fs.write(n, at: 0, bytes: data, direct: true) }
        #expect(waitUntil { fs.fsLock.waits > waits }, "the blocking write never waited for the lock")
        #expect(!blocking.isFinished)
        release.signal()
        try checkpoint.join()
        try blocking.join()
        var back = [UInt8](repeating: 0, count: 4096)
        _ = try back.withUnsafeMutableBytes { p throws(DeviceError) in try fs.read(n, at: 0, into: p) }
        #expect(back == data)
        try fs.unmount()
    }

    @Test func nowaitWithoutFreeSpaceIsEAGAINWhileReclaimCouldHelpAndENOSPCWhenFull() throws {
        let s = Scratch()
        let g = smallZoned(zones: 24, zoneSize: .kib(256), capacity: .kib(256), maxActive: 4)
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: g)
        try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false))
        let churn = try fs.createFile("/churn")
        let big = try fs.createFile("/big")
        // Fill the device: half garbage (churn overwritten and deleted), half live.
        var live: UInt64 = 0
        for i in 0..<4 { try fs.write(churn, at: 0, bytes: bytes(1 << 20, seed: UInt64(i)), direct: true) }
        try fs.unlink(rootInode, try EntryName("churn"))
        func writeNowait() -> DeviceError? {
            let data = bytes(65536, seed: 9)
            let r = data.withUnsafeBytes { p in Result { () throws(DeviceError) -> Int in try fs.write(big, at: live, p, flags: [.direct, .nowait]) } }
            if case .failure(let e) = r { return e }
            return nil
        }
        while writeNowait() == nil { live += 65536 }
        #expect(writeNowait()?.errno == EAGAIN, "no free space but garbage to reclaim: a blocking retry could succeed")
        #expect(fs.reclaimer.reclaimable.bytes > 0)
        // Blocking writes reclaim and fill the rest with live data; then nothing is left.
        var failure: DeviceError?
        while failure == nil {
            do throws(DeviceError) { try fs.write(big, at: live, bytes: bytes(65536, seed: live), direct: true); live += 65536 } catch { failure = error }
        }
        #expect(failure?.errno == ENOSPC)
        if fs.reclaimer.reclaimable.bytes == 0 { #expect(writeNowait()?.errno == ENOSPC, "full of live data: ENOSPC, as without NOWAIT") }
        try fs.unmount()
    }
}
