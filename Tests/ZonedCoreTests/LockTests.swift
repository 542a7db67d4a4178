// The stack's locks: the read-write lock prefers writers (a checkpoint cannot starve behind a
// stream of operations), and the written lock order is checked at run time in debug builds.

import Foundation
import Testing
import ZonedCore
import ZonedTestSupport

/// The order threads got a lock in.
final class Order: @unchecked Sendable {
    private let lock = NSLock()
    private var names: [String] = []
    func add(_ n: String) { lock.withLock { names.append(n) } }
    var all: [String] { lock.withLock { names } }
}

@Suite("Locks", .timeLimit(.minutes(10)))
struct LockTests {
    @Test func aWaitingWriterGoesBeforeReadersThatArriveAfterIt() throws {
        // R1 holds the lock shared; W asks for it exclusively and waits; R2 then asks shared.
        // With writer preference R2 waits behind W. With readers preferred (glibc's default
        // rwlock) R2 would join R1 at once, and a stream of such readers would keep W out for ever.
        let l = ReadWriteLock()
        let order = Order()
        #expect(l.lock(.shared))
        let w = Background { _ = l.lock(.exclusive); order.add("W"); l.unlock() }
        #expect(waitUntil { l.waitingWriters == 1 }, "the writer never waited")
        let waitsBefore = l.waits
        let r2 = Background { _ = l.lock(.shared); order.add("R2"); l.unlock() }
        #expect(waitUntil { l.waits > waitsBefore || r2.isFinished })
        #expect(!r2.isFinished, "a reader passed a waiting writer")
        l.unlock()
        try w.join(); try r2.join()
        #expect(order.all == ["W", "R2"])
    }

    @Test func nowaitNeverBlocks() {
        let l = ReadWriteLock()
        #expect(l.lock(.exclusive))
        #expect(!l.lock(.shared, nowait: true) && !l.lock(.exclusive, nowait: true))
        l.unlock()
        #expect(l.lock(.shared, nowait: true) && l.lock(.shared, nowait: true))
        #expect(!l.lock(.exclusive, nowait: true))
        l.unlock(); l.unlock()
        #expect(l.waits == 0, "nowait calls that fail do not count as waits")
    }

    @Test func locksTakenInTheWrittenOrderAreTracked() {
        guard LockOrder.isChecked else { return }
        let fsLock = ReadWriteLock(rank: .fileSystem), inode = ReadWriteLock(rank: .inode)
        let allocator = ConditionLock(rank: .allocator)
        _ = fsLock.lock(.shared)
        _ = inode.lock(.exclusive)
        allocator.withLock { #expect(LockOrder.heldByThisThread == [.fileSystem, .inode, .allocator]) }
        inode.unlock()
        fsLock.unlock()
        #expect(LockOrder.heldByThisThread.isEmpty)
    }

    @Test func takingALockAgainstTheOrderTraps() async {
        guard LockOrder.isChecked else { return }
        await #expect(processExitsWith: .failure) {
            let allocator = ConditionLock(rank: .allocator), inode = ReadWriteLock(rank: .inode)
            allocator.withLock { _ = inode.lock(.shared) }  // inode (40) after allocator (90): wrong way round
        }
        await #expect(processExitsWith: .failure) {
            let fsLock = ReadWriteLock(rank: .fileSystem)
            _ = fsLock.lock(.shared)
            _ = fsLock.lock(.shared)  // not recursive: with a writer waiting this would deadlock
        }
    }
}
