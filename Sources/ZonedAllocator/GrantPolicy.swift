// The grant policy: the zone accounts, the orders kept over them, and every decision the
// allocator makes from them (which zone a grant goes to, which zone to finish, which empty zone
// to set aside, how much may be reserved). A value: no device, no lock, no clock — the allocator
// holds it under its lock, asks the device, and passes in the time.
//
// Invariants (checked by `problem(_:)`; the allocator runs it after every change in debug builds):
// - Accounts: each `ZoneAccount` keeps its own invariants (ZoneAccount.swift). A zone marked
//   `finishRequested` is active, or in `finishing` or `resetting`; a zone in either set is marked;
//   no zone is in both.
// - The orders are functions of the accounts, updated by `put` on every change of an account (no
//   account changes any other way), so a decision reads them instead of scanning every zone:
//   - `usable[role]`: zones of that role that are active, not marked, with free bytes, ordered by
//     (free, index) — the tightest fit, the busy fit and the roomiest zone;
//   - `activeSequential[role]`: sequential active zones of that role, by (free, index) — the count
//     against the active budget and the fullest zone to finish;
//   - `empty[role][kind]`: empty zones of that role (marked or not), conventional or sequential, as
//     bitsets by index — the lowest-index empty zone and the empty zones held back;
//   - `dataFree`: free bytes of data and free zones that are not marked (what reservations draw
//     on); `spaceTotals`: `SpaceTotals` over every zone.
// - Decisions are those of a scan over the accounts in index order (the model test holds them to
//   one): ties break on the lowest zone index, and no Dictionary or Set order reaches a choice.
// - Per grant the cost depends on the active zones (at most the device's max active) and on
//   bitset words scanned through a 64-to-1 summary, not on the zone count.

import ZonedCore

extension ZoneRole {
    /// Position in the policy's per-role tables.
    var slot: Int {
        switch self {
        case .free: 0
        case .superblock: 1
        case .metadata: 2
        case .data: 3
        case .reserved: 4
        case .index: 5
        }
    }
}

struct GrantPolicy: Sendable {
    let config: AllocatorConfig
    /// The device's max active zones; 0 = no limit.
    let maxActiveZones: Int
    /// Bytes of the smallest sequential zone (the unit of the empty zones held back); the zone
    /// size when the device has no sequential zone.
    let holdBackZoneBytes: ByteCount

    private(set) var zones: [ZoneAccount]
    private(set) var counters = AllocatorCounters()
    private(set) var outstandingReservation = ByteCount.zero
    private var nextSerial: UInt64 = 1
    /// Zones a thread is finishing on the device (claimed by `claimFinish` or `startFinish`).
    private(set) var finishing = Set<Int>()
    /// Zones being reset by `resetIfUnused` (marked `finishRequested` meanwhile, so nothing is
    /// granted there); kept so the invariant check can tell the mark's two uses apart.
    private(set) var resetting = Set<Int>()

    private var usable: [FreeOrder]
    private var activeSequential: [FreeOrder]
    /// [role slot][0 conventional, 1 sequential]
    private var empty: [[ZoneBitSet]]
    /// Data zones a durable commit may reset (`isDeadData`): found at each commit without a scan.
    private(set) var deadData: ZoneBitSet
    /// Zones reclaim may take (`isReclaimVictim`), and the garbage plus unusable bytes they hold:
    /// reclaim asks "is there anything?" without a scan and walks only these zones in a pass.
    private(set) var victims: ZoneBitSet
    private(set) var victimBytes = ByteCount.zero
    private var dataFree = ByteCount.zero
    private(set) var spaceTotals = SpaceTotals()

    /// Builds the accounts from the device's zone report. `roles` gives each zone's role (missing
    /// entries are `.free`); written bytes found on the device count as live until the caller says
    /// otherwise (mount reconciles them with the log).
    init(report: [Zone], roles: [ZoneID: ZoneRole], config: AllocatorConfig, maxActiveZones: Int, zoneSize: ByteCount) {
        self.config = config
        self.maxActiveZones = maxActiveZones
        holdBackZoneBytes = report.lazy.filter(\.type.isSequential).map(\.capacity).min() ?? zoneSize
        zones = []
        let slots = ZoneRole.allCases.count
        usable = Array(repeating: FreeOrder(), count: slots)
        activeSequential = Array(repeating: FreeOrder(), count: slots)
        empty = Array(repeating: Array(repeating: ZoneBitSet(capacity: report.count), count: 2), count: slots)
        deadData = ZoneBitSet(capacity: report.count)
        victims = ZoneBitSet(capacity: report.count)
        zones.reserveCapacity(report.count)
        for (i, z) in report.enumerated() {
            precondition(z.id.int == i, "the zone report is not in zone order at \(z.id)")
            let a = GrantPolicy.account(for: z, role: roles[z.id] ?? .free)
            zones.append(a)
            index(i, a, adding: true)
        }
    }

