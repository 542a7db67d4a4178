import Foundation
import Testing
import ZonedAllocator
import ZonedBackendFile
import ZonedCore
@testable import ZonedEngine

/// Scratch images live in /dev/shm when it is there (fast), else in the temp folder.
func scratch(_ tag: String) -> String {
    let base = FileManager.default.isWritableFile(atPath: "/dev/shm") ? URL(fileURLWithPath: "/dev/shm") : FileManager.default.temporaryDirectory
    let dir = base.appendingPathComponent("zbdfs-engine-\(getpid())")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent("\(tag)-\(UUID().uuidString).img").path
}

final class Scratch {
    var paths: [String] = []
    func emulated(_ g: DeviceGeometry, faults: FaultPlan? = nil) throws -> EmulatedZonedDevice {
        let p = scratch("emu")
        paths.append(p)
        try EmulatedZonedDevice.create(path: p, geometry: g, overwrite: true).close()
        return try EmulatedZonedDevice.open(path: p, faults: faults)
    }
    func conventional(size: ByteCount, zoneSize: ByteCount, maxWrite: ByteCount = .kib(64)) throws -> ConventionalDevice {
        let p = scratch("conv")
        paths.append(p)
        try ConventionalDevice.create(path: p, size: size)
        return try ConventionalDevice.open(path: p, zoneSize: zoneSize, maxWriteBytes: maxWrite)
    }
    deinit { for p in paths { try? FileManager.default.removeItem(atPath: p) } }
}

func bytes(_ n: Int, seed: UInt64) -> [UInt8] {
    var r = SeededRandom(seed: seed)
    return r.bytes(n)
}

extension Engine {
    @discardableResult
    func write(_ n: InodeNumber, _ offset: UInt64, _ data: [UInt8], _ flags: IOFlags = [.direct]) throws -> Int {
        try data.withUnsafeBytes { try write(n, at: offset, $0, flags: flags) }
    }
    func read(_ n: InodeNumber, _ offset: UInt64, _ count: Int, _ flags: IOFlags = [.direct]) throws -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: count)
        let got = try out.withUnsafeMutableBytes { try read(n, at: offset, into: $0, flags: flags) }
        return Array(out.prefix(got))
    }
}

/// A device whose writes can be parked: `arm()` makes the next write wait, mid-IO, until `release()`.
/// Lets tests hold an ordered extent pending and see what other writers do meanwhile.
final class GatedDevice: ForwardingDevice, @unchecked Sendable {
    private let cond = ConditionLock()
    private var armed = false
    private var parked = false
    private var open = true

    func arm() { cond.withLock { armed = true; open = false } }
    /// Waits until an armed write has parked.
    func waitParked() { cond.withLock { while !parked { cond.wait() } } }
    func release() { cond.withLock { open = true; cond.broadcast() } }

    private func gate() {
        cond.withLock {
            guard armed else { return }
            armed = false
            parked = true
            cond.broadcast()
            while !open { cond.wait() }
            parked = false
        }
    }

    override func write(_ data: UnsafeRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) {
        gate()
        try inner.write(data, at: offset)
    }

    override func append(_ data: UnsafeRawBufferPointer, to zone: ZoneID) throws(DeviceError) -> DeviceOffset {
        gate()
        return try inner.append(data, to: zone)
    }

    /// The engine writes through batches: a batch that writes parks as a whole.
    override func submit(_ batch: [DeviceIO]) -> [IOCompletion] {
        if batch.contains(where: { if case .read = $0 { false } else { true } }) { gate() }
        return inner.submit(batch)
    }
}

/// Runs `body` on another thread; `join()` waits for it and rethrows.
final class Background: @unchecked Sendable {
    private let cond = ConditionLock()
    private var finished = false
    private var error: (any Error)?

    init(_ body: @escaping @Sendable () throws -> Void) {
        let t = Thread { [self] in
            var failure: (any Error)?
            do { try body() } catch { failure = error }
            cond.withLock { self.error = failure; finished = true; cond.broadcast() }
        }
        t.start()
    }

    var isFinished: Bool { cond.withLock { finished } }

    /// True when it finished within `seconds`.
    func finishes(within seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if isFinished { return true }
            usleep(2000)
        }
        return isFinished
    }

    func join() throws {
        cond.withLock { while !finished { cond.wait() } }
        if let error { throw error }
    }
}
