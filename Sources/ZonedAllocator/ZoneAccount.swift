// Per-zone allocation state and space accounting.
//
// Invariants (checked by `ZoneAccount.problem()`, which tests call after every step):
// - written + reserved + unusable <= capacity, and free = capacity - written - reserved - unusable
//   (zero once the zone is full or unavailable).
// - written = live + garbage: every byte below the write pointer is either referenced by a file
//   (live) or not any more (garbage, reclaimable by resetting the zone once live reaches zero).
// - reserved is capacity promised to grants whose data has not been written yet; a zone with
//   reserved > 0 is never finished by us (its writers would then fail). One the device reports
//   full behind our back keeps its reservations until their grants complete (each then turns
//   what it did not write unusable), so a full zone has reserved bytes only while it has grants.
// - A full zone's capacity is all accounted for: written + reserved + unusable = capacity.
// - inFlight <= reserved: bytes submitted to the device (zone appends, or a batch of writes at the
//   write pointer) whose completion is not accounted yet. They are still reserved, not written,
//   so the device's write pointer may be ahead of `writePointer` by up to inFlight.
// - phase .active  <=> the zone holds written or reserved bytes and is not full: it uses one of
//   the device's active-zone resources. .empty zones use none, .full and .unavailable neither.

import ZonedCore

/// What a zone is used for. Set when a zone is first activated; `free` zones take any role.
public enum ZoneRole: String, Sendable, CaseIterable, Codable {
    case free
    case superblock
    case metadata
    case data
    /// Tables of the metadata index (docs/ON-DISK.md): written whole, dead once the manifest
    /// drops them.
    case index
    /// Held back (e.g. for reclaim); never handed out by ordinary allocations.
    case reserved
}

public enum ZonePhase: String, Sendable, Codable {
    case empty
    case active
    case full
    /// Read-only or offline: keeps what it holds, takes nothing more.
    case unavailable
}

public struct ZoneAccount: Sendable, Equatable {
    public let id: ZoneID
    public let start: DeviceOffset
    public let capacity: ByteCount
    public let isConventional: Bool
    public internal(set) var role: ZoneRole
    public internal(set) var phase: ZonePhase
    /// Bytes below the write pointer.
    public internal(set) var written: ByteCount = .zero
    /// Capacity promised to outstanding grants.
    public internal(set) var reserved: ByteCount = .zero
    /// Part of `reserved` submitted to the device and not yet completed.
    public internal(set) var inFlight: ByteCount = .zero
    public internal(set) var live: ByteCount = .zero
    public internal(set) var garbage: ByteCount = .zero
    /// Capacity lost by finishing the zone before it was full.
    public internal(set) var unusable: ByteCount = .zero
    /// Outstanding grants (not yet completed).
    public internal(set) var grants: Int = 0
    /// Chosen to be finished; takes no new grants.
    public internal(set) var finishRequested = false
    /// When data last landed here (allocator clock; 0 before the first write since mount). Reclaim
    /// weighs a zone's age by it.
    public internal(set) var lastWriteNanoseconds: UInt64 = 0

    public var free: ByteCount {
        guard phase == .empty || phase == .active else { return .zero }
        return capacity - written - reserved - unusable
    }
    /// Where the next byte lands (the zone's write pointer as we track it; with IO in flight the
    /// device's may be ahead by up to `inFlight`).
    public var writePointer: DeviceOffset { start + written }

    public func problem() -> String? {
        if written + reserved + unusable > capacity { return "\(id): written+reserved+unusable exceed capacity" }
        if written != live + garbage { return "\(id): written \(written.bytes) != live \(live.bytes) + garbage \(garbage.bytes)" }
        let holds = written.bytes > 0 || reserved.bytes > 0
        switch phase {
        case .empty where holds || unusable.bytes > 0: return "\(id): empty zone holds data"
        case .active where !holds && !isConventional: return "\(id): active zone holds nothing"
        case .full where reserved.bytes > 0 && grants == 0: return "\(id): full zone has reserved bytes but no grants"
        case .full where written + reserved + unusable != capacity:
            return "\(id): full zone accounts for \((written + reserved + unusable).bytes) of its \(capacity.bytes) bytes"
        default: break
        }
        if grants == 0 && reserved.bytes > 0 { return "\(id): reserved bytes without grants" }
        if inFlight > reserved { return "\(id): \(inFlight.bytes) bytes in flight exceed the \(reserved.bytes) reserved" }
        return nil
    }
}

/// Totals over zones, for `df`-like reports. capacity = free + live + garbage + unusable + reserved.
public struct SpaceTotals: Sendable, Equatable {
    public var capacity = ByteCount.zero
    public var free = ByteCount.zero
    public var live = ByteCount.zero
    public var garbage = ByteCount.zero
    public var unusable = ByteCount.zero
    public var reserved = ByteCount.zero

    public init() {}
    public init<S: Sequence>(_ zones: S) where S.Element == ZoneAccount {
        for z in zones where z.phase != .unavailable {
            capacity = capacity + z.capacity
            free = free + z.free
            live = live + z.live
            garbage = garbage + z.garbage
            unusable = unusable + z.unusable
            reserved = reserved + z.reserved
        }
    }
}
