// The zone allocator: zones as allocation groups, the device's active-zone budget, and the wait
// for a zone finish when that budget is spent (the seed's wait on BTRFS_FS_NEED_ZONE_FINISH).
//
// How space flows:
//   reserve(bytes)            before the writer locks its file range (seed step 3): promises space
//   grant(bytes, role, hint)  picks a zone and promises `length <= bytes` of its capacity; the
//                             grant may be shorter than asked at the end of a zone
//   submit(grant, pieces)     writes device-sized pieces into the grant's zone as one batch: with
//                             zone append all in flight at once, the device deciding where each
//                             lands; otherwise at the write pointer, behind the zone's sequencer
//   append(grant, piece)      a batch of one
//   complete(grant)           gives back whatever of the grant was not written
//   discard(zone, bytes)      written bytes no longer referenced become garbage
//
// Invariants:
// - All zone accounts change under `lock`; device zone-management calls (finish) are made outside
//   it, with the zone marked `finishRequested` so nothing new is granted in it meanwhile. The mark
//   is cleared whenever the finish becomes moot (the zone went back to empty, or full or
//   unavailable behind our back): left set, it would keep the zone from ever being granted, set
//   aside or reset.
// - Errors the allocator handles itself (a failed resync after a failed write) are counted and
//   reported to `errorSink` (the mount's log), never dropped.
// - Active zones of each role stay within the budget: data zones use at most
//   maxActive - reservedActiveZones (so metadata and reclaim can always activate a zone), every
//   role together at most maxActive. Conventional zones do not count (the device has no limit on them).
// - With zone append the allocator reserves bytes in a zone, the device picks the offsets: the
//   pieces submitted against a grant never exceed it, so everything in flight fits below the
//   zone's capacity and lands inside the zone. `written` counts completed bytes only; the device's
//   pointer may be ahead of it by the zone's `inFlight` bytes.
// - A zone is finished only when it has no outstanding grants; a caller must complete its grant
//   before asking for another, or a finish could wait on itself.
// - Checked, not just written: `problemLocked()` holds every invariant above that the accounts
//   can show, and in debug builds it runs at the end of every locked section that changes them
//   (`changing`), so a broken account traps at the change that broke it, not later. Past
//   `fullCheckZones` zones each change checks a rotating window of zones (the whole device over
//   successive changes) so debug builds stay usable at real zone counts.
// - Decisions depend only on the accounts, the request and the clock given at init: no Dictionary
//   or Set order reaches a choice (ties break on the lowest zone index).

import ZonedCore

public struct AllocatorConfig: Sendable {
    /// Active zones data may not use, kept for metadata and reclaim.
    public var reservedActiveZones: Int = 2
    /// Empty zones data may not take, kept for the metadata log to roll over into (0 when the
    /// engine runs without a file system).
    public var reservedEmptyZones: Int = 0
    /// Empty zones only reclaim may take (to move live data out of a victim); 0 without reclaim.
    public var reclaimReserveZones: Int = 0
    /// Write sequential zones with the device's zone append when it has one; false forces writes
    /// at the write pointer (to compare the two, or for a device whose append is slow).
    public var zoneAppend = true
    public init(reservedActiveZones: Int = 2, reservedEmptyZones: Int = 0, reclaimReserveZones: Int = 0,
                zoneAppend: Bool = true) {
        self.reservedActiveZones = reservedActiveZones
        self.reservedEmptyZones = reservedEmptyZones
        self.reclaimReserveZones = reclaimReserveZones
        self.zoneAppend = zoneAppend
    }
}

/// Promised capacity in one zone. `length` may be less than what was asked (end of zone).
public struct ZoneGrant: Sendable, Hashable {
    public let zone: ZoneID
    public let length: ByteCount
    public let serial: UInt64
}

/// Counters for monitoring. Times are from the allocator's clock.
public struct AllocatorCounters: Sendable, Equatable {
    public var grants: UInt64 = 0
    public var shortGrants: UInt64 = 0
    public var zoneFinishWaits: UInt64 = 0
    public var zoneFinishWaitNanoseconds: UInt64 = 0
    public var zonesFinished: UInt64 = 0
    public var zonesFinishedEarly: UInt64 = 0
    public var zonesReset: UInt64 = 0
    public var bytesAppended: UInt64 = 0
    public var deviceAppends: UInt64 = 0
    /// Zone reports that failed while the allocator re-read a zone after a failed write (the
    /// zone's account may then lag the device until the next write or mount resyncs it).
    public var resyncFailures: UInt64 = 0
}