    private static func account(for z: Zone, role: ZoneRole) -> ZoneAccount {
        var a = ZoneAccount(id: z.id, start: z.start, capacity: z.type.isSequential ? z.capacity : z.size,
                            isConventional: !z.type.isSequential, role: role, phase: .empty)
        switch z.condition {
        case .readOnly, .offline:
            a.phase = .unavailable
        case .full:
            a.phase = .full
            a.written = z.writePointer > z.start ? min(z.writePointer - z.start, a.capacity) : a.capacity
            a.unusable = a.capacity - a.written
        case .implicitlyOpen, .explicitlyOpen, .closed:
            a.written = z.writePointer - z.start
            a.phase = .active
        case .empty, .notWritePointer:
            break
        }
        a.live = a.written
        return a
    }

    // MARK: Keeping the orders

    /// The one way an account changes: stores it and moves the zone in every order it leaves,
    /// joins or changes place in.
    private mutating func put(_ i: Int, _ a: ZoneAccount) {
        let old = zones[i]
        zones[i] = a
        index(i, old, adding: false)
        index(i, a, adding: true)
    }

    /// Adds zone `i` with account `a` to the orders it belongs in, or takes it out of them.
    private mutating func index(_ i: Int, _ a: ZoneAccount, adding: Bool) {
        let slot = a.role.slot
        let key = FreeKey(free: a.free.bytes, index: i)
        if GrantPolicy.isUsable(a) {
            if adding { usable[slot].insert(key) } else { usable[slot].remove(key) }
        }
        if a.phase == .active && !a.isConventional {
            if adding { activeSequential[slot].insert(key) } else { activeSequential[slot].remove(key) }
        }
        if a.phase == .empty {
            let kind = a.isConventional ? 0 : 1
            if adding { empty[slot][kind].insert(i) } else { empty[slot][kind].remove(i) }
        }
        if GrantPolicy.countsAsDataSpace(a) {
            dataFree = adding ? dataFree + a.free : dataFree - a.free
        }
        if GrantPolicy.isDeadData(a) {
            if adding { deadData.insert(i) } else { deadData.remove(i) }
        }
        if GrantPolicy.isReclaimVictim(a) {
            if adding { victims.insert(i) } else { victims.remove(i) }
            let held = a.garbage + a.unusable
            victimBytes = adding ? victimBytes + held : victimBytes - held
        }
        if a.phase != .unavailable {
            func add(_ total: inout ByteCount, _ x: ByteCount) { total = adding ? total + x : total - x }
            add(&spaceTotals.capacity, a.capacity)
            add(&spaceTotals.free, a.free)
            add(&spaceTotals.live, a.live)
            add(&spaceTotals.garbage, a.garbage)
            add(&spaceTotals.unusable, a.unusable)
            add(&spaceTotals.reserved, a.reserved)
        }
    }

    /// Takes grants of its role: active, not marked, with room.
    private static func isUsable(_ a: ZoneAccount) -> Bool { a.phase == .active && !a.finishRequested && a.free.bytes > 0 }
    /// A data or index zone written to its end (or a conventional one with no room left) with
    /// nothing live and no grant out: once a durable commit holds the records that dropped its
    /// last reference, it may be reset.
    static func isDeadData(_ a: ZoneAccount) -> Bool {
        (a.role == .data || a.role == .index) && a.live.bytes == 0 && a.written.bytes > 0 && a.grants == 0
            && (a.phase == .full || (a.isConventional && a.phase == .active && a.free.bytes == 0))
    }
    /// A zone reclaim may move the live data out of and reset: a data zone with no grant out,
    /// written to its end (or conventional with no room left), holding garbage or unusable bytes.
    static func isReclaimVictim(_ a: ZoneAccount) -> Bool {
        a.role == .data && a.grants == 0 && a.garbage.bytes + a.unusable.bytes > 0
            && (a.phase == .full || (a.isConventional && a.free.bytes == 0 && a.phase == .active))
    }
    /// Its free bytes back data reservations.
    private static func countsAsDataSpace(_ a: ZoneAccount) -> Bool { (a.role == .data || a.role == .free) && !a.finishRequested }

    // MARK: Counts

