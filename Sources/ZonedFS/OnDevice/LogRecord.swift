// The records of the metadata log: every change to the namespace and to file layouts.
//
// Invariants:
// - A record is [type u8][body length u32][body]; the body length is exact, so a reader can skip
//   nothing and a decoder that consumed a different number of bytes rejects the record.
// - `decode` never traps and accepts only canonical bodies (valid enums, names of 1–255 bytes
//   without '/' or NUL, zero reserved fields), so a valid decode re-encodes byte for byte.
// - Records only describe; applying them (Namespace.apply, FileLayout.apply) is the same code live
//   and at replay.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ZonedCore
import ZonedEngine
import ZonedIndex

public enum InodeKind: UInt8, Sendable, CaseIterable {
    case file = 1
    case directory = 2
    case symlink = 3
}

/// Nanoseconds since the epoch.
public typealias Timestamp = Int64

/// Everything about an inode except its size and extents (those are the engine's FileLayout).
public struct InodeAttributes: Sendable, Equatable {
    public var number: InodeNumber
    public var kind: InodeKind
    /// Permission bits (0o7777); the file type is `kind`.
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var nlink: UInt32
    /// Bit 0: NOCOW (in-place overwrites, conventional mode only).
    public var flags: UInt32
    public var atime: Timestamp
    public var mtime: Timestamp
    public var ctime: Timestamp
    /// A symlink's target; empty for other kinds.
    public var target: [UInt8]

    public static let nocowFlag: UInt32 = 1

    public init(number: InodeNumber, kind: InodeKind, mode: UInt32, uid: UInt32, gid: UInt32, nlink: UInt32,
                flags: UInt32 = 0, time: Timestamp, target: [UInt8] = []) {
        self.number = number
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.nlink = nlink
        self.flags = flags
        self.atime = time
        self.mtime = time
        self.ctime = time
        self.target = target
    }
}

/// A directory entry name: 1 to 255 bytes, any byte but '/' and NUL.
public struct EntryName: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let bytes: [UInt8]
    public static let maxBytes = 255

    public init(validating bytes: [UInt8]) throws(DeviceError) {
        guard !bytes.isEmpty else { throw DeviceError(errno: ENOENT, .lookup, "empty name") }
        guard bytes.count <= EntryName.maxBytes else {
            throw DeviceError(errno: ENAMETOOLONG, .lookup, "a name of \(bytes.count) bytes (at most \(EntryName.maxBytes))")
        }
        guard !bytes.contains(0), !bytes.contains(UInt8(ascii: "/")) else {
            throw DeviceError.invalid(.lookup, "a name may not contain '/' or NUL")
        }
        self.bytes = bytes
    }

    public init(_ s: String) throws(DeviceError) { try self.init(validating: Array(s.utf8)) }

    public var description: String { String(decoding: bytes, as: UTF8.self) }
    public static func < (a: EntryName, b: EntryName) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
    public var isDotOrDotDot: Bool { bytes == [0x2E] || bytes == [0x2E, 0x2E] }
}

public enum LogRecord: Sendable, Equatable {
    /// First record of every log zone: the zone the log came from (nil for the first).
    case zoneHeader(previous: ZoneID?)
    /// Last record of a full log zone: the log goes on at the start of `zone`.
    case next(zone: ZoneID)
    /// A checkpoint follows: the state is rebuilt from the records up to `checkpointEnd`.
    case checkpointBegin(nextInode: InodeNumber)
    case checkpointEnd
    /// Creates an inode or replaces its attributes.
    case inode(InodeAttributes)
    case link(parent: InodeNumber, name: EntryName, inode: InodeNumber)
    case unlink(parent: InodeNumber, name: EntryName)
    /// Moves an entry, replacing whatever `toName` named (its inode's link count comes in its own
    /// record of the same batch).
    case rename(fromParent: InodeNumber, fromName: EntryName, toParent: InodeNumber, toName: EntryName)
    /// Swaps two entries (RENAME_EXCHANGE).
    case exchange(parentA: InodeNumber, nameA: EntryName, parentB: InodeNumber, nameB: EntryName)
    /// The inode and its data are gone (last link and last user).
    case removeInode(InodeNumber)
    case file(InodeNumber, FileChange)
    /// The file system's lifetime write counters as of this record (the newest one replayed wins).
    case counters(LifetimeCounters)
    /// The metadata index's manifest (docs/ON-DISK.md): a table joins it, or leaves it.
    case tableAdded(TableDescriptor)
    case tableRemoved(id: UInt64)
    /// The first table id the index has not used (in a checkpoint, with every `tableAdded`).
    case indexCounters(nextTableID: UInt64)
    /// A file's extent as a checkpoint lists it: its data checksums are in the metadata index
    /// (the checkpoint's tables), not in the record. Only inside a checkpoint.
    case checkpointExtent(InodeNumber, FileExtent)
    /// Data checksums a checkpoint carries because no index table holds them yet (the index's
    /// memtable): one CRC-32C per block from `at` on. Only inside a checkpoint.
    case checkpointChecksums(ChecksumRun)

