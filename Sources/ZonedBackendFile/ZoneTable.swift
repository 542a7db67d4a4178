// The host-managed zone state machine of the emulated device: pure state, no IO.
//
// Invariants:
// - `openCount`/`activeCount` always equal the number of open/active zones in `states`; every
//   condition change goes through `set(_:_:_:)`, the only place that touches the counters.
// - Conventional zones hold `.notWritePointer` (or an injected `.readOnly`/`.offline`) and a write
//   pointer equal to their start. A sequential zone's write pointer lies in [start, start +
//   capacity]; empty ⇔ wp == start (for writable zones), full ⇒ wp == start + capacity, and a
//   closed zone has wp > start (closing a zone with nothing written empties it).
// - Limits (0 = none): openCount <= maxOpenZones and activeCount <= maxActiveZones after every
//   transition. Opening one more zone first closes the implicitly open zone opened earliest; with
//   every open zone explicitly open it fails with ETOOMANYREFS. Activating one more zone past the
//   active limit fails with EOVERFLOW. The active check comes first (as null_blk does).
// - Every refusal is a `DeviceError` built with ZonedCore's helpers, with the errno a Linux zoned
//   block device gives: EINVAL for zone management on a conventional zone, EIO for writes off the
//   write pointer, past capacity, or into full/read-only/offline zones.
// - `changed` lists, once each, the zones `set` touched since the last `takeChanged()` (the device
//   persists only those); `implicitlyOpen` holds exactly the implicitly open zones, so freeing an
//   open slot looks at the open zones, never at every zone.
// - A method that throws leaves the table unchanged, except that an implicit close made to free an
//   open slot stays (the device did close it).

import ZonedCore

/// A zone's mutable state: what the persisted zone table stores per zone.
struct ZoneState: Sendable, Equatable {
    var condition: ZoneCondition
    var writePointer: DeviceOffset
}

struct ZoneTable: Sendable {
    let geometry: DeviceGeometry
    private(set) var states: [ZoneState]
    private(set) var openCount = 0
    private(set) var activeCount = 0
    /// When each zone last became implicitly open; the smallest is closed first to free a slot.
    private var openedAt: [UInt64]
    private var clock: UInt64 = 0
    /// The implicitly open zones, in no order (at most the open limit when there is one).
    private var implicitlyOpen: [Int] = []
    private var isChanged: [Bool]
    private(set) var changed: [Int] = []

    /// A fresh device: conventional zones first, every sequential zone empty.
    init(geometry: DeviceGeometry) {
        let states = (0..<geometry.zoneCount).map { i in
            ZoneState(condition: geometry.isConventional(ZoneID(i)) ? .notWritePointer : .empty,
                      writePointer: geometry.zoneStart(ZoneID(i)))
        }
        self.init(geometry: geometry, validStates: states)
    }

    /// States already checked with `ZoneState.problem(zone:geometry:)`.
    init(geometry: DeviceGeometry, validStates: [ZoneState]) {
        self.geometry = geometry
        self.states = validStates
        self.openedAt = Array(repeating: 0, count: validStates.count)
        self.isChanged = Array(repeating: false, count: validStates.count)
        for (i, s) in validStates.enumerated() {
            if s.condition.isOpen { openCount += 1 }
            if s.condition.isActive { activeCount += 1 }
            if s.condition == .implicitlyOpen { clock += 1; openedAt[i] = clock; implicitlyOpen.append(i) }
        }
    }

    /// The zones changed since the last call, each once; starts a new list.
    mutating func takeChanged() -> [Int] {
        let out = changed
        for z in out { isChanged[z] = false }
        changed.removeAll(keepingCapacity: true)
        return out
    }

    subscript(_ id: ZoneID) -> ZoneState { states[id.int] }

    func report(_ id: ZoneID) -> Zone {
        let s = states[id.int]
        return Zone(id: id, type: geometry.isConventional(id) ? .conventional : .sequentialWriteRequired,
                    condition: s.condition, start: geometry.zoneStart(id), size: geometry.zoneSize,
                    capacity: geometry.isConventional(id) ? geometry.zoneSize : geometry.zoneCapacity,
                    writePointer: s.writePointer)
    }

    func capacityEnd(_ id: ZoneID) -> DeviceOffset { geometry.zoneStart(id) + geometry.zoneCapacity }

    /// The limits as they stand, for messages.
    var usage: String {
        "open \(openCount)/\(geometry.maxOpenZones == 0 ? "∞" : String(geometry.maxOpenZones)), " +
            "active \(activeCount)/\(geometry.maxActiveZones == 0 ? "∞" : String(geometry.maxActiveZones))"
    }

