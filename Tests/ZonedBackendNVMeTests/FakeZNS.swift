// A fake NVMe ZNS controller for host tests: identify data, Report Zones, Zone Management Send and
// a passthrough queue that executes Read, Write and Zone Append in a seeded random order among the
// commands in flight — as a real controller may — against an in-memory namespace.
//
// The zone state machine follows the ZNS specification the way QEMU's emulated namespace (the
// guest suite's device) does: an empty zone needs an active resource (else Too Many Active Zones),
// opening needs an open resource, and when none is left an implicitly open zone is closed first
// (else Too Many Open Zones); a write must land at the write pointer (Zone Invalid Write) and stay
// within the capacity (Zone Boundary Error); a zone append's SLBA must be the zone start (Invalid
// Field) and it answers the LBA it chose; reset zeroes the zone; Close of an empty zone is an
// Invalid Zone State Transition. Reads of blocks past the write pointer return 0xA5 bytes, so the
// backend's zeroing is tested.

import Foundation
@testable import ZonedBackendNVMe
import ZonedCore

final class FakeZNS: NVMeController, @unchecked Sendable {
    struct Params {
        var zoneCount = 16
        var zoneBlocks: UInt64 = 256     // 1 MiB zones of 4 KiB blocks
        var capacityBlocks: UInt64 = 192 // 768 KiB capacity
        var lbads: UInt8 = 12
        var maxOpen = 4
        var maxActive = 6
        var mdts: UInt8 = 4              // 64 KiB transfers
        var zasl: UInt8 = 2              // 16 KiB appends
        var nsid: UInt32 = 1
        var seed: UInt64 = 1
    }

    struct FZone { var state: UInt8; var wp: UInt64 }

    let p: Params
    var blockSize: Int { 1 << Int(p.lbads) }
    private let lock = NSLock()
    private var zones: [FZone]
    private var data: [UInt8]
    /// Added to every append's reported LBA: a controller that lies, for the landing check.
    var appendResultSkew: Int64 = 0
    /// How many commands of each opcode were executed, and the most in flight at once per zone.
    private(set) var executed: [NVMeOpcode: Int] = [:]
    private(set) var maxWritesInFlightPerZone = 0
    private(set) var maxAppendsInFlightPerZone = 0
    private(set) var closes = 0

    init(_ p: Params = Params()) {
        self.p = p
        zones = (0..<p.zoneCount).map { FZone(state: 1, wp: UInt64($0) * p.zoneBlocks) }
        data = [UInt8](repeating: 0, count: p.zoneCount * Int(p.zoneBlocks) << Int(p.lbads))
    }

    func withLock<T>(_ body: () -> T) -> T { lock.lock(); defer { lock.unlock() }; return body() }

    // MARK: NVMeController

    func namespaceID() -> Result<UInt32, DeviceError> { .success(p.nsid) }

    func identify(_ kind: NVMeIdentifyKind, nsid: UInt32, into buffer: UnsafeMutableRawBufferPointer) -> NVMeOutcome {
        let bytes: [UInt8]
        switch kind {
        case .namespace:
            bytes = IdentifyBytes.namespace(blocks: UInt64(p.zoneCount) * p.zoneBlocks, lbads: [9, p.lbads], current: 1)
        case .zonedNamespace:
            let limit: (Int) -> UInt32 = { $0 == 0 ? .max : UInt32($0 - 1) }
            bytes = IdentifyBytes.zonedNamespace(mor: limit(p.maxOpen), mar: limit(p.maxActive), zoneBlocks: [1, p.zoneBlocks])
        case .controller: bytes = IdentifyBytes.controller(mdts: p.mdts)
        case .zonedController: bytes = IdentifyBytes.zonedController(zasl: p.zasl)
        }
        buffer.copyBytes(from: bytes.prefix(buffer.count))
        return .success
    }