    enum Tag: UInt8 {
        case zoneHeader = 1, next, checkpointBegin, checkpointEnd, inode, link, unlink, rename, exchange, removeInode
        case mapped, truncated, punched, extended
        case counters
        case tableAdded, tableRemoved, indexCounters
        case checkpointExtent, checkpointChecksums
    }

    // MARK: Encoding

    public func encode(into w: inout ByteWriter) {
        var b = ByteWriter()
        let tag: Tag
        switch self {
        case .zoneHeader(let prev):
            tag = .zoneHeader
            b.u32(prev.map { UInt32($0.int) } ?? UInt32.max)
        case .next(let zone):
            tag = .next
            b.u32(UInt32(zone.int))
        case .checkpointBegin(let next):
            tag = .checkpointBegin
            b.u64(next)
        case .checkpointEnd:
            tag = .checkpointEnd
        case .inode(let a):
            tag = .inode
            b.u64(a.number); b.u8(a.kind.rawValue); b.u32(a.mode); b.u32(a.uid); b.u32(a.gid); b.u32(a.nlink); b.u32(a.flags)
            b.u64(UInt64(bitPattern: a.atime)); b.u64(UInt64(bitPattern: a.mtime)); b.u64(UInt64(bitPattern: a.ctime))
            b.u16(UInt16(a.target.count)); b.raw(a.target)
        case .link(let parent, let name, let inode):
            tag = .link
            b.u64(parent); b.u64(inode); LogRecord.name(name, &b)
        case .unlink(let parent, let name):
            tag = .unlink
            b.u64(parent); LogRecord.name(name, &b)
        case .rename(let fp, let fn, let tp, let tn):
            tag = .rename
            b.u64(fp); LogRecord.name(fn, &b); b.u64(tp); LogRecord.name(tn, &b)
        case .exchange(let pa, let na, let pb, let nb):
            tag = .exchange
            b.u64(pa); LogRecord.name(na, &b); b.u64(pb); LogRecord.name(nb, &b)
        case .removeInode(let n):
            tag = .removeInode
            b.u64(n)
        case .counters(let c):
            tag = .counters
            for v in c.fields { b.u64(v) }
        case .tableAdded(let d):
            tag = .tableAdded
            b.u64(d.id); b.u8(UInt8(d.level)); b.u64(d.location.address); b.u64(d.location.length)
            b.u64(d.entryCount); b.u64(d.maxSequence)
            for k in [d.firstKey, d.lastKey] { b.u16(UInt16(k.bytes.count)); b.raw(k.bytes) }
        case .tableRemoved(let id):
            tag = .tableRemoved
            b.u64(id)
        case .indexCounters(let next):
            tag = .indexCounters
            b.u64(next)
        case .checkpointExtent(let n, let e):
            tag = .checkpointExtent
            b.u64(n); b.u64(e.fileOffset); b.u64(e.length); b.u64(e.device.bytes); b.u8(LogRecord.kindCode(e.kind))
        case .checkpointChecksums(let run):
            tag = .checkpointChecksums
            b.u64(run.at.bytes); b.u32(UInt32(run.crcs.count)); for c in run.crcs { b.u32(c) }
        case .file(let n, let change):
            b.u64(n)
            switch change {
            case .mapped(let e, let crcs, let atLeast):
                tag = .mapped
                b.u64(e.fileOffset); b.u64(e.length); b.u64(e.device.bytes); b.u8(LogRecord.kindCode(e.kind)); b.u64(atLeast)
                b.u32(UInt32(crcs.count)); for c in crcs { b.u32(c) }
            case .truncated(let size):
                tag = .truncated
                b.u64(size)
            case .punched(let at, let length):
                tag = .punched
                b.u64(at); b.u64(length)
            case .extended(let to):
                tag = .extended
                b.u64(to)
            }
        }
        w.u8(tag.rawValue)
        w.u32(UInt32(b.count))
        w.raw(b.bytes)
    }

