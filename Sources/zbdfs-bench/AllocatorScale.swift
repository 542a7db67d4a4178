// The allocator's per-write cost against the zone count (issue 15 item 3): ns per 1 MiB
// grant + submit + complete through the public ZoneAllocator API, on a device that does no data
// work, at several zone counts. The figure should not grow with the zone count.
//
//   zbdfs-bench --allocator-scale [GRANTS]   (hidden: prints the rows; GRANTS per repeat, default 2000)
//
// Invariants:
// - The device (`CountingZonedDevice`) keeps zone conditions and write pointers only: it checks
//   each write against the pointer and the open/active limits like a real zoned device, and never
//   touches the data, so what is timed is the allocator (its lock, decision and accounting).
// - Every repeat starts from a fresh device and allocator (all zones empty), so repeats measure
//   the same work; the figure is the median over the repeats (>= 5).
// - Geometry: 256 MiB zones, max open and max active 128, 1 MiB max write, no zone append (writes
//   go at the pointer, behind the zone's sequencer).

import Foundation
import ZonedAllocator
import ZonedCore

struct AllocatorScaleRow: Sendable {
    var zones: Int
    /// Median over the repeats of the ns one grant + submit + complete of 1 MiB takes.
    var nsPerGrant: Double
    /// The same with a space reservation (`reserve`, `use`) before each grant, as the engine does.
    var nsPerReservedGrant: Double
    var repeats: Int
    var grantsPerRepeat: Int
}

/// Times `grantsPerSize` grants per repeat at each zone count; see the file header.
func allocatorScaleRows(zoneCounts: [Int], grantsPerSize: Int) throws -> [AllocatorScaleRow] {
    precondition(grantsPerSize > 0, "at least one grant per repeat")
    let repeats = 5
    let piece = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
    defer { piece.deallocate() }
    piece.initializeMemory(as: UInt8.self, repeating: 0)
    var rows: [AllocatorScaleRow] = []
    for zones in zoneCounts {
        let g = DeviceGeometry(zoneCount: zones, zoneSize: .mib(256), maxOpenZones: 128, maxActiveZones: 128,
                               maxWriteBytes: .mib(1))
        // The grants must fit in the reservable space (one zone held back per reserve below).
        precondition(UInt64(grantsPerSize) < UInt64(zones - 1) * 256, "\(grantsPerSize) grants do not fit in \(zones) zones")
        var plain: [Double] = [], reserved: [Double] = []
        for _ in 0..<repeats {
            plain.append(try timeGrants(g, grantsPerSize, UnsafeRawBufferPointer(piece), reserve: false))
            reserved.append(try timeGrants(g, grantsPerSize, UnsafeRawBufferPointer(piece), reserve: true))
        }
        rows.append(AllocatorScaleRow(zones: zones, nsPerGrant: medianOf(plain), nsPerReservedGrant: medianOf(reserved),
                                      repeats: repeats, grantsPerRepeat: grantsPerSize))
    }
    return rows
}

/// ns per grant of `n` 1 MiB grants, each written and completed, on a fresh allocator.
private func timeGrants(_ g: DeviceGeometry, _ n: Int, _ piece: UnsafeRawBufferPointer, reserve: Bool) throws -> Double {
    let device = CountingZonedDevice(geometry: g)
    let a = try ZoneAllocator(device: device, config: AllocatorConfig(reservedEmptyZones: 1, reclaimReserveZones: 0))
    let mib = ByteCount.mib(1)
    let t0 = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<n {
        var r = reserve ? try a.reserve(mib) : nil
        let grant = try a.grant(mib)
        r?.use(grant.length)
        let landed = a.submit(grant, [UnsafeRawBufferPointer(rebasing: piece[0..<grant.length.int])])
        let written: ByteCount
        if case .success = landed[0] { written = grant.length } else { written = .zero }
        a.complete(grant, written: written)
        precondition(written == grant.length, "the bench device refused a write: \(landed[0])")
    }
    let t1 = DispatchTime.now().uptimeNanoseconds
    return Double(t1 - t0) / Double(n)
}