    // MARK: The one place a condition changes

    /// Sets zone `id` to `condition` at `wp`, keeping the open/active counters exact.
    mutating func set(_ id: ZoneID, _ condition: ZoneCondition, _ wp: DeviceOffset) {
        let old = states[id.int].condition
        if old.isOpen { openCount -= 1 }
        if old.isActive { activeCount -= 1 }
        if condition.isOpen { openCount += 1 }
        if condition.isActive { activeCount += 1 }
        if condition == .implicitlyOpen, old != .implicitlyOpen {
            clock += 1
            openedAt[id.int] = clock
            implicitlyOpen.append(id.int)
        } else if old == .implicitlyOpen, condition != .implicitlyOpen, let at = implicitlyOpen.firstIndex(of: id.int) {
            implicitlyOpen.swapAt(at, implicitlyOpen.count - 1)
            implicitlyOpen.removeLast()
        }
        states[id.int] = ZoneState(condition: condition, writePointer: wp)
        if !isChanged[id.int] {
            isChanged[id.int] = true
            changed.append(id.int)
        }
        #if DEBUG
        // Every zone on small devices (the tests' sizes); a check per change at 80,000 zones would
        // make debug runs quadratic.
        if states.count <= 1_024, let problem = invariantProblem() { preconditionFailure(problem) }
        #endif
    }

    /// What breaks the header's invariants, or nil: counters, the implicitly open list, the
    /// changed list. O(zones).
    func invariantProblem() -> String? {
        let open = states.filter { $0.condition.isOpen }.count
        let active = states.filter { $0.condition.isActive }.count
        if open != openCount || active != activeCount {
            return "zone table counts open \(openCount) active \(activeCount), states say \(open) and \(active)"
        }
        let implicit = states.indices.filter { states[$0].condition == .implicitlyOpen }
        if implicit != implicitlyOpen.sorted() { return "implicitly open list \(implicitlyOpen.sorted()), states say \(implicit)" }
        if changed.count != Set(changed).count || changed.contains(where: { !isChanged[$0] })
            || isChanged.filter({ $0 }).count != changed.count {
            return "changed list \(changed) disagrees with its flags"
        }
        return nil
    }

    /// Writes back a state saved earlier (rollback of a failed IO, power cut outcome).
    mutating func restore(_ id: ZoneID, _ state: ZoneState) { set(id, state.condition, state.writePointer) }

    // MARK: Resources

    /// Makes room for zone `id` to become open, and active too when `activating`.
    private mutating func ensureResources(for id: ZoneID, activating: Bool, _ op: DeviceOperation) throws(DeviceError) {
        let g = geometry
        if activating, g.maxActiveZones > 0, activeCount >= g.maxActiveZones {
            throw .tooManyActive(op, "activating \(id) would exceed max active zones (\(usage))")
        }
        guard g.maxOpenZones > 0, openCount >= g.maxOpenZones else { return }
        guard let victim = oldestImplicitlyOpen(excluding: id) else {
            throw .tooManyOpen(op, "opening \(id) would exceed max open zones and every open zone is explicitly open (\(usage))")
        }
        closeOpenZone(victim)
    }

    private func oldestImplicitlyOpen(excluding id: ZoneID) -> ZoneID? {
        var best: Int?
        for i in implicitlyOpen where i != id.int {
            if best == nil || openedAt[i] < openedAt[best!] { best = i }
        }
        return best.map { ZoneID($0) }
    }

    /// open → closed, or → empty when nothing was written (an empty zone is not active).
    private mutating func closeOpenZone(_ id: ZoneID) {
        let s = states[id.int]
        set(id, s.writePointer == geometry.zoneStart(id) ? .empty : .closed, s.writePointer)
    }

    /// empty/closed → implicitly open; open zones stay as they are.
    private mutating func openImplicitly(_ id: ZoneID, _ op: DeviceOperation) throws(DeviceError) {
        let s = states[id.int]
        switch s.condition {
        case .empty: try ensureResources(for: id, activating: true, op)
        case .closed: try ensureResources(for: id, activating: false, op)
        default: return
        }
        set(id, .implicitlyOpen, s.writePointer)
    }

    // MARK: Writes

    /// Admits a write of `length` bytes at `offset` into zone `id` (already range-checked) and
    /// moves the write pointer past it. Returns the state before, for rollback.
    mutating func admitWrite(_ id: ZoneID, at offset: DeviceOffset, length: ByteCount, _ op: DeviceOperation) throws(DeviceError) -> ZoneState {
        let s = states[id.int]
        if geometry.isConventional(id) {
            guard s.condition == .notWritePointer else {
                throw .io(op, "write into \(id), which is \(s.condition.rawValue)")
            }
            return s
        }
        try checkWritable(id, s, op)
        guard offset == s.writePointer else {
            throw .io(op, "write of \(length.bytes) B at \(offset) is not at the write pointer \(s.writePointer) of \(id)")
        }
        try checkCapacity(id, s, length, op)
        try openImplicitly(id, op)
        advance(id, by: length)
        return s
    }