    private static func name(_ n: EntryName, _ b: inout ByteWriter) {
        b.u8(UInt8(n.bytes.count))
        b.raw(n.bytes)
    }

    static func kindCode(_ k: FileExtent.Kind) -> UInt8 {
        switch k { case .data: 1; case .unchecked: 2; case .prealloc: 3 }
    }

    // MARK: Decoding

    /// Decodes one record at the reader's position.
    public static func decode(_ r: inout ByteReader) throws(DecodeError) -> LogRecord {
        let start = r.offset
        let rawTag = try r.u8("record type")
        guard let tag = Tag(rawValue: rawTag) else { throw DecodeError("unknown record type \(rawTag)", at: start) }
        let length = Int(try r.u32("record length"))
        guard length <= r.remaining else { throw DecodeError("record of \(length) bytes past the frame end", at: start) }
        var b = ByteReader(try r.raw(length, "record body"))
        let record = try body(tag, &b, at: start)
        guard b.remaining == 0 else { throw DecodeError("\(b.remaining) stray bytes after a \(tag) record", at: start) }
        return record
    }

    private static func body(_ tag: Tag, _ b: inout ByteReader, at start: Int) throws(DecodeError) -> LogRecord {
        switch tag {
        case .zoneHeader:
            let p = try b.u32("previous zone")
            return .zoneHeader(previous: p == UInt32.max ? nil : ZoneID(p))
        case .next:
            let z = try b.u32("next zone")
            guard z != UInt32.max else { throw DecodeError("next zone is none", at: start) }
            return .next(zone: ZoneID(z))
        case .checkpointBegin:
            return .checkpointBegin(nextInode: try b.u64("next inode"))
        case .checkpointEnd:
            return .checkpointEnd
        case .inode:
            let number = try b.u64("inode")
            let k = try b.u8("kind")
            guard let kind = InodeKind(rawValue: k) else { throw DecodeError("unknown inode kind \(k)", at: start) }
            let mode = try b.u32("mode")
            guard mode <= 0o7777 else { throw DecodeError("mode 0o\(String(mode, radix: 8)) has file-type bits", at: start) }
            let uid = try b.u32("uid"), gid = try b.u32("gid"), nlink = try b.u32("nlink"), flags = try b.u32("flags")
            guard flags & ~InodeAttributes.nocowFlag == 0 else { throw DecodeError("unknown inode flags", at: start) }
            let at = Int64(bitPattern: try b.u64("atime")), mt = Int64(bitPattern: try b.u64("mtime")), ct = Int64(bitPattern: try b.u64("ctime"))
            let tl = Int(try b.u16("target length"))
            let target = try b.raw(tl, "symlink target")
            guard (kind == .symlink) == (tl > 0), !target.contains(0) else { throw DecodeError("symlink target does not fit the inode kind", at: start) }
            var a = InodeAttributes(number: number, kind: kind, mode: mode, uid: uid, gid: gid, nlink: nlink, flags: flags, time: at, target: target)
            a.mtime = mt
            a.ctime = ct
            return .inode(a)
        case .link:
            let parent = try b.u64("parent"), inode = try b.u64("inode")
            return .link(parent: parent, name: try name(&b, start), inode: inode)
        case .unlink:
            let parent = try b.u64("parent")
            return .unlink(parent: parent, name: try name(&b, start))
        case .rename:
            let fp = try b.u64("from parent"); let fnm = try name(&b, start)
            let tp = try b.u64("to parent"); let tnm = try name(&b, start)
            return .rename(fromParent: fp, fromName: fnm, toParent: tp, toName: tnm)
        case .exchange:
            let pa = try b.u64("parent"); let na = try name(&b, start)
            let pb = try b.u64("parent"); let nb = try name(&b, start)
            return .exchange(parentA: pa, nameA: na, parentB: pb, nameB: nb)
        case .removeInode:
            return .removeInode(try b.u64("inode"))
        case .counters:
            var fields: [UInt64] = []
            for _ in 0..<LifetimeCounters.fieldCount { fields.append(try b.u64("counter")) }
            return .counters(LifetimeCounters(fields: fields))
        case .mapped, .truncated, .punched, .extended:
            let n = try b.u64("inode")
            return .file(n, try change(tag, &b, start))
        case .tableAdded:
            return .tableAdded(try table(&b, start))
        case .tableRemoved:
            return .tableRemoved(id: try b.u64("table id"))
        case .indexCounters:
            return .indexCounters(nextTableID: try b.u64("next table id"))
        case .checkpointExtent:
            let n = try b.u64("inode")
            let fo = try b.u64("file offset"), len = try b.u64("length"), dev = try b.u64("device offset")
            let kind = try extentKind(try b.u8("extent kind"), start)
            guard len > 0, fo <= UInt64.max - len, dev <= UInt64.max - len else { throw DecodeError("extent out of range", at: start) }
            return .checkpointExtent(n, FileExtent(fileOffset: fo, length: len, device: DeviceOffset(dev), kind: kind))
        case .checkpointChecksums:
            let at = try b.u64("device offset")
            let count = Int(try b.u32("checksum count"))
            guard count > 0, count <= b.remaining / 4 else { throw DecodeError("\(count) checksums do not fit the record", at: start) }
            guard at <= UInt64.max / 2 else { throw DecodeError("checksums out of range", at: start) }
            var crcs: [UInt32] = []
            crcs.reserveCapacity(count)
            for _ in 0..<count { crcs.append(try b.u32("checksum")) }
            return .checkpointChecksums(ChecksumRun(at: DeviceOffset(at), crcs: crcs))
        }
    }

