// The grant policy on its own, with no device: zones come from a made-up zone report and every
// write is told to the policy directly. Pins the choices (tightest idle fit, empty zones in index
// order, the active budget, the empty zones held back, the zone to finish) and, in the model
// tests, holds the policy's ordered structures to a plain scan over its accounts — the allocator
// as it was before the orders — over seeded random operation sequences, up to 80,000 zones.

import Testing
import ZonedCore
@testable import ZonedAllocator

/// A zone report: `spec(i)` gives zone i's condition and written bytes (64 KiB zones, 4 KiB blocks).
func report(_ count: Int, zoneBytes: UInt64 = 64 << 10, conventional: Int = 0,
            _ spec: (Int) -> (ZoneCondition, UInt64) = { _ in (.empty, 0) }) -> [Zone] {
    (0..<count).map { i in
        let start = DeviceOffset(UInt64(i) * zoneBytes)
        let conv = i < conventional
        let (cond, written) = conv ? (.notWritePointer, 0) : spec(i)
        return Zone(id: ZoneID(i), type: conv ? .conventional : .sequentialWriteRequired, condition: cond, start: start,
                    size: ByteCount(zoneBytes), capacity: ByteCount(zoneBytes), writePointer: start + ByteCount(written))
    }
}

func policy(_ zones: [Zone], roles: [ZoneID: ZoneRole] = [:], config: AllocatorConfig = AllocatorConfig(),
            maxActive: Int = 4) -> GrantPolicy {
    GrantPolicy(report: zones, roles: roles, config: config, maxActiveZones: maxActive, zoneSize: .kib(64))
}

extension GrantPolicy {
    /// Grants and expects a grant; returns it.
    mutating func granted(_ bytes: ByteCount, _ role: ZoneRole = .data, hint: ZoneID? = nil,
                          sourceLocation: SourceLocation = #_sourceLocation) -> ZoneGrant? {
        guard case .granted(let g) = decide(bytes, role, hint) else {
            Issue.record("no grant of \(bytes) for \(role.rawValue)", sourceLocation: sourceLocation)
            return nil
        }
        return g
    }

    /// Writes all of `g` and completes it.
    mutating func write(_ g: ZoneGrant, now: UInt64 = 1) {
        startFlight(g.zone.int, g.length)
        _ = landed(g.zone.int, total: g.length, [g.length], viaAppend: false, now: now)
        complete(g, written: g.length)
    }
}

@Suite("Grant policy", .timeLimit(.minutes(10)))
struct GrantPolicyTests {
    /// Active data zones with 16, 8, 8 and 12 KiB free (zones 0-3): 8 KiB goes to the tightest,
    /// the lowest index of the two tied ones; a grant in flight there sends the next to zone 2.
    @Test func tightestIdleFitOnTheLowestIndex() {
        let written: [UInt64] = [48, 56, 56, 52].map { $0 << 10 }
        var p = policy(report(8) { i in i < 4 ? (.closed, written[i]) : (.empty, 0) },
                       roles: [0: .data, 1: .data, 2: .data, 3: .data], maxActive: 8)
        let g1 = p.granted(.kib(8))
        #expect(g1?.zone == 1)
        let g2 = p.granted(.kib(8))
        #expect(g2?.zone == 2, "zone 1 is busy: the idle tie goes next")
        let g3 = p.granted(.kib(12))
        #expect(g3?.zone == 3, "12 KiB fits zone 3 (12) more tightly than zone 0 (16)")
        #expect(p.problem(p.zones.indices) == nil)
    }

    /// With every active zone busy or too small, a grant takes the lowest-index empty zone — also
    /// one freed by a reset below the zones taken before.
    @Test func emptyZonesInIndexOrder() {
        var p = policy(report(8) { i in i == 0 || i == 2 ? (.full, 64 << 10) : (.empty, 0) }, roles: [0: .data, 2: .data],
                       config: AllocatorConfig(reservedActiveZones: 0), maxActive: 8)
        let g1 = p.granted(.kib(64))
        #expect(g1?.zone == 1)
        if let g1 { p.write(g1) }
        let g2 = p.granted(.kib(64))
        #expect(g2?.zone == 3)
        p.discard(0, .kib(64))
        let started = p.startReset(0)
        #expect(started)
        p.resetDone(0, succeeded: true)
        let g3 = p.granted(.kib(64))
        #expect(g3?.zone == 0, "the reset zone 0 is the lowest empty zone")
        #expect(p.problem(p.zones.indices) == nil)
    }