    /// Sequential active zones (they use a device resource); nil = every role.
    /// The active sequential zones of `role` (at most the active limit), in (free, index) order.
    func activeZones(_ role: ZoneRole) -> [Int] { activeSequential[role.slot].keys.map(\.index) }

    func activeCount(_ role: ZoneRole?) -> Int {
        guard let role else { return activeSequential.reduce(0) { $0 + $1.count } }
        return activeSequential[role.slot].count
    }

    /// Data and the metadata index share one budget: the index's tables are written seldom, so
    /// it holds an active zone only while data can spare one, and either finishes the other's
    /// zone when it needs the slot (`claimFinish`).
    static func sharesDataBudget(_ role: ZoneRole) -> Bool { role == .data || role == .index }

    /// Active zones of `role` and of every role sharing its budget.
    private func budgetCount(_ role: ZoneRole) -> Int {
        GrantPolicy.sharesDataBudget(role) ? activeCount(.data) + activeCount(.index) : activeCount(role)
    }

    /// The data roles' share of the device's active zones.
    var dataActiveLimit: Int { max(1, maxActiveZones - config.reservedActiveZones) }

    /// How many zones `role` (with the roles sharing its budget) may have active.
    private func budget(_ role: ZoneRole) -> Int {
        let limit = maxActiveZones
        guard limit > 0 else { return Int.max }
        let roleLimit = GrantPolicy.sharesDataBudget(role) ? dataActiveLimit : limit
        // Every role together stays within the device limit.
        return min(roleLimit, limit - (activeCount(nil) - budgetCount(role)))
    }

    private func withinBudget(_ role: ZoneRole) -> Bool { budgetCount(role) < budget(role) }

    /// How many free empty zones data must leave alone: the configured reserve, less the empty
    /// zones already set aside for metadata.
    func reservedEmptyZonesLeft() -> Int {
        let setAside = empty[ZoneRole.metadata.slot][0].count + empty[ZoneRole.metadata.slot][1].count
        return max(0, config.reservedEmptyZones - setAside) + config.reclaimReserveZones
    }

    // MARK: Reservations

    /// Space a new reservation could still get (free bytes of zones that can take data, less the
    /// empty zones held back and what is already promised).
    func reservable(forReclaim: Bool = false) -> ByteCount {
        // The zones held back for the metadata log and for reclaim are not data space: that many
        // zones' worth of free bytes stays free whichever zones they are in, so writers can never
        // use up the room reclaim moves live data into.
        let held = holdBackZoneBytes * UInt64(reservedEmptyZonesLeft() - (forReclaim ? config.reclaimReserveZones : 0))
        let free = dataFree > held ? dataFree - held : .zero
        return free > outstandingReservation ? free - outstandingReservation : .zero
    }

    /// Promises `bytes`; false (nothing promised) when `reservable` is smaller.
    mutating func reserve(_ bytes: ByteCount, forReclaim: Bool) -> Bool {
        guard bytes <= reservable(forReclaim: forReclaim) else { return false }
        outstandingReservation = outstandingReservation + bytes
        return true
    }

    mutating func releaseReservation(_ bytes: ByteCount) {
        outstandingReservation = outstandingReservation - min(bytes, outstandingReservation)
    }

    mutating func countFinishWaitStarted() { counters.zoneFinishWaits += 1 }
    mutating func countFinishWaitEnded(nanoseconds: UInt64) { counters.zoneFinishWaitNanoseconds += nanoseconds }
    mutating func countResyncFailure() { counters.resyncFailures += 1 }

    // MARK: Empty zones

    /// Which of the empty-zone sets a decision may take from: the role's own and the free ones,
    /// of one kind or both. A value, so a grant allocates nothing to name them.
    struct EmptySources {
        var own: Int
        var free: Int
        /// 0: conventional only; 1: conventional and sequential.
        var lastKind: Int

        func forEach(_ body: (_ slot: Int, _ kind: Int) -> Void) {
            for kind in 0...lastKind {
                body(own, kind)
                if free != own { body(free, kind) }
            }
        }
    }

    /// The lowest-index unmarked member of the union of `sources` at or after `from` (marked
    /// zones are skipped: they are being finished or reset, a handful at most).
    private func lowestUnmarked(_ sources: EmptySources, atOrAfter from: Int = 0) -> Int? {
        var at = from
        while true {
            var best: Int?
            sources.forEach { slot, kind in
                if let i = empty[slot][kind].first(atOrAfter: at), best.map({ i < $0 }) ?? true { best = i }
            }
            guard let i = best else { return nil }
            if !zones[i].finishRequested { return i }
            at = i + 1
        }
    }

