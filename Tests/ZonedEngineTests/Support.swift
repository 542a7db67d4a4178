import Foundation
import Testing
import ZonedAllocator
import ZonedBackendFile
import ZonedCore
@testable import ZonedEngine
@_exported import ZonedTestSupport

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
/// Lets tests hold an ordered extent pending and see what other writers do meanwhile. More gates
/// (`armNext()`) park the writes that come after, one each, in order.
final class GatedDevice: ForwardingDevice, @unchecked Sendable {
    final class Gate: @unchecked Sendable {
        fileprivate var parked = false
        fileprivate var open = false
    }
    private let cond = ConditionLock()
    private var queue: [Gate] = []
    private var first: Gate?

    func arm() { first = armNext() }
    /// A gate for the first write that arrives after the gates armed before it took theirs.
    func armNext() -> Gate { cond.withLock { let g = Gate(); queue.append(g); return g } }
    /// Waits until the armed write has parked.
    func waitParked() { _ = waitParked(first!) }
    /// Waits until a write has parked at `g`; false when the watchdog fired first.
    func waitParked(_ g: Gate) -> Bool { waitUntil { cond.withLock { g.parked || g.open } } }
    func release() { release(first!) }
    func release(_ g: Gate) { cond.withLock { g.open = true; cond.broadcast() } }

    private func gate() {
        cond.withLock {
            guard !queue.isEmpty else { return }
            let g = queue.removeFirst()
            g.parked = true
            cond.broadcast()
            while !g.open { cond.wait() }
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
