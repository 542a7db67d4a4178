// The conformance harness: named checks, each run on a device whose sequential zones were reset.
//
// Invariants:
// - Checks do not depend on their order: before each check every written, open or closed
//   sequential zone is reset, and afterwards (whatever the outcome) again, after which no zone
//   may still count as open or active. A check that leaves the device unable to give its zone
//   resources back fails, even if its body passed.
// - A check either returns (pass), throws `ConformanceFailure` (the device broke a rule of the
//   ZonedDevice contract), or is skipped before it starts because the device lacks what it needs
//   (e.g. no zone limits to exercise). A skip names the reason; nothing is skipped silently.
// - Checks only use the public `ZonedDevice` API, so the same suite judges the emulated file
//   device, conventional mode, kernel zoned block devices and NVMe ZNS. It destroys the data on
//   the device under test.
// - The suite needs no host paths: whoever runs it supplies the device (and how to reopen it).

import ZonedCore

/// A broken rule: what was expected, what happened.
public struct ConformanceFailure: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The device under test, and how to get it back after `close()` (nil: the backend cannot).
public final class ConformanceTarget: @unchecked Sendable {
    public private(set) var device: any ZonedDevice
    private let reopener: (() throws -> any ZonedDevice)?

    public init(device: any ZonedDevice, reopen: (() throws -> any ZonedDevice)? = nil) {
        self.device = device
        self.reopener = reopen
    }

    public var canReopen: Bool { reopener != nil }

    /// Closes the device and opens it again from its path.
    public func reopen() throws {
        guard let reopener else { throw ConformanceFailure("this target cannot be reopened") }
        device.close()
        device = try reopener()
    }
}

public struct ConformanceCheck: Sendable {
    public var name: String
    /// The rule, in one line.
    public var rule: String
    /// Why the check does not apply to this geometry, or nil when it does.
    public var skipReason: @Sendable (DeviceGeometry) -> String?
    public var body: @Sendable (ConformanceTarget) throws -> Void

    public init(_ name: String, _ rule: String,
                skipUnless: @escaping @Sendable (DeviceGeometry) -> String? = { _ in nil },
                _ body: @escaping @Sendable (ConformanceTarget) throws -> Void) {
        self.name = name
        self.rule = rule
        self.skipReason = skipUnless
        self.body = body
    }
}

public enum ConformanceOutcome: Sendable, Equatable {
    case passed
    case skipped(String)
    case failed(String)
}

extension ConformanceCheck {
    /// Resets the device's sequential zones, runs the check, then releases every zone it left
    /// holding an open or active resource.
    public func run(on target: ConformanceTarget) -> ConformanceOutcome {
        if let reason = skipReason(target.device.geometry) { return .skipped(reason) }
        var outcome: ConformanceOutcome
        do {
            try resetSequentialZones(target.device)
            try body(target)
            outcome = .passed
        } catch let f as ConformanceFailure {
            outcome = .failed(f.message)
        } catch {
            outcome = .failed("unexpected error: \(error)")
        }
        // target.device, not a copy taken before the body: a check may have reopened it.
        guard let problem = releaseZones(target.device) else { return outcome }
        switch outcome {
        case .failed(let why): return .failed("\(why); then \(problem)")
        default: return .failed(problem)
        }
    }
}

/// Resets every sequential zone a check left written, open or closed and checks that no zone
/// still holds an open or active resource. Returns what went wrong, or nil.
func releaseZones(_ device: any ZonedDevice) -> String? {
    do {
        try resetSequentialZones(device)
        let s = ZoneSummary(zones: try device.reportAllZones(), geometry: device.geometry)
        if s.open > 0 || s.active > 0 {
            return "cleanup: \(s.open) zone(s) still open and \(s.active) still active after resetting every zone"
        }
        return nil
    } catch {
        return "cleanup: cannot reset the zones the check used: \(error)"
    }
}

/// Puts every writable sequential zone back to empty, so each check starts from the same state.
public func resetSequentialZones(_ device: any ZonedDevice) throws {
    for z in try device.reportAllZones() where z.type.isSequential {
        switch z.condition {
        case .empty, .readOnly, .offline, .notWritePointer: continue
        default: try device.reset(z.id)
        }
    }
}