public final class ZoneAllocator: @unchecked Sendable {
    public let device: any ZonedDevice
    public let config: AllocatorConfig
    private let clock: any EngineClock
    private let lock = ConditionLock(rank: .allocator)
    /// Gets a line for every error the allocator handles without failing a caller (set once,
    /// before the first IO: the file system points it at the mount's log).
    public var errorSink: (@Sendable (String) -> Void)?
    private var zones: [ZoneAccount]
    private var outstandingReservation = ByteCount.zero
    private var nextSerial: UInt64 = 1
    private var counters = AllocatorCounters()
    /// One sequencer per zone: writes at the write pointer are issued one at a time, in order.
    private let sequencers: [ConditionLock]
    /// Immutable per-zone facts, readable without the lock.
    private let conventional: [Bool]

    /// Builds the accounts from the device's zone report. `roles` gives each zone's role (missing
    /// entries are `.free`); written bytes found on the device count as live until the caller says
    /// otherwise (mount reconciles them with the log).
    public init(device: any ZonedDevice, roles: [ZoneID: ZoneRole] = [:], config: AllocatorConfig = AllocatorConfig(),
                clock: any EngineClock = SystemClock()) throws(DeviceError) {
        self.device = device
        self.config = config
        self.clock = clock
        let report = try device.reportAllZones()
        zones = report.map { z in ZoneAllocator.account(for: z, role: roles[z.id] ?? .free) }
        sequencers = report.map { _ in ConditionLock(rank: .zoneSequencer) }
        conventional = report.map { !$0.type.isSequential }
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

    // MARK: Reports

    public func account(_ id: ZoneID) -> ZoneAccount { lock.withLock { zones[id.int] } }
    public var accounts: [ZoneAccount] { lock.withLock { zones } }
    public var totals: SpaceTotals { lock.withLock { SpaceTotals(zones) } }
    public var stats: AllocatorCounters { lock.withLock { counters } }
    /// Zones currently using an active-zone resource of the device.
    public var activeZoneCount: Int { lock.withLock { activeCount(nil) } }

    /// Space a new reservation could still get for `role` (free bytes of zones that can take it).
    public var reservable: ByteCount { lock.withLock { reservableLocked() } }
    /// What a reclaim reservation could get (the writers' share plus the reclaim reserve).
    public var reclaimReservable: ByteCount { lock.withLock { reservableLocked(forReclaim: true) } }

    /// First broken invariant, or nil. For tests and fsck.
    public func problem() -> String? { lock.withLock { problemLocked(zones.indices) } }

    /// The first broken invariant among `range` of the zones and of the allocator as a whole.
    private func problemLocked(_ range: Range<Int>) -> String? {
        for i in range {
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
        }
        let limit = device.geometry.maxActiveZones
        if limit > 0, activeCount(nil) > limit { return "\(activeCount(nil)) active zones exceed the device limit \(limit)" }
        if !finishing.isDisjoint(with: resetting) { return "zones \(finishing.intersection(resetting).sorted()) are being finished and reset at once" }
        return nil
    }

    /// Full checks up to this many zones; past it, a window of this many per change.
    static let fullCheckZones = 4096
    private var checkCursor = 0

    /// A locked section that may change the accounts; debug builds check the invariants after it.
    private func changing<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        try lock.withLock { () throws(E) -> T in
            let result = try body()
            #if DEBUG
            checkAfterChange()
            #endif
            return result
        }
    }

    private func checkAfterChange() {
        var range = zones.indices
        if zones.count > Self.fullCheckZones {
            let start = checkCursor
            checkCursor = (checkCursor + Self.fullCheckZones) % zones.count
            range = start..<min(zones.count, start + Self.fullCheckZones)
        }
        if let p = problemLocked(range) { preconditionFailure("zone allocator invariant broken: \(p)") }
    }

    // MARK: Roles

    /// Gives a zone a role (e.g. superblock zones at format). Only for zones that hold nothing.
    public func assign(_ id: ZoneID, role: ZoneRole) {
        changing {
            precondition(zones[id.int].phase == .empty || zones[id.int].role == role, "reassigning \(id) that holds data")
            zones[id.int].role = role
        }
    }