    /// The highest-index unmarked member of the union of `sources` at or before `from`.
    private func highestUnmarked(_ sources: EmptySources, atOrBefore from: Int) -> Int? {
        var at = from
        while true {
            var best: Int?
            sources.forEach { slot, kind in
                if let i = empty[slot][kind].last(atOrBefore: at), best.map({ i > $0 }) ?? true { best = i }
            }
            guard let i = best else { return nil }
            if !zones[i].finishRequested { return i }
            at = i - 1
        }
    }

    /// Empty zones `role` may take: its own and free ones, of both kinds or conventional only.
    private func emptySets(_ role: ZoneRole, conventionalOnly: Bool = false) -> EmptySources {
        EmptySources(own: role.slot, free: ZoneRole.free.slot, lastKind: conventionalOnly ? 0 : 1)
    }

    /// The highest index among the empty zones `role` may take once `held` of them (the highest)
    /// are left alone; nil when none is left.
    private func lastTakableEmpty(_ role: ZoneRole, held: Int) -> Int? {
        let sets = emptySets(role)
        var at = zones.count - 1
        var found: Int?
        for _ in 0...held {
            guard let i = highestUnmarked(sets, atOrBefore: at) else { return nil }
            found = i
            at = i - 1
        }
        return found
    }

    /// Sets an empty free zone aside for `role` (the metadata log's next zone) without activating
    /// it: the lowest-index unmarked one.
    mutating func setAsideEmptyZone(for role: ZoneRole) -> ZoneID? {
        guard let i = lowestUnmarked(emptySets(.free)) else { return nil }
        var a = zones[i]
        a.role = role
        put(i, a)
        return a.id
    }

    // MARK: Grants

    /// The grant decision. Order of preference:
    /// 1. the hint zone (where this write's previous extent ended), even if only part fits;
    /// 2. an idle active zone of this role (no grant in flight) where the whole request fits most
    ///    tightly — writers in different zones do not queue behind each other's IO;
    /// 3. a newly activated empty zone, if the active budget allows;
    /// 4. a busy active zone where the whole request fits (its writes are sequenced, or appended);
    /// 5. with no empty zone left at all, whatever an active zone still has (a short grant);
    /// otherwise a zone must be finished (active budget spent) or there is no space.
    mutating func decide(_ bytes: ByteCount, _ role: ZoneRole, _ hint: ZoneID?, useReserve: Bool = false) -> ZoneAllocator.GrantOutcome {
        precondition(bytes.bytes > 0, "grant of nothing")
        if let h = hint?.int, h < zones.count {
            let z = zones[h]
            if z.role == role && GrantPolicy.isUsable(z) {
                return .granted(issue(h, min(bytes, z.free)))
            }
            // An empty zone set aside for this role (the metadata log's next zone) is activated on request.
            if z.phase == .empty, z.role == role, role != .data, !z.finishRequested, z.isConventional || withinBudget(role) {
                return .granted(activate(h, role, bytes))
            }
        }
        let fitting = usable[role.slot].fitting(bytes.bytes)
        if let idle = fitting.first(where: { zones[$0.index].grants == 0 }) {
            return .granted(issue(idle.index, bytes))
        }
        // Data never takes the last empty zones: the metadata log needs them to roll over, and
        // reclaim needs one to move live data into (which only reclaim may take).
        let held = role == .data ? max(0, reservedEmptyZonesLeft() - (useReserve ? config.reclaimReserveZones : 0)) : 0
        let lastEmpty = lastTakableEmpty(role, held: held)
        if let lastEmpty {
            let pick = withinBudget(role) ? lowestUnmarked(emptySets(role))
                                          : lowestUnmarked(emptySets(role, conventionalOnly: true))
            if let e = pick, e <= lastEmpty { return .granted(activate(e, role, bytes)) }
        }
        if let busy = fitting.first { return .granted(issue(busy.index, bytes)) }
        if lastEmpty != nil { return .needsZoneFinish }
        if let most = usable[role.slot].roomiest {
            return .granted(issue(most.index, min(bytes, ByteCount(most.free))))
        }
        return .noSpace
    }

    /// Makes empty zone `i` an active zone of `role` and grants in it.
    private mutating func activate(_ i: Int, _ role: ZoneRole, _ bytes: ByteCount) -> ZoneGrant {
        var a = zones[i]
        a.role = role
        a.phase = .active
        put(i, a)
        return issue(i, min(bytes, a.free))
    }

