// A background thread of the file system: it sleeps until poked (or until its interval passes),
// runs one round of its job, and ends when stopped. The flusher and background reclaim are both
// one of these; this file is the thread's lifecycle and error handling, theirs is only the job.
//
// Invariants:
// - The job runs outside the worker's lock: a job may take any lock of the stack, and `poke` never
//   waits for a job (writers poke from their own path).
// - `stop` returns only once the thread has ended (its current round finishes first); `cancel`
//   asks it to end without waiting (for a thread that may be the one ending the file system).
// - A failed round is never dropped: `attempt` logs it, then counts it (a failure identical to the
//   previous one is counted but not logged again: a device gone bad would flood the log), and the
//   next wake-up tries again. Logged first, so a reader who sees the count finds the line.
// - The only timer is the interval (zero: none); pokes are events, never polled.

import Foundation
import ZonedCore

final class BackgroundWorker: @unchecked Sendable {
    /// Why the thread woke.
    struct Wake: Equatable {
        /// Someone called `poke` since the last round.
        var poked: Bool
        /// The interval passed since the last round that it ended.
        var due: Bool
    }

    let name: String
    private let interval: Duration
    private let log: (@Sendable (String) -> Void)?
    private let lock = ConditionLock(rank: .leaf)
    private var poked = false
    private var stopping = false
    private var running = false
    private var due = ContinuousClock.now
    private var failures: UInt64 = 0
    private var lastFailure: String?

    init(name: String, interval: Duration = .zero, log: (@Sendable (String) -> Void)?) {
        self.name = name
        self.interval = max(.zero, interval)
        self.log = log
    }

    /// Failed rounds so far, and the latest failure.
    var errors: (count: UInt64, last: String?) { lock.withLock { (failures, lastFailure) } }

    /// Starts the thread; `round` runs on it once per wake-up. The thread keeps this worker alive.
    func start(_ round: @escaping @Sendable (Wake) -> Void) {
        let t = Thread { [self] in
            while let wake = nextWake() { round(wake) }
            lock.withLock { running = false; lock.broadcast() }
        }
        t.name = name
        lock.withLock { running = true; due = .now + interval }
        t.start()
    }

    func poke() { lock.withLock { poked = true; lock.broadcast() } }

    /// Stops the thread and waits until it has ended.
    func stop() {
        lock.withLock {
            stopping = true
            lock.broadcast()
            while running { lock.wait() }
        }
    }

    /// Whether `stop` or `cancel` was called: a long round may end early on it.
    var isStopping: Bool { lock.withLock { stopping } }

    /// Stops the thread without waiting for it.
    func cancel() { lock.withLock { stopping = true; lock.broadcast() } }

    /// Runs one job of a round; its error is counted and logged, and the job is tried again at the
    /// next wake-up.
    func attempt(_ what: String, _ job: () throws(DeviceError) -> Void) {
        do { try job() } catch {
            let text = "\(error)"
            let repeated = lock.withLock { () -> Bool in
                defer { lastFailure = text }
                return lastFailure == text
            }
            // Logged before it is counted: whoever sees the failure counted finds its line logged.
            // (Only this thread calls `attempt`, so the two steps cannot interleave with another.)
            if !repeated { log?("\(what) failed: \(text); will retry") }
            lock.withLock { failures += 1 }
        }
    }

    /// Waits for a poke or the interval; nil once stopping.
    private func nextWake() -> Wake? {
        lock.withLock { () -> Wake? in
            while !stopping {
                let now = ContinuousClock.now
                let isDue = interval > .zero && now >= due
                if poked || isDue {
                    // The next interval counts from now: a round that took long does not make the
                    // next one come at once.
                    if isDue { due = now + interval }
                    defer { poked = false }
                    return Wake(poked: poked, due: isDue)
                }
                if interval > .zero {
                    lock.wait(nanoseconds: Self.nanoseconds(due - now))
                } else {
                    lock.wait()
                }
            }
            return nil
        }
    }

    private static func nanoseconds(_ d: Duration) -> UInt64 {
        let (s, atto) = d.components
        guard s >= 0 else { return 0 }
        return UInt64(s) * 1_000_000_000 + UInt64(max(0, atto) / 1_000_000_000)
    }
}
