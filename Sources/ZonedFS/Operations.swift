// File system operations: the namespace (lookup, create, mkdir, symlink, link, unlink, rmdir,
// rename, readdir, setattr) and file data (read, write, truncate, fsync, fallocate, punch).
//
// Invariants:
// - Each namespace operation checks everything first (errno as a local file system gives it), then
//   logs one batch that holds every record it changes, including the new link counts and times.
// - Directory link counts: 2 + subdirectories. Other inodes: the number of entries naming them.
// - An inode whose last entry goes while it is open stays (nlink 0) until released; mount removes
//   such orphans.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ZonedCore
import ZonedEngine

public struct RenameFlags: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let noReplace = RenameFlags(rawValue: 1)
    public static let exchange = RenameFlags(rawValue: 2)
}

/// Which attributes `setAttributes` changes (nil: unchanged).
public struct AttributeChanges: Sendable {
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var size: UInt64?
    public var atime: Timestamp?
    public var mtime: Timestamp?
    public var nocow: Bool?
    public init(mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, size: UInt64? = nil,
                atime: Timestamp? = nil, mtime: Timestamp? = nil, nocow: Bool? = nil) {
        self.mode = mode; self.uid = uid; self.gid = gid; self.size = size; self.atime = atime; self.mtime = mtime; self.nocow = nocow
    }
}

extension FileSystem {
    // MARK: Lookups (under nsLock)

    private func attrs(_ n: InodeNumber, _ op: DeviceOperation = .lookup) throws(DeviceError) -> InodeAttributes {
        guard let a = namespace.attributes(n) else { throw DeviceError(errno: ENOENT, op, "no inode \(n)") }
        return a
    }

    private func directory(_ n: InodeNumber, _ op: DeviceOperation = .lookup) throws(DeviceError) -> InodeAttributes {
        let a = try attrs(n, op)
        guard a.kind == .directory else { throw DeviceError(errno: ENOTDIR, op, "inode \(n) is not a directory") }
        return a
    }

    private func child(_ parent: InodeNumber, _ name: EntryName) throws(DeviceError) -> InodeAttributes {
        _ = try directory(parent)
        guard let n = namespace.lookup(parent, name) else { throw DeviceError(errno: ENOENT, .lookup, "no '\(name)' in directory \(parent)") }
        return try attrs(n)
    }

    public func stat(_ n: InodeNumber) throws(DeviceError) -> FileStat {
        let a = try nsLock.withLock { () throws(DeviceError) -> InodeAttributes in try attrs(n) }
        var size: UInt64 = 0, allocated: UInt64 = 0
        switch a.kind {
        case .file:
            size = try engine.size(n)  // includes buffered writes not yet written back
            allocated = try engine.allocatedBytes(n).bytes  // cached blocks over holes count too
        case .symlink: size = UInt64(a.target.count)
        case .directory: size = UInt64(nsLock.withLock { namespace.entries[n]?.count ?? 0 }) * 32
        }
        return FileStat(attributes: a, size: size, allocated: allocated)
    }

    public func lookup(_ parent: InodeNumber, _ name: EntryName) throws(DeviceError) -> FileStat {
        let a = try nsLock.withLock { () throws(DeviceError) -> InodeAttributes in try child(parent, name) }
        return try stat(a.number)
    }

    public func readDirectory(_ dir: InodeNumber) throws(DeviceError) -> [DirectoryEntry] {
        try nsLock.withLock { () throws(DeviceError) -> [DirectoryEntry] in
            _ = try directory(dir)
            return namespace.entries[dir, default: [:]].sorted { $0.key < $1.key }.compactMap { name, n in
                namespace.attributes(n).map { DirectoryEntry(name: name, inode: n, kind: $0.kind) }
            }
        }
    }

    public func readLink(_ n: InodeNumber) throws(DeviceError) -> [UInt8] {
        let a = try nsLock.withLock { () throws(DeviceError) -> InodeAttributes in try attrs(n) }
        guard a.kind == .symlink else { throw DeviceError.invalid(.lookup, "inode \(n) is not a symlink") }
        return a.target
    }