    /// Admits a zone append of `length` bytes; returns where it lands and the state before.
    mutating func admitAppend(_ id: ZoneID, length: ByteCount) throws(DeviceError) -> (at: DeviceOffset, before: ZoneState) {
        guard !geometry.isConventional(id) else { throw .invalid(.append, "zone append to conventional \(id)") }
        let s = states[id.int]
        try checkWritable(id, s, .append)
        try checkCapacity(id, s, length, .append)
        try openImplicitly(id, .append)
        advance(id, by: length)
        return (s.writePointer, s)
    }

    private func checkWritable(_ id: ZoneID, _ s: ZoneState, _ op: DeviceOperation) throws(DeviceError) {
        switch s.condition {
        case .full, .readOnly, .offline: throw .io(op, "write into \(id), which is \(s.condition.rawValue)")
        default: return
        }
    }

    private func checkCapacity(_ id: ZoneID, _ s: ZoneState, _ length: ByteCount, _ op: DeviceOperation) throws(DeviceError) {
        guard s.writePointer + length <= capacityEnd(id) else {
            throw .io(op, "write of \(length.bytes) B at \(s.writePointer) goes past the capacity end \(capacityEnd(id)) of \(id)")
        }
    }

    private mutating func advance(_ id: ZoneID, by length: ByteCount) {
        let s = states[id.int]
        let wp = s.writePointer + length
        set(id, wp == capacityEnd(id) ? .full : s.condition, wp)
    }

    // MARK: Reads

    /// Where the readable bytes of zone `id` end: past it a sequential zone reads as zeros.
    func readableEnd(_ id: ZoneID) throws(DeviceError) -> DeviceOffset {
        let s = states[id.int]
        guard s.condition.isReadable else { throw .io(.read, "read of \(id), which is offline") }
        if geometry.isConventional(id) { return geometry.zoneStart(id) + geometry.zoneSize }
        return s.writePointer
    }

    // MARK: Zone management

    private func checkManageable(_ id: ZoneID, _ op: DeviceOperation) throws(DeviceError) {
        guard !geometry.isConventional(id) else { throw .invalid(op, "\(op.rawValue) of conventional \(id)") }
        let c = states[id.int].condition
        guard c != .readOnly, c != .offline else { throw .io(op, "\(op.rawValue) of \(id), which is \(c.rawValue)") }
    }

    mutating func reset(_ id: ZoneID) throws(DeviceError) {
        try checkManageable(id, .reset)
        set(id, .empty, geometry.zoneStart(id))
    }

    mutating func open(_ id: ZoneID) throws(DeviceError) {
        try checkManageable(id, .openZone)
        let s = states[id.int]
        switch s.condition {
        case .explicitlyOpen: return
        case .implicitlyOpen: break
        case .empty: try ensureResources(for: id, activating: true, .openZone)
        case .closed: try ensureResources(for: id, activating: false, .openZone)
        default: throw .io(.openZone, "open of \(id), which is \(s.condition.rawValue)")
        }
        set(id, .explicitlyOpen, s.writePointer)
    }

    mutating func close(_ id: ZoneID) throws(DeviceError) {
        try checkManageable(id, .closeZone)
        if states[id.int].condition.isOpen { closeOpenZone(id) }
    }

    /// Finishing an empty zone is allowed; like null_blk it needs the resources to open it for a
    /// moment (EOVERFLOW / ETOOMANYREFS when none can be had).
    mutating func finish(_ id: ZoneID) throws(DeviceError) {
        try checkManageable(id, .finish)
        switch states[id.int].condition {
        case .full: return
        case .empty: try ensureResources(for: id, activating: true, .finish)
        default: break
        }
        set(id, .full, capacityEnd(id))
    }

    /// Fault injection: the zone turns read-only or offline where it stands.
    mutating func inject(_ id: ZoneID, _ condition: ZoneCondition) {
        precondition(condition == .readOnly || condition == .offline, "only read-only and offline can be injected")
        set(id, condition, states[id.int].writePointer)
    }

    /// What a power cycle does: open zones come back closed (empty when nothing was written).
    mutating func powerCycle() {
        for i in states.indices where states[i].condition.isOpen { closeOpenZone(ZoneID(i)) }
    }
}
