// Seeded, replayable fault injection for the emulated zoned device.
//
// Invariants:
// - A fault plan is a plain value: the same plan on the same image with the same sequence of
//   calls gives the same faults, byte for byte. Nothing here reads a clock or unseeded randomness.
// - IOs are numbered from 1 in the order they reach the device (reads, writes, appends, flushes,
//   each IO of a `submit` batch counting as one; zone management and reports are not IOs). An IO
//   refused before it is numbered (EINVAL for alignment, range or size; EOPNOTSUPP for append on
//   a device without it) gets no number; one refused by a zone rule (EIO off the write pointer,
//   ETOOMANYREFS, ...) does. The number is taken under the device lock, so single-threaded
//   callers get exact replay.
// - Each random decision draws from its own stream, keyed by (seed, purpose, IO number), so
//   adding or removing one kind of fault does not shift the outcome of another kind.
// - Order of effects at IO number n: scheduled zone condition changes for n, then a power cut at
//   n (the IO fails with EIO and is not applied), then scheduled EIO for n, then the per-kind
//   EIO probability. A failed IO changes nothing on the device.

import ZonedCore

public struct FaultPlan: Sendable, Equatable {
    /// A power cut instead of IO number `atIO`.
    public struct PowerCut: Sendable, Equatable {
        public var atIO: UInt64
        /// The last kept block of each cut zone is part new data, part garbage.
        public var tornLastBlock: Bool
        public init(atIO: UInt64, tornLastBlock: Bool = false) {
            self.atIO = atIO
            self.tornLastBlock = tornLastBlock
        }
    }

    /// Zone `zone` turns `condition` (`.readOnly` or `.offline`) just before IO number `atIO`.
    public struct ConditionChange: Sendable, Equatable {
        public var atIO: UInt64
        public var zone: ZoneID
        public var condition: ZoneCondition
        public init(atIO: UInt64, zone: ZoneID, condition: ZoneCondition) {
            precondition(condition == .readOnly || condition == .offline, "only read-only and offline can be injected")
            self.atIO = atIO
            self.zone = zone
            self.condition = condition
        }
    }

    public var seed: UInt64
    /// Chance that a read fails with EIO.
    public var readErrorProbability: Double
    /// Chance that a write or zone append fails with EIO.
    public var writeErrorProbability: Double
    /// Chance that a flush fails with EIO (nothing becomes durable).
    public var flushErrorProbability: Double
    /// IO numbers that fail with EIO, whatever they are.
    public var failingIOs: Set<UInt64>
    public var powerCut: PowerCut?
    public var conditionChanges: [ConditionChange]
    /// Chance that a read returns one flipped bit (the media keeps the right bytes).
    public var bitRotProbability: Double
    /// Zone appends of a `submit` batch complete in a seeded permuted order (never the batch
    /// order when the batch has two or more appends).
    public var outOfOrderAppends: Bool

    public init(seed: UInt64, readErrorProbability: Double = 0, writeErrorProbability: Double = 0,
                flushErrorProbability: Double = 0, failingIOs: Set<UInt64> = [], powerCut: PowerCut? = nil,
                conditionChanges: [ConditionChange] = [], bitRotProbability: Double = 0,
                outOfOrderAppends: Bool = false) {
        self.seed = seed
        self.readErrorProbability = readErrorProbability
        self.writeErrorProbability = writeErrorProbability
        self.flushErrorProbability = flushErrorProbability
        self.failingIOs = failingIOs
        self.powerCut = powerCut
        self.conditionChanges = conditionChanges
        self.bitRotProbability = bitRotProbability
        self.outOfOrderAppends = outOfOrderAppends
    }

    /// What a random draw is for; each purpose has its own stream.
    enum Purpose: UInt64 {
        case readError = 1, writeError, flushError, bitRot, appendOrder, powerCut
    }

    /// The generator for one decision.
    func stream(_ purpose: Purpose, io: UInt64) -> SeededRandom {
        FaultPlan.stream(seed: seed, purpose, io: io)
    }

    static func stream(seed: UInt64, _ purpose: Purpose, io: UInt64) -> SeededRandom {
        SeededRandom(seed: seed ^ (purpose.rawValue &* 0x9E37_79B9_7F4A_7C15) ^ (io &* 0xD1B5_4A32_D192_ED03))
    }

    /// The EIO probability for an operation.
    func errorProbability(_ op: DeviceOperation) -> (Double, Purpose) {
        switch op {
        case .read: return (readErrorProbability, .readError)
        case .write, .append: return (writeErrorProbability, .writeError)
        case .flush: return (flushErrorProbability, .flushError)
        default: return (0, .readError)
        }
    }
}