    // MARK: Reservations (seed step 3: before the range lock)

    /// Promises `bytes` of data space; fails with ENOSPC when the free space of data-capable zones,
    /// less what is already promised, is smaller.
    /// `forReclaim`: reclaim moving live data may also take the bytes held back for it.
    public func reserve(_ bytes: ByteCount, forReclaim: Bool = false) throws(DeviceError) -> SpaceReservation {
        try changing { () throws(DeviceError) -> Void in
            let avail = reservableLocked(forReclaim: forReclaim)
            guard bytes <= avail else {
                throw DeviceError.noSpace(.write, "no space for \(bytes) (\(avail) free)")
            }
            outstandingReservation = outstandingReservation + bytes
        }
        return SpaceReservation(allocator: self, bytes: bytes)
    }

    fileprivate func releaseReservation(_ bytes: ByteCount) {
        guard bytes.bytes > 0 else { return }
        changing {
            outstandingReservation = outstandingReservation - min(bytes, outstandingReservation)
            lock.broadcast()
        }
    }

    private func reservableLocked(forReclaim: Bool = false) -> ByteCount {
        var free = zones.reduce(ByteCount.zero) { acc, z in
            (z.role == .data || z.role == .free) && !z.finishRequested ? acc + z.free : acc
        }
        // The zones held back for the metadata log and for reclaim are not data space: that many
        // zones' worth of free bytes stays free whichever zones they are in, so writers can never
        // use up the room reclaim moves live data into.
        let zoneBytes = zones.lazy.filter { !$0.isConventional }.map(\.capacity).min() ?? device.geometry.zoneSize
        let held = zoneBytes * UInt64(reservedEmptyZonesLeft() - (forReclaim ? config.reclaimReserveZones : 0))
        free = free > held ? free - held : .zero
        return free > outstandingReservation ? free - outstandingReservation : .zero
    }

    /// How many free empty zones data must leave alone: the configured reserve, less the empty
    /// zones already set aside for metadata.
    private func reservedEmptyZonesLeft() -> Int {
        let setAside = zones.reduce(0) { $0 + ($1.phase == .empty && $1.role == .metadata ? 1 : 0) }
        return max(0, config.reservedEmptyZones - setAside) + config.reclaimReserveZones
    }

    // MARK: Mount and metadata support

    /// Mount: states what the file system knows about a zone. `written` is taken for conventional
    /// zones (no write pointer: the end of the last live extent); sequential zones keep the
    /// device's write pointer. Everything written but not live is garbage.
    public func adopt(_ id: ZoneID, role: ZoneRole, live: ByteCount, written: ByteCount? = nil) {
        changing {
            var z = zones[id.int]
            z.role = role
            if z.isConventional, let written {
                z.written = written
                z.phase = written.bytes > 0 ? .active : .empty
            }
            z.live = min(live, z.written)
            z.garbage = z.written - z.live
            zones[id.int] = z
            lock.broadcast()
        }
    }

    /// Sets an empty free zone aside for `role` (the metadata log's next zone) without activating it.
    public func setAsideEmptyZone(for role: ZoneRole) -> ZoneID? {
        changing {
            guard let i = zones.indices.first(where: { zones[$0].phase == .empty && zones[$0].role == .free && !zones[$0].finishRequested }) else { return nil }
            zones[i].role = role
            return zones[i].id
        }
    }

    /// Resets `id` if it holds no live data and no grants; false (and nothing done) otherwise.
    /// Afterwards the zone is free for any role (a superblock zone stays one).
    @discardableResult
    public func resetIfUnused(_ id: ZoneID) throws(DeviceError) -> Bool {
        let go: Bool = changing {
            let z = zones[id.int]
            guard z.live.bytes == 0, z.grants == 0, z.reserved.bytes == 0, z.phase != .unavailable, !z.finishRequested,
                  !finishing.contains(id.int) else { return false }
            zones[id.int].finishRequested = true
            resetting.insert(id.int)
            return true
        }
        guard go else { return false }
        var failure: DeviceError?
        if !conventional[id.int] {
            do { try device.reset(id) } catch { failure = error }
        }
        changing {
            var z = zones[id.int]
            z.finishRequested = false
            resetting.remove(id.int)
            if failure == nil {
                z = ZoneAccount(id: z.id, start: z.start, capacity: z.capacity, isConventional: z.isConventional,
                                role: z.role == .superblock ? .superblock : .free, phase: .empty)
                counters.zonesReset += 1
            }
            zones[id.int] = z
            lock.broadcast()
        }
        if let failure { try resync(id); throw failure }
        return true
    }

