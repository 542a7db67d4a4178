// Recording a workload's device calls once, and replaying them to get the image a power cut at
// each IO would leave, without running the workload again for every cut point.
//
// Invariants:
// - `RecordingDevice` forwards every call to the emulated device unchanged and records each
//   call that changes or numbers something (data IOs, flushes, zone management) in the order the
//   device ran it, with its result and the model the workload published at that moment. A
//   batch is recorded in completion order, which for the emulated device is the order it ran
//   the IOs in (out-of-order appends included); the replay checks that every append lands where
//   it landed, so a wrong order cannot go unnoticed.
// - `replay` applies the recorded calls one by one to a fresh device with the same geometry and
//   seed, a fault plan armed (so conventional writes keep their old bytes for a cut, as in a cut
//   run); before each call it takes `crashImage`, the image a power cut instead of that call
//   leaves (same cutPower code, same seed stream), and hands it out when the call got an IO
//   number. Every replayed call must give the recorded result and IO count.
// - The shortcut is checked against the real thing by the test: for a sample of cut points it
//   reruns the workload with a real power cut and compares the image bytes and the model.

import Foundation
import ZonedBackendFile
import ZonedCore

enum DeviceCall {
    case write(DeviceOffset, [UInt8]), append(ZoneID, [UInt8]), read(DeviceOffset, Int), flush
    case reset(ZoneID), openZone(ZoneID), closeZone(ZoneID), finish(ZoneID)
}

struct RecordedCall {
    var call: DeviceCall
    /// The landing offset (appends, writes and reads: their offset), or the errno.
    var result: Result<DeviceOffset, DeviceError>
    /// The device's IO count after the call, or nil inside a batch (known for the last one).
    var ioAfter: UInt64?
    var model: ModelSnapshot
    var formatted: Bool
}

final class RecordingDevice: ZonedDevice, @unchecked Sendable {
    let inner: EmulatedZonedDevice
    let box: ModelBox
    private(set) var calls: [RecordedCall] = []

    init(_ inner: EmulatedZonedDevice, box: ModelBox) {
        self.inner = inner
        self.box = box
    }

    var geometry: DeviceGeometry { inner.geometry }
    var kind: DeviceKind { inner.kind }
    var path: String { inner.path }

    private func note(_ call: DeviceCall, _ result: Result<DeviceOffset, DeviceError>, batch: Bool = false) {
        calls.append(RecordedCall(call: call, result: result, ioAfter: batch ? nil : inner.ioCount,
                                  model: box.snapshot, formatted: box.formatted))
    }

    private func run(_ call: DeviceCall, _ body: () throws(DeviceError) -> DeviceOffset) throws(DeviceError) -> DeviceOffset {
        do {
            let at = try body()
            note(call, .success(at))
            return at
        } catch {
            note(call, .failure(error))
            throw error
        }
    }

    func reportZones(from first: ZoneID, count: Int) throws(DeviceError) -> [Zone] { try inner.reportZones(from: first, count: count) }
    func reset(_ zone: ZoneID) throws(DeviceError) { _ = try run(.reset(zone)) { () throws(DeviceError) in try inner.reset(zone); return .zero } }
    func openZone(_ zone: ZoneID) throws(DeviceError) { _ = try run(.openZone(zone)) { () throws(DeviceError) in try inner.openZone(zone); return .zero } }
    func closeZone(_ zone: ZoneID) throws(DeviceError) { _ = try run(.closeZone(zone)) { () throws(DeviceError) in try inner.closeZone(zone); return .zero } }
    func finish(_ zone: ZoneID) throws(DeviceError) { _ = try run(.finish(zone)) { () throws(DeviceError) in try inner.finish(zone); return .zero } }
    func flush() throws(DeviceError) { _ = try run(.flush) { () throws(DeviceError) in try inner.flush(); return .zero } }

    func write(_ data: UnsafeRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) {
        _ = try run(.write(offset, Array(data))) { () throws(DeviceError) in try inner.write(data, at: offset); return offset }
    }

