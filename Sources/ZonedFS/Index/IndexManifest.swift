// The metadata index's manifest as the log records it (docs/ON-DISK.md): which tables exist, and
// the first table id not used yet.
//
// Invariants:
// - Built only by `apply`, the same code live (FileSystem.log) and at replay, so a mounted file
//   system's manifest is exactly what its log says.
// - A table is added once and removed once; anything else is a replay problem (damage), never a
//   silent repair. `nextTableID` is above every table id ever added.
// - A checkpoint writes `checkpointRecords`: the counters and every table, so the log before it
//   can go and the manifest survives.

import ZonedIndex

public struct IndexManifest: Sendable, Equatable {
    public private(set) var tables: [UInt64: TableDescriptor] = [:]
    public private(set) var nextTableID: UInt64 = 1

    public init() {}

    public mutating func apply(_ record: LogRecord) throws(ReplayProblem) {
        switch record {
        case .tableAdded(let d):
            guard tables[d.id] == nil else { throw ReplayProblem("table \(d.id) added twice") }
            tables[d.id] = d
            nextTableID = max(nextTableID, d.id + 1)
        case .tableRemoved(let id):
            guard tables.removeValue(forKey: id) != nil else { throw ReplayProblem("removal of table \(id), which is not in the manifest") }
        case .indexCounters(let next):
            nextTableID = max(nextTableID, next)
        default:
            break
        }
    }

    /// The manifest as checkpoint batches: the counters, then every table in id order.
    var checkpointRecords: [[LogRecord]] {
        [[.indexCounters(nextTableID: nextTableID)]] + tables.keys.sorted().map { [.tableAdded(tables[$0]!)] }
    }
}