    /// Makes every written byte of `id` garbage (a metadata zone a newer checkpoint replaced).
    public func discardAll(_ id: ZoneID) {
        changing {
            zones[id.int].garbage = zones[id.int].garbage + zones[id.int].live
            zones[id.int].live = .zero
        }
    }

    /// Believe the device about `id` (after writing it outside the allocator, e.g. a superblock).
    /// A failure to read the zone is counted and reported like any failed resync.
    public func refresh(_ id: ZoneID) { resyncAfterFailure(id) }

    // MARK: Grants

    public enum GrantOutcome: Sendable, Equatable {
        case granted(ZoneGrant)
        /// No zone can be activated and the active ones lack room: a zone must be finished first.
        case needsZoneFinish
        case noSpace
    }

    /// Tries once, never blocks.
    public func tryGrant(_ bytes: ByteCount, role: ZoneRole = .data, hint: ZoneID? = nil) -> GrantOutcome {
        precondition(bytes.bytes > 0 && bytes.isMultiple(of: device.geometry.logicalBlockSize), "grant of \(bytes) is not a block multiple")
        return changing { decide(bytes, role, hint) }
    }

    /// Grants space, waiting for a zone finish when the active budget is spent (unless `nowait`,
    /// which answers EAGAIN instead). ENOSPC when no zone has room and none can be found.
    /// `useReserve`: reclaim may take the empty zone kept for it (`AllocatorConfig.reclaimReserveZones`).
    public func grant(_ bytes: ByteCount, role: ZoneRole = .data, hint: ZoneID? = nil,
                      nowait: Bool = false, useReserve: Bool = false) throws(DeviceError) -> ZoneGrant {
        precondition(bytes.bytes > 0 && bytes.isMultiple(of: device.geometry.logicalBlockSize), "grant of \(bytes) is not a block multiple")
        var waitStart: UInt64?
        while true {
            let step: FinishStep = changing {
                switch decide(bytes, role, hint, useReserve: useReserve) {
                case .granted(let g):
                    if let t = waitStart { counters.zoneFinishWaitNanoseconds += clock.nowNanoseconds - t }
                    return .done(g)
                case .noSpace:
                    return .fail(DeviceError.noSpace(.write, "no zone has room for \(role.rawValue)"))
                case .needsZoneFinish:
                    if nowait { return .fail(DeviceError.wouldBlock(.write, "a zone finish is needed first")) }
                    if waitStart == nil {
                        waitStart = clock.nowNanoseconds
                        counters.zoneFinishWaits += 1
                    }
                    return claimFinish(role)
                }
            }
            switch step {
            case .done(let g): return g
            case .fail(let e): throw e
            case .finish(let victim): try finishClaimed(victim, early: true)
            case .waited: continue
            }
        }
    }

    private enum FinishStep {
        case done(ZoneGrant)
        case fail(DeviceError)
        case finish(ZoneID)
        case waited
    }

    /// Under the lock: picks the fullest active zone of `role` to finish. If it has no outstanding
    /// grants this thread finishes it; otherwise the thread waits for a change and retries.
    private func claimFinish(_ role: ZoneRole) -> FinishStep {
        let candidates = zones.indices.filter { zones[$0].role == role && zones[$0].phase == .active && !zones[$0].isConventional }
        if let pending = candidates.first(where: { zones[$0].finishRequested }) {
            if zones[pending].grants == 0 && !finishing.contains(pending) {
                finishing.insert(pending)
                return .finish(zones[pending].id)
            }
            lock.wait()
            return .waited
        }
        // Fullest = least free; ties on the lowest index (determinism).
        guard let victim = candidates.min(by: { (zones[$0].free, $0) < (zones[$1].free, $1) }) else {
            lock.wait()
            return .waited
        }
        zones[victim].finishRequested = true
        if zones[victim].grants == 0 {
            finishing.insert(victim)
            return .finish(zones[victim].id)
        }
        lock.wait()
        return .waited
    }

