// Running a batch of already-validated IOs on one NVMe queue, with the zone ordering rules.
//
// Invariants:
// - Per zone, the batch's writes and appends form a lane in batch order. A regular write is sent
//   only when nothing else of its lane is in flight: passthrough commands bypass the block layer's
//   zone write locking, and two writes in flight to one zone can reach the device out of order
//   (Zone Invalid Write). Appends of a lane are sent together, as many as the queue holds, because
//   the device picks their place; but never while a write of the lane is in flight, and a write
//   after them waits until they all completed, so the write pointer it was aimed at is final.
// - Reads are not ordered against anything (the contract orders only writes to one zone); a read
//   larger than the device's max IO is split into pieces that are all in flight together.
// - When a write or an append of a lane fails, the lane's later regular writes are not sent: they
//   were aimed at a write pointer that is now elsewhere. They complete with EIO naming the earlier
//   failure. Later appends still go: the device places them wherever the write pointer is.
// - Every command the kernel accepted is reaped before `run` returns, whatever failed, because
//   the caller's buffers must outlive the IO.
// - Completions come back in completion order; a read split in pieces completes when its last
//   piece does, with the first error any piece saw. A zone append completes with the offset the
//   device reported, checked to lie inside the zone's capacity (else EIO: never a wild offset).
// - A read planned with `zeroFrom` gets zeros from there on: those bytes lie past the zone's
//   write pointer, where a ZNS device may return anything (deallocated or stale blocks).

#if canImport(Glibc)
import Glibc
#endif
import ZonedCore

/// One IO of a batch after validation.
struct PlannedNVMeIO {
    enum Kind: Equatable { case read, write, append }
    var kind: Kind
    var zone: ZoneID
    var address: UnsafeMutableRawPointer
    var length: Int
    /// Where a read or write goes; for an append, the zone's start.
    var offset: DeviceOffset
    /// For an append: the zone's capacity end, which the landed data must not pass.
    var capacityEnd: DeviceOffset
    /// Reads are split to this; writes and appends were checked against their limit.
    var pieceLimit: Int
    /// For a read: offset in the buffer from which the bytes lie past the write pointer.
    var zeroFrom: Int?
    /// The zone's write-pointer floor when planned (raised after a write or append completes).
    var floorSeen: WritePointerFloor?
    /// For messages: "write of 4096 B at 0x4000000 (zone 1)".
    var what: String

    var operation: DeviceOperation {
        switch kind {
        case .read: return .read
        case .write: return .write
        case .append: return .append
        }
    }
}

struct NVMeBatch {
    private struct Piece {
        var owner: Int
        var command: NVMeIOCommand
        var length: Int
    }
    /// The writes and appends of one zone, in batch order, and what of it is in flight.
    private struct Lane {
        var zone: ZoneID
        var pieces: [Int] = []
        var next = 0
        var writesInFlight = 0
        var appendsInFlight = 0
        var idle: Bool { writesInFlight == 0 && appendsInFlight == 0 }
    }
    private struct Owner {
        var planned: PlannedNVMeIO?
        var remaining: Int
        var error: DeviceError?
        var landed: DeviceOffset?
        var done = false
    }

    private let queue: NVMeQueue
    private let nsid: UInt32
    private let blockSize: UInt64
    private var pieces: [Piece] = []
    private var owners: [Owner] = []
    private var reads: [Int] = []
    private var nextRead = 0
    private var lanes: [Lane] = []
    private var laneOfZone: [ZoneID: Int] = [:]
    private var completions: [IOCompletion] = []
    /// Pieces prepared but not yet taken by the kernel, in queue order; and the number taken but
    /// not yet reaped.
    private var queuedIDs: [Int] = []
    private var inKernel = 0
    /// Set when the queue itself failed: it must not be reused.
    private(set) var queueBroken = false

    /// `items[i]` is `.success(plan)` to run, or `.failure(e)` for an IO validation refused.
    init(queue: NVMeQueue, nsid: UInt32, blockSize: ByteCount, items: [Result<PlannedNVMeIO, DeviceError>]) {
        self.queue = queue
        self.nsid = nsid
        self.blockSize = blockSize.bytes
        for (i, item) in items.enumerated() {
            switch item {
            case .failure(let e):
                owners.append(Owner(planned: nil, remaining: 0, error: e))
            case .success(let p):
                owners.append(Owner(planned: p, remaining: 0))
                addPieces(of: p, owner: i)
            }
        }
    }