    /// Max active 4, 2 kept back: data activates 2 zones, then needs a finish; metadata still
    /// activates one, and every role together stops at 4.
    @Test func activeBudgetPerRoleAndInTotal() {
        var p = policy(report(8))
        let d1 = p.granted(.kib(4)), d2 = p.granted(.kib(4))
        #expect(d1?.zone == 0 && d2?.zone == 1)
        #expect(p.decide(.kib(64), .data, nil) == .needsZoneFinish)
        #expect(p.activeCount(.data) == 2)
        let m1 = p.granted(.kib(64), .metadata), m2 = p.granted(.kib(64), .metadata)
        #expect(m1?.zone == 2 && m2?.zone == 3)
        #expect(p.decide(.kib(64), .metadata, nil) == .needsZoneFinish, "4 zones active: the device limit")
        #expect(p.activeCount(nil) == 4)
    }

    /// The zone to finish is the fullest active one of the role (least free), the lowest index
    /// among equals; with grants out it is marked and the caller waits, and once they complete
    /// the marked zone goes first.
    @Test func finishVictimIsTheFullest() {
        let written: [UInt64] = [32, 48, 48].map { $0 << 10 }
        var p = policy(report(6) { i in i < 3 ? (.closed, written[i]) : (.empty, 0) },
                       roles: [0: .data, 1: .data, 2: .data], config: AllocatorConfig(reservedActiveZones: 1))
        let g = p.granted(.kib(16), hint: 1)
        #expect(g?.zone == 1)
        #expect(p.claimFinish(.data) == .wait, "zone 1 (16 KiB free, lowest of the tie) has a grant out")
        #expect(p.zones[1].finishRequested && !p.zones[2].finishRequested)
        #expect(p.claimFinish(.data) == .wait, "the marked zone is waited for, not another one taken")
        if let g { p.complete(g, written: .zero) }
        #expect(p.claimFinish(.data) == .finish(1))
        p.finished(1, succeeded: true, early: true)
        #expect(p.zones[1].phase == .full && p.zones[1].unusable == .kib(16))
        #expect(p.claimFinish(.data) == .finish(2), "then zone 2 (16 KiB free) before zone 0 (32 KiB)")
        p.finished(2, succeeded: true, early: true)
        #expect(p.problem(p.zones.indices) == nil)
    }

    /// Data leaves the configured empty zones alone (the highest ones), reclaim may take its own,
    /// and an empty zone set aside for metadata counts toward the metadata reserve.
    @Test func emptyZonesHeldBackFromData() {
        let config = AllocatorConfig(reservedActiveZones: 0, reservedEmptyZones: 1, reclaimReserveZones: 1)
        var p = policy(report(4), config: config, maxActive: 0)
        #expect(p.reservable() == .kib(128), "4 zones less 2 held back")
        #expect(p.granted(.kib(64))?.zone == 0)
        #expect(p.granted(.kib(64))?.zone == 1)
        #expect(p.decide(.kib(4), .data, nil) == .noSpace, "zones 2 and 3 are held back")
        if case .granted(let g) = p.decide(.kib(4), .data, nil, useReserve: true) {
            #expect(g.zone == 2, "reclaim takes the lower held-back zone")
        } else { Issue.record("reclaim could not take its reserve zone") }
        #expect(p.setAsideEmptyZone(for: .metadata) == 3)
        #expect(p.reservedEmptyZonesLeft() == 1, "the set-aside zone is the metadata reserve; the reclaim one stays")
        #expect(p.decide(.kib(4), .metadata, 3) != .noSpace, "metadata activates its set-aside zone")
        #expect(p.problem(p.zones.indices) == nil)
    }

    /// The space totals and the reservable bytes are kept as the accounts change, not summed.
    @Test func totalsAndReservableFollowTheAccounts() {
        var p = policy(report(6) { i in i == 5 ? (.offline, 0) : (.empty, 0) }, maxActive: 0)
        let g = p.granted(.kib(40))
        #expect(p.spaceTotals.reserved == .kib(40) && p.spaceTotals.capacity == .kib(320))
        if let g { p.write(g) }
        p.discard(g?.zone.int ?? 0, .kib(8))
        #expect(p.spaceTotals == SpaceTotals(p.zones))
        let took = p.reserve(.kib(280), forReclaim: false)
        #expect(took)
        #expect(p.reservable() == .zero)
        let tookMore = p.reserve(.kib(4), forReclaim: false)
        #expect(!tookMore)
        p.releaseReservation(.kib(280))
        #expect(p.reservable() == .kib(280))
        #expect(p.problem(p.zones.indices) == nil)
    }