    func reportZones(nsid: UInt32, startBlock: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> NVMeOutcome {
        withLock {
            let first = Int(startBlock / p.zoneBlocks)
            guard first < p.zoneCount else { return .status(.lbaOutOfRange) }
            let fit = (buffer.count - NVMeZoneReport.headerBytes) / NVMeZoneDescriptor.byteCount
            let ds = (first..<min(p.zoneCount, first + max(0, fit))).map { i in
                NVMeZoneDescriptor(type: 2, state: zones[i].state, capacityBlocks: p.capacityBlocks,
                                   startBlock: UInt64(i) * p.zoneBlocks,
                                   writePointerBlock: zones[i].state == 0xE ? UInt64(i + 1) * p.zoneBlocks : zones[i].wp)
            }
            buffer.copyBytes(from: NVMeZoneReport.encode(ds).prefix(buffer.count))
            return .success
        }
    }

    func manageZone(nsid: UInt32, startBlock: UInt64, action: NVMeZoneSendAction) -> NVMeOutcome {
        withLock {
            guard startBlock % p.zoneBlocks == 0, startBlock / p.zoneBlocks < UInt64(p.zoneCount) else {
                return .status(.invalidField)
            }
            let z = Int(startBlock / p.zoneBlocks)
            let s = zones[z].state
            switch action {
            case .open:
                switch s {
                case 1, 4: return outcome(openResource(z, activate: s == 1, explicit: true))
                case 2: zones[z].state = 3; return .success
                case 3: return .success
                default: return .status(.invalidZoneStateTransition)
                }
            case .close:
                switch s {
                case 2, 3: zones[z].state = 4; return .success
                case 4: return .success
                default: return .status(.invalidZoneStateTransition)
                }
            case .finish:
                switch s {
                case 1:
                    if p.maxActive > 0, activeCount() >= p.maxActive { return .status(.tooManyActiveZones) }
                    fallthrough
                case 2, 3, 4: zones[z].state = 0xE; zones[z].wp = zoneStart(z) + p.capacityBlocks; return .success
                case 0xE: return .success
                default: return .status(.invalidZoneStateTransition)
                }
            case .reset:
                switch s {
                case 1, 2, 3, 4, 0xE:
                    zones[z] = FZone(state: 1, wp: zoneStart(z))
                    let b = Int(zoneStart(z)) * blockSize, n = Int(p.zoneBlocks) * blockSize
                    data.withUnsafeMutableBytes { _ = memset($0.baseAddress! + b, 0, n) }
                    return .success
                default: return .status(.invalidZoneStateTransition)
                }
            }
        }
    }

    func flush(nsid: UInt32) -> NVMeOutcome { .success }

    func makeQueue(entries: Int) throws(DeviceError) -> NVMeQueue {
        // A different order per queue, the same for every run.
        let seed = withLock { p.seed &+ UInt64(executed.values.reduce(0, +)) }
        return FakeQueue(device: self, entries: entries, seed: seed)
    }

    func close() { withLock { closes += 1 } }

    // MARK: the zone state machine

    private func zoneStart(_ z: Int) -> UInt64 { UInt64(z) * p.zoneBlocks }
    private func openCount() -> Int { zones.filter { $0.state == 2 || $0.state == 3 }.count }
    private func activeCount() -> Int { zones.filter { (2...4).contains($0.state) }.count }

    private func outcome(_ s: NVMeStatus?) -> NVMeOutcome { s.map { .status($0) } ?? .success }

    /// Takes an open (and, for an empty zone, an active) resource for zone `z`.
    private func openResource(_ z: Int, activate: Bool, explicit: Bool) -> NVMeStatus? {
        if activate, p.maxActive > 0, activeCount() >= p.maxActive { return .tooManyActiveZones }
        if p.maxOpen > 0, openCount() >= p.maxOpen {
            guard let victim = zones.indices.first(where: { $0 != z && zones[$0].state == 2 }) else { return .tooManyOpenZones }
            zones[victim].state = 4
        }
        zones[z].state = explicit ? 3 : 2
        return nil
    }

    /// Executes one IO command; returns (status or nil, result).
    func execute(_ c: NVMeIOCommand) -> (NVMeStatus?, UInt64) {
        withLock {
            executed[c.opcode, default: 0] += 1
            let slba = c.startBlock, nlb = UInt64(c.blockCount)
            guard c.dataLength == UInt32(nlb) * UInt32(blockSize) else { return (.invalidField, 0) }
            guard slba + nlb <= UInt64(p.zoneCount) * p.zoneBlocks else { return (.lbaOutOfRange, 0) }
            let z = Int(slba / p.zoneBlocks)
            let buffer = UnsafeMutableRawPointer(bitPattern: UInt(c.address))!
            switch c.opcode {
            case .read:
                guard slba + nlb <= zoneStart(z) + p.zoneBlocks else { return (.zoneBoundaryError, 0) }
                guard zones[z].state != 0xF else { return (.zoneIsOffline, 0) }
                for k in 0..<Int(nlb) {
                    let block = slba + UInt64(k)
                    let dst = buffer + k * blockSize
                    if block >= zones[z].wp || block >= zoneStart(z) + p.capacityBlocks {
                        dst.initializeMemory(as: UInt8.self, repeating: 0xA5, count: blockSize)
                    } else {
                        data.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress! + Int(block) * blockSize, byteCount: blockSize) }
                    }
                }
                return (nil, 0)
            case .write, .zoneAppend:
                let append = c.opcode == .zoneAppend
                switch zones[z].state {
                case 0xE: return (.zoneIsFull, 0)
                case 0xD: return (.zoneIsReadOnly, 0)
                case 0xF: return (.zoneIsOffline, 0)
                default: break
                }
                if append {
                    guard slba == zoneStart(z) else { return (.invalidField, 0) }
                } else if slba != zones[z].wp {
                    return (.zoneInvalidWrite, 0)
                }
                let at = zones[z].wp
                guard at + nlb <= zoneStart(z) + p.capacityBlocks else { return (.zoneBoundaryError, 0) }
                if zones[z].state == 1 || zones[z].state == 4 {
                    if let s = openResource(z, activate: zones[z].state == 1, explicit: false) { return (s, 0) }
                }
                data.withUnsafeMutableBytes {
                    ($0.baseAddress! + Int(at) * blockSize).copyMemory(from: buffer, byteCount: Int(nlb) * blockSize)
                }
                zones[z].wp = at + nlb
                if zones[z].wp == zoneStart(z) + p.capacityBlocks { zones[z].state = 0xE }
                return (nil, UInt64(Int64(at) + appendResultSkew))
            default:
                return (.invalidOpcode, 0)
            }
        }
    }

    func noteInFlight(writes: Int, appends: Int) {
        withLock {
            maxWritesInFlightPerZone = max(maxWritesInFlightPerZone, writes)
            maxAppendsInFlightPerZone = max(maxAppendsInFlightPerZone, appends)
        }
    }
}