    func append(_ data: UnsafeRawBufferPointer, to zone: ZoneID) throws(DeviceError) -> DeviceOffset {
        try run(.append(zone, Array(data))) { () throws(DeviceError) in try inner.append(data, to: zone) }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) {
        _ = try run(.read(offset, buffer.count)) { () throws(DeviceError) in try inner.read(into: buffer, at: offset); return offset }
    }

    func submit(_ batch: [DeviceIO]) -> [IOCompletion] {
        let described: [DeviceCall] = batch.map { io in
            switch io {
            case .write(let b, let at): return .write(at, Array(b))
            case .append(let b, let zone): return .append(zone, Array(b))
            case .read(let b, let at): return .read(at, b.count)
            }
        }
        let completions = inner.submit(batch)
        for (i, c) in completions.enumerated() { note(described[c.index], c.result, batch: i < completions.count - 1) }
        return completions
    }

    func close() { inner.close() }
}

enum CrashReplay {
    /// Replays `calls` on a fresh device at `base`; before each call that gets an IO number k,
    /// writes the image a cut at k leaves to `image` and calls `point(k, call)`. Returns what
    /// went differently from the recording (nothing, when the replay is exact).
    static func replay(_ calls: [RecordedCall], geometry: DeviceGeometry, seed: UInt64, base: String, image: String,
                       torn: (UInt64) -> Bool, point: (UInt64, RecordedCall) throws -> Void) throws -> [String] {
        let dev = try EmulatedZonedDevice.create(path: base, geometry: geometry, overwrite: true, faults: FaultPlan(seed: seed))
        defer { dev.close() }
        var problems: [String] = []
        let buffer = AlignedBuffer(count: 1 << 20)
        for (i, r) in calls.enumerated() {
            let k = dev.ioCount + 1
            let numbered: Bool
            switch r.call {
            case .write, .append, .read, .flush: numbered = true
            default: numbered = false
            }
            if numbered { try dev.crashImage(to: image, tornLastBlock: torn(k)) }
            let result: Result<DeviceOffset, DeviceError>
            do throws(DeviceError) {
                switch r.call {
                case .write(let at, let bytes):
                    let b = AlignedBuffer(copying: bytes)
                    try withExtendedLifetime(b) { () throws(DeviceError) in try dev.write(b.readOnly, at: at) }
                    result = .success(at)
                case .append(let zone, let bytes):
                    let b = AlignedBuffer(copying: bytes)
                    result = .success(try withExtendedLifetime(b) { () throws(DeviceError) in try dev.append(b.readOnly, to: zone) })
                case .read(let at, let count):
                    let b = count <= buffer.count ? buffer : AlignedBuffer(count: count)
                    try withExtendedLifetime(b) { () throws(DeviceError) in try dev.read(into: UnsafeMutableRawBufferPointer(rebasing: b.mutable[0..<count]), at: at) }
                    result = .success(at)
                case .flush: try dev.flush(); result = .success(.zero)
                case .reset(let z): try dev.reset(z); result = .success(.zero)
                case .openZone(let z): try dev.openZone(z); result = .success(.zero)
                case .closeZone(let z): try dev.closeZone(z); result = .success(.zero)
                case .finish(let z): try dev.finish(z); result = .success(.zero)
                }
            } catch { result = .failure(error) }
            if !same(result, r.result) { problems.append("call \(i) (\(r.call)): replayed \(result), recorded \(r.result)") }
            if let io = r.ioAfter, io != dev.ioCount { problems.append("call \(i): IO count \(dev.ioCount) replayed, \(io) recorded") }
            if !problems.isEmpty { return problems }
            if numbered, dev.ioCount == k { try point(k, r) }
        }
        return problems
    }

    private static func same(_ a: Result<DeviceOffset, DeviceError>, _ b: Result<DeviceOffset, DeviceError>) -> Bool {
        switch (a, b) {
        case (.success(let x), .success(let y)): return x == y
        case (.failure(let x), .failure(let y)): return x.errno == y.errno
        default: return false
        }
    }
}
