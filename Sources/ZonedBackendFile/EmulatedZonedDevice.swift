// An emulated host-managed zoned device stored in one regular file: the embedded default.
//
// Invariants:
// - It keeps every rule of the `ZonedDevice` header comment, strictly, with the errnos of a Linux
//   zoned block device (the rules live in `ZoneTable`; the image layout in `ImageFormat`).
//   Where ZBC and NVMe ZNS differ it follows ZBC, as null_blk does: its geometry's command set
//   is always `.zbc`, and `create` refuses any other.
// - Thread safety (why the class is Sendable): all mutable state sits in `state`, a `Locked`; the
//   other stored properties are immutable. Lock order is always zone lock → `state`, never the
//   reverse. Each data IO holds its zone's lock from admission (under `state`) through its pwrite
//   or pread, so IOs to one zone are applied in the order they are admitted and a read never sees
//   a range whose write is still in flight; IOs to different zones run in parallel.
// - Admission moves the write pointer before the pwrite; when the pwrite fails, the zone's state
//   is rolled back (nothing else could have moved it: the zone lock is held).
// - Durability model: `durable` is the zone table as the image file holds it. flush() makes the
//   live table durable (data fdatasync, table write, fdatasync); reset and finish are durable for
//   their zone at once (a device completes them to the media); open and close change nothing
//   durable. A process that dies without flush reopens with the write pointers of the last flush
//   (or later reset/finish of that zone): like a power cut that kept none of the unflushed data.
//   close() is a clean shutdown of this process (not of the device): it persists the live table,
//   open conditions included, and syncs — but only when the table changed, so opening an image to
//   look at it (`zbdfs zones`) leaves its bytes exactly as they were.
// - Reopening gives the same geometry, write pointers and conditions, open zones included: a
//   process exit is not a device power cycle, and `zbdfs zone open` must hold across commands.
//   Only a power cut closes open zones (empty when nothing was written).
// - After a power cut (fault plan or `powerCut(tornLastBlock:)`) the table is persisted and the
//   device is dead: every call fails with EIO until the image is opened again.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ZonedCore

/// A lock that orders the IOs of one zone.
final class ZoneLock: Sendable {
    let mutex = Lock()
}

/// Old bytes of a conventional-zone write made since the last flush, kept while a fault plan is
/// armed so a power cut can undo the write.
struct ConventionalUndo: Sendable {
    var offset: DeviceOffset
    var old: [UInt8]
}

/// The zone table as the file holds it (ImageFormat.swift).
struct TableOnFile: Sendable {
    /// 1 until the first change upgrades the image; 2 afterwards.
    var version: UInt32
    /// Version 1: the generation of the newer slot.
    var generation: UInt64 = 0
    /// Version 2: each zone's newest sequence (its copy lives in slot `sequence % 2`).
    var sequences: [UInt8] = []
}

struct EmulatorState: Sendable {
    enum Life: Sendable { case running, dead, closed }
    var life: Life = .running
    var table: ZoneTable
    var durable: [ZoneState]
    /// What the file's zone table is, and where each zone's newest copy is.
    var onFile: TableOnFile
    /// Zones whose durable state an entry write failed to record: written again at the next persist.
    var unwritten: Set<Int> = []
    var ioCount: UInt64 = 0
    var faults: FaultPlan?
    var undo: [ConventionalUndo] = []
    /// Bytes written to the zone table since open (what a reset, finish or flush costs).
    var tableBytesWritten: UInt64 = 0
}

public final class EmulatedZonedDevice: ZonedDevice, Sendable {
    public let geometry: DeviceGeometry
    public var kind: DeviceKind { .emulated }
    public let path: String
    let file: BackingFile
    let state: Locked<EmulatorState>
    let zoneLocks: [ZoneLock]

    init(path: String, geometry: DeviceGeometry, file: BackingFile, table: ZoneTable,
                 onFile: TableOnFile, faults: FaultPlan?) {
        self.path = path
        self.geometry = geometry
        self.file = file
        self.zoneLocks = (0..<geometry.zoneCount).map { _ in ZoneLock() }
        self.state = Locked(EmulatorState(table: table, durable: table.states, onFile: onFile, faults: faults))
    }