    private var finishing = Set<Int>()
    /// Zones being reset by `resetIfUnused` (marked `finishRequested` meanwhile, so nothing is
    /// granted there); kept so the invariant check can tell the mark's two uses apart.
    private var resetting = Set<Int>()

    private func finishClaimed(_ id: ZoneID, early: Bool) throws(DeviceError) {
        var failure: DeviceError?
        if !conventional[id.int] {
            do { try device.finish(id) } catch { failure = error }
        }
        changing {
            finishing.remove(id.int)
            var z = zones[id.int]
            z.finishRequested = false
            if failure == nil {
                z.unusable = z.capacity - z.written - z.reserved
                z.phase = .full
                counters.zonesFinished += 1
                if early && z.unusable.bytes > 0 { counters.zonesFinishedEarly += 1 }
            }
            zones[id.int] = z
            lock.broadcast()
        }
        if let failure { try resync(id); throw failure }
    }

    /// Finishes a zone on request (e.g. metadata roll-over). Waits for its grants to complete.
    public func finish(_ id: ZoneID) throws(DeviceError) {
        let go: Bool = changing {
            guard zones[id.int].phase == .active || zones[id.int].phase == .empty else { return false }
            zones[id.int].finishRequested = true
            while zones[id.int].grants > 0 || finishing.contains(id.int) { lock.wait() }
            guard zones[id.int].phase == .active || zones[id.int].phase == .empty else { return false }
            finishing.insert(id.int)
            return true
        }
        if go { try finishClaimed(id, early: true) }
    }

    /// The grant decision, under the lock. Order of preference:
    /// 1. the hint zone (where this write's previous extent ended), even if only part fits;
    /// 2. an idle active zone of this role (no grant in flight) where the whole request fits most
    ///    tightly — writers in different zones do not queue behind each other's IO;
    /// 3. a newly activated empty zone, if the active budget allows;
    /// 4. a busy active zone where the whole request fits (its writes are sequenced, or appended);
    /// 5. with no empty zone left at all, whatever an active zone still has (a short grant);
    /// otherwise a zone must be finished (active budget spent) or there is no space.
    private func decide(_ bytes: ByteCount, _ role: ZoneRole, _ hint: ZoneID?, useReserve: Bool = false) -> GrantOutcome {
        if let h = hint, h.int < zones.count, usable(h.int, role), zones[h.int].free.bytes > 0 {
            return .granted(issue(h.int, min(bytes, zones[h.int].free)))
        }
        // An empty zone set aside for this role (the metadata log's next zone) is activated on request.
        if let h = hint, h.int < zones.count, zones[h.int].phase == .empty, zones[h.int].role == role, role != .data,
           !zones[h.int].finishRequested, zones[h.int].isConventional || activeCount(role) < budget(role) {
            zones[h.int].phase = .active
            return .granted(issue(h.int, min(bytes, zones[h.int].free)))
        }
        let fitting = zones.indices.filter { usable($0, role) && zones[$0].free >= bytes }
        let tightest = { (c: [Int]) in c.min(by: { (self.zones[$0].free, $0) < (self.zones[$1].free, $1) }) }
        if let idle = tightest(fitting.filter { zones[$0].grants == 0 }) {
            return .granted(issue(idle, bytes))
        }
        var empties = zones.indices.filter { zones[$0].phase == .empty && (zones[$0].role == role || zones[$0].role == .free) && !zones[$0].finishRequested }
        // Data never takes the last empty zones: the metadata log needs them to roll over, and
        // reclaim needs one to move live data into (which only reclaim may take).
        if role == .data {
            let held = max(0, reservedEmptyZonesLeft() - (useReserve ? config.reclaimReserveZones : 0))
            empties = Array(empties.dropLast(min(empties.count, held)))
        }
        if let e = empties.first(where: { zones[$0].isConventional || activeCount(role) < budget(role) }) {
            zones[e].role = role
            zones[e].phase = .active
            return .granted(issue(e, min(bytes, zones[e].free)))
        }
        if let busy = tightest(fitting) { return .granted(issue(busy, bytes)) }
        if !empties.isEmpty { return .needsZoneFinish }
        let partial = zones.indices.filter { usable($0, role) && zones[$0].free.bytes > 0 }
        if let most = partial.max(by: { (zones[$0].free, -$0) < (zones[$1].free, -$1) }) {
            return .granted(issue(most, min(bytes, zones[most].free)))
        }
        return .noSpace
    }

