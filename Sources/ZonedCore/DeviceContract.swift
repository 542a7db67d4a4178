// DeviceContract: the checks of the ZonedDevice contract that a backend driving real hardware
// makes before the device sees an IO, and what a read past a write pointer gives, shared by the
// kernel and NVMe backends so both refuse and zero the same things with the same words.
//
// Invariants:
// - `problem` refuses an IO unless it is non-empty, block-aligned in offset and length, inside
//   the device and inside one zone, and (for a write) at most `geometry.maxWriteBytes`. It only
//   reads the geometry: it never asks the device.
// - The write pointer is not checked here: the device refuses a write off it itself, and
//   checking would cost a report per write.
// - Only the max-write message differs per backend (`maxWriteNote` says where the limit comes
//   from and what to do), so each backend's errors still name its own limit.

public enum DeviceContract {
    /// Why the contract refuses this IO before the device sees it, or nil.
    public static func problem(_ geometry: DeviceGeometry, write: Bool, length: ByteCount,
                               at offset: DeviceOffset, maxWriteNote: String) -> String? {
        let bs = geometry.logicalBlockSize
        if length == .zero { return "empty IO" }
        if !offset.isAligned(to: bs) || !length.isMultiple(of: bs) {
            return "offset and length must be multiples of the \(bs.bytes)-byte block size"
        }
        guard let zone = geometry.zone(containing: offset),
              offset + length <= DeviceOffset.zero + geometry.totalBytes else {
            return "past the end of the device (\(geometry.totalBytes))"
        }
        if geometry.zoneStart(zone) + geometry.zoneSize < offset + length {
            return "crosses the end of \(zone); one IO must stay inside one zone"
        }
        if write && geometry.maxWriteBytes < length {
            return "larger than the device's max write of \(geometry.maxWriteBytes) \(maxWriteNote)"
        }
        return nil
    }
}