    /// The debug check notices an order out of step with the accounts.
    @Test func theCheckCatchesAnOrderOutOfSync() {
        var p = policy(report(8))
        _ = p.granted(.kib(4))
        #expect(p.problem(p.zones.indices) == nil)
        #expect(p.zones[5].phase == .empty)
        p.desyncForTesting(5)
        #expect(p.problem(5..<6) != nil, "the window holding zone 5 must see it missing from the empty zones")
    }

    @Test("same decisions as a scan: 80,000 zones, seeded random operations")
    func modelAtEightyThousandZones() {
        runModel(seed: 0x15_0003, zones: 80_000, conventional: 2_000, operations: 500, maxActive: 14)
    }

    @Test("same decisions as a scan: 300 zones, long runs down to no space", arguments: [UInt64(1), 2, 3])
    func modelSmall(seed: UInt64) {
        runModel(seed: seed, zones: 300, conventional: seed == 2 ? 20 : 0, operations: 20_000, maxActive: seed == 3 ? 0 : 6)
    }
}

// MARK: The model

/// The grant decisions as the allocator made them before the orders: plain scans over the accounts
/// in index order. Kept deliberately naive; the policy must agree with it on every decision.
struct ReferenceScan {
    let zones: [ZoneAccount]
    let config: AllocatorConfig
    let maxActive: Int
    let finishing: Set<Int>

    enum Outcome: Equatable {
        case granted(zone: Int, length: ByteCount)
        case needsZoneFinish
        case noSpace
    }

    func usable(_ i: Int, _ role: ZoneRole) -> Bool {
        zones[i].role == role && zones[i].phase == .active && !zones[i].finishRequested
    }

    func activeCount(_ role: ZoneRole?) -> Int {
        zones.filter { $0.phase == .active && !$0.isConventional && (role == nil || $0.role == role) }.count
    }

    func budget(_ role: ZoneRole) -> Int {
        guard maxActive > 0 else { return Int.max }
        let roleLimit = role == .data ? max(1, maxActive - config.reservedActiveZones) : maxActive
        return min(roleLimit, maxActive - (activeCount(nil) - activeCount(role)))
    }

    func reservedEmptyZonesLeft() -> Int {
        let setAside = zones.filter { $0.phase == .empty && $0.role == .metadata }.count
        return max(0, config.reservedEmptyZones - setAside) + config.reclaimReserveZones
    }

    func decide(_ bytes: ByteCount, _ role: ZoneRole, _ hint: ZoneID?, useReserve: Bool) -> Outcome {
        if let h = hint?.int, h < zones.count, usable(h, role), zones[h].free.bytes > 0 {
            return .granted(zone: h, length: min(bytes, zones[h].free))
        }
        if let h = hint?.int, h < zones.count, zones[h].phase == .empty, zones[h].role == role, role != .data,
           !zones[h].finishRequested, zones[h].isConventional || activeCount(role) < budget(role) {
            return .granted(zone: h, length: min(bytes, zones[h].free))
        }
        let fitting = zones.indices.filter { usable($0, role) && zones[$0].free >= bytes }
        let tightest = { (c: [Int]) in c.min { (zones[$0].free, $0) < (zones[$1].free, $1) } }
        if let idle = tightest(fitting.filter { zones[$0].grants == 0 }) { return .granted(zone: idle, length: bytes) }
        var empties = zones.indices.filter {
            zones[$0].phase == .empty && (zones[$0].role == role || zones[$0].role == .free) && !zones[$0].finishRequested
        }
        if role == .data {
            let held = max(0, reservedEmptyZonesLeft() - (useReserve ? config.reclaimReserveZones : 0))
            empties = Array(empties.dropLast(min(empties.count, held)))
        }
        if let e = empties.first(where: { zones[$0].isConventional || activeCount(role) < budget(role) }) {
            return .granted(zone: e, length: min(bytes, zones[e].free))
        }
        if let busy = tightest(fitting) { return .granted(zone: busy, length: bytes) }
        if !empties.isEmpty { return .needsZoneFinish }
        let partial = zones.indices.filter { usable($0, role) && zones[$0].free.bytes > 0 }
        if let most = partial.max(by: { (zones[$0].free, -$0) < (zones[$1].free, -$1) }) {
            return .granted(zone: most, length: min(bytes, zones[most].free))
        }
        return .noSpace
    }

