// The metadata log writer.
//
// Records are buffered in memory as whole batches (one batch = one operation, or one engine layout
// change) and reach the device in frames when the file system commits (fsync, sync, unmount, or
// when the buffer grows). Log zones form a chain: each starts with a `zoneHeader` frame, and a full
// zone ends with a `next` frame naming the following one. The superblock names the zone where the
// newest complete checkpoint begins; replay starts there.
//
// Invariants (the crash-safety argument):
// - Before any frame is written, the device is flushed: a record never becomes durable before the
//   data it points at.
// - A batch never spans two frames, and a frame is atomic (checksummed), so an operation is
//   replayed whole or not at all.
// - Every log zone keeps one block free for its `next` frame, so a zone can always be chained.
// - A checkpoint is written only while the file system is quiesced (no operation in flight, the
//   buffer empty), so it describes exactly the state at its position in the log.
// - The superblock moves to a new checkpoint only after that checkpoint is durable, and log zones
//   before it are reset only after that superblock is durable. Data zones whose last reference was
//   dropped are reset only after a durable commit that holds the records dropping it.
// - After a device error the journal refuses every later commit (EIO): the file system is then
//   read-only in effect, and remounting replays what was durable.
// - The superblock and the counters are published under `figures`, a lock of their own, changed
//   by the writer (under `commitLock`) and read by anyone (status, df, metrics, the lifetime
//   counters a commit logs) without `commitLock`, which is held across device IO: a reader never
//   waits for a commit. `figures` is a leaf: nothing else is locked or done while it is held.

import ZonedAllocator
import ZonedCore
import ZonedEngine

final class Journal: ChangeRecorder, @unchecked Sendable {
    let device: any ZonedDevice
    let allocator: ZoneAllocator
    let block: Int
    /// Index (0/1) of the superblock zone holding the newest copy.
    private var newestSuperblockSlot: Int

    // Buffer (under `bufferLock`).
    private let bufferLock = ConditionLock(rank: .journalBuffer)
    private var pending = ByteWriter()
    private var batchEnds: [Int] = []
    /// Frames written since the device was last flushed after a write (set under `commitLock`
    /// too, read without it so a status never waits for a commit).
    private var framesSinceFlush = 0
    /// Records were taken out of the buffer since the last flush (set when a commit takes them,
    /// before their frames exist, cleared by that commit's flush): without it a commit in flight
    /// looks durable between the take and its first frame.
    private var takenSinceFlush = false

    // Writer (under `commitLock`).
    private let commitLock = ConditionLock(rank: .journalCommit)
    private(set) var zone: ZoneID?
    /// Log zones from the superblock's log start to `zone`.
    private(set) var chain: [ZoneID] = []
    private(set) var nextSequence: UInt64
    private var bytesSinceCheckpoint = 0
    private var lastCheckpointBytes = 0
    private var failure: DeviceError?

    /// The newest superblock and the counters, as readers may see them at any time.
    private struct Figures: Sendable {
        var superblock: Superblock
        var counters = JournalCounters()
    }
    private let figures: Locked<Figures>
    var superblock: Superblock { figures.withLock { $0.superblock } }
    var counters: JournalCounters { figures.withLock { $0.counters } }
    private func count(_ change: (inout JournalCounters) -> Void) { figures.withLock { change(&$0.counters) } }

    /// Runs its argument with every file system operation excluded (set by the file system).
    var quiesce: (() throws(DeviceError) -> Void) throws(DeviceError) -> Void = { body throws(DeviceError) in try body() }
    /// The whole state as record batches, for a checkpoint (called while quiesced).
    var snapshot: () throws(DeviceError) -> (nextInode: InodeNumber, batches: [[LogRecord]]) = { (rootInode + 1, []) }

    /// Largest frame payload: a quarter zone, so a rollover wastes little.
    private var maxPayload: Int { max(block * 4, Int(device.geometry.zoneCapacity.bytes) / 4 - LogFrameHeader.size) }

    init(device: any ZonedDevice, allocator: ZoneAllocator, superblock: Superblock, newestSlot: Int,
         nextSequence: UInt64) {
        self.device = device
        self.allocator = allocator
        self.block = Int(device.geometry.logicalBlockSize.bytes)
        self.figures = Locked(Figures(superblock: superblock))
        self.newestSuperblockSlot = newestSlot
        self.nextSequence = nextSequence
    }

    // MARK: Buffering (never does IO)

    func record(_ inode: InodeNumber, _ change: FileChange) { append([.file(inode, change)]) }

    /// Buffers one batch: it will be replayed whole or not at all.
    func append(_ batch: [LogRecord]) {
        bufferLock.withLock {
            for r in batch { r.encode(into: &pending) }
            batchEnds.append(pending.count)
        }
    }

    var pendingBytes: Int { bufferLock.withLock { pending.count } }

    /// Everything logged so far is on the device and flushed: nothing buffered, no frame written
    /// since the last flush.
    var isDurable: Bool { bufferLock.withLock { pending.count == 0 && !takenSinceFlush && framesSinceFlush == 0 } }

