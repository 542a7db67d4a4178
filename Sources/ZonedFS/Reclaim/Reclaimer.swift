// Zone reclaim (garbage collection): empty zones whose bytes are mostly garbage by moving their
// live extents elsewhere, then reset them.
//
// Policy (cost-benefit, after LFS): a victim is a full data zone (or, in conventional mode, a
// filled zone with no grants) holding reclaimable space (garbage, or capacity lost to an early
// finish). With u = live / capacity and age = time since data last landed in the zone, the score is
//     (1 - u) * (age + 1 ms) / (1 + u)
// — space gained per byte moved, weighted by age, so cold, mostly-dead zones go first and hot zones
// get time to die on their own. Ties go to the lowest zone index (determinism).
//
// Invariants:
// - Moving goes through the engine (`Engine.relocate`): verified read, append at a write pointer,
//   a logged `.mapped` change; the file keeps its bytes at every moment.
// - A victim is reset only by the journal's durable commit, after the records that stop referencing
//   it are durable (Journal: "Data zones whose last reference was dropped are reset only after a
//   durable commit that holds the records dropping it").
// - Reclaim writes into one empty zone kept for it (AllocatorConfig.reclaimReserveZones), so it
//   can always move a victim's live data even when writers have used every other free byte; the
//   victim's reset gives that zone back.
// - Relocation runs as a file system operation (fsLock shared) and the commit outside it, like
//   every other writer, so checkpoints never see a move half done.
// - A background pass's error is never dropped: its BackgroundWorker counts it (`failedPasses`)
//   and logs it (once while the same error repeats).

import Foundation
import ZonedAllocator
import ZonedCore
import ZonedEngine

/// How reclaim picks victims.
public enum ReclaimPolicy: String, Sendable, CaseIterable {
    /// (1 - u) * age / (1 + u): the default (see the file header).
    case costBenefit = "cost-benefit"
    /// Least live data first, age ignored: the textbook baseline the benchmark compares against.
    case greedy
}

public struct ReclaimCounters: Sendable, Equatable {
    public var passes: UInt64 = 0
    public var zonesReclaimed: UInt64 = 0
    public var bytesMoved: UInt64 = 0
    /// Writers that found no space and waited for reclaim, and how long they waited.
    public var writerWaits: UInt64 = 0
    public var writerWaitNanoseconds: UInt64 = 0
    /// Background passes that failed (their error went to the mount's log).
    public var failedPasses: UInt64 = 0
}

final class Reclaimer: @unchecked Sendable {
    unowned let fs: FileSystem
    private let lock = ConditionLock(rank: .leaf)
    private var counters = ReclaimCounters()
    /// One pass at a time; writers that need space wait for the running pass.
    private let passLock = ConditionLock(rank: .reclaimPass)
    private var running = false
    private let worker: BackgroundWorker

    init(fs: FileSystem, log: (@Sendable (String) -> Void)?) {
        self.fs = fs
        worker = BackgroundWorker(name: "zbdfs-reclaim", log: log)
    }

    var stats: ReclaimCounters {
        var c = lock.withLock { counters }
        c.failedPasses = worker.errors.count
        return c
    }

    private var allocator: ZoneAllocator { fs.engine.allocator }

    /// Zones worth reclaiming, best first.
    func victims() -> [ZoneAccount] {
        let now = fs.clock.nowNanoseconds
        let candidates = allocator.reclaimVictims
        let policy = fs.options.reclaimPolicy
        func score(_ a: ZoneAccount) -> Double {
            let u = Double(a.live.bytes) / Double(max(1, a.capacity.bytes))
            switch policy {
            case .greedy: return 1 - u
            case .costBenefit:
                let age = Double(now > a.lastWriteNanoseconds ? now - a.lastWriteNanoseconds : 0) + 1e6
                return (1 - u) * age / (1 + u)
            }
        }
        return candidates.sorted { (score($0), -Double($0.id.int)) > (score($1), -Double($1.id.int)) }
    }

    /// Space reclaim could give back now: garbage and unusable bytes of victim zones.
    var reclaimable: ByteCount { allocator.reclaimableBytes }

    /// One pass: reclaims victims until `goal` bytes became free (or the victims run out). Returns
    /// the zones reset. Passes run one at a time; a caller arriving during one waits its turn.
    @discardableResult
    func pass(goal: ByteCount) throws(DeviceError) -> Int {
        passLock.withLock {
            while running { passLock.wait() }
            running = true
        }
        defer { passLock.withLock { running = false; passLock.broadcast() } }
        let resetBefore = fs.journalCounters.dataZonesReset
        var gained = ByteCount.zero
        for victim in victims() where gained < goal {
            // Only victims whose live data fits the room reclaim has now (its reserve included).
            guard victim.live <= allocator.reclaimReservable else { continue }
            let moved = try fs.operation { () throws(DeviceError) -> UInt64 in
                var moved: UInt64 = 0
                for (n, e) in fs.engine.extents(in: victim.id) { moved += try fs.engine.relocate(n, e) }
                return moved
            }
            lock.withLock { counters.bytesMoved += moved }
            if allocator.account(victim.id).live.bytes == 0 { gained = gained + victim.capacity - ByteCount(moved) }
            try fs.commit(durable: true)  // the journal resets zones left without live data
        }
        let resets = Int(fs.journalCounters.dataZonesReset - resetBefore)
        lock.withLock {
            counters.passes += 1
            counters.zonesReclaimed += UInt64(resets)
        }
        return resets
    }

    /// A writer found no space: reclaim before it retries. False when nothing is left to reclaim,
    /// not even garbage in an active zone (the writer then gets ENOSPC). A pass can free nothing when another pass or writer raced it
    /// to the space; the writer's retry bound (FileSystem.write) stops a livelock.
    func makeSpace(_ bytes: ByteCount) throws(DeviceError) -> Bool {
        if reclaimable.bytes == 0, !(try finishGarbageHolder()) { return false }
        let t0 = fs.clock.nowNanoseconds
        try pass(goal: max(bytes, allocator.device.geometry.zoneCapacity))
        lock.withLock {
            counters.writerWaits += 1
            counters.writerWaitNanoseconds += fs.clock.nowNanoseconds - t0
        }
        return true
    }

    /// With no victim left, garbage may still sit in active data zones (only full zones are
    /// victims): finish the idle one holding the most so that reclaim can take it. False when no
    /// active zone holds garbage.
    private func finishGarbageHolder() throws(DeviceError) -> Bool {
        let holders = allocator.activeAccounts(.data).filter { $0.grants == 0 && $0.garbage.bytes > 0 }
        guard let best = holders.max(by: { ($0.garbage, -$0.id.int) < ($1.garbage, -$1.id.int) }) else { return false }
        try allocator.finish(best.id)
        return reclaimable.bytes > 0
    }

    // MARK: Background

    /// Starts the background thread: a pass whenever it is poked and free space is under
    /// `threshold` of capacity. A pass nobody waits for has no caller for its error: the worker
    /// counts and logs it, and the next poke tries again (a writer that needs space runs its own
    /// pass and gets its own error).
    func start(threshold: Double) {
        worker.start { [weak self] _ in
            guard let self, fs.freeShare < threshold, reclaimable.bytes > 0 else { return }
            worker.attempt("background reclaim") { () throws(DeviceError) in
                try pass(goal: allocator.device.geometry.zoneCapacity)
            }
        }
    }

    func poke() { worker.poke() }

    /// Stops the background thread and waits for it to end.
    func stop() { worker.stop() }

    /// Stops the background thread without waiting (the file system is going away).
    func cancel() { worker.cancel() }
}