    /// The zone `claimFinish` marks or takes, and whether the caller finishes it now.
    func claimFinish(_ role: ZoneRole) -> (zone: Int, finishNow: Bool)? {
        let candidates = zones.indices.filter { zones[$0].role == role && zones[$0].phase == .active && !zones[$0].isConventional }
        if let pending = candidates.first(where: { zones[$0].finishRequested }) {
            return (pending, zones[pending].grants == 0 && !finishing.contains(pending))
        }
        guard let victim = candidates.min(by: { (zones[$0].free, $0) < (zones[$1].free, $1) }) else { return nil }
        return (victim, zones[victim].grants == 0)
    }

    func setAside() -> Int? {
        zones.indices.first { zones[$0].phase == .empty && zones[$0].role == .free && !zones[$0].finishRequested }
    }

    func reservable(forReclaim: Bool, outstanding: ByteCount, zoneSize: ByteCount) -> ByteCount {
        var free = zones.reduce(ByteCount.zero) { ($1.role == .data || $1.role == .free) && !$1.finishRequested ? $0 + $1.free : $0 }
        let zoneBytes = zones.lazy.filter { !$0.isConventional }.map(\.capacity).min() ?? zoneSize
        let held = zoneBytes * UInt64(reservedEmptyZonesLeft() - (forReclaim ? config.reclaimReserveZones : 0))
        free = free > held ? free - held : .zero
        return free > outstanding ? free - outstanding : .zero
    }
}

extension ZoneAllocator.GrantOutcome {
    var asReference: ReferenceScan.Outcome {
        switch self {
        case .granted(let g): .granted(zone: g.zone.int, length: g.length)
        case .needsZoneFinish: .needsZoneFinish
        case .noSpace: .noSpace
        }
    }
}