    /// A table descriptor: canonical only (a level below 64, a whole number of 4 KiB units of at
    /// least two, entries, keys of 1...IndexKey.maxBytes in order).
    private static func table(_ b: inout ByteReader, _ start: Int) throws(DecodeError) -> TableDescriptor {
        let id = try b.u64("table id"), level = Int(try b.u8("level"))
        let address = try b.u64("table address"), length = try b.u64("table length")
        let entries = try b.u64("entry count"), maxSequence = try b.u64("highest sequence")
        var keys: [IndexKey] = []
        for what in ["first key", "last key"] {
            let n = Int(try b.u16("\(what) length"))
            guard let k = IndexKey(validating: try b.raw(n, what)) else { throw DecodeError("\(what) of \(n) bytes", at: start) }
            keys.append(k)
        }
        guard level < 64, length >= 8192, length % 4096 == 0, address <= UInt64.max - length, entries > 0, !(keys[1] < keys[0]) else {
            throw DecodeError("table \(id) is not a valid table (level \(level), \(length) B at \(address), \(entries) entries)", at: start)
        }
        return TableDescriptor(id: id, level: level, location: TableLocation(address: address, length: length),
                               firstKey: keys[0], lastKey: keys[1], entryCount: entries, maxSequence: maxSequence)
    }

    private static func extentKind(_ k: UInt8, _ start: Int) throws(DecodeError) -> FileExtent.Kind {
        switch k {
        case 1: return .data
        case 2: return .unchecked
        case 3: return .prealloc
        default: throw DecodeError("unknown extent kind \(k)", at: start)
        }
    }

    private static func change(_ tag: Tag, _ b: inout ByteReader, _ start: Int) throws(DecodeError) -> FileChange {
        switch tag {
        case .mapped:
            let fo = try b.u64("file offset"), len = try b.u64("length"), dev = try b.u64("device offset")
            let kind = try extentKind(try b.u8("extent kind"), start)
            let atLeast = try b.u64("size")
            let count = Int(try b.u32("checksum count"))
            guard count <= b.remaining / 4 else { throw DecodeError("\(count) checksums past the record end", at: start) }
            var crcs: [UInt32] = []
            crcs.reserveCapacity(count)
            for _ in 0..<count { crcs.append(try b.u32("checksum")) }
            guard len > 0, fo <= UInt64.max - len, dev <= UInt64.max - len else { throw DecodeError("extent out of range", at: start) }
            guard (kind == .data) == (count > 0) else { throw DecodeError("checksums do not fit the extent kind", at: start) }
            return .mapped(FileExtent(fileOffset: fo, length: len, device: DeviceOffset(dev), kind: kind), checksums: crcs, sizeAtLeast: atLeast)
        case .truncated: return .truncated(to: try b.u64("size"))
        case .punched:
            let at = try b.u64("offset"), len = try b.u64("length")
            guard at <= UInt64.max - len else { throw DecodeError("punch out of range", at: start) }
            return .punched(at: at, length: len)
        default: return .extended(to: try b.u64("size"))
        }
    }

    private static func name(_ b: inout ByteReader, _ start: Int) throws(DecodeError) -> EntryName {
        let n = Int(try b.u8("name length"))
        let bytes = try b.raw(n, "name")
        do { return try EntryName(validating: bytes) } catch { throw DecodeError("invalid entry name (\(error.detail))", at: start) }
    }
}
