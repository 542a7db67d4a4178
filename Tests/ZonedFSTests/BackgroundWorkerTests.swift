// The background thread the flusher and reclaim share: a poke runs a round, the interval runs one
// marked due, a failed job is counted every time and logged once while it repeats, and stop
// returns only after the running round finished.

import Foundation
import Testing
import ZonedCore
import ZonedTestSupport
@testable import ZonedFS

@Suite("Background worker", .timeLimit(.minutes(10)))
struct BackgroundWorkerTests {
    final class Box: @unchecked Sendable {
        let lock = NSLock()
        var wakes: [BackgroundWorker.Wake] = []
        var logged: [String] = []
        func add(_ w: BackgroundWorker.Wake) { lock.withLock { wakes.append(w) } }
        func log(_ s: String) { lock.withLock { logged.append(s) } }
        var count: Int { lock.withLock { wakes.count } }
    }

    @Test func pokeRunsOneRoundAndStopWaitsForIt() {
        let box = Box()
        let worker = BackgroundWorker(name: "test-worker", log: nil)
        worker.start { wake in
            box.add(wake)
            // The round outlasts the call to stop: it ends only once stop was asked for.
            #expect(waitUntil { worker.isStopping })
            box.log("round ended")
        }
        #expect(box.count == 0)  // no poke, no interval: nothing runs
        worker.poke()
        #expect(waitUntil { box.count == 1 })
        #expect(box.wakes == [BackgroundWorker.Wake(poked: true, due: false)])
        worker.stop()
        box.log("stopped")
        // stop returned only after the round it found running had ended, and no round ran after.
        #expect(box.logged == ["round ended", "stopped"] && box.count == 1)
    }

    @Test func intervalRunsRoundsMarkedDue() {
        let box = Box()
        let worker = BackgroundWorker(name: "test-worker", interval: .milliseconds(5), log: nil)
        worker.start { box.add($0) }
        #expect(waitUntil { box.count >= 2 })
        worker.stop()
        #expect(box.wakes.allSatisfy { $0.due && !$0.poked })
    }

    @Test func failuresAreCountedAlwaysAndLoggedOncePerDistinctError() {
        let box = Box()
        let worker = BackgroundWorker(name: "test-worker", log: { box.log($0) })
        let eio = DeviceError(errno: EIO, .write, "device gone")
        for _ in 0..<3 { worker.attempt("job") { () throws(DeviceError) in throw eio } }
        worker.attempt("job") { () throws(DeviceError) in throw DeviceError(errno: ENOSPC, .write, "full") }
        worker.attempt("job") {}
        #expect(worker.errors.count == 4)
        #expect(worker.errors.last?.contains("full") == true)
        #expect(box.logged.count == 2 && box.logged[0].hasPrefix("job failed: "), "\(box.logged)")
    }
}