    private func usable(_ i: Int, _ role: ZoneRole) -> Bool {
        zones[i].role == role && zones[i].phase == .active && !zones[i].finishRequested
    }

    private func issue(_ i: Int, _ length: ByteCount) -> ZoneGrant {
        // Hot-path preconditions (release builds too): a grant fits, and only in a zone that takes one.
        precondition(length.bytes > 0 && length <= zones[i].free, "\(zones[i].id): granting \(length) of \(zones[i].free) free")
        precondition(zones[i].phase == .active || zones[i].phase == .empty, "\(zones[i].id): granting in a \(zones[i].phase.rawValue) zone")
        zones[i].reserved = zones[i].reserved + length
        zones[i].grants += 1
        counters.grants += 1
        let g = ZoneGrant(zone: zones[i].id, length: length, serial: nextSerial)
        nextSerial += 1
        return g
    }

    /// Active zones that use a device resource; nil = every role.
    private func activeCount(_ role: ZoneRole?) -> Int {
        zones.reduce(0) { n, z in
            n + (z.phase == .active && !z.isConventional && (role == nil || z.role == role) ? 1 : 0)
        }
    }

    private func budget(_ role: ZoneRole) -> Int {
        let limit = device.geometry.maxActiveZones
        guard limit > 0 else { return Int.max }
        let roleLimit = role == .data ? max(1, limit - config.reservedActiveZones) : limit
        // Every role together stays within the device limit.
        return min(roleLimit, limit - (activeCount(nil) - activeCount(role)))
    }

    // MARK: Writing

    /// True when sequential zones are written with the device's zone append: the device has one
    /// and the config does not force writes at the write pointer.
    public var usesZoneAppend: Bool { config.zoneAppend && device.geometry.supportsZoneAppend }

    /// The largest piece `submit` takes for `zone`: the append limit when the zone is appended to,
    /// the max write otherwise.
    public func pieceLimit(_ zone: ZoneID) -> ByteCount {
        appends(zone) ? device.geometry.maxAppendBytes : device.geometry.maxWriteBytes
    }

    /// Whether writes into `zone` are zone appends. Per zone and fixed for the allocator's life, so
    /// a zone never mixes appends with writes at the pointer: a write at the pointer we track would
    /// miss the device's while appends are in flight.
    private func appends(_ zone: ZoneID) -> Bool { !conventional[zone.int] && usesZoneAppend }

    /// Writes one piece into the grant's zone and returns where it landed (a batch of one).
    public func append(_ grant: ZoneGrant, _ piece: UnsafeRawBufferPointer) throws(DeviceError) -> DeviceOffset {
        try submit(grant, [piece])[0].get()
    }

    /// Writes `pieces` into the grant's zone as one device batch; result i says where piece i
    /// landed or why it failed. Each piece is at most `pieceLimit(grant.zone)`; together they are at
    /// most what the caller has not yet written of its grant (so they all fit in the zone).
    ///
    /// With zone append the pieces are in flight together and the device picks each address: they
    /// may complete and land in any order, interleaved with other grants' appends to the zone, and
    /// a failed piece does not stop the others. At the write pointer the batch is issued behind the
    /// zone's sequencer at consecutive addresses, so the pieces land back to back in order, and
    /// every piece after a failed one fails too (it would miss the pointer).
    /// The caller passes the bytes that landed, whatever it does with them, to `complete`.
    /// `nowait`: when another writer holds the zone's sequencer (writes at the pointer), every
    /// piece fails with EAGAIN and nothing is sent; appends never wait for one.
    public func submit(_ grant: ZoneGrant, _ pieces: [UnsafeRawBufferPointer], nowait: Bool = false) -> [Result<DeviceOffset, DeviceError>] {
        guard !pieces.isEmpty else { return [] }
        let limit = pieceLimit(grant.zone).int
        for p in pieces {
            precondition(p.count > 0 && p.count <= limit, "piece of \(p.count) B for \(grant.zone) (limit \(limit) B)")
        }
        if appends(grant.zone) { return submitAppends(grant.zone, pieces) }
        if nowait {
            let busy = DeviceError.wouldBlock(.write, "zone \(grant.zone.int) is being written by another writer")
            return sequencers[grant.zone.int].withLockIfFree { submitAtPointerLocked(grant.zone, pieces) }
                ?? pieces.map { _ in .failure(busy) }
        }
        return sequencers[grant.zone.int].withLock { submitAtPointerLocked(grant.zone, pieces) }
    }