    /// The parent of directory `n` (the root's is itself).
    public func parent(of n: InodeNumber) -> InodeNumber? { nsLock.withLock { namespace.parents[n] } }

    // MARK: Creating

    /// Creates a regular file, directory or symlink named `name` in `parent`.
    public func create(_ parent: InodeNumber, _ name: EntryName, kind: InodeKind, mode: UInt32,
                       uid: UInt32, gid: UInt32, target: [UInt8] = []) throws(DeviceError) -> FileStat {
        try requireWritable(.create)
        if kind == .symlink {
            guard !target.isEmpty, target.count <= 4095, !target.contains(0) else {
                throw DeviceError(errno: target.isEmpty ? ENOENT : target.count > 4095 ? ENAMETOOLONG : EINVAL, .create, "a symlink target has 1 to 4095 bytes and no NUL")
            }
        }
        let n: InodeNumber = try operation { () throws(DeviceError) -> InodeNumber in
            try nsLock.withLock { () throws(DeviceError) -> InodeNumber in
                var p = try directory(parent, .create)
                guard namespace.lookup(parent, name) == nil else { throw DeviceError(errno: EEXIST, .create, "'\(name)' exists") }
                let n = namespace.nextInode
                let t = now
                let a = InodeAttributes(number: n, kind: kind, mode: mode & 0o7777, uid: uid, gid: gid,
                                        nlink: kind == .directory ? 2 : 1, time: t, target: kind == .symlink ? target : [])
                p.mtime = t; p.ctime = t
                if kind == .directory { p.nlink += 1 }
                try log([.inode(a), .link(parent: parent, name: name, inode: n), .inode(p)])
                if kind == .file { engine.openFile(n) }
                return n
            }
        }
        return try stat(n)
    }

    /// A new hard link `name` in `parent` to `n` (not a directory).
    public func link(_ n: InodeNumber, into parent: InodeNumber, as name: EntryName) throws(DeviceError) -> FileStat {
        try requireWritable(.create)
        try operation { () throws(DeviceError) in
            try nsLock.withLock { () throws(DeviceError) in
                var a = try attrs(n, .create)
                guard a.kind != .directory else { throw DeviceError(errno: EPERM, .create, "hard links to directories are not allowed") }
                var p = try directory(parent, .create)
                guard namespace.lookup(parent, name) == nil else { throw DeviceError(errno: EEXIST, .create, "'\(name)' exists") }
                let t = now
                a.nlink += 1; a.ctime = t
                p.mtime = t; p.ctime = t
                try log([.link(parent: parent, name: name, inode: n), .inode(a), .inode(p)])
            }
        }
        return try stat(n)
    }

    // MARK: Removing

    public func unlink(_ parent: InodeNumber, _ name: EntryName) throws(DeviceError) {
        try remove(parent, name, directory: false)
    }

    public func removeDirectory(_ parent: InodeNumber, _ name: EntryName) throws(DeviceError) {
        try remove(parent, name, directory: true)
    }

    private func remove(_ parent: InodeNumber, _ name: EntryName, directory wantDir: Bool) throws(DeviceError) {
        try requireWritable(.namespace)
        let gone: InodeNumber? = try operation { () throws(DeviceError) -> InodeNumber? in
            try nsLock.withLock { () throws(DeviceError) -> InodeNumber? in
                var p = try directory(parent, .namespace)
                var a = try child(parent, name)
                if wantDir {
                    guard a.kind == .directory else { throw DeviceError(errno: ENOTDIR, .namespace, "'\(name)' is not a directory") }
                    guard namespace.entries[a.number, default: [:]].isEmpty else { throw DeviceError(errno: ENOTEMPTY, .namespace, "directory '\(name)' is not empty") }
                } else if a.kind == .directory {
                    throw DeviceError(errno: EISDIR, .namespace, "'\(name)' is a directory (use rmdir)")
                }
                let t = now
                p.mtime = t; p.ctime = t
                if wantDir { p.nlink -= 1 }
                var batch: [LogRecord] = [.unlink(parent: parent, name: name), .inode(p)]
                let last = wantDir || a.nlink <= 1
                if last && openCount[a.number, default: 0] == 0 {
                    batch.append(.removeInode(a.number))
                } else {
                    a.nlink = last ? 0 : a.nlink - 1
                    a.ctime = t
                    batch.append(.inode(a))
                }
                try log(batch)
                return last && openCount[a.number, default: 0] == 0 ? a.number : nil
            }
        }
        if let gone { engine.removeFile(gone) }
    }