    /// Called under `commitLock` after the flush that covers every frame this commit wrote, which
    /// holds every record it took.
    private func flushed() { bufferLock.withLock { framesSinceFlush = 0; takenSinceFlush = false } }

    private func takePending() -> (bytes: [UInt8], ends: [Int]) {
        bufferLock.withLock {
            let out = (pending.bytes, batchEnds)
            if pending.count > 0 { takenSinceFlush = true }
            pending = ByteWriter()
            batchEnds = []
            return out
        }
    }

    // MARK: Committing

    /// Writes what is buffered; `durable` also flushes the device and then resets data zones that
    /// nothing references any more.
    func commit(durable: Bool) throws(DeviceError) {
        try commitLock.withLock { () throws(DeviceError) in
            if let failure { throw DeviceError.io(.write, "the metadata log failed earlier (\(failure)); remount to recover") }
            do throws(DeviceError) {
                let reclaimable = reclaimableDataZones()
                if needsCheckpoint() {
                    try quiesce { () throws(DeviceError) in
                        try writePending(takePending())
                        try rollOver(chain: true, checkpoint: true)
                    }
                } else {
                    try writePending(takePending())
                }
                if durable {
                    try device.flushIfWritten()
                    flushed()
                    count { $0.durableCommits += 1 }
                    for z in reclaimable { if try allocator.resetIfUnused(z) { count { $0.dataZonesReset += 1 } } }
                }
            } catch {
                failure = error
                throw error
            }
        }
    }

    /// Starts the log afresh in a new zone with a checkpoint, moves the superblock there and resets
    /// the old log zones (format and mount). The caller has quiesced the file system.
    func startFresh() throws(DeviceError) {
        try commitLock.withLock { () throws(DeviceError) in
            do throws(DeviceError) {
                try writePending(takePending())
                try rollOver(chain: false, checkpoint: true)
                flushed()  // the checkpoint was flushed, and the superblock naming it written and flushed
            } catch {
                failure = error
                throw error
            }
        }
    }

    /// At unmount: when the log written since the last checkpoint is larger than that checkpoint,
    /// moves the log to a new zone that starts with one, so the next mount reads a checkpoint
    /// instead of replaying the longer tail (after 256 GiB of data written, a tail of checksum
    /// records took mount 5 s; the checkpoint it is traded for holds none of them).
    func checkpointIfShorter() throws(DeviceError) {
        try commitLock.withLock { () throws(DeviceError) in
            if let failure { throw DeviceError.io(.write, "the metadata log failed earlier (\(failure)); remount to recover") }
            guard bytesSinceCheckpoint > lastCheckpointBytes else { return }
            do throws(DeviceError) {
                try quiesce { () throws(DeviceError) in
                    try writePending(takePending())
                    try rollOver(chain: true, checkpoint: true)
                }
                try device.flushIfWritten()
                flushed()
            } catch {
                failure = error
                throw error
            }
        }
    }

    /// Adopts the chain replay found (mount), so its zones are reset once a new checkpoint lands.
    func adopt(chain: [ZoneID]) { commitLock.withLock { self.chain = chain } }

    /// Full data zones with no live bytes, noted before the buffer is taken: every record that
    /// dropped their last reference was buffered before their live count reached zero.
    private func reclaimableDataZones() -> [ZoneID] {
        bufferLock.withLock { allocator.deadDataZones }
    }

    private func needsCheckpoint() -> Bool {
        guard let zone else { return true }
        let room = roomLeft(zone)
        // Checkpoint when the buffer would not fit, unless the state is so large that the log since
        // the last checkpoint is still smaller than a checkpoint (then plain chaining is cheaper).
        return room < pendingBytes + LogFrameHeader.size + maxPayload / 8 && bytesSinceCheckpoint >= lastCheckpointBytes
    }

    private func roomLeft(_ z: ZoneID) -> Int {
        let a = allocator.account(z)
        guard a.phase == .active || a.phase == .empty else { return 0 }
        return max(0, Int(a.free.bytes) - block)  // one block stays for the `next` frame
    }

    /// Writes buffered batches as frames, cutting only between batches.
    private func writePending(_ taken: (bytes: [UInt8], ends: [Int])) throws(DeviceError) {
        guard !taken.bytes.isEmpty else { return }
        try device.flushIfWritten()  // the data these records point at is durable first
        var start = 0
        var cut = 0
        for end in taken.ends {
            if end - start > maxPayload, cut > start {
                try writeFrame(Array(taken.bytes[start..<cut]))
                start = cut
            }
            cut = end
        }
        if cut > start { try writeFrame(Array(taken.bytes[start..<cut])) }
    }

    private func writeFrame(_ payload: [UInt8]) throws(DeviceError) {
        let size = LogFrameHeader(fsid: 0, sequence: 0, payloadLength: UInt32(payload.count), payloadCRC: 0).frameBytes(block: block)
        if zone == nil || roomLeft(zone!) < size { try rollOver(chain: zone != nil, checkpoint: false) }
        guard roomLeft(zone!) >= size else {
            throw DeviceError.noSpace(.write, "a metadata frame of \(size) B does not fit in an empty zone")
        }
        try put(payload, in: zone!)
        bytesSinceCheckpoint += size
    }

