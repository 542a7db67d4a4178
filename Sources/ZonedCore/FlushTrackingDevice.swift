// A device that knows whether a flush would make anything durable: one flush per durability
// point, never two back to back with nothing written between them.
//
// Invariants:
// - `writes` counts every data IO call that may have changed the media (writes and appends,
//   failed ones too: a failed write may have landed in part), counted when the call returns.
//   Zone resets and finishes are durable when they complete (ZonedDevice contract) and need no flush.
// - `durableThrough` is the `writes` value a completed flush covered: it is read before the
//   flush starts, so a write that completes during the flush is not counted as covered.
// - `flushIfWritten()` skips the device flush only when a completed flush already covered every
//   write that had returned when it was called; a caller that needs IO it saw complete to be
//   durable may use it instead of `flush()`.

public final class FlushTrackingDevice: ForwardingDevice, @unchecked Sendable {
    private let lock = ConditionLock(rank: .leaf)
    private var writes: UInt64 = 0
    private var durableThrough: UInt64 = 0
    private var flushCount: UInt64 = 0
    private var skipped: UInt64 = 0

    private func wrote(_ n: Int = 1) { lock.withLock { writes += UInt64(n) } }

    public override func write(_ data: UnsafeRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) {
        defer { wrote() }
        try inner.write(data, at: offset)
    }

    public override func append(_ data: UnsafeRawBufferPointer, to zone: ZoneID) throws(DeviceError) -> DeviceOffset {
        defer { wrote() }
        return try inner.append(data, to: zone)
    }

    public override func submit(_ batch: [DeviceIO]) -> [IOCompletion] {
        let changes = batch.reduce(0) { n, io in if case .read = io { n } else { n + 1 } }
        defer { if changes > 0 { wrote(changes) } }
        return inner.submit(batch)
    }

    public override func flush() throws(DeviceError) {
        let covers = lock.withLock { writes }
        try inner.flush()
        lock.withLock {
            durableThrough = max(durableThrough, covers)
            flushCount += 1
        }
    }

    /// Flushes unless every write that returned so far is durable already.
    public func flushIfWritten() throws(DeviceError) {
        let clean = lock.withLock { () -> Bool in
            guard writes == durableThrough else { return false }
            skipped += 1
            return true
        }
        if !clean { try flush() }
    }

    /// Device flushes sent, and flushes found unneeded (monitoring and tests).
    public var flushes: (sent: UInt64, skipped: UInt64) { lock.withLock { (flushCount, skipped) } }
}

extension ZonedDevice {
    /// Flushes, or skips the flush when the device tracks writes and nothing was written since
    /// the last one.
    public func flushIfWritten() throws(DeviceError) {
        if let t = self as? FlushTrackingDevice { try t.flushIfWritten() } else { try flush() }
    }
}