    // MARK: Rename

    public func rename(_ fromParent: InodeNumber, _ fromName: EntryName, to toParent: InodeNumber, _ toName: EntryName,
                       flags: RenameFlags = []) throws(DeviceError) {
        try requireWritable(.namespace)
        if flags.contains(.noReplace) && flags.contains(.exchange) { throw DeviceError.invalid(.namespace, "RENAME_NOREPLACE and RENAME_EXCHANGE together") }
        let gone: InodeNumber? = try operation { () throws(DeviceError) -> InodeNumber? in
            try nsLock.withLock { () throws(DeviceError) -> InodeNumber? in
                // The parent directories, once each even when they are the same.
                var parents: [InodeNumber: InodeAttributes] = [fromParent: try directory(fromParent, .namespace)]
                parents[toParent] = try directory(toParent, .namespace)
                func adjust(_ p: InodeNumber, _ delta: Int) { parents[p]!.nlink = UInt32(Int(parents[p]!.nlink) + delta) }
                var src = try child(fromParent, fromName)
                let dstNumber = namespace.lookup(toParent, toName)
                if src.kind == .directory, namespace.isAncestor(src.number, of: toParent) {
                    throw DeviceError.invalid(.namespace, "cannot move a directory into itself")
                }
                let t = now
                var batch: [LogRecord]
                var removed: InodeNumber?
                if flags.contains(.exchange) {
                    guard let d = dstNumber, var dst = namespace.attributes(d) else { throw DeviceError(errno: ENOENT, .namespace, "'\(toName)' does not exist") }
                    if dst.kind == .directory, namespace.isAncestor(d, of: fromParent) { throw DeviceError.invalid(.namespace, "cannot move a directory into itself") }
                    batch = [.exchange(parentA: fromParent, nameA: fromName, parentB: toParent, nameB: toName)]
                    let delta = (src.kind == .directory ? 1 : 0) - (dst.kind == .directory ? 1 : 0)
                    adjust(fromParent, -delta); adjust(toParent, delta)
                    src.ctime = t; dst.ctime = t
                    batch += [.inode(src), .inode(dst)]
                } else {
                    if let d = dstNumber {
                        if flags.contains(.noReplace) { throw DeviceError(errno: EEXIST, .namespace, "'\(toName)' exists") }
                        if d == src.number { return nil }  // two names of one inode: nothing to do
                        let dst = try attrs(d)
                        if dst.kind == .directory {
                            guard src.kind == .directory else { throw DeviceError(errno: EISDIR, .namespace, "'\(toName)' is a directory") }
                            guard namespace.entries[d, default: [:]].isEmpty else { throw DeviceError(errno: ENOTEMPTY, .namespace, "directory '\(toName)' is not empty") }
                        } else if src.kind == .directory {
                            throw DeviceError(errno: ENOTDIR, .namespace, "'\(toName)' is not a directory")
                        }
                    }
                    batch = [.rename(fromParent: fromParent, fromName: fromName, toParent: toParent, toName: toName)]
                    if let d = dstNumber, var dst = namespace.attributes(d) {
                        let last = dst.kind == .directory || dst.nlink <= 1
                        if dst.kind == .directory { adjust(toParent, -1) }
                        if last && openCount[d, default: 0] == 0 {
                            batch.append(.removeInode(d))
                            removed = d
                        } else {
                            dst.nlink = last ? 0 : dst.nlink - 1
                            dst.ctime = t
                            batch.append(.inode(dst))
                        }
                    }
                    if src.kind == .directory { adjust(fromParent, -1); adjust(toParent, 1) }
                    src.ctime = t
                    batch.append(.inode(src))
                }
                for p in parents.keys.sorted() {
                    parents[p]!.mtime = t; parents[p]!.ctime = t
                    batch.append(.inode(parents[p]!))
                }
                try log(batch)
                return removed
            }
        }
        if let gone { engine.removeFile(gone) }
    }