    private mutating func issue(_ i: Int, _ length: ByteCount) -> ZoneGrant {
        var a = zones[i]
        // Hot-path preconditions (release builds too): a grant fits, and only in a zone that takes one.
        precondition(length.bytes > 0 && length <= a.free, "\(a.id): granting \(length) of \(a.free) free")
        precondition(a.phase == .active || a.phase == .empty, "\(a.id): granting in a \(a.phase.rawValue) zone")
        a.reserved = a.reserved + length
        a.grants += 1
        put(i, a)
        counters.grants += 1
        let g = ZoneGrant(zone: a.id, length: length, serial: nextSerial)
        nextSerial += 1
        return g
    }

    // MARK: Finishing

    enum FinishClaim: Equatable {
        /// This caller finishes the zone on the device, then calls `finished`.
        case finish(ZoneID)
        /// Wait for a change and ask again.
        case wait
    }

    /// A grant for `role` needs a zone finished: picks the fullest active zone of `role` (least
    /// free, lowest index) and marks it. The caller finishes it when it has no outstanding grants;
    /// otherwise (or with no zone to finish) it waits.
    mutating func claimFinish(_ role: ZoneRole) -> FinishClaim {
        // A zone already marked goes first (lowest index): finish it once its grants are done.
        if let pending = markedActive(role) {
            guard zones[pending].grants == 0, !finishing.contains(pending) else { return .wait }
            finishing.insert(pending)
            return .finish(zones[pending].id)
        }
        guard let victim = finishVictim(role) else { return .wait }
        var a = zones[victim]
        a.finishRequested = true
        put(victim, a)
        guard a.grants == 0 else { return .wait }
        finishing.insert(victim)
        return .finish(a.id)
    }

    /// The zone to finish for `role`: its fullest active zone; for the roles sharing the data
    /// budget, an idle index zone before any data zone when data asks (nobody waits on it), and
    /// the fullest data zone when the index asks and holds none.
    private func finishVictim(_ role: ZoneRole) -> Int? {
        let index = activeSequential[ZoneRole.index.slot].keys.first?.index
        switch role {
        case .data:
            if let i = index, zones[i].grants == 0 { return i }
            return activeSequential[role.slot].keys.first?.index ?? index
        case .index:
            return index ?? activeSequential[ZoneRole.data.slot].keys.first?.index
        default:
            return activeSequential[role.slot].keys.first?.index
        }
    }

    /// The lowest-index sequential active zone marked to be finished among the zones `role` may
    /// finish (a scan of the active zones only).
    private func markedActive(_ role: ZoneRole) -> Int? {
        var found: Int?
        let roles: [ZoneRole] = GrantPolicy.sharesDataBudget(role) ? [.data, .index] : [role]
        for r in roles {
            for k in activeSequential[r.slot].keys where zones[k.index].finishRequested {
                found = min(found ?? k.index, k.index)
            }
        }
        return found
    }

    /// `finish(id)` on request: false when the zone takes no finish (full or unavailable);
    /// otherwise marks it (nothing new is granted there) and the caller waits for `mayFinish`.
    mutating func requestFinish(_ i: Int) -> Bool {
        guard zones[i].phase == .active || zones[i].phase == .empty else { return false }
        var a = zones[i]
        a.finishRequested = true
        put(i, a)
        return true
    }

    /// True when nothing holds up finishing zone `i` (no grants, no other finisher).
    func mayFinish(_ i: Int) -> Bool { zones[i].grants == 0 && !finishing.contains(i) }

    /// After `mayFinish`: claims the zone for the caller to finish; false when the finish became
    /// moot meanwhile (the zone went full or unavailable).
    mutating func startFinish(_ i: Int) -> Bool {
        guard zones[i].phase == .active || zones[i].phase == .empty else { return false }
        // The mark may have been cleared meanwhile (the zone dropped back to empty); a zone being
        // finished carries it.
        var a = zones[i]
        a.finishRequested = true
        put(i, a)
        finishing.insert(i)
        return true
    }

    /// The device finished zone `i` (or failed to: `succeeded` false, and the caller resyncs).
    mutating func finished(_ i: Int, succeeded: Bool, early: Bool) {
        finishing.remove(i)
        var a = zones[i]
        a.finishRequested = false
        if succeeded {
            a.unusable = a.capacity - a.written - a.reserved
            a.phase = .full
            counters.zonesFinished += 1
            if early && a.unusable.bytes > 0 { counters.zonesFinishedEarly += 1 }
        }
        put(i, a)
    }

    // MARK: Resets