/// A passthrough queue on the fake: commands in flight complete in a seeded random order.
final class FakeQueue: NVMeQueue, @unchecked Sendable {
    let entries: Int
    private let device: FakeZNS
    private var rng: SeededRandom
    private var queued: [(NVMeIOCommand, UInt64)] = []
    private var inFlight: [(NVMeIOCommand, UInt64)] = []

    init(device: FakeZNS, entries: Int, seed: UInt64) {
        self.device = device
        self.entries = entries
        rng = SeededRandom(seed: seed)
    }

    func prepare(_ command: NVMeIOCommand, tag: UInt64) -> Bool {
        guard queued.count + inFlight.count < entries else { return false }
        queued.append((command, tag))
        return true
    }

    func submit() -> Int32 {
        let n = queued.count
        inFlight += queued
        queued.removeAll()
        // Per zone: how many writes and appends the controller holds at once.
        var writes: [UInt64: Int] = [:], appends: [UInt64: Int] = [:]
        let zb = device.p.zoneBlocks
        for (c, _) in inFlight {
            if c.opcode == .write { writes[c.startBlock / zb, default: 0] += 1 }
            if c.opcode == .zoneAppend { appends[c.startBlock / zb, default: 0] += 1 }
        }
        device.noteInFlight(writes: writes.values.max() ?? 0, appends: appends.values.max() ?? 0)
        return Int32(n)
    }

    func reap(wait: Bool) -> NVMeReaped {
        guard !inFlight.isEmpty else { return .none }
        let (c, tag) = inFlight.remove(at: Int(rng.below(UInt64(inFlight.count))))
        let (status, result) = device.execute(c)
        return .completion(tag: tag, res: status.map { Int32($0.raw) } ?? 0, result: result)
    }
}
