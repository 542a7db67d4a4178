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
// The class is thin: it holds the lock, the grant policy (GrantPolicy.swift: the accounts, the
// orders kept over them and every decision, a value with no device) and the zone writer
// (ZoneWriter.swift: sequencers and device batches), and does the waiting and the device's zone
// management between them.
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
//   successive changes) so debug builds stay usable at real zone counts; every change also checks
//   the policy's orders against the accounts (GrantPolicy.problem), so an order out of sync traps.
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
    /// The accounts and every decision made from them; only touched under `lock`.
    private var policy: GrantPolicy
    /// The device side of writes: sequencers and batches (no lock of ours held across its IO).
    private let writer: ZoneWriter

    /// Builds the accounts from the device's zone report. `roles` gives each zone's role (missing
    /// entries are `.free`); written bytes found on the device count as live until the caller says
    /// otherwise (mount reconciles them with the log).
    public init(device: any ZonedDevice, roles: [ZoneID: ZoneRole] = [:], config: AllocatorConfig = AllocatorConfig(),
                clock: any EngineClock = SystemClock()) throws(DeviceError) {
        self.device = device
        self.config = config
        self.clock = clock
        let report = try device.reportAllZones()
        policy = GrantPolicy(report: report, roles: roles, config: config, maxActiveZones: device.geometry.maxActiveZones,
                             zoneSize: device.geometry.zoneSize)
        writer = ZoneWriter(device: device, report: report, zoneAppend: config.zoneAppend)
    }

    // MARK: Reports

    public func account(_ id: ZoneID) -> ZoneAccount { lock.withLock { policy.zones[id.int] } }
    public var accounts: [ZoneAccount] { lock.withLock { policy.zones } }
    /// The zones reclaim may take (full data zones with garbage or unusable bytes and no grant
    /// out), in index order, found without a scan of the zones.
    public var reclaimVictims: [ZoneAccount] {
        lock.withLock {
            policy.victims.members.map { policy.zones[$0] }
        }
    }
    /// Garbage plus unusable bytes of `reclaimVictims`, kept as the accounts change.
    public var reclaimableBytes: ByteCount { lock.withLock { policy.victimBytes } }
    /// The active sequential zones of `role` (a handful: at most the device's active limit).
    public func activeAccounts(_ role: ZoneRole) -> [ZoneAccount] {
        lock.withLock { policy.activeZones(role).map { policy.zones[$0] } }
    }
    /// Full data zones with nothing live and no grant out, in index order, found without a scan
    /// of the zones (a durable commit resets them).
    public var deadDataZones: [ZoneID] {
        lock.withLock {
            policy.deadData.members.map { ZoneID($0) }
        }
    }
    /// Kept as the accounts change: no scan of the zones.
    public var totals: SpaceTotals { lock.withLock { policy.spaceTotals } }
    public var stats: AllocatorCounters { lock.withLock { policy.counters } }
    /// Zones currently using an active-zone resource of the device.
    public var activeZoneCount: Int { lock.withLock { policy.activeCount(nil) } }

    /// Space a new reservation could still get for `role` (free bytes of zones that can take it).
    public var reservable: ByteCount { lock.withLock { policy.reservable() } }
    /// What a reclaim reservation could get (the writers' share plus the reclaim reserve).
    public var reclaimReservable: ByteCount { lock.withLock { policy.reservable(forReclaim: true) } }

    /// First broken invariant, or nil. For tests and fsck. Checks every zone.
    public func problem() -> String? { lock.withLock { policy.problem(policy.zones.indices) } }

    /// Full checks up to this many zones; past it, a window of this many per change.
    static let fullCheckZones = 4096
    /// Zones a change checks past `fullCheckZones`: small, since a mount adopts every zone (a
    /// change each) and a window of thousands made a debug mount at 80,000 zones quadratic.
    static let windowZones = 16
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

    /// Every zone up to `fullCheckZones`; past it a rotating window (the whole device over
    /// successive changes), plus the policy's orders and counts on every change.
    private func checkAfterChange() {
        let count = policy.zones.count
        var range = 0..<count
        if count > Self.fullCheckZones {
            let start = checkCursor
            checkCursor = (checkCursor + Self.windowZones) % count
            range = start..<min(count, start + Self.windowZones)
        }
        if let p = policy.problem(range) { preconditionFailure("zone allocator invariant broken: \(p)") }
    }

    // MARK: Roles

    /// Gives a zone a role (e.g. superblock zones at format). Only for zones that hold nothing.
    public func assign(_ id: ZoneID, role: ZoneRole) {
        changing { policy.assign(id.int, role: role) }
    }

    // MARK: Reservations (seed step 3: before the range lock)

    /// Promises `bytes` of data space; fails with ENOSPC when the free space of data-capable zones,
    /// less what is already promised, is smaller.
    /// `forReclaim`: reclaim moving live data may also take the bytes held back for it.
    public func reserve(_ bytes: ByteCount, forReclaim: Bool = false) throws(DeviceError) -> SpaceReservation {
        try changing { () throws(DeviceError) -> Void in
            guard policy.reserve(bytes, forReclaim: forReclaim) else {
                throw DeviceError.noSpace(.write, "no space for \(bytes) (\(policy.reservable(forReclaim: forReclaim)) free)")
            }
        }
        return SpaceReservation(allocator: self, bytes: bytes)
    }

    fileprivate func releaseReservation(_ bytes: ByteCount) {
        guard bytes.bytes > 0 else { return }
        changing {
            policy.releaseReservation(bytes)
            lock.broadcast()
        }
    }

    // MARK: Mount and metadata support

    /// Mount: states what the file system knows about a zone. `written` is taken for conventional
    /// zones (no write pointer: the end of the last live extent); sequential zones keep the
    /// device's write pointer. Everything written but not live is garbage.
    public func adopt(_ id: ZoneID, role: ZoneRole, live: ByteCount, written: ByteCount? = nil) {
        changing {
            policy.adopt(id.int, role: role, live: live, written: written)
            lock.broadcast()
        }
    }

    /// Sets an empty free zone aside for `role` (the metadata log's next zone) without activating it.
    public func setAsideEmptyZone(for role: ZoneRole) -> ZoneID? {
        changing { policy.setAsideEmptyZone(for: role) }
    }

    /// Resets `id` if it holds no live data and no grants; false (and nothing done) otherwise.
    /// Afterwards the zone is free for any role (a superblock zone stays one).
    @discardableResult
    public func resetIfUnused(_ id: ZoneID) throws(DeviceError) -> Bool {
        guard changing({ policy.startReset(id.int) }) else { return false }
        let failure = writer.reset(id)
        changing {
            policy.resetDone(id.int, succeeded: failure == nil)
            lock.broadcast()
        }
        if let failure { try resync(id); throw failure }
        return true
    }

    /// Makes every written byte of `id` garbage (a metadata zone a newer checkpoint replaced).
    public func discardAll(_ id: ZoneID) {
        changing { policy.discardAll(id.int) }
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
        return changing { policy.decide(bytes, role, hint) }
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
                switch policy.decide(bytes, role, hint, useReserve: useReserve) {
                case .granted(let g):
                    if let t = waitStart { policy.countFinishWaitEnded(nanoseconds: clock.nowNanoseconds - t) }
                    return .done(g)
                case .noSpace:
                    return .fail(DeviceError.noSpace(.write, "no zone has room for \(role.rawValue)"))
                case .needsZoneFinish:
                    if nowait { return .fail(DeviceError.wouldBlock(.write, "a zone finish is needed first")) }
                    if waitStart == nil {
                        waitStart = clock.nowNanoseconds
                        policy.countFinishWaitStarted()
                    }
                    switch policy.claimFinish(role) {
                    case .finish(let victim): return .finish(victim)
                    case .wait:
                        lock.wait()
                        return .waited
                    }
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

    /// Finishes a zone this thread claimed (outside the lock), then accounts for it.
    private func finishClaimed(_ id: ZoneID, early: Bool) throws(DeviceError) {
        let failure = writer.finish(id)
        changing {
            policy.finished(id.int, succeeded: failure == nil, early: early)
            lock.broadcast()
        }
        if let failure { try resync(id); throw failure }
    }

    /// Finishes a zone on request (e.g. metadata roll-over). Waits for its grants to complete.
    public func finish(_ id: ZoneID) throws(DeviceError) {
        let go: Bool = changing {
            guard policy.requestFinish(id.int) else { return false }
            while !policy.mayFinish(id.int) { lock.wait() }
            return policy.startFinish(id.int)
        }
        if go { try finishClaimed(id, early: true) }
    }

    // MARK: Writing

    /// True when sequential zones are written with the device's zone append: the device has one
    /// and the config does not force writes at the write pointer.
    public var usesZoneAppend: Bool { writer.usesZoneAppend }

    /// The largest piece `submit` takes for `zone`: the append limit when the zone is appended to,
    /// the max write otherwise.
    public func pieceLimit(_ zone: ZoneID) -> ByteCount { writer.pieceLimit(zone) }

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
        writer.submit(grant, pieces, nowait: nowait, ledger: self)
    }

    /// Takes `n` bytes of a grant in a conventional zone without writing them (preallocation:
    /// the file maps them as prealloc, which reads as zeros). Sequential zones cannot do this:
    /// their space exists only once written.
    public func claim(_ grant: ZoneGrant, _ n: ByteCount) -> DeviceOffset {
        precondition(writer.isConventional(grant.zone), "claim without writing in sequential \(grant.zone)")
        return changing { policy.claim(grant.zone.int, n, now: clock.nowNanoseconds) }
    }

    /// True when the zone takes writes anywhere (no write pointer).
    public func isConventional(_ id: ZoneID) -> Bool { writer.isConventional(id) }

    /// Ends a grant: whatever was not written goes back to the zone's free space.
    public func complete(_ grant: ZoneGrant, written: ByteCount) {
        changing {
            policy.complete(grant, written: written)
            lock.broadcast()
        }
    }

    /// Written bytes of `zone` that nothing references any more become garbage.
    public func discard(_ zone: ZoneID, _ bytes: ByteCount) {
        changing { policy.discard(zone.int, bytes) }
    }

    /// Resets a zone that holds no live data, making all its capacity free again (a caller's
    /// promise: resetting live data is a bug, not an error).
    public func reset(_ id: ZoneID) throws(DeviceError) {
        let done = try resetIfUnused(id)
        precondition(done, "reset of \(id) that holds live data or grants")
    }

    /// After a device error, believe the device: its write pointer and condition.
    private func resync(_ id: ZoneID) throws(DeviceError) {
        guard let z = try writer.report(id) else { return }
        changing {
            policy.resync(id.int, z)
            lock.broadcast()
        }
    }
}

extension ZoneAllocator: ZoneLedger {
    func writePointer(_ zone: ZoneID) -> DeviceOffset { changing { policy.zones[zone.int].writePointer } }

    func startFlight(_ zone: ZoneID, _ total: ByteCount) { changing { policy.startFlight(zone.int, total) } }

    func landed(_ zone: ZoneID, total: ByteCount, _ landed: [ByteCount], viaAppend: Bool) {
        changing {
            if policy.landed(zone.int, total: total, landed, viaAppend: viaAppend, now: clock.nowNanoseconds) { lock.broadcast() }
        }
    }

    /// After a failed write (or a write outside the allocator) the caller already has what it
    /// needs; a failure to re-read the zone is the allocator's own to report (counted, and sent
    /// to the mount's log).
    func resyncAfterFailure(_ zone: ZoneID) {
        do {
            try resync(zone)
        } catch {
            changing { policy.countResyncFailure() }
            errorSink?("zone \(zone.int): re-reading the zone's write pointer failed: \(error); its account may lag the device until the next mount")
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