    /// Claims zone `i` for a reset when it holds no live data and no grants (marking it); false
    /// (nothing done) otherwise.
    mutating func startReset(_ i: Int) -> Bool {
        let z = zones[i]
        guard z.live.bytes == 0, z.grants == 0, z.reserved.bytes == 0, z.phase != .unavailable, !z.finishRequested,
              !finishing.contains(i) else { return false }
        var a = z
        a.finishRequested = true
        put(i, a)
        resetting.insert(i)
        return true
    }

    /// The device reset zone `i` (or failed to, and the caller resyncs). Afterwards the zone is
    /// free for any role (a superblock zone stays one).
    mutating func resetDone(_ i: Int, succeeded: Bool) {
        var a = zones[i]
        a.finishRequested = false
        resetting.remove(i)
        if succeeded {
            a = ZoneAccount(id: a.id, start: a.start, capacity: a.capacity, isConventional: a.isConventional,
                            role: a.role == .superblock ? .superblock : .free, phase: .empty)
            counters.zonesReset += 1
        }
        put(i, a)
    }

    // MARK: Writes and completions

    /// Counts `total` bytes of zone `i`'s reservation as submitted.
    mutating func startFlight(_ i: Int, _ total: ByteCount) {
        var a = zones[i]
        precondition(a.inFlight + total <= a.reserved, "\(a.id): submitting \(total) beyond its grants")
        a.inFlight = a.inFlight + total
        put(i, a)
    }

    /// A batch of `total` bytes came back: it leaves flight, and the bytes of `landed` pieces are
    /// written. True when the zone became full (waiters for a finish may go on).
    mutating func landed(_ i: Int, total: ByteCount, _ landed: [ByteCount], viaAppend: Bool, now: UInt64) -> Bool {
        var a = zones[i]
        a.inFlight = a.inFlight - total
        put(i, a)
        var full = false
        for n in landed { full = wrote(i, n, viaAppend: viaAppend, now: now) || full }
        return full
    }

    /// Takes `n` bytes of a grant in conventional zone `i` without writing them; returns where.
    mutating func claim(_ i: Int, _ n: ByteCount, now: UInt64) -> DeviceOffset {
        let at = zones[i].writePointer
        _ = wrote(i, n, viaAppend: false, now: now)
        counters.bytesAppended -= n.bytes
        return at
    }

    /// `n` reserved bytes of zone `i` are written. True when that made the zone full.
    private mutating func wrote(_ i: Int, _ n: ByteCount, viaAppend: Bool, now: UInt64) -> Bool {
        var a = zones[i]
        precondition(a.reserved >= n, "\(a.id): wrote \(n) beyond its grants")
        a.reserved = a.reserved - n
        a.written = a.written + n
        a.live = a.live + n
        a.lastWriteNanoseconds = now
        var full = false
        if a.written == a.capacity && !a.isConventional {
            a.phase = .full  // the device made it full at capacity
            // A finish someone asked for is moot now; left set, it would keep the zone from ever
            // being reset (startReset skips zones with a finish pending).
            if !finishing.contains(i) { a.finishRequested = false }
            counters.zonesFinished += 1
            full = true
        }
        put(i, a)
        counters.bytesAppended += n.bytes
        if viaAppend { counters.deviceAppends += 1 }
        return full
    }

    /// Ends a grant: whatever was not written goes back to the zone's free space.
    mutating func complete(_ grant: ZoneGrant, written: ByteCount) {
        let i = grant.zone.int
        var a = zones[i]
        precondition(a.grants > 0, "\(grant.zone): completing a grant it does not have")
        let unused = min(grant.length > written ? grant.length - written : .zero, a.reserved)
        a.reserved = a.reserved - unused
        if a.phase == .full { a.unusable = a.unusable + unused }
        a.grants -= 1
        if a.phase == .active, a.written.bytes == 0, a.reserved.bytes == 0, a.grants == 0 {
            a.phase = .empty  // nothing landed: the zone never became active on the device
            if !finishing.contains(i) { a.finishRequested = false }  // nothing to finish
        }
        if a.phase == .active, !a.isConventional, a.written + a.unusable == a.capacity, a.reserved.bytes == 0 {
            a.phase = .full
            if !finishing.contains(i) { a.finishRequested = false }
        }
        put(i, a)
    }