/// Drives a policy through seeded random operations and checks each decision against
/// `ReferenceScan` over the same accounts.
func runModel(seed: UInt64, zones count: Int, conventional: Int, operations: Int, maxActive: Int) {
    var rng = SeededRandom(seed: seed)
    let zoneBytes: UInt64 = 64 << 10
    let block: UInt64 = 4096
    // Start from a used device: most low zones full (data or metadata), some offline, a few
    // active up to the limit, empty zones scattered below and plenty above.
    var activeLeft = maxActive > 0 ? maxActive / 2 : 8
    var roles: [ZoneID: ZoneRole] = [:]
    let zs = report(count, zoneBytes: zoneBytes, conventional: conventional) { i in
        let low = i < count * 3 / 4
        let r = rng.below(100)
        if low && r < 80 { roles[ZoneID(i)] = r < 70 ? .data : .metadata; return (.full, zoneBytes) }
        if r < 82 { return (.offline, 0) }
        if r < 84, activeLeft > 0 {
            activeLeft -= 1
            roles[ZoneID(i)] = r < 83 ? .data : .metadata
            return (.closed, block * (1 + rng.below(14)))
        }
        return (.empty, 0)
    }
    let config = AllocatorConfig(reservedActiveZones: 2, reservedEmptyZones: 2, reclaimReserveZones: 1)
    var p = GrantPolicy(report: zs, roles: roles, config: config, maxActiveZones: maxActive, zoneSize: ByteCount(zoneBytes))
    var grants: [ZoneGrant] = []
    var lastZone: ZoneID?
    var decisions = 0, finishes = 0, emptyTaken = 0
    func reference() -> ReferenceScan { ReferenceScan(zones: p.zones, config: config, maxActive: maxActive, finishing: p.finishing) }

    for step in 0..<operations {
        let op = rng.below(100)
        switch op {
        case 0..<45:  // a grant, checked against the scan
            let role: ZoneRole = rng.below(10) < 8 ? .data : .metadata
            let bytes = ByteCount(block * (1 + rng.below(20)))
            let hint = rng.chance(0.3) ? lastZone : (rng.chance(0.05) ? ZoneID(Int(rng.below(UInt64(count)))) : nil)
            let useReserve = rng.chance(0.1)
            let expected = reference().decide(bytes, role, hint, useReserve: useReserve)
            let before = hint.map { p.zones[$0.int].phase }
            let got = p.decide(bytes, role, hint, useReserve: useReserve)
            #expect(got.asReference == expected, "step \(step): \(bytes) for \(role.rawValue), hint \(String(describing: hint)) (\(String(describing: before)))")
            decisions += 1
            if got.asReference != expected { return }
            switch got {
            case .granted(let g):
                grants.append(g)
                lastZone = g.zone
            case .needsZoneFinish:
                // The finish the allocator would claim, against the scan's choice.
                let ref = reference().claimFinish(role)
                let claim = p.claimFinish(role)
                if let ref {
                    #expect(p.zones[ref.zone].finishRequested, "step \(step): zone \(ref.zone) should be marked")
                    #expect(claim == (ref.finishNow ? .finish(ZoneID(ref.zone)) : .wait), "step \(step): finish claim")
                } else {
                    #expect(claim == .wait)
                }
                if case .finish(let z) = claim {
                    p.finished(z.int, succeeded: rng.chance(0.9), early: true)
                    finishes += 1
                }
            case .noSpace:
                break
            }
        case 45..<75:  // write some or all of a grant and complete it
            guard !grants.isEmpty else { continue }
            let g = grants.remove(at: Int(rng.below(UInt64(grants.count))))
            let n = rng.chance(0.7) ? g.length : ByteCount(block * rng.below(g.length.bytes / block + 1))
            if n.bytes > 0 {
                p.startFlight(g.zone.int, n)
                let lands = rng.chance(0.95)
                _ = p.landed(g.zone.int, total: n, lands ? [n] : [], viaAppend: false, now: UInt64(step))
                if !lands, !p.zones[g.zone.int].isConventional {
                    // A failed write: the device may report the zone full, offline or as it was.
                    let z = p.zones[g.zone.int]
                    let cond: ZoneCondition = rng.chance(0.3) ? .full : (rng.chance(0.1) ? .offline : .closed)
                    p.resync(g.zone.int, Zone(id: z.id, type: .sequentialWriteRequired, condition: cond, start: z.start,
                                              size: z.capacity, capacity: z.capacity, writePointer: z.writePointer))
                }
                p.complete(g, written: lands ? n : .zero)
            } else {
                p.complete(g, written: .zero)
            }
        case 75..<85:  // data dies; a zone with none live left is reset
            let i = Int(rng.below(UInt64(count)))
            let live = p.zones[i].live
            if live.bytes > 0 { p.discard(i, rng.chance(0.5) ? live : ByteCount(block * rng.below(live.bytes / block + 1))) }
            if p.zones[i].phase == .full || p.zones[i].isConventional, p.startReset(i) {
                p.resetDone(i, succeeded: rng.chance(0.95))
                emptyTaken += 1
            }
        case 85..<88:  // a finish on request (metadata roll-over)
            let i = Int(rng.below(UInt64(count)))
            if p.requestFinish(i), p.mayFinish(i), p.startFinish(i) { p.finished(i, succeeded: true, early: true) }
        case 88..<91:
            let ref = reference().setAside()
            #expect(p.setAsideEmptyZone(for: .metadata)?.int == ref, "step \(step): set-aside zone")
        default:  // reservations
            let forReclaim = rng.chance(0.2)
            let ref = reference().reservable(forReclaim: forReclaim, outstanding: p.outstandingReservation, zoneSize: ByteCount(zoneBytes))
            #expect(p.reservable(forReclaim: forReclaim) == ref, "step \(step): reservable")
            let want = ByteCount(block * (1 + rng.below(64)))
            if !p.reserve(want, forReclaim: forReclaim) || rng.chance(0.5) { p.releaseReservation(want) }
        }
        if step % 97 == 0 {
            let r = reference()
            #expect(p.activeCount(nil) == r.activeCount(nil) && p.activeCount(.data) == r.activeCount(.data), "step \(step): active counts")
            #expect(p.spaceTotals == SpaceTotals(p.zones), "step \(step): totals")
            let window = Int(rng.below(UInt64(count)))
            if let problem = p.problem(window..<min(count, window + 4096)) { Issue.record("step \(step): \(problem)"); return }
        }
    }
    #expect(p.problem(p.zones.indices) == nil)
    #expect(decisions > operations / 3 && finishes + emptyTaken > 0, "the run exercised too little: \(decisions) decisions, \(finishes) finishes")
}
