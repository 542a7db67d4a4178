// Running a batch of already-validated IOs on one io_uring, with the zone write-ordering rule.
//
// Invariants:
// - At most ONE write per zone is in flight, and a zone's writes are issued in batch order. The
//   kernel does not keep several regular writes to one zone in order through io_uring: on Linux
//   6.1 a queue depth above one per zone fails now and then with "Zone Invalid Write" (seen on
//   null_blk and NVMe ZNS). Parallelism comes from several zones and from reads.
// - Reads are not ordered against anything: a read in a batch does not wait for writes earlier
//   in the same batch (the contract only orders writes to one zone). A read larger than the
//   device's max IO is split into pieces that are all in flight together.
// - When a write to a sequential zone fails, the batch's later writes to that zone are not sent:
//   they would land off the write pointer. They complete with EIO naming the earlier failure.
// - Every SQE the kernel accepted is reaped before `run` returns, whatever failed, because the
//   caller's buffers (and our bounce buffers) must outlive the IO.
// - Completions are reported in the order the kernel completed the IOs; an IO split in pieces
//   completes when its last piece does, with the first error any piece saw.
// - A write refused with ETOOMANYREFS is retried once, in place (its lane stays blocked, so
//   order holds), when `makeRoom` managed to close an implicitly open zone: Linux 6.1's null_blk
//   refuses to reopen a closed zone when both the open and the active limits are reached, even
//   though it could close an implicitly open zone; the contract says the device does that.
// - A read planned with `zeroFrom` gets zeros from there on: those bytes lie past the zone's
//   write pointer, and the kernel fills them with its own pattern (0xFF on null_blk 6.1).

import ZonedCore
#if canImport(Glibc)
import Glibc
#endif

/// One IO of a batch after validation: where it goes, in which pieces, and how it is copied.
struct PlannedIO {
    enum Direction { case read, write }
    var direction: Direction
    var zone: ZoneID
    /// Sequential zones stop a batch's later writes after a failed one; conventional ones do not.
    var sequential: Bool
    /// Where the kernel reads from or writes to: the caller's memory, or `bounce`.
    var address: UnsafeMutableRawPointer
    var length: Int
    var offset: DeviceOffset
    /// Memory the kernel can DMA from when the caller's buffer is not block-aligned.
    var bounce: AlignedBuffer?
    /// For a bounced read: where the bytes go once the read succeeded.
    var copyBack: UnsafeMutableRawBufferPointer?
    /// For a read: offset in the buffer from which the bytes lie past the write pointer.
    var zeroFrom: Int?
    /// The zone's write-pointer floor when the IO was planned (sequential zones, contract checks).
    var floorSeen: WritePointerFloor?
    /// Largest piece the kernel gets (reads are split to it; writes were checked against it).
    var pieceLimit: Int
    /// For messages: "write of 4096 B at 0x4000000 (zone 1)".
    var what: String
}

struct BatchRun {
    private struct Piece {
        var owner: Int
        var write: Bool
        var address: UnsafeMutableRawPointer
        var length: Int
        var offset: UInt64
    }
    /// The writes of one zone, in batch order, and whether one of them is with the kernel.
    private struct Lane {
        var zone: ZoneID
        var sequential: Bool
        var pieces: [Int] = []
        var next = 0
        var busy = false
    }
    private struct Owner {
        var planned: PlannedIO?
        var remaining: Int
        var error: DeviceError?
        var done = false
    }

    private let fd: Int32
    private let ring: URing
    /// Closes an implicitly open zone other than the given one; true when it did.
    private let makeRoom: ((ZoneID) -> Bool)?
    private var retried: Set<Int> = []
    private var pieces: [Piece] = []
    private var owners: [Owner] = []
    private var reads: [Int] = []
    private var nextRead = 0
    private var lanes: [Lane] = []
    private var laneOfZone: [ZoneID: Int] = [:]
    private var completions: [IOCompletion] = []
    /// Pieces whose SQEs are prepared but not yet taken by the kernel, in SQ order; and the
    /// number taken but not yet reaped.
    private var queuedIDs: [Int] = []
    private var queued: Int { queuedIDs.count }
    private var inKernel = 0
    /// Set when the ring itself failed: the ring must not be reused.
    private(set) var ringBroken = false