    // MARK: Attributes

    public func setAttributes(_ n: InodeNumber, _ c: AttributeChanges) throws(DeviceError) -> FileStat {
        try requireWritable(.namespace)
        // A size change writes back the cache and may rewrite a partial last block: it allocates,
        // so it runs inside the reclaim retry (the whole change: each part is idempotent).
        try withSpace(.mib(1), retry: c.size != nil) { () throws(DeviceError) in try setAttributesOnce(n, c) }
        return try stat(n)
    }

    private func setAttributesOnce(_ n: InodeNumber, _ c: AttributeChanges) throws(DeviceError) {
        try operation { () throws(DeviceError) in
            let kind = try nsLock.withLock { () throws(DeviceError) -> InodeKind in try attrs(n, .namespace).kind }
            if let size = c.size {
                guard kind == .file else { throw DeviceError(errno: kind == .directory ? EISDIR : EINVAL, .namespace, "only regular files have a size to set") }
                try engine.truncate(n, to: size)  // writes back the page cache first
            }
            try nsLock.withLock { () throws(DeviceError) in
                var a = try attrs(n, .namespace)
                let t = now
                if let m = c.mode { a.mode = m & 0o7777 }
                if let u = c.uid { a.uid = u }
                if let g = c.gid { a.gid = g }
                if let at = c.atime { a.atime = at }
                if let mt = c.mtime { a.mtime = mt }
                if c.size != nil, c.mtime == nil { a.mtime = t }
                if let nocow = c.nocow {
                    a.flags = nocow ? a.flags | InodeAttributes.nocowFlag : a.flags & ~InodeAttributes.nocowFlag
                    if kind == .file { try engine.setNoCOW(n, nocow) }
                }
                a.ctime = t
                dirty.remove(n)
                try log([.inode(a)])
            }
        }
    }

    // MARK: Open handles

    /// Notes an open handle (FUSE open): keeps an unlinked inode alive until `release`.
    public func retain(_ n: InodeNumber) { nsLock.withLock { openCount[n, default: 0] += 1 } }

    /// Drops an open handle; removes the inode if it was its last and no entry names it.
    public func release(_ n: InodeNumber) throws(DeviceError) {
        let remove: Bool = try operation { () throws(DeviceError) -> Bool in
            try nsLock.withLock { () throws(DeviceError) -> Bool in
                let c = openCount[n, default: 0] - 1
                openCount[n] = c > 0 ? c : nil
                guard c <= 0, !readOnly, let a = namespace.attributes(n), a.nlink == 0 else { return false }
                try log([.removeInode(n)])
                return true
            }
        }
        if remove { engine.removeFile(n) }
    }

    // MARK: Data

    private func fileNumber(_ n: InodeNumber) throws(DeviceError) -> InodeNumber {
        let a = try nsLock.withLock { () throws(DeviceError) -> InodeAttributes in try attrs(n, .write) }
        guard a.kind == .file else { throw DeviceError(errno: a.kind == .directory ? EISDIR : EINVAL, .write, "inode \(n) is not a regular file") }
        return n
    }

    private func touch(_ n: InodeNumber) {
        nsLock.withLock {
            guard var a = namespace.attributes(n) else { return }
            let t = now
            a.mtime = t; a.ctime = t
            try? namespace.apply(.inode(a))
            dirty.insert(n)
        }
    }