    private func submitAppends(_ z: ZoneID, _ pieces: [UnsafeRawBufferPointer]) -> [Result<DeviceOffset, DeviceError>] {
        let total = ByteCount(UInt64(pieces.reduce(0) { $0 + $1.count }))
        startFlight(z, total)
        let results = ZoneAllocator.ordered(device.submit(pieces.map { .append($0, zone: z) }), count: pieces.count, .append)
        let failed = changing { () -> Bool in
            zones[z.int].inFlight = zones[z.int].inFlight - total
            var failed = false
            for (p, r) in zip(pieces, results) {
                if case .success = r { wrote(z, ByteCount(p.count), viaAppend: true) } else { failed = true }
            }
            return failed
        }
        if failed { resyncAfterFailure(z) }
        return results
    }

    /// With the zone's sequencer held: it keeps every other writer of the zone out from reading
    /// the pointer until this batch is accounted.
    private func submitAtPointerLocked(_ z: ZoneID, _ pieces: [UnsafeRawBufferPointer]) -> [Result<DeviceOffset, DeviceError>] {
        let total = ByteCount(UInt64(pieces.reduce(0) { $0 + $1.count }))
        var at = changing { zones[z.int].writePointer }
        var batch: [DeviceIO] = []
        for p in pieces {
            batch.append(.write(p, at: at))
            at = at + ByteCount(p.count)
        }
        startFlight(z, total)
        var results = ZoneAllocator.ordered(device.submit(batch), count: pieces.count, .write)
        // Only the prefix before the first failure is written where we said; anything the
        // device took past it (not on a sequential zone) is not ours to count.
        if let bad = results.firstIndex(where: { if case .failure = $0 { true } else { false } }) {
            for i in (bad + 1)..<results.count {
                results[i] = .failure(.io(.write, "not written: piece \(bad) of the batch failed before it"))
            }
        }
        let failed = changing { () -> Bool in
            zones[z.int].inFlight = zones[z.int].inFlight - total
            var failed = false
            for (p, r) in zip(pieces, results) {
                if case .success = r { wrote(z, ByteCount(p.count), viaAppend: false) } else { failed = true }
            }
            return failed
        }
        if failed { resyncAfterFailure(z) }
        return results
    }

    /// After a failed write (or a write outside the allocator) the caller already has what it
    /// needs; a failure to re-read the zone is the allocator's own to report (counted, and sent
    /// to the mount's log).
    private func resyncAfterFailure(_ z: ZoneID) {
        do {
            try resync(z)
        } catch {
            changing { counters.resyncFailures += 1 }
            errorSink?("zone \(z.int): re-reading the zone's write pointer failed: \(error); its account may lag the device until the next mount")
        }
    }

    /// Counts `total` bytes of the zone's reservation as submitted.
    private func startFlight(_ z: ZoneID, _ total: ByteCount) {
        changing {
            precondition(zones[z.int].inFlight + total <= zones[z.int].reserved, "\(z): submitting \(total) beyond its grants")
            zones[z.int].inFlight = zones[z.int].inFlight + total
        }
    }

    /// Completions put back in batch order; an IO the device never completed counts as failed.
    private static func ordered(_ completions: [IOCompletion], count: Int, _ op: DeviceOperation) -> [Result<DeviceOffset, DeviceError>] {
        var out = [Result<DeviceOffset, DeviceError>](repeating: .failure(.io(op, "the device returned no completion")), count: count)
        for c in completions where c.index >= 0 && c.index < count { out[c.index] = c.result }
        return out
    }

    /// Takes `n` bytes of a grant in a conventional zone without writing them (preallocation:
    /// the file maps them as prealloc, which reads as zeros). Sequential zones cannot do this:
    /// their space exists only once written.
    public func claim(_ grant: ZoneGrant, _ n: ByteCount) -> DeviceOffset {
        precondition(conventional[grant.zone.int], "claim without writing in sequential \(grant.zone)")
        return changing {
            let at = zones[grant.zone.int].writePointer
            wrote(grant.zone, n, viaAppend: false)
            counters.bytesAppended -= n.bytes
            return at
        }
    }

