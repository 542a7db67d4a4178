// Small assertion helpers for conformance checks. They throw `ConformanceFailure` with a message
// that says what the contract wanted and what the device did.

import ZonedCore

func expect(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw ConformanceFailure(message()) }
}

/// Runs `op`, which must fail with `errno`. Returns the error for further checks.
@discardableResult
func expectError(_ code: Int32, _ what: String, _ op: () throws -> Void) throws -> DeviceError {
    do {
        try op()
    } catch let e as DeviceError {
        try expect(e.errno == code, "\(what): expected \(DeviceError.name(ofErrno: code)), got \(e.errnoName) (\(e))")
        return e
    }
    throw ConformanceFailure("\(what): expected \(DeviceError.name(ofErrno: code)), but it succeeded")
}

/// Runs `op`, which must fail (with any device error). Returns the error.
@discardableResult
func expectSomeError(_ what: String, _ op: () throws -> Void) throws -> DeviceError {
    do {
        try op()
    } catch let e as DeviceError {
        return e
    }
    throw ConformanceFailure("\(what): expected an error, but it succeeded")
}

/// A buffer of `count` bytes of seeded pseudo-random data.
func pattern(_ count: ByteCount, seed: UInt64) -> AlignedBuffer {
    let b = AlignedBuffer(count: count.int)
    var rng = SeededRandom(seed: seed)
    rng.fill(b.mutable)
    return b
}

/// Reads `count` bytes at `offset`, in pieces no larger than the device's max write size.
func readBack(_ device: any ZonedDevice, _ offset: DeviceOffset, _ count: ByteCount) throws -> [UInt8] {
    let b = AlignedBuffer(count: count.int)
    var done = ByteCount.zero
    while done < count {
        let n = min(device.geometry.maxWriteBytes, count - done)
        try device.read(into: b.slice(done.int, n.int), at: offset + done)
        done = done + n
    }
    return b.bytes
}

func expectBytes(_ device: any ZonedDevice, at offset: DeviceOffset, equal expected: AlignedBuffer, _ what: String) throws {
    let got = try readBack(device, offset, ByteCount(expected.count))
    if got != expected.bytes {
        let first = zip(got, expected.bytes).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? -1
        throw ConformanceFailure("\(what): data read at \(offset) differs from what was written (first difference at byte \(first))")
    }
}

func expectZeros(_ device: any ZonedDevice, at offset: DeviceOffset, _ count: ByteCount, _ what: String) throws {
    let got = try readBack(device, offset, count)
    try expect(got.allSatisfy { $0 == 0 }, "\(what): expected zeros at \(offset)")
}

/// Writes `count` bytes of pattern at the zone's write pointer, in max-write-size pieces.
@discardableResult
func fill(_ device: any ZonedDevice, _ zone: ZoneID, _ count: ByteCount, seed: UInt64) throws -> AlignedBuffer {
    let data = pattern(count, seed: seed)
    var at = try device.zone(zone).writePointer
    var done = ByteCount.zero
    while done < count {
        let n = min(device.geometry.maxWriteBytes, count - done)
        try device.write(UnsafeRawBufferPointer(data.slice(done.int, n.int)), at: at)
        at = at + n
        done = done + n
    }
    return data
}

extension DeviceGeometry {
    var sequentialZones: [ZoneID] { (conventionalZoneCount..<zoneCount).map { ZoneID($0) } }
    var block: ByteCount { logicalBlockSize }
}

func zoneState(_ device: any ZonedDevice, _ id: ZoneID) throws -> Zone { try device.zone(id) }

func summary(_ device: any ZonedDevice) throws -> ZoneSummary {
    ZoneSummary(zones: try device.reportAllZones(), geometry: device.geometry)
}
