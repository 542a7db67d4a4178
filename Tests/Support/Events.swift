// Waiting for events in concurrency tests, never for a length of time.
//
// Invariants:
// - A test passes or fails on what happened (a thread finished, a counter moved, a flag was set),
//   never on how long something took: the deadlines here are watchdogs only. A watchdog that
//   fires is a failure ("the event never came") that ends the wait instead of hanging the run;
//   on a healthy run it is never reached, so a loaded machine cannot make a test pass falsely.
// - `Background` runs its body on its own thread, so a test can hold one party parked (a gated
//   device) while it watches another.

import Foundation

/// How long a watchdog waits before it calls an event missing: far beyond any healthy wait.
public let watchdogSeconds = 60.0

/// Waits until `condition` holds (polled; a condition that depends on other threads' progress).
/// Returns false when the watchdog fired first.
@discardableResult
public func waitUntil(watchdog seconds: Double = watchdogSeconds, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        if Date() >= deadline { return false }
        usleep(500)
    }
    return true
}

/// Runs `body` on another thread; `join()` waits for it and rethrows its error.
public final class Background: @unchecked Sendable {
    private let cond = NSCondition()
    private var finished = false
    private var error: (any Error)?

    public init(_ body: @escaping @Sendable () throws -> Void) {
        let t = Thread { [self] in
            var failure: (any Error)?
            do { try body() } catch { failure = error }
            cond.lock()
            self.error = failure
            finished = true
            cond.broadcast()
            cond.unlock()
        }
        t.start()
    }

    public var isFinished: Bool {
        cond.lock()
        defer { cond.unlock() }
        return finished
    }

    /// Waits for the body to end; false when the watchdog fired first (the body is still running).
    public func finishes(watchdog seconds: Double = watchdogSeconds) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        cond.lock()
        defer { cond.unlock() }
        while !finished {
            if !cond.wait(until: deadline) { return finished }
        }
        return true
    }

    /// Waits for the body to end and rethrows what it threw.
    public func join() throws {
        cond.lock()
        while !finished { cond.wait() }
        let e = error
        cond.unlock()
        if let e { throw e }
    }
}

/// One party of a concurrency test says where it got to; another waits for it. Used where the
/// interesting moment is inside the code under test (a hook reports it).
public final class Milestones: @unchecked Sendable {
    private let cond = NSCondition()
    private var reached: [String: Int] = [:]

    public init() {}

    public func mark(_ name: String) {
        cond.lock()
        reached[name, default: 0] += 1
        cond.broadcast()
        cond.unlock()
    }

    public func count(_ name: String) -> Int {
        cond.lock()
        defer { cond.unlock() }
        return reached[name, default: 0]
    }

    /// Waits until `name` was marked at least `times` times; false when the watchdog fired.
    @discardableResult
    public func wait(_ name: String, times: Int = 1, watchdog seconds: Double = watchdogSeconds) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        cond.lock()
        defer { cond.unlock() }
        while reached[name, default: 0] < times {
            if !cond.wait(until: deadline) { return reached[name, default: 0] >= times }
        }
        return true
    }
}
