// The zone model shared by every backend.
//
// Invariants:
// - A conventional zone has condition `.notWritePointer` and no meaningful write pointer; it
//   takes writes anywhere inside it.
// - A sequential-write-required zone is written only at its write pointer, never past
//   `start + capacity`; `capacity <= size`. Its write pointer lies in [start, start + capacity].
// - "Open" means implicitly or explicitly open; "active" means open or closed. These two sets
//   are what the device's max-open and max-active limits count (ZBC/ZNS semantics).

/// What kind of writes a zone takes.
public enum ZoneType: String, Sendable, Codable, CaseIterable {
    case conventional
    case sequentialWriteRequired = "seq-write-required"
    case sequentialWritePreferred = "seq-write-preferred"

    public var isSequential: Bool { self != .conventional }
}

/// A zone's condition (ZBC/ZAC "zone condition", NVMe ZNS "zone state").
public enum ZoneCondition: String, Sendable, Codable, CaseIterable {
    case notWritePointer = "not-wp"
    case empty
    case implicitlyOpen = "implicit-open"
    case explicitlyOpen = "explicit-open"
    case closed
    case full
    case readOnly = "read-only"
    case offline

    /// Counted against max open zones.
    public var isOpen: Bool { self == .implicitlyOpen || self == .explicitlyOpen }
    /// Counted against max active zones.
    public var isActive: Bool { isOpen || self == .closed }
    /// Takes writes at all (not full, read-only, offline).
    public var isWritable: Bool {
        switch self {
        case .notWritePointer, .empty, .implicitlyOpen, .explicitlyOpen, .closed: return true
        case .full, .readOnly, .offline: return false
        }
    }
    public var isReadable: Bool { self != .offline }

    /// Stable on-disk / wire code. Never reorder: emulated images persist it.
    public var code: UInt8 {
        switch self {
        case .notWritePointer: return 0
        case .empty: return 1
        case .implicitlyOpen: return 2
        case .explicitlyOpen: return 3
        case .closed: return 4
        case .full: return 5
        case .readOnly: return 6
        case .offline: return 7
        }
    }
    public init?(code: UInt8) {
        guard let c = ZoneCondition.allCases.first(where: { $0.code == code }) else { return nil }
        self = c
    }
}

/// One zone as a zone report describes it.
public struct Zone: Hashable, Sendable {
    public var id: ZoneID
    public var type: ZoneType
    public var condition: ZoneCondition
    public var start: DeviceOffset
    public var size: ByteCount
    /// Writable bytes from `start`; at most `size` (ZNS zone capacity).
    public var capacity: ByteCount
    /// Next byte a write must land on. For conventional zones: `start`, meaningless.
    public var writePointer: DeviceOffset

    public init(id: ZoneID, type: ZoneType, condition: ZoneCondition, start: DeviceOffset,
                size: ByteCount, capacity: ByteCount, writePointer: DeviceOffset) {
        self.id = id
        self.type = type
        self.condition = condition
        self.start = start
        self.size = size
        self.capacity = capacity
        self.writePointer = writePointer
    }

    /// One past the last writable byte.
    public var capacityEnd: DeviceOffset { start + capacity }
    /// One past the zone's last byte.
    public var end: DeviceOffset { start + size }
    /// Bytes written so far (sequential zones; full zones count as fully written).
    public var written: ByteCount {
        switch (type, condition) {
        case (.conventional, _): return .zero
        case (_, .full): return capacity
        default: return writePointer - start
        }
    }
    /// Bytes still writable before the zone is full.
    public var remaining: ByteCount {
        guard type.isSequential, condition.isWritable else { return .zero }
        return capacity - written
    }
    /// Fill in percent of capacity, 0...100.
    public var fillPercent: Double {
        guard capacity.bytes > 0 else { return 0 }
        return Double(written.bytes) * 100 / Double(capacity.bytes)
    }
    public func contains(_ offset: DeviceOffset) -> Bool { offset >= start && offset < end }
}