    /// Writes one frame at the zone's write pointer (the journal is the zone's only writer).
    private func put(_ payload: [UInt8], in z: ZoneID) throws(DeviceError) {
        let frame = LogFrame.encode(fsid: superblock.fsid, sequence: nextSequence, payload: payload, block: block)
        let grant = try allocator.grant(ByteCount(frame.count), role: .metadata, hint: z)
        guard grant.zone == z, grant.length.int == frame.count else {
            allocator.complete(grant, written: .zero)
            throw DeviceError.io(.write, "metadata zone \(z) could not take a frame of \(frame.count) B")
        }
        var done = 0
        // One piece at a time even with zone append: a frame's pieces must land in order.
        let piece = allocator.pieceLimit(z).int
        var failure: DeviceError?
        let buffer = AlignedBuffer(count: frame.count)
        frame.withUnsafeBytes { buffer.slice(0, frame.count).copyMemory(from: $0) }
        while done < frame.count {
            let n = min(piece, frame.count - done)
            do { _ = try allocator.append(grant, UnsafeRawBufferPointer(buffer.slice(done, n))) } catch { failure = error; break }
            done += n
        }
        allocator.complete(grant, written: ByteCount(done))
        if let failure { throw failure }
        nextSequence += 1
        bufferLock.withLock { framesSinceFlush += 1 }
        count { c in
            c.frames += 1
            c.bytes += UInt64(frame.count)
        }
    }

    /// Moves the log to a new zone. `chain`: the current zone gets a `next` frame first.
    /// `checkpoint`: the new zone starts with a checkpoint, the superblock moves to it, and the
    /// zones before it are reset (the file system must be quiesced).
    private func rollOver(chain linkIt: Bool, checkpoint: Bool) throws(DeviceError) {
        guard let next = allocator.setAsideEmptyZone(for: .metadata) else {
            throw DeviceError.noSpace(.write, "no empty zone left for the metadata log")
        }
        let previous = zone
        if linkIt, let previous {
            try put(LogFrame.payload([.next(zone: next)]), in: previous)
        }
        if let previous { try allocator.finish(previous) }  // frees its active-zone resource first
        zone = next
        self.chain.append(next)
        let headerSequence = nextSequence
        try put(LogFrame.payload([.zoneHeader(previous: linkIt ? previous : nil)]), in: next)
        count { $0.zonesUsed += 1 }
        guard checkpoint else { return }
        try writeCheckpoint()
        try device.flush()
        var sb = superblock
        sb.generation += 1
        sb.logStartZone = next
        sb.logStartSequence = headerSequence
        try writeSuperblock(sb)
        // Zones before the checkpoint are no longer needed by any replay.
        let obsolete = self.chain.prefix { $0 != next }
        self.chain.removeFirst(obsolete.count)
        for z in obsolete {
            allocator.discardAll(z)
            try allocator.resetIfUnused(z)
        }
    }

    private func writeCheckpoint() throws(DeviceError) {
        let s = try snapshot()
        let before = counters.bytes
        var batches: [[LogRecord]] = [[.checkpointBegin(nextInode: s.nextInode)]]
        batches.append(contentsOf: s.batches)
        batches.append([.checkpointEnd])
        var w = ByteWriter()
        var ends: [Int] = []
        for b in batches {
            for r in b { r.encode(into: &w) }
            ends.append(w.count)
        }
        try writePending((w.bytes, ends))
        lastCheckpointBytes = Int(counters.bytes - before)
        count { [size = UInt64(lastCheckpointBytes)] in
            $0.checkpoints += 1
            $0.lastCheckpointBytes = size
        }
        bytesSinceCheckpoint = 0
    }

    // MARK: Superblock

    func writeSuperblock(_ sb: Superblock) throws(DeviceError) {
        let slot = 1 - newestSuperblockSlot
        let z = slot == 0 ? sb.superblockZones.0 : sb.superblockZones.1
        try SuperblockIO.write(sb, zone: z, device: device)
        allocator.refresh(z)
        // Both at once: a reader never sees the new superblock with the old count, or the reverse.
        figures.withLock { f in
            f.superblock = sb
            f.counters.superblockWrites += 1
        }
        newestSuperblockSlot = slot
    }
}

public struct JournalCounters: Sendable, Equatable {
    public var frames: UInt64 = 0
    public var bytes: UInt64 = 0
    public var checkpoints: UInt64 = 0
    public var zonesUsed: UInt64 = 0
    public var superblockWrites: UInt64 = 0
    public var durableCommits: UInt64 = 0
    public var dataZonesReset: UInt64 = 0
    /// Bytes of the newest checkpoint (the whole namespace and file layouts as records); 0 before
    /// the first. Today every checkpoint rewrites the whole state, so this grows with the files.
    public var lastCheckpointBytes: UInt64 = 0
}