    /// After a device error, believe the device: its write pointer and condition (`z`).
    mutating func resync(_ i: Int, _ z: Zone) {
        var a = zones[i]
        switch z.condition {
        case .readOnly, .offline:
            a.phase = .unavailable
            if !finishing.contains(i) { a.finishRequested = false }  // it takes nothing more anyway
        case .full:
            // Full behind our back: what is not written now never will be. Reserved bytes
            // turn unusable as their grants complete. A finish someone asked for is moot.
            a.phase = .full
            a.unusable = a.capacity - a.written - a.reserved
            if !finishing.contains(i) { a.finishRequested = false }
        default:
            // Appends still in flight may already have moved the device's pointer: only what
            // is beyond them was taken without our knowing.
            let devWritten = z.writePointer - z.start
            if devWritten > a.written + a.inFlight {
                // The device took bytes we did not count (a failed write that landed partly): garbage.
                let extra = devWritten - a.written - a.inFlight
                a.written = devWritten
                a.garbage = a.garbage + extra
                a.reserved = a.reserved - min(a.reserved - a.inFlight, extra)
            }
        }
        put(i, a)
    }

    // MARK: Roles, garbage, mount

    /// Gives zone `i` a role. Only for zones that hold nothing (or already have it).
    mutating func assign(_ i: Int, role: ZoneRole) {
        precondition(zones[i].phase == .empty || zones[i].role == role, "reassigning \(zones[i].id) that holds data")
        var a = zones[i]
        a.role = role
        put(i, a)
    }

    /// Written bytes of zone `i` that nothing references any more become garbage.
    mutating func discard(_ i: Int, _ bytes: ByteCount) {
        var a = zones[i]
        precondition(a.live >= bytes, "\(a.id): discarding more than its live bytes")
        a.live = a.live - bytes
        a.garbage = a.garbage + bytes
        put(i, a)
    }

    /// Every written byte of zone `i` becomes garbage.
    mutating func discardAll(_ i: Int) {
        var a = zones[i]
        a.garbage = a.garbage + a.live
        a.live = .zero
        put(i, a)
    }

    /// Mount: what the file system knows about zone `i` (see `ZoneAllocator.adopt`).
    mutating func adopt(_ i: Int, role: ZoneRole, live: ByteCount, written: ByteCount?) {
        var a = zones[i]
        a.role = role
        if a.isConventional, let written {
            a.written = written
            a.phase = written.bytes > 0 ? .active : .empty
        }
        a.live = min(live, a.written)
        a.garbage = a.written - a.live
        put(i, a)
    }

    // MARK: Checking

    #if DEBUG
    /// Tests only: takes zone `i` out of the empty sets without touching its account, so a test
    /// can show the check catches an order out of step with the accounts.
    mutating func desyncForTesting(_ i: Int) {
        for r in ZoneRole.allCases { for kind in 0..<2 { empty[r.slot][kind].remove(i) } }
    }
    #endif

    /// The first broken invariant among `range` of the zones and of the policy as a whole (the
    /// orders' own shape and every entry of the active orders; membership in the orders for the
    /// zones in `range`; with every zone in `range`, also the orders' sizes and the sums).
    func problem(_ range: Range<Int>) -> String? {
        for i in range {
            if let p = zoneProblem(i) { return p }
        }
        let limit = maxActiveZones
        if limit > 0, activeCount(nil) > limit { return "\(activeCount(nil)) active zones exceed the device limit \(limit)" }
        if !finishing.isDisjoint(with: resetting) { return "zones \(finishing.intersection(resetting).sorted()) are being finished and reset at once" }
        let full = range == zones.indices
        if let p = ordersProblem(full ? nil : range) { return p }
        if full { return sumsProblem() }
        return nil
    }

    private func zoneProblem(_ i: Int) -> String? {
        let z = zones[i]
        if let p = z.problem() { return p }
        // A finish or reset mark belongs to a zone still taking part in one: left on a zone
        // that went empty, full or unavailable, it would keep the zone from ever being
        // granted, set aside or reset (issue 14 item 2).
        if z.finishRequested, z.phase != .active, !finishing.contains(i), !resetting.contains(i) {
            return "\(z.id): finish requested on a zone that is \(z.phase.rawValue) and being neither finished nor reset"
        }
        if finishing.contains(i) || resetting.contains(i), !z.finishRequested {
            return "\(z.id): being finished or reset without its mark"
        }
        // The orders agree with the account, both ways. (An entry of another role's active order
        // is caught by `ordersProblem`, which checks every entry of those small orders.)
        let key = FreeKey(free: z.free.bytes, index: i)
        if usable[z.role.slot].contains(key) != GrantPolicy.isUsable(z) {
            return "\(z.id): the usable order of \(z.role.rawValue) zones disagrees with its account \(z)"
        }
        if activeSequential[z.role.slot].contains(key) != (z.phase == .active && !z.isConventional) {
            return "\(z.id): the active order of \(z.role.rawValue) zones disagrees with its account \(z)"
        }
        if deadData.contains(i) != GrantPolicy.isDeadData(z) {
            return "\(z.id): the dead data zones disagree with its account \(z)"
        }
        if victims.contains(i) != GrantPolicy.isReclaimVictim(z) {
            return "\(z.id): the reclaim victims disagree with its account \(z)"
        }
        for r in ZoneRole.allCases {
            for kind in 0..<2 where empty[r.slot][kind].contains(i) != (r == z.role && z.phase == .empty && (kind == 0) == z.isConventional) {
                return "\(z.id): the empty \(r.rawValue) zones disagree with its account \(z)"
            }
        }
        return nil
    }

