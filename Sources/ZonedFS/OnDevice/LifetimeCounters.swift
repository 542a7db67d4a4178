// Lifetime write counters: how many bytes applications wrote and how many the device took for them,
// since the file system was made. They make "write amplification so far" a fact that survives
// remounts and crashes.
//
// Invariants:
// - Each counter only grows. The log carries them in `counters` records (one per commit that logs
//   anything, and one in every checkpoint); replay keeps the newest, so after a crash they are at
//   most one commit behind, like the data they describe.
// - deviceBytesWritten = data + reclaim + metadata; write amplification = device / user bytes.
// - On the device: `fieldCount` little-endian u64 in the order of `fields`. A record with another
//   length is rejected by the decoder (stray or missing bytes), never trapped on.

public struct LifetimeCounters: Sendable, Equatable, Codable {
    /// Bytes applications wrote (write calls, buffered or direct).
    public var userBytesWritten: UInt64 = 0
    /// File data the engine wrote to the device for them (direct writes and write-back).
    public var dataBytesWritten: UInt64 = 0
    /// Live data reclaim moved to free whole zones.
    public var reclaimBytesWritten: UInt64 = 0
    /// Log frames and superblock copies.
    public var metadataBytesWritten: UInt64 = 0
    /// Zones reclaim emptied and reset.
    public var zonesReclaimed: UInt64 = 0

    public init() {}

    public var deviceBytesWritten: UInt64 { dataBytesWritten &+ reclaimBytesWritten &+ metadataBytesWritten }

    /// Device bytes written per byte applications wrote; nil before the first user write.
    public var writeAmplification: Double? {
        userBytesWritten == 0 ? nil : Double(deviceBytesWritten) / Double(userBytesWritten)
    }

    /// Reclaim's share: device bytes (data + reclaim) per byte of file data written; nil before any.
    public var reclaimWriteAmplification: Double? {
        dataBytesWritten == 0 ? nil : Double(dataBytesWritten &+ reclaimBytesWritten) / Double(dataBytesWritten)
    }

    static let fieldCount = 5
    var fields: [UInt64] { [userBytesWritten, dataBytesWritten, reclaimBytesWritten, metadataBytesWritten, zonesReclaimed] }
    init(fields f: [UInt64]) {
        userBytesWritten = f[0]; dataBytesWritten = f[1]; reclaimBytesWritten = f[2]; metadataBytesWritten = f[3]; zonesReclaimed = f[4]
    }

    /// `self` plus what happened since (each counter of `delta` added).
    public func adding(_ delta: LifetimeCounters) -> LifetimeCounters {
        LifetimeCounters(fields: zip(fields, delta.fields).map { $0 &+ $1 })
    }
}