    // MARK: Create, open, probe

    /// Creates a sparse image for `geometry` at `path` and opens it. Refuses an existing file
    /// (EEXIST) unless `overwrite`.
    @discardableResult
    /// `discardData`: keep only non-zero blocks (KeptBlocks.swift): a drive-sized device in a
    /// small file, for scale and speed work; fault plans need a full image.
    public static func create(path: String, geometry: DeviceGeometry, overwrite: Bool = false,
                              faults: FaultPlan? = nil, discardData: Bool = false) throws(DeviceError) -> EmulatedZonedDevice {
        if let problem = geometry.problem() { throw .invalid(.create, problem) }
        guard geometry.commandSet == .zbc else {
            throw .invalid(.create, "the emulated device follows ZBC (as null_blk does); it cannot emulate \(geometry.commandSet.rawValue)")
        }
        if discardData, faults != nil {
            throw .invalid(.create, "a discard-data image takes no fault plan: power cuts and IO errors need a full image")
        }
        guard geometry.zoneCount <= Int(UInt32.max),
              geometry.zoneSize.bytes <= UInt64(Int64.max) / UInt64(geometry.zoneCount) / 2 else {
            throw .invalid(.create, "\(geometry.zoneCount) zones of \(geometry.zoneSize) do not fit in a file")
        }
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC | (overwrite ? O_TRUNC : O_EXCL), 0o644)
        guard fd >= 0 else {
            let e = currentErrno()
            let hint = e == EEXIST ? "\(path) already exists; pass overwrite to replace it" : "cannot create \(path)"
            throw DeviceError(errno: e, .create, hint)
        }
        defer { Glibc.close(fd) }
        let fresh = ZoneTable(geometry: geometry).states
        let n = geometry.zoneCount
        try writeAll(fd, ImageFormat.encodeHeader(geometry, discardsData: discardData), at: 0, path)
        // Sequence 0 in slot 0, 1 in slot 1: both copies valid, slot 1's the newer.
        try writeAll(fd, ImageFormat.encodeSlot(fresh, sequence: 0), at: ImageFormat.tableOffset(slot: 0, zoneCount: n), path)
        try writeAll(fd, ImageFormat.encodeSlot(fresh, sequence: 1), at: ImageFormat.tableOffset(slot: 1, zoneCount: n), path)
        // A discard-data image ends where its (still empty) record area starts.
        let size = ImageFormat.dataStart(zoneCount: n) + (discardData ? 0 : geometry.totalBytes.bytes)
        guard ftruncate(fd, off_t(size)) == 0 else { throw .lastErrno(.create, "cannot size \(path) to \(size) bytes") }
        guard fsync(fd) == 0 else { throw .lastErrno(.create, "fsync of \(path)") }
        return try open(path: path, faults: faults)
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], at offset: UInt64, _ path: String) throws(DeviceError) {
        let failure: DeviceError? = bytes.withUnsafeBytes { b in
            do throws(DeviceError) {
                try BackingFile.pwriteAll(fd, b, offset, .create, path)
                return nil
            } catch { return error }
        }
        if let failure { throw failure }
    }

    /// Opens an image made by `create`, with the zone table as last persisted. `exclusive` (the
    /// default) claims the image: another exclusive open fails with EBUSY until `close()`. A
    /// non-exclusive open is for reports only (it sees the table as last persisted).
    public static func open(path: String, faults: FaultPlan? = nil, exclusive: Bool = true) throws(DeviceError) -> EmulatedZonedDevice {
        // The header decides where the data starts; read it through a plain descriptor first.
        let probe = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard probe >= 0 else { throw .lastErrno(.open, "cannot open \(path)") }
        let headerBytes: [UInt8]
        do {
            headerBytes = try BackingFile.readPrefix(fd: probe, count: ImageFormat.headerBytes, fileOffset: 0, .open, path)
            Glibc.close(probe)
        } catch {
            Glibc.close(probe)
            throw error
        }
        let header = try ImageFormat.decodeHeader(headerBytes, path: path)
        let geometry = header.geometry
        if header.discardsData, faults != nil {
            throw .invalid(.open, "\(path) discards data: fault plans need a full image")
        }
        let file = try BackingFile(path: path, dataStart: ImageFormat.dataStart(zoneCount: geometry.zoneCount), exclusive: exclusive,
                                   keptBlockSize: header.discardsData ? Int(geometry.logicalBlockSize.bytes) : nil)
        do {
            let (onFile, table) = try loadTable(file, geometry, version: header.version)
            return EmulatedZonedDevice(path: path, geometry: geometry, file: file, table: table,
                                       onFile: onFile, faults: faults)
        } catch {
            file.close()
            throw error
        }
    }

    /// The zone table as the file holds it; checks the file is not truncated.
    private static func loadTable(_ file: BackingFile, _ g: DeviceGeometry, version: UInt32) throws(DeviceError) -> (TableOnFile, ZoneTable) {
        let needed = file.dataStart + (file.kept == nil ? g.totalBytes.bytes : 0)
        let size = try file.fileSize()
        guard size >= needed else {
            throw .io(.open, "\(file.path) is truncated: \(size) bytes, the geometry needs \(needed)")
        }
        let slotBytes = Int(ImageFormat.tableSlotBytes(zoneCount: g.zoneCount))
        var slots: [[UInt8]] = []
        for slot in 0..<2 {
            slots.append(try file.readRaw(count: slotBytes, fileOffset: ImageFormat.tableOffset(slot: slot, zoneCount: g.zoneCount), .open))
        }
        let (onFile, states) = version == 1 ? try versionOneTable(slots, g, file.path) : try versionTwoTable(slots, g, file.path)
        let table = ZoneTable(geometry: g, validStates: states)
        if g.maxActiveZones > 0, table.activeCount > g.maxActiveZones {
            throw .io(.open, "\(file.path): zone table has \(table.activeCount) active zones, more than the max of \(g.maxActiveZones)")
        }
        return (onFile, table)
    }

    private static func versionTwoTable(_ slots: [[UInt8]], _ g: DeviceGeometry, _ path: String) throws(DeviceError) -> (TableOnFile, [ZoneState]) {
        do throws(DecodeError) {
            let (states, sequences) = try ImageFormat.decodeSlots(slots, geometry: g)
            return (TableOnFile(version: 2, sequences: sequences), states)
        } catch {
            throw .io(.open, "\(path): bad zone table: \(error)")
        }
    }

    /// The valid slot with the higher generation.
    private static func versionOneTable(_ slots: [[UInt8]], _ g: DeviceGeometry, _ path: String) throws(DeviceError) -> (TableOnFile, [ZoneState]) {
        var best: (UInt64, [ZoneState])?
        var problems: [String] = []
        for (slot, bytes) in slots.enumerated() {
            do throws(DecodeError) {
                let (gen, states) = try ImageFormat.decodeTableV1(bytes, geometry: g)
                if best == nil || gen > best!.0 { best = (gen, states) }
            } catch {
                problems.append("slot \(slot): \(error)")
            }
        }
        guard let (generation, states) = best else {
            throw .io(.open, "\(path): no valid zone table (\(problems.joined(separator: "; ")))")
        }
        return (TableOnFile(version: 1, generation: generation), states)
    }

    /// True when `path` starts with the emulated image magic (cheap: reads 8 bytes).
    public static func isEmulatedImage(path: String) -> Bool {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        guard let head = try? BackingFile.readPrefix(fd: fd, count: ImageFormat.magic.count, fileOffset: 0, .open, path) else {
            return false
        }
        return head == ImageFormat.magic
    }

    // MARK: Fault injection controls

    /// IOs numbered so far (see FaultPlan for what counts).
    public var ioCount: UInt64 { state.withLock { $0.ioCount } }
    public var faultPlan: FaultPlan? { state.withLock { $0.faults } }
    /// True after a power cut, until the image is opened again.
    public var isDead: Bool { state.withLock { $0.life == .dead } }
    /// Bytes written to the zone table since open.
    public var tableBytesWritten: UInt64 { state.withLock { $0.tableBytesWritten } }
    /// A discard-data image (KeptBlocks.swift): blocks of zeros are never stored.
    public var discardsData: Bool { file.kept != nil }
    /// On a discard-data image, the bytes of the blocks it keeps (nil on a full image).
    public var keptBytes: ByteCount? { file.kept.map { ByteCount(UInt64($0.keptBlocks * $0.blockSize)) } }

    /// Arms (or with nil disarms) a fault plan; IO numbers keep counting from open.
    public func setFaultPlan(_ plan: FaultPlan?) {
        state.withLock { s in
            s.faults = plan
            if plan == nil { s.undo.removeAll() }
        }
    }

    /// Turns `zone` read-only or offline now (durably, as a failing device would).
    public func setCondition(_ zone: ZoneID, _ condition: ZoneCondition) throws(DeviceError) {
        guard condition == .readOnly || condition == .offline else {
            throw refusal(.invalid(.report, "only read-only and offline can be injected, not \(condition.rawValue)"), .report)
        }
        guard geometry.contains(zone) else { throw refusal(.invalid(.report, "\(zone) is past the last zone"), .report) }
        try zoneLocks[zone.int].mutex.withLock { () throws(DeviceError) in
            try state.withLock { (s: inout EmulatorState) throws(DeviceError) in
                try checkLive(s, .report)
                try inject(&s, zone, condition)
            }
        }
    }

    /// Cuts the power now: each sequential zone keeps a seeded prefix of what it was sent since
    /// the last flush, conventional zones a seeded subset of their unflushed writes (all of them
    /// when no fault plan was armed to record old bytes). Seeded by the plan's seed, or `seed`
    /// when given, and the IO count. The device is dead afterwards.
    public func powerCut(tornLastBlock: Bool = false, seed: UInt64? = nil) throws(DeviceError) {
        try state.withLock { (s: inout EmulatorState) throws(DeviceError) in
            try checkLive(s, .flush)
            try cutPower(&s, torn: tornLastBlock, seed: seed ?? s.faults?.seed ?? 0)
        }
    }

    // MARK: ZonedDevice

    public func reportZones(from first: ZoneID, count: Int) throws(DeviceError) -> [Zone] {
        try state.withLock { (s: inout EmulatorState) throws(DeviceError) -> [Zone] in
            try checkLive(s, .report)
            let end = min(geometry.zoneCount, first.int + max(count, 0))
            guard first.int < end else { return [] }
            return (first.int..<end).map { s.table.report(ZoneID($0)) }
        }
    }

    public func reset(_ zone: ZoneID) throws(DeviceError) {
        try manage(zone, .reset, durable: true) { (t: inout ZoneTable) throws(DeviceError) in try t.reset(zone) }
        // What a reset zone held must not show through after a later finish.
        if !geometry.isConventional(zone) {
            try file.zero(at: geometry.zoneStart(zone), length: geometry.zoneCapacity, .reset)
        }
    }

    public func openZone(_ zone: ZoneID) throws(DeviceError) {
        try manage(zone, .openZone, durable: false) { (t: inout ZoneTable) throws(DeviceError) in try t.open(zone) }
    }

    public func closeZone(_ zone: ZoneID) throws(DeviceError) {
        try manage(zone, .closeZone, durable: false) { (t: inout ZoneTable) throws(DeviceError) in try t.close(zone) }
    }

    public func finish(_ zone: ZoneID) throws(DeviceError) {
        try manage(zone, .finish, durable: true) { (t: inout ZoneTable) throws(DeviceError) in try t.finish(zone) }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) {
        let zone = try checkedZone(offset, data.count, .write)
        let length = ByteCount(data.count)
        guard length <= geometry.maxWriteBytes else {
            throw refusal(.invalid(.write, "write of \(length.bytes) B exceeds the max write size \(geometry.maxWriteBytes.bytes) B"), .write)
        }
        try zoneLocks[zone.int].mutex.withLock { () throws(DeviceError) in
            let admitted = try state.withLock { (s: inout EmulatorState) throws(DeviceError) -> Admission in
                _ = try beginIO(&s, .write)
                let before = try s.table.admitWrite(zone, at: offset, length: length, .write)
                let undo = s.faults != nil && geometry.isConventional(zone)
                return Admission(zone: zone, at: offset, before: before, after: s.table[zone], recordUndo: undo)
            }
            try apply(data, admitted, .write)
        }
    }

    public func append(_ data: UnsafeRawBufferPointer, to zone: ZoneID) throws(DeviceError) -> DeviceOffset {
        guard geometry.supportsZoneAppend else {
            throw refusal(.notSupported(.append, "this emulated device has no zone append (max append bytes 0)"), .append)
        }
        guard geometry.contains(zone) else { throw refusal(.invalid(.append, "\(zone) is past the last zone"), .append) }
        let length = ByteCount(data.count)
        guard length.bytes > 0, length.isMultiple(of: geometry.logicalBlockSize), length <= geometry.maxAppendBytes else {
            throw refusal(.invalid(.append, "zone append of \(length.bytes) B: must be a non-zero block multiple of at most \(geometry.maxAppendBytes.bytes) B"), .append)
        }
        return try zoneLocks[zone.int].mutex.withLock { () throws(DeviceError) -> DeviceOffset in
            let admitted = try state.withLock { (s: inout EmulatorState) throws(DeviceError) -> Admission in
                _ = try beginIO(&s, .append)
                let (at, before) = try s.table.admitAppend(zone, length: length)
                return Admission(zone: zone, at: at, before: before, after: s.table[zone], recordUndo: false)
            }
            try apply(data, admitted, .append)
            return admitted.at
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) {
        let zone = try checkedZone(offset, buffer.count, .read)
        try zoneLocks[zone.int].mutex.withLock { () throws(DeviceError) in
            let (io, end, plan) = try state.withLock { (s: inout EmulatorState) throws(DeviceError) -> (UInt64, DeviceOffset, FaultPlan?) in
                let io = try beginIO(&s, .read)
                return (io, try s.table.readableEnd(zone), s.faults)
            }
            // Past a sequential zone's write pointer the device returns zeros without touching media.
            let readable = end > offset ? min(buffer.count, Int((end - offset).bytes)) : 0
            if readable > 0 {
                try file.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<readable]), at: offset, .read)
            }
            if readable < buffer.count {
                UnsafeMutableRawBufferPointer(rebasing: buffer[readable...]).initializeMemory(as: UInt8.self, repeating: 0)
            }
            if let plan, plan.bitRotProbability > 0 { rot(buffer, plan, io: io) }
        }
    }

    public func flush() throws(DeviceError) {
        try state.withLock { (s: inout EmulatorState) throws(DeviceError) in
            _ = try beginIO(&s, .flush)
            // Data first, then the table that points past it, so a host crash in between never
            // leaves a table claiming unsynced data.
            try file.sync(.flush)
            let moved = catchUp(&s)
            s.undo.removeAll()
            try persist(&s, zones: moved, .flush)
            try file.sync(.flush)
        }
    }

    /// Runs a batch in order, except that with `outOfOrderAppends` armed the appends trade places
    /// among themselves in a seeded permutation (never the identity); the landing addresses follow
    /// the order they ran in. Writes and reads keep their batch positions, so writes to one zone
    /// are applied in batch order.
    public func submit(_ batch: [DeviceIO]) -> [IOCompletion] {
        executionOrder(batch).map { i in IOCompletion(index: i, result: perform(batch[i])) }
    }

    public func close() {
        let ownsDescriptors = state.withLock { s -> Bool in
            if s.life == .running {
                let moved = catchUp(&s)
                if !moved.isEmpty || !s.unwritten.isEmpty {
                    try? persist(&s, zones: moved, .close)
                    try? file.sync(.close)
                }
            }
            s.undo.removeAll()
            let open = s.life != .closed
            s.life = .closed
            return open
        }
        if ownsDescriptors { file.close() }
    }

    deinit {
        if state.withLock({ $0.life != .closed }) { close() }
    }

    // MARK: Internals

    /// A data IO admitted under the lock, to be carried out under its zone lock.
    struct Admission: Sendable {
        var zone: ZoneID
        var at: DeviceOffset
        var before: ZoneState
        var after: ZoneState
        var recordUndo: Bool
    }

    /// Writes admitted data; on failure rolls the zone back to its state before admission.
    private func apply(_ data: UnsafeRawBufferPointer, _ a: Admission, _ op: DeviceOperation) throws(DeviceError) {
        do {
            if a.recordUndo {
                let old = AlignedBuffer(count: data.count)
                try file.read(into: old.mutable, at: a.at, op)
                state.withLock { $0.undo.append(ConventionalUndo(offset: a.at, old: old.bytes)) }
            }
            try file.write(data, at: a.at, op)
        } catch {
            state.withLock { s in
                // Only when nothing else touched the zone since (an injected condition change may have).
                if s.table[a.zone] == a.after { s.table.restore(a.zone, a.before) }
            }
            throw error
        }
    }

    /// The zone of a block-aligned IO inside one zone; EINVAL otherwise (EIO when the device is
    /// dead or closed). Refused IOs are not numbered.
    private func checkedZone(_ offset: DeviceOffset, _ count: Int, _ op: DeviceOperation) throws(DeviceError) -> ZoneID {
        let bs = geometry.logicalBlockSize
        let length = ByteCount(count)
        guard count > 0, length.isMultiple(of: bs), offset.isAligned(to: bs) else {
            throw refusal(.invalid(op, "\(op.rawValue) of \(count) B at \(offset) is not a non-empty multiple of the \(bs.bytes)-byte block size at an aligned offset"), op)
        }
        guard let zone = geometry.zone(containing: offset),
              offset + length <= geometry.zoneStart(zone) + geometry.zoneSize else {
            throw refusal(.invalid(op, "\(op.rawValue) of \(count) B at \(offset) crosses a zone boundary or the device end"), op)
        }
        return zone
    }

    /// `error`, unless the device is dead or closed: then EIO, as for every call.
    private func refusal(_ error: DeviceError, _ op: DeviceOperation) -> DeviceError {
        state.withLock { s in
            do throws(DeviceError) { try checkLive(s, op); return error } catch { return error }
        }
    }

    func checkLive(_ s: EmulatorState, _ op: DeviceOperation) throws(DeviceError) {
        switch s.life {
        case .running: return
        case .dead: throw .io(op, "\(path) lost power (injected power cut); reopen the image")
        case .closed: throw .io(op, "\(path) is closed")
        }
    }

    /// Zone management under the zone lock; persists the table. `durable`: the command's result
    /// for this zone is durable at once (reset, finish).
    private func manage(_ zone: ZoneID, _ op: DeviceOperation, durable: Bool,
                        _ body: (inout ZoneTable) throws(DeviceError) -> Void) throws(DeviceError) {
        guard geometry.contains(zone) else {
            throw refusal(.invalid(op, "\(zone) is past the last zone (\(geometry.zoneCount) zones)"), op)
        }
        try zoneLocks[zone.int].mutex.withLock { () throws(DeviceError) in
            try state.withLock { (s: inout EmulatorState) throws(DeviceError) in
                try checkLive(s, op)
                try body(&s.table)
                if durable { s.durable[zone.int] = s.table[zone] }
                try persist(&s, zones: durable ? [zone.int] : [], op)
            }
        }
    }

    /// Makes `durable` the live table for the zones changed since the last call; returns the
    /// zones whose durable state moved (the ones to persist).
    func catchUp(_ s: inout EmulatorState) -> [Int] {
        var moved: [Int] = []
        for z in s.table.takeChanged() where s.durable[z] != s.table[ZoneID(z)] {
            s.durable[z] = s.table[ZoneID(z)]
            moved.append(z)
        }
        return moved
    }

    /// Writes the durable state of `zones` (and of any zone an earlier failed write left behind)
    /// to the file: one entry each, over the zone's older copy. A zone's sequence moves only when
    /// its write worked, so a failed write never costs its other, valid copy. A version 1 image is
    /// upgraded first (that writes every zone).
    func persist(_ s: inout EmulatorState, zones: [Int], _ op: DeviceOperation) throws(DeviceError) {
        if s.onFile.version == 1 {
            try upgrade(&s, op)
            return
        }
        var todo = zones
        if !s.unwritten.isEmpty {
            todo += s.unwritten.subtracting(zones)
            s.unwritten.removeAll()
        }
        for (i, z) in todo.enumerated() {
            let sequence = s.onFile.sequences[z] &+ 1
            let entry = ImageFormat.encodeEntry(s.durable[z], zone: z, sequence: sequence)
            do throws(DeviceError) {
                try file.writeRaw(entry, fileOffset: ImageFormat.entryOffset(slot: ImageFormat.slot(of: sequence), zone: z, zoneCount: geometry.zoneCount), op)
            } catch {
                s.unwritten.formUnion(todo[i...])
                throw error
            }
            s.tableBytesWritten += UInt64(entry.count)
            s.onFile.sequences[z] = sequence
        }
    }

    /// Rewrites a version 1 image's older slot whole in version 2 form, then the header (the
    /// order ImageFormat's header comment argues is crash-safe).
    private func upgrade(_ s: inout EmulatorState, _ op: DeviceOperation) throws(DeviceError) {
        let older = Int((s.onFile.generation + 1) % 2)
        let sequence = UInt8(older)
        let slot = ImageFormat.encodeSlot(s.durable, sequence: sequence)
        try file.writeRaw(slot, fileOffset: ImageFormat.tableOffset(slot: older, zoneCount: geometry.zoneCount), op)
        try file.sync(op)
        try file.writeRaw(ImageFormat.encodeHeader(geometry, discardsData: file.kept != nil), fileOffset: 0, op)
        try file.sync(op)
        s.tableBytesWritten += UInt64(slot.count)
        s.onFile = TableOnFile(version: 2, sequences: Array(repeating: sequence, count: geometry.zoneCount))
        s.unwritten.removeAll()
    }

    /// Numbers an IO and applies the fault plan's events for it (see FaultPlan's header).
    private func beginIO(_ s: inout EmulatorState, _ op: DeviceOperation) throws(DeviceError) -> UInt64 {
        try checkLive(s, op)
        s.ioCount += 1
        let n = s.ioCount
        guard let plan = s.faults else { return n }
        for change in plan.conditionChanges where change.atIO == n && geometry.contains(change.zone) {
            try inject(&s, change.zone, change.condition)
        }
        if let cut = plan.powerCut, cut.atIO == n {
            try cutPower(&s, torn: cut.tornLastBlock, seed: plan.seed)
            throw .io(op, "injected power cut at IO \(n)")
        }
        if plan.failingIOs.contains(n) { throw .io(op, "injected EIO at IO \(n)") }
        let (p, purpose) = plan.errorProbability(op)
        var rng = plan.stream(purpose, io: n)
        if rng.chance(p) { throw .io(op, "injected EIO at IO \(n) (probability \(p))") }
        return n
    }

    private func inject(_ s: inout EmulatorState, _ zone: ZoneID, _ condition: ZoneCondition) throws(DeviceError) {
        s.table.inject(zone, condition)
        s.durable[zone.int] = s.table[zone]
        try persist(&s, zones: [zone.int], .report)
    }

    /// Flips one seeded bit of `buffer` with the plan's bit-rot probability.
    private func rot(_ buffer: UnsafeMutableRawBufferPointer, _ plan: FaultPlan, io: UInt64) {
        var rng = plan.stream(.bitRot, io: io)
        guard rng.chance(plan.bitRotProbability), buffer.count > 0 else { return }
        let byte = Int(rng.below(UInt64(buffer.count)))
        buffer[byte] ^= UInt8(1) << UInt8(rng.below(8))
    }

    private func executionOrder(_ batch: [DeviceIO]) -> [Int] {
        let (plan, nextIO) = state.withLock { ($0.faults, $0.ioCount + 1) }
        let order = Array(batch.indices)
        guard let plan, plan.outOfOrderAppends else { return order }
        let slots = batch.indices.filter { if case .append = batch[$0] { return true } else { return false } }
        guard slots.count > 1 else { return order }
        var rng = plan.stream(.appendOrder, io: nextIO)
        var permuted = rng.permuted(slots)
        if permuted == slots { permuted = Array(slots.dropFirst()) + [slots[0]] }
        var result = order
        for (slot, index) in zip(slots, permuted) { result[slot] = index }
        return result
    }
}
