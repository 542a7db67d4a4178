// WritePointerFloors: per zone, an absolute offset known to be at or below the zone's write
// pointer, kept by a backend whose device returns its own pattern (not zeros) past the write
// pointer (KernelZonedDevice, NVMeZonedDevice), so that most reads need no zone report.
//
// Invariants:
// - `floor(z).offset` is at or below zone z's write pointer whenever no reset of z is in flight:
//   it starts from the report at open, rises with every write that completes and with every
//   report taken for a read, and drops to the zone start around a reset.
// - A reset bumps the zone's `resets` count. A raise carries the floor it started from and is
//   dropped when the count moved since, so a write or report that raced a reset cannot raise the
//   floor above the reset zone's write pointer.
// - `bytesPastWritePointer` reports first and the caller zeroes after the IO, so the answer is
//   the zone's state at report time; data a concurrent write adds later reads as not yet written.


/// An absolute offset known to be at or below a zone's write pointer, and how many resets the
/// zone had when it was learned.
public struct WritePointerFloor: Sendable {
    public var offset: UInt64
    public var resets: UInt64
}

public final class WritePointerFloors: Sendable {
    private let floors: Locked<[WritePointerFloor]>

    /// Floors at the write pointers of `zones` (the report at open, zone 0 first).
    public init(_ zones: [Zone]) {
        floors = Locked(zones.map { WritePointerFloor(offset: $0.writePointer.bytes, resets: 0) })
    }

    /// The zone's floor and its reset generation, to pass back to `raise`.
    public func floor(_ zone: ZoneID) -> WritePointerFloor {
        floors.withLock { $0[zone.int] }
    }

    /// Raises the floor to `offset` (a write pointer seen, or the end of a completed write or
    /// append), unless the zone was reset since `seen` was taken: then `offset` may be stale.
    public func raise(_ zone: ZoneID, to offset: DeviceOffset, since seen: WritePointerFloor) {
        floors.withLock {
            if $0[zone.int].resets == seen.resets && $0[zone.int].offset < offset.bytes {
                $0[zone.int].offset = offset.bytes
            }
        }
    }

    /// Drops the floor to `start` (the zone's start) and bumps the reset count; called before and
    /// after a reset, so a read racing the reset asks the device instead of trusting old data.
    public func lowerForReset(_ zone: ZoneID, to start: DeviceOffset) {
        floors.withLock { $0[zone.int] = WritePointerFloor(offset: start.bytes, resets: $0[zone.int].resets &+ 1) }
    }

    /// For a read of `length` bytes at `offset` in `zone`: the buffer offset from which the bytes
    /// lie past the zone's write pointer, or nil when none do. Calls `report` (a one-zone report of
    /// `zone`) only when the read ends above `floor`, and raises the floor to what it saw.
    public func bytesPastWritePointer(zone: ZoneID, from offset: DeviceOffset, length: ByteCount,
                                      floor: WritePointerFloor,
                                      report: () throws(DeviceError) -> [Zone]) -> Result<Int?, DeviceError> {
        let end = offset + length
        if end.bytes <= floor.offset { return .success(nil) }
        let zones: [Zone]
        do throws(DeviceError) {
            zones = try report()
        } catch {
            return .failure(error)
        }
        guard let z = zones.first else { return .failure(.io(.read, "no report for \(zone)")) }
        raise(zone, to: z.writePointer, since: floor)
        if end <= z.writePointer { return .success(nil) }
        return .success(z.writePointer <= offset ? 0 : (z.writePointer - offset).int)
    }
}