/// The median of `xs` (the mean of the middle two for an even count).
func medianOf(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// `--allocator-scale [GRANTS]`: prints the rows at 128, 8,000 and 80,000 zones; the exit status.
func runAllocatorScaleCommand(_ args: [String]) -> Int32 {
    let grants = args.first.flatMap { Int($0) } ?? 2000
    do {
        let rows = try allocatorScaleRows(zoneCounts: [128, 8_000, 80_000], grantsPerSize: grants)
        print("zbdfs-bench: allocator ns per 1 MiB grant+submit+complete (no data work), median of \(rows.first?.repeats ?? 0) repeats of \(grants) grants")
        print("   zones   ns/grant   ns/reserve+grant")
        for r in rows {
            print(String(format: "%8d %10.0f %18.0f", r.zones, r.nsPerGrant, r.nsPerReservedGrant))
        }
        return 0
    } catch {
        FileHandle.standardError.write(Data("zbdfs-bench: \(error)\n".utf8))
        return 1
    }
}

/// A zoned device of zone conditions and write pointers only (see the file header). Sequential
/// zones only. Open/active limits are counted incrementally so no call scans the zones.
final class CountingZonedDevice: ZonedDevice, @unchecked Sendable {
    let geometry: DeviceGeometry
    var kind: DeviceKind { .emulated }
    var path: String { "memory:allocator-scale" }
    private let lock = NSLock()
    private var conditions: [ZoneCondition]
    private var pointers: [UInt64]  // bytes written per zone
    /// Implicitly open zones, oldest first: the one closed when a write needs an open slot.
    private var implicitlyOpen: [Int] = []
    private var explicitlyOpen = 0
    private var active = 0
    private var closed = false

    init(geometry: DeviceGeometry) {
        precondition(geometry.conventionalZoneCount == 0, "the bench device has sequential zones only")
        self.geometry = geometry
        conditions = Array(repeating: .empty, count: geometry.zoneCount)
        pointers = Array(repeating: 0, count: geometry.zoneCount)
    }

    func reportZones(from first: ZoneID, count: Int) throws(DeviceError) -> [Zone] {
        try locked { () throws(DeviceError) -> [Zone] in
            let end = min(geometry.zoneCount, first.int + max(0, count))
            guard first.int < end else { return [] }
            return (first.int..<end).map { i in
                let start = geometry.zoneStart(ZoneID(i))
                return Zone(id: ZoneID(i), type: .sequentialWriteRequired, condition: conditions[i], start: start,
                            size: geometry.zoneSize, capacity: geometry.zoneCapacity, writePointer: start + ByteCount(pointers[i]))
            }
        }
    }

    func reset(_ zone: ZoneID) throws(DeviceError) {
        try locked { () throws(DeviceError) in
            let i = try index(zone, .reset)
            leave(i)
            conditions[i] = .empty
            pointers[i] = 0
        }
    }

    func openZone(_ zone: ZoneID) throws(DeviceError) {
        try locked { () throws(DeviceError) in
            let i = try index(zone, .open)
            switch conditions[i] {
            case .explicitlyOpen: return
            case .implicitlyOpen:
                implicitlyOpen.removeAll { $0 == i }
            case .empty, .closed:
                try makeRoomToOpen(.open)
                if conditions[i] == .empty { try activate(.open) }
            default: throw .invalid(.open, "\(zone) is \(conditions[i].rawValue)")
            }
            conditions[i] = .explicitlyOpen
            explicitlyOpen += 1
        }
    }

    func closeZone(_ zone: ZoneID) throws(DeviceError) {
        try locked { () throws(DeviceError) in
            let i = try index(zone, .close)
            guard conditions[i].isOpen else { return }
            leaveOpen(i)
            if pointers[i] == 0 && geometry.commandSet == .zbc {
                conditions[i] = .empty
                active -= 1
            } else {
                conditions[i] = .closed
            }
        }
    }

    func finish(_ zone: ZoneID) throws(DeviceError) {
        try locked { () throws(DeviceError) in
            let i = try index(zone, .finish)
            guard conditions[i] != .full else { return }
            guard conditions[i].isWritable else { throw .invalid(.finish, "\(zone) is \(conditions[i].rawValue)") }
            leave(i)
            conditions[i] = .full
            pointers[i] = geometry.zoneCapacity.bytes
        }
    }

    func write(_ data: UnsafeRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) {
        guard let zone = geometry.zone(containing: offset) else { throw .invalid(.write, "past the end of the device") }
        _ = try land(data.count, in: zone, at: offset, .write)
    }

    func append(_ data: UnsafeRawBufferPointer, to zone: ZoneID) throws(DeviceError) -> DeviceOffset {
        guard geometry.supportsZoneAppend else { throw .notSupported(.append, "the bench device has no zone append") }
        return try land(data.count, in: zone, at: nil, .append)
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) {
        // Holds no data: everything reads as zeros.
        if buffer.count > 0 { buffer.initializeMemory(as: UInt8.self, repeating: 0) }
    }

    func flush() throws(DeviceError) {}
    func close() { lock.withLock { closed = true } }

    // MARK: State machine

    private func locked<T>(_ body: () throws(DeviceError) -> T) throws(DeviceError) -> T {
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { throw .invalid(.report, "the bench device is closed") }
        return try body()
    }

    private func index(_ zone: ZoneID, _ op: DeviceOperation) throws(DeviceError) -> Int {
        guard zone.int < geometry.zoneCount else { throw .invalid(op, "\(zone) is past the last zone") }
        return zone.int
    }

    /// Writes (or appends, `at` nil) `count` bytes into `zone` at its pointer; returns where.
    private func land(_ count: Int, in zone: ZoneID, at: DeviceOffset?, _ op: DeviceOperation) throws(DeviceError) -> DeviceOffset {
        let n = UInt64(count)
        let limit = op == .append ? geometry.maxAppendBytes : geometry.maxWriteBytes
        guard n > 0, n % geometry.logicalBlockSize.bytes == 0, n <= limit.bytes else {
            throw .invalid(op, "\(count) B is empty, unaligned or above the limit")
        }
        return try locked { () throws(DeviceError) -> DeviceOffset in
            let i = try index(zone, op)
            let pointer = geometry.zoneStart(zone) + ByteCount(pointers[i])
            if let at, at != pointer { throw .io(op, "\(zone): write at \(at) misses the write pointer \(pointer)") }
            guard conditions[i].isWritable, pointers[i] + n <= geometry.zoneCapacity.bytes else {
                throw .io(op, "\(zone) is \(conditions[i].rawValue) or too full for \(count) B")
            }
            if !conditions[i].isOpen {
                try makeRoomToOpen(op)
                if conditions[i] == .empty { try activate(op) }
                conditions[i] = .implicitlyOpen
                implicitlyOpen.append(i)
            }
            pointers[i] += n
            if pointers[i] == geometry.zoneCapacity.bytes {
                leave(i)
                conditions[i] = .full
            }
            return pointer
        }
    }

    /// One more open zone: closes the oldest implicitly open one at the limit.
    private func makeRoomToOpen(_ op: DeviceOperation) throws(DeviceError) {
        let limit = geometry.maxOpenZones
        guard limit > 0, implicitlyOpen.count + explicitlyOpen >= limit else { return }
        guard !implicitlyOpen.isEmpty else { throw .tooManyOpen(op, "every open zone is explicitly open") }
        let victim = implicitlyOpen.removeFirst()
        conditions[victim] = .closed
    }

    private func activate(_ op: DeviceOperation) throws(DeviceError) {
        guard geometry.maxActiveZones == 0 || active < geometry.maxActiveZones else {
            throw .tooManyActive(op, "\(active) zones are active")
        }
        active += 1
    }

    private func leaveOpen(_ i: Int) {
        if conditions[i] == .explicitlyOpen { explicitlyOpen -= 1 }
        if conditions[i] == .implicitlyOpen { implicitlyOpen.removeAll { $0 == i } }
    }

    /// The zone stops using its open and active resources (it goes empty or full).
    private func leave(_ i: Int) {
        leaveOpen(i)
        if conditions[i].isActive { active -= 1 }
    }
}