    private mutating func addPieces(of p: PlannedNVMeIO, owner: Int) {
        var done = 0
        repeat {
            let n = p.kind == .read ? min(p.pieceLimit, p.length - done) : p.length
            let id = pieces.count
            pieces.append(Piece(owner: owner, command: command(p, from: done, length: n), length: n))
            owners[owner].remaining += 1
            if p.kind == .read { reads.append(id) } else { lanes[laneIndex(for: p.zone)].pieces.append(id) }
            done += n
        } while done < p.length
    }

    private func command(_ p: PlannedNVMeIO, from done: Int, length n: Int) -> NVMeIOCommand {
        let block = (p.offset.bytes + UInt64(done)) / blockSize
        let blocks = n / Int(blockSize)
        switch p.kind {
        case .read:
            return .read(nsid: nsid, block: block, blocks: blocks, into: p.address + done, length: n)
        case .write:
            return .write(nsid: nsid, block: block, blocks: blocks, from: p.address, length: n)
        case .append:
            return .append(nsid: nsid, zoneStartBlock: block, blocks: blocks, from: p.address, length: n)
        }
    }

    /// The lane of `zone`, made on first use so lanes keep first-appearance order.
    private mutating func laneIndex(for zone: ZoneID) -> Int {
        if let l = laneOfZone[zone] { return l }
        lanes.append(Lane(zone: zone))
        laneOfZone[zone] = lanes.count - 1
        return lanes.count - 1
    }

    /// Runs everything and returns the completions in completion order.
    mutating func run() -> [IOCompletion] {
        for i in owners.indices where owners[i].planned == nil { complete(i) }
        while completions.count < owners.count {
            fill()
            if !queuedIDs.isEmpty { pushToKernel() }
            if inKernel > 0 {
                reapAvailable()
            } else {
                // Every unfinished piece is queued, with the kernel, or ready; a lane holds a
                // piece back only while something of it is queued or in flight. So no stall.
                precondition(!queuedIDs.isEmpty || hasReadyPiece(), "NVMe batch stalled: accounting bug")
            }
        }
        return completions
    }

    // MARK: choosing what goes next

    /// Queues ready pieces, lowest batch position first, until the queue is full.
    private mutating func fill() {
        while queuedIDs.count + inKernel < queue.entries, let id = nextReadyPiece() {
            guard queue.prepare(pieces[id].command, tag: UInt64(id)) else {
                preconditionFailure("NVMe submission queue full below its size: accounting bug")
            }
            queuedIDs.append(id)
        }
    }

    /// The kind of the piece's owner.
    private func kind(_ id: Int) -> PlannedNVMeIO.Kind { owners[pieces[id].owner].planned!.kind }

    /// May the head of lane `l` be sent now?
    private func laneHeadReady(_ l: Int) -> Int? {
        let lane = lanes[l]
        guard lane.next < lane.pieces.count else { return nil }
        let head = lane.pieces[lane.next]
        switch kind(head) {
        case .append: return lane.writesInFlight == 0 ? head : nil
        default: return lane.idle ? head : nil
        }
    }

    /// Takes the next piece to send: the lowest id among the next read and every ready lane head.
    private mutating func nextReadyPiece() -> Int? {
        var best: Int? = nextRead < reads.count ? reads[nextRead] : nil
        var bestLane: Int? = nil
        for l in lanes.indices {
            if let head = laneHeadReady(l), best == nil || head < best! { best = head; bestLane = l }
        }
        guard let id = best else { return nil }
        if let l = bestLane {
            lanes[l].next += 1
            if kind(id) == .append { lanes[l].appendsInFlight += 1 } else { lanes[l].writesInFlight += 1 }
        } else {
            nextRead += 1
        }
        return id
    }

    private func hasReadyPiece() -> Bool {
        nextRead < reads.count || lanes.indices.contains { laneHeadReady($0) != nil }
    }

    // MARK: talking to the kernel

    private mutating func pushToKernel() {
        let rc = queue.submit()
        if rc > 0 {
            // The kernel consumes SQEs in queue order.
            queuedIDs.removeFirst(min(Int(rc), queuedIDs.count))
            inKernel += Int(rc)
            return
        }
        if rc == 0 && inKernel > 0 { return }  // retried after the next completion frees room
        // The queue failed (or takes nothing while idle): what is queued never reaches the device
        // because this queue is dropped. Fail it and everything not started; what the kernel has
        // is still reaped by `run`.
        queueBroken = true
        let error = DeviceError(errno: rc < 0 ? -rc : EAGAIN, .write, "io_uring_submit of NVMe commands failed")
        for id in queuedIDs { leaveLane(id); failUnstarted(id, error) }
        queuedIDs.removeAll()
        failEverythingLeft(error)
    }