    /// `items[i]` is `.success(plan)` to run, or `.failure(e)` for an IO validation refused.
    init(fd: Int32, ring: URing, items: [Result<PlannedIO, DeviceError>],
         makeRoom: ((ZoneID) -> Bool)? = nil) {
        self.fd = fd
        self.ring = ring
        self.makeRoom = makeRoom
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

    private mutating func addPieces(of p: PlannedIO, owner: Int) {
        var done = 0
        repeat {
            let n = min(p.pieceLimit, p.length - done)
            let id = pieces.count
            pieces.append(Piece(owner: owner, write: p.direction == .write, address: p.address + done,
                                length: n, offset: p.offset.bytes + UInt64(done)))
            owners[owner].remaining += 1
            if p.direction == .read {
                reads.append(id)
            } else {
                lanes[laneIndex(for: p)].pieces.append(id)
            }
            done += n
        } while done < p.length
    }

    /// The lane of `p`'s zone, made on first use so lanes keep first-appearance order.
    private mutating func laneIndex(for p: PlannedIO) -> Int {
        if let l = laneOfZone[p.zone] { return l }
        lanes.append(Lane(zone: p.zone, sequential: p.sequential))
        laneOfZone[p.zone] = lanes.count - 1
        return lanes.count - 1
    }

    /// Runs everything and returns the completions in completion order.
    mutating func run() -> [IOCompletion] {
        for i in owners.indices where owners[i].planned == nil { complete(i) }
        while completions.count < owners.count {
            fill()
            if queued > 0 { pushToKernel() }
            if inKernel > 0 {
                reapAvailable()
            } else {
                // Every unfinished piece is queued, with the kernel, or ready; lanes are busy only
                // while their write is queued or with the kernel. So this cannot stall.
                precondition(queued > 0 || hasReadyPiece(), "io batch stalled: accounting bug")
            }
        }
        return completions
    }

    // MARK: choosing what goes next

    /// Queues ready pieces, lowest batch position first, until the ring is full.
    private mutating func fill() {
        while queued + inKernel < ring.entries, let id = nextReadyPiece() {
            let p = pieces[id]
            guard ring.prepare(write: p.write, fd: fd, address: p.address, length: p.length,
                               offset: p.offset, tag: UInt64(id)) else {
                preconditionFailure("io_uring submission queue full below its size: accounting bug")
            }
            queuedIDs.append(id)
            if p.write { lanes[laneIndex(ofPiece: id)].busy = true }
        }
    }

    /// Takes the next piece to issue: the lowest id among the next read and every idle lane's head.
    private mutating func nextReadyPiece() -> Int? {
        var best: Int? = nextRead < reads.count ? reads[nextRead] : nil
        var bestLane: Int? = nil
        for (l, lane) in lanes.enumerated() where !lane.busy && lane.next < lane.pieces.count {
            let head = lane.pieces[lane.next]
            if best == nil || head < best! { best = head; bestLane = l }
        }
        guard let id = best else { return nil }
        if let l = bestLane { lanes[l].next += 1 } else { nextRead += 1 }
        return id
    }

    private func hasReadyPiece() -> Bool {
        nextRead < reads.count || lanes.contains { !$0.busy && $0.next < $0.pieces.count }
    }

    private func laneIndex(ofPiece id: Int) -> Int {
        laneOfZone[owners[pieces[id].owner].planned!.zone]!
    }

    // MARK: talking to the kernel

    private mutating func pushToKernel() {
        let rc = ring.submit()
        if rc > 0 {
            // The kernel consumes SQEs in queue order.
            queuedIDs.removeFirst(Int(rc))
            inKernel += Int(rc)
            return
        }
        if rc == 0 && inKernel > 0 { return }  // retried after the next completion frees room
        // The ring failed (or takes nothing while idle): the queued SQEs never reach the kernel
        // because this ring is dropped. Fail them and everything not started; what the kernel
        // already has is still reaped by `run`.
        ringBroken = true
        let error = DeviceError(errno: rc < 0 ? -rc : EAGAIN, .write, "io_uring_submit failed")
        for id in queuedIDs { failUnstarted(id, error) }
        queuedIDs.removeAll()
        failEverythingLeft(error)
    }

    /// Waits for one completion, then takes every other one already there.
    private mutating func reapAvailable() {
        var wait = true
        while inKernel > 0 {
            switch ring.reap(wait: wait) {
            case .none:
                return
            case .completion(let tag, let res):
                inKernel -= 1
                finishPiece(Int(tag), res: res)
            case .failed(let e):
                // Waiting itself failed: we cannot know when the kernel is done with the
                // buffers, so we must not return. This is not expected from io_uring_wait_cqe.
                preconditionFailure("io_uring_wait_cqe failed with errno \(e) with \(inKernel) IOs in flight")
            }
            wait = false
        }
    }

    private mutating func finishPiece(_ id: Int, res: Int32) {
        let piece = pieces[id]
        let owner = piece.owner
        let plan = owners[owner].planned!
        var failure: DeviceError? = nil
        if res < 0 {
            failure = DeviceError(errno: -res, piece.write ? .write : .read, plan.what)
        } else if Int(res) != piece.length {
            failure = .io(piece.write ? .write : .read,
                          "\(plan.what): short \(piece.write ? "write" : "read") of \(res) of \(piece.length) B "
                          + "at \(DeviceOffset(piece.offset))")
        }
        if piece.write {
            let l = laneIndex(ofPiece: id)
            lanes[l].busy = false
            if res == -ETOOMANYREFS, !retried.contains(id), let makeRoom, makeRoom(plan.zone) {
                // The in-flight piece is the one just before the lane's cursor: step back.
                retried.insert(id)
                lanes[l].next -= 1
                return
            }
            if failure != nil && lanes[l].sequential { cancelRest(ofLane: l, after: plan.what) }
        }
        if let f = failure, owners[owner].error == nil { owners[owner].error = f }
        owners[owner].remaining -= 1
        if owners[owner].remaining == 0 { complete(owner) }
    }

    private mutating func cancelRest(ofLane l: Int, after what: String) {
        while lanes[l].next < lanes[l].pieces.count {
            let id = lanes[l].pieces[lanes[l].next]
            lanes[l].next += 1
            failUnstarted(id, .io(.write, "\(owners[pieces[id].owner].planned!.what): not sent, "
                                  + "an earlier write to \(lanes[l].zone) in this batch failed (\(what))"))
        }
    }

    private mutating func failUnstarted(_ id: Int, _ error: DeviceError) {
        let owner = pieces[id].owner
        if owners[owner].error == nil { owners[owner].error = error }
        owners[owner].remaining -= 1
        if owners[owner].remaining == 0 { complete(owner) }
    }

    /// After a ring failure: every piece not yet with the kernel fails with `error`.
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
        if let dst = p.copyBack, let src = p.bounce {
            dst.copyMemory(from: UnsafeRawBufferPointer(start: src.base, count: p.length))
        }
        if let from = p.zeroFrom, from < p.length {
            let dst = p.copyBack?.baseAddress ?? p.address
            (dst + from).initializeMemory(as: UInt8.self, repeating: 0, count: p.length - from)
        }
        completions.append(IOCompletion(index: owner, result: .success(p.offset)))
    }
}