    /// True when the zone takes writes anywhere (no write pointer).
    public func isConventional(_ id: ZoneID) -> Bool { conventional[id.int] }

    private func wrote(_ z: ZoneID, _ n: ByteCount, viaAppend: Bool) {
        var a = zones[z.int]
        precondition(a.reserved >= n, "\(z): wrote \(n) beyond its grants")
        a.reserved = a.reserved - n
        a.written = a.written + n
        a.live = a.live + n
        a.lastWriteNanoseconds = clock.nowNanoseconds
        if a.written == a.capacity && !a.isConventional {
            a.phase = .full  // the device made it full at capacity
            // A finish someone asked for is moot now; left set, it would keep the zone from ever
            // being reset (resetIfUnused skips zones with a finish pending).
            if !finishing.contains(z.int) { a.finishRequested = false }
            counters.zonesFinished += 1
            lock.broadcast()
        }
        zones[z.int] = a
        counters.bytesAppended += n.bytes
        if viaAppend { counters.deviceAppends += 1 }
    }

    /// Ends a grant: whatever was not written goes back to the zone's free space.
    public func complete(_ grant: ZoneGrant, written: ByteCount) {
        changing {
            var a = zones[grant.zone.int]
            precondition(a.grants > 0, "\(grant.zone): completing a grant it does not have")
            let unused = min(grant.length > written ? grant.length - written : .zero, a.reserved)
            a.reserved = a.reserved - unused
            if a.phase == .full { a.unusable = a.unusable + unused }
            a.grants -= 1
            if a.phase == .active, a.written.bytes == 0, a.reserved.bytes == 0, a.grants == 0 {
                a.phase = .empty  // nothing landed: the zone never became active on the device
                if !finishing.contains(grant.zone.int) { a.finishRequested = false }  // nothing to finish
            }
            if a.phase == .active, !a.isConventional, a.written + a.unusable == a.capacity, a.reserved.bytes == 0 {
                a.phase = .full
                if !finishing.contains(grant.zone.int) { a.finishRequested = false }
            }
            zones[grant.zone.int] = a
            lock.broadcast()
        }
    }

    /// Written bytes of `zone` that nothing references any more become garbage.
    public func discard(_ zone: ZoneID, _ bytes: ByteCount) {
        changing {
            precondition(zones[zone.int].live >= bytes, "\(zone): discarding more than its live bytes")
            zones[zone.int].live = zones[zone.int].live - bytes
            zones[zone.int].garbage = zones[zone.int].garbage + bytes
        }
    }

    /// Resets a zone that holds no live data, making all its capacity free again (a caller's
    /// promise: resetting live data is a bug, not an error).
    public func reset(_ id: ZoneID) throws(DeviceError) {
        let done = try resetIfUnused(id)
        precondition(done, "reset of \(id) that holds live data or grants")
    }

    /// After a device error, believe the device: its write pointer and condition.
    private func resync(_ id: ZoneID) throws(DeviceError) {
        guard !conventional[id.int] else { return }
        let z = try device.zone(id)
        changing {
            var a = zones[id.int]
            switch z.condition {
            case .readOnly, .offline:
                a.phase = .unavailable
                if !finishing.contains(id.int) { a.finishRequested = false }  // it takes nothing more anyway
            case .full:
                // Full behind our back: what is not written now never will be. Reserved bytes
                // turn unusable as their grants complete. A finish someone asked for is moot.
                a.phase = .full
                a.unusable = a.capacity - a.written - a.reserved
                if !finishing.contains(id.int) { a.finishRequested = false }
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
            zones[id.int] = a
            lock.broadcast()
        }
    }
}

/// Space promised before a writer locks its range; what is not used goes back when it ends.
public struct SpaceReservation: ~Copyable {
    private let allocator: ZoneAllocator
    public private(set) var bytes: ByteCount

    fileprivate init(allocator: ZoneAllocator, bytes: ByteCount) {
        self.allocator = allocator
        self.bytes = bytes
    }

    /// Takes `n` (or what is left) out of the reservation for a grant that was made.
    public mutating func use(_ n: ByteCount) {
        let take = min(n, bytes)
        bytes = bytes - take
        allocator.releaseReservation(take)
    }

    deinit { allocator.releaseReservation(bytes) }
}
