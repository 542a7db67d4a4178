// A file's in-memory state: size, extent map, ordered extents, and its locks.
//
// Invariants:
// - `layout` (size and map), `cache`, `cachedSize`, `ordered`, `nocow`, `hasPrealloc` change only under `state` (a ConditionLock whose broadcast
//   also wakes threads waiting for an ordered extent of this inode).
// - Every pending ordered extent covers file bytes whose new data is in flight; nothing reads or
//   overwrites those bytes until it finishes (the seed's lock_extent_direct loop).
// - Ordered extents carry the generation they were started in (splits keep it), so fsync can wait
//   for exactly those that existed when it began: a stream of later writes cannot starve it.
// - The map never points at device space that was not written for this file: extents are inserted
//   only when their IO has completed (or, for prealloc, when the space was claimed).

import ZonedCore

public typealias InodeNumber = UInt64

/// Writes in flight over a file range (the seed's btrfs_ordered_extent). Changed under its
/// inode's `state` lock.
final class OrderedExtent: @unchecked Sendable {
    enum Kind: Sendable { case regular, nocow, prealloc }
    enum State: Sendable, Equatable { case pending, finished(ok: Bool) }

    private(set) var fileOffset: UInt64
    private(set) var length: UInt64
    let kind: Kind
    /// When it was started, in its inode's order: fsync waits only for ordered extents older than
    /// itself. A split keeps the generation (its parts were started together).
    let generation: UInt64
    var state: State = .pending
    /// Completed pieces and where they landed (recorded at completion: with zone append only the
    /// device knows the address until then). Inside [fileOffset, fileEnd), not overlapping.
    private(set) var landed: [LandedPiece] = []

    init(fileOffset: UInt64, length: UInt64, kind: Kind, generation: UInt64) {
        self.fileOffset = fileOffset
        self.length = length
        self.kind = kind
        self.generation = generation
    }

    var fileEnd: UInt64 { fileOffset + length }
    func overlaps(_ s: UInt64, _ e: UInt64) -> Bool { fileOffset < e && s < fileEnd }

    /// Splits the first `n` bytes off into their own ordered extent (one per submitted batch, the
    /// seed's btrfs_extract_ordered_extent; or one per run of pieces that landed back to back);
    /// this one keeps the rest. Recorded pieces go with the part they lie in.
    func splitFront(_ n: UInt64) -> OrderedExtent {
        precondition(n > 0 && n < length, "split of \(n) from an ordered extent of \(length)")
        let cut = fileOffset + n
        precondition(!landed.contains { $0.fileOffset < cut && $0.fileEnd > cut }, "split at \(cut) cuts a landed piece")
        let front = OrderedExtent(fileOffset: fileOffset, length: n, kind: kind, generation: generation)
        front.landed = landed.filter { $0.fileEnd <= cut }
        landed.removeAll { $0.fileEnd <= cut }
        fileOffset = cut
        length -= n
        return front
    }

    /// Records a completed piece and where it landed (the seed's btrfs_record_physical_zoned).
    func recordLanded(_ p: LandedPiece) {
        precondition(p.fileOffset >= fileOffset && p.fileEnd <= fileEnd, "piece \(p.fileOffset)+\(p.length) outside its ordered extent")
        landed.append(p)
    }

    /// The recorded pieces as runs contiguous on the device, in file order.
    var landedRuns: [LandedPiece] { LandedPiece.contiguousRuns(landed) }
}

final class Inode: @unchecked Sendable {
    let number: InodeNumber
    let lock = ReadWriteLock(rank: .inode)
    let ranges = RangeLock()
    let state = ConditionLock(rank: .inodeState)
    /// Size and extent map; changed only through `Engine.apply(_:_:)` so the recorder sees it all.
    var layout: FileLayout
    var nocow: Bool
    /// Set once the file got a preallocated extent (fallocate, conventional mode).
    var hasPrealloc = false
    var ordered: [OrderedExtent] = []
    /// The generation the next new ordered extent gets (see `OrderedExtent.generation`).
    private(set) var nextOrderedGeneration: UInt64 = 1

    /// Buffered writes not yet on the device (the page cache): block index → that block's bytes.
    var cache: [UInt64: [UInt8]] = [:]
    /// The size buffered writes gave the file; counts while the cache holds data past `layout.size`.
    var cachedSize: UInt64 = 0

    /// The size readers see: the layout's, or more while buffered writes past it are cached.
    var size: UInt64 { max(layout.size, cachedSize) }
    var map: ExtentMap { layout.map }

    init(number: InodeNumber, nocow: Bool, layout: FileLayout) {
        self.number = number
        self.nocow = nocow
        self.layout = layout
        self.hasPrealloc = layout.map.extents.contains { $0.kind == .prealloc }
    }

    /// A pending ordered extent overlapping [s, e), under `state`.
    func pendingOrdered(_ s: UInt64, _ e: UInt64) -> OrderedExtent? {
        ordered.first { $0.state == .pending && $0.overlaps(s, e) }
    }

    /// Starts an ordered extent over new IO. Under `state`.
    func startOrdered(_ fileOffset: UInt64, _ length: UInt64, _ kind: OrderedExtent.Kind) -> OrderedExtent {
        let oe = OrderedExtent(fileOffset: fileOffset, length: length, kind: kind, generation: nextOrderedGeneration)
        nextOrderedGeneration += 1
        ordered.append(oe)
        return oe
    }

    /// Tracks a part split off a started ordered extent. Under `state`.
    func addSplit(_ oe: OrderedExtent) {
        precondition(oe.generation < nextOrderedGeneration, "a split must come from a started ordered extent")
        ordered.append(oe)
    }

    /// Whether an ordered extent started before generation `g` is still pending. Under `state`.
    func hasPendingOrdered(before g: UInt64) -> Bool {
        ordered.contains { $0.state == .pending && $0.generation < g }
    }

    /// Marks an ordered extent finished and forgets it; wakes its waiters. Under `state`.
    func finishOrdered(_ oe: OrderedExtent, ok: Bool) {
        oe.state = .finished(ok: ok)
        ordered.removeAll { $0 === oe }
        state.broadcast()
    }
}