    /// Writes `data` at `offset`. Without space while garbage exists, the writer waits for reclaim
    /// and retries: ENOSPC only when live data really fills the device. NOWAIT never waits: a
    /// checkpoint in progress is EAGAIN, and so is "no space" while reclaim could make some (a
    /// blocking retry may succeed); with nothing to reclaim it is ENOSPC, the device is full.
    public func write(_ n: InodeNumber, at offset: UInt64, _ data: UnsafeRawBufferPointer, flags: IOFlags = [.direct]) throws(DeviceError) -> Int {
        try requireWritable(.write)
        let nowait = flags.contains(.nowait)
        let written: Int
        do throws(DeviceError) {
            written = try withSpace(ByteCount(UInt64(data.count)), retry: !nowait) { () throws(DeviceError) -> Int in
                try operation(nowait: nowait) { () throws(DeviceError) -> Int in try engine.write(try fileNumber(n), at: offset, data, flags: flags) }
            }
        } catch {
            if nowait, error.kind == .noSpace, reclaimer.reclaimable.bytes > 0 {
                throw DeviceError.wouldBlock(.write, "no free space until reclaim runs: \(error)")
            }
            throw error
        }
        if written > 0 { touch(n) }
        if lowOnSpace { reclaimer.poke() }
        if flusher.wantsWriteBack(engine.cachedBytes) { flusher.poke() }
        return written
    }

    /// Runs `body` (which takes `fsLock` itself, through `operation`); on ENOSPC while reclaim can
    /// free space, reclaims outside every lock and runs it again. Every path that allocates (write,
    /// write-back of the page cache in fsync/sync/truncate, punch, fallocate) goes through here.
    func withSpace<T>(_ bytes: ByteCount, retry: Bool = true, _ body: () throws(DeviceError) -> T) throws(DeviceError) -> T {
        var attempts = 0
        while true {
            do throws(DeviceError) {
                return try body()
            } catch {
                attempts += 1
                // Other writers may take what a pass freed first, so retry while passes keep
                // helping (bounded against livelock).
                guard retry, error.kind == .noSpace, attempts <= 256, try reclaimer.makeSpace(bytes) else { throw error }
            }
        }
    }

    /// Free space is under the background reclaim threshold.
    var lowOnSpace: Bool { freeShare < options.reclaimThreshold }

    /// Free bytes as a share of the capacity (0...1).
    var freeShare: Double {
        let t = engine.allocator.totals
        return Double(t.free.bytes) / Double(max(1, t.capacity.bytes))
    }

    public func read(_ n: InodeNumber, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer, flags: IOFlags = [.direct]) throws(DeviceError) -> Int {
        try operation { () throws(DeviceError) -> Int in try engine.read(try fileNumber(n), at: offset, into: buffer, flags: flags) }
    }

    public func truncate(_ n: InodeNumber, to size: UInt64) throws(DeviceError) {
        _ = try setAttributes(n, AttributeChanges(size: size))
    }

    public func punchHole(_ n: InodeNumber, at offset: UInt64, length: UInt64) throws(DeviceError) {
        try requireWritable(.write)
        try withSpace(.mib(1)) { () throws(DeviceError) in
            try operation { () throws(DeviceError) in try engine.punchHole(try fileNumber(n), at: offset, length: length) }
        }
        touch(n)
    }

    public func fallocate(_ n: InodeNumber, at offset: UInt64, length: UInt64) throws(DeviceError) {
        try requireWritable(.write)
        try withSpace(ByteCount(length)) { () throws(DeviceError) in
            try operation { () throws(DeviceError) in try engine.fallocate(try fileNumber(n), at: offset, length: length) }
        }
        touch(n)
    }

    /// Makes the file's data and all metadata logged so far durable.
    public func fsync(_ n: InodeNumber) throws(DeviceError) {
        guard !readOnly else { return }
        try withSpace(.mib(1)) { () throws(DeviceError) in
            try operation { () throws(DeviceError) in
                // The data has completed; the commit below makes it and the log durable (a data
                // flush before the log frames, one after them: no third one).
                if try nsLock.withLock({ () throws(DeviceError) -> InodeKind in try attrs(n, .flush).kind }) == .file { try engine.waitForData(n) }
            }
        }
        try commit(durable: true)
    }
}