    /// Waits for one completion, then takes every other one already there.
    private mutating func reapAvailable() {
        var wait = true
        while inKernel > 0 {
            switch queue.reap(wait: wait) {
            case .none:
                return
            case .completion(let tag, let res, let result):
                inKernel -= 1
                finishPiece(Int(tag), res: res, result: result)
            case .failed(let e):
                // We cannot know when the kernel is done with the buffers, so we must not return.
                preconditionFailure("io_uring_wait_cqe failed with errno \(e) with \(inKernel) NVMe commands in flight")
            }
            wait = false
        }
    }

    /// A lane piece is no longer in flight.
    private mutating func leaveLane(_ id: Int) {
        let p = owners[pieces[id].owner].planned!
        guard p.kind != .read, let l = laneOfZone[p.zone] else { return }
        if p.kind == .append { lanes[l].appendsInFlight -= 1 } else { lanes[l].writesInFlight -= 1 }
    }

    private mutating func finishPiece(_ id: Int, res: Int32, result: UInt64) {
        let piece = pieces[id]
        let owner = piece.owner
        let plan = owners[owner].planned!
        var failure = NVMeOutcome(cqeResult: res).error(plan.operation, plan.what)
        if failure == nil, plan.kind == .append {
            switch landing(of: plan, lba: result) {
            case .success(let at): owners[owner].landed = at
            case .failure(let e): failure = e
            }
        }
        if plan.kind != .read {
            leaveLane(id)
            if let f = failure, let l = laneOfZone[plan.zone] { cancelWrites(ofLane: l, after: f) }
        }
        if let f = failure, owners[owner].error == nil { owners[owner].error = f }
        owners[owner].remaining -= 1
        if owners[owner].remaining == 0 { complete(owner) }
    }

    /// Where an append landed, from the LBA the device reported, if that is inside the zone.
    private func landing(of plan: PlannedNVMeIO, lba: UInt64) -> Result<DeviceOffset, DeviceError> {
        let (bytes, overflow) = lba.multipliedReportingOverflow(by: blockSize)
        let at = DeviceOffset(bytes)
        guard !overflow, plan.offset <= at, at.bytes <= plan.capacityEnd.bytes &- UInt64(plan.length),
              UInt64(plan.length) <= plan.capacityEnd.bytes else {
            return .failure(.io(.append, "\(plan.what): the device reported that it landed at LBA \(lba), "
                                + "outside the zone's capacity \(plan.offset)..<\(plan.capacityEnd)"))
        }
        return .success(at)
    }

    private mutating func cancelWrites(ofLane l: Int, after failure: DeviceError) {
        var kept: [Int] = []
        for id in lanes[l].pieces[lanes[l].next...] {
            if kind(id) == .append { kept.append(id); continue }
            failUnstarted(id, .io(.write, "\(owners[pieces[id].owner].planned!.what): not sent, an earlier "
                                  + "write or append to \(lanes[l].zone) in this batch failed (\(failure.detail))"))
        }
        lanes[l].pieces.removeSubrange(lanes[l].next...)
        lanes[l].pieces.append(contentsOf: kept)
    }

    private mutating func failUnstarted(_ id: Int, _ error: DeviceError) {
        let owner = pieces[id].owner
        if owners[owner].error == nil { owners[owner].error = error }
        owners[owner].remaining -= 1
        if owners[owner].remaining == 0 { complete(owner) }
    }

    /// After a queue failure: every piece not yet with the kernel fails with `error`.
    private mutating func failEverythingLeft(_ error: DeviceError) {
        while nextRead < reads.count { failUnstarted(reads[nextRead], error); nextRead += 1 }
        for l in lanes.indices {
            while lanes[l].next < lanes[l].pieces.count {
                failUnstarted(lanes[l].pieces[lanes[l].next], error)
                lanes[l].next += 1
            }
        }
    }

    private mutating func complete(_ owner: Int) {
        guard !owners[owner].done else { return }
        owners[owner].done = true
        let o = owners[owner]
        if let e = o.error {
            completions.append(IOCompletion(index: owner, result: .failure(e)))
            return
        }
        let p = o.planned!
        if let from = p.zeroFrom, from < p.length {
            (p.address + from).initializeMemory(as: UInt8.self, repeating: 0, count: p.length - from)
        }
        completions.append(IOCompletion(index: owner, result: .success(o.landed ?? p.offset)))
    }
}