    /// Each order well-formed, each entry of the active orders matching its zone's account; the
    /// empty-zone bitsets whole, or only the words of `window` (a debug check's window).
    private func ordersProblem(_ window: Range<Int>?) -> String? {
        for r in ZoneRole.allCases {
            for (name, order) in [("usable", usable[r.slot]), ("active", activeSequential[r.slot])] {
                if let p = order.problem() { return "\(r.rawValue) \(name) order: \(p)" }
                for k in order.keys {
                    guard k.index >= 0, k.index < zones.count else { return "\(r.rawValue) \(name) order holds zone \(k.index) past the last" }
                    let z = zones[k.index]
                    let belongs = name == "usable" ? GrantPolicy.isUsable(z) : z.phase == .active && !z.isConventional
                    if z.role != r || !belongs || z.free.bytes != k.free {
                        return "\(r.rawValue) \(name) order holds \(z.id) with \(k.free) B free, its account says \(z)"
                    }
                }
            }
            for kind in 0..<2 {
                let set = empty[r.slot][kind]
                if let p = window.map({ set.problem(in: $0) }) ?? set.problem() { return "empty \(r.rawValue) zones: \(p)" }
            }
        }
        if let p = window.map({ deadData.problem(in: $0) }) ?? deadData.problem() { return "dead data zones: \(p)" }
        if let p = window.map({ victims.problem(in: $0) }) ?? victims.problem() { return "reclaim victims: \(p)" }
        let emptyCount = empty.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count } }
        if emptyCount + activeCount(nil) > zones.count { return "\(emptyCount) empty and \(activeCount(nil)) active zones of \(zones.count)" }
        return nil
    }

    /// With every zone checked: the orders hold nothing else and the sums match the accounts.
    private func sumsProblem() -> String? {
        let usableCount = usable.reduce(0) { $0 + $1.count }
        let expectUsable = zones.reduce(0) { $0 + (GrantPolicy.isUsable($1) ? 1 : 0) }
        if usableCount != expectUsable { return "usable orders hold \(usableCount) zones, the accounts \(expectUsable)" }
        let expectActive = zones.reduce(0) { $0 + ($1.phase == .active && !$1.isConventional ? 1 : 0) }
        if activeCount(nil) != expectActive { return "active orders hold \(activeCount(nil)) zones, the accounts \(expectActive)" }
        let emptyCount = empty.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count } }
        let expectEmpty = zones.reduce(0) { $0 + ($1.phase == .empty ? 1 : 0) }
        if emptyCount != expectEmpty { return "empty sets hold \(emptyCount) zones, the accounts \(expectEmpty)" }
        let expectDead = zones.reduce(0) { $0 + (GrantPolicy.isDeadData($1) ? 1 : 0) }
        if deadData.count != expectDead { return "dead data set holds \(deadData.count) zones, the accounts \(expectDead)" }
        let expectVictims = zones.filter(GrantPolicy.isReclaimVictim)
        let expectVictimBytes = expectVictims.reduce(ByteCount.zero) { $0 + $1.garbage + $1.unusable }
        if victims.count != expectVictims.count || victimBytes != expectVictimBytes {
            return "reclaim victims: \(victims.count) zones holding \(victimBytes.bytes) B, the accounts say \(expectVictims.count) holding \(expectVictimBytes.bytes) B"
        }
        let expectFree = zones.reduce(ByteCount.zero) { GrantPolicy.countsAsDataSpace($1) ? $0 + $1.free : $0 }
        if dataFree != expectFree { return "data free space is \(dataFree.bytes) B, the accounts say \(expectFree.bytes) B" }
        if spaceTotals != SpaceTotals(zones) { return "space totals \(spaceTotals) disagree with the accounts' \(SpaceTotals(zones))" }
        return nil
    }
}
