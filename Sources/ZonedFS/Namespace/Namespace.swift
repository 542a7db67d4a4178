// The namespace: inodes (attributes), directories (entries) and, during replay, file layouts.
//
// Invariants:
// - The namespace changes only through `apply(_:)`, live and at replay alike, so the state a mount
//   rebuilds from the log is the state the log's writer had at that point.
// - `apply` checks what a record needs (the parent is a directory, the name is free or present, the
//   inode exists); a record that does not fit is corruption (`ReplayProblem`), never a trap.
// - Inode 1 is the root directory; its parent is itself. Every other directory has exactly one
//   entry naming it, recorded in `parents`.
// - Link counts are whatever the inode records say (operations log the new count in the same
//   batch as the entry change); fsck compares them with the entries.

import ZonedCore
import ZonedEngine

public let rootInode: InodeNumber = 1

public struct ReplayProblem: Error, Sendable, CustomStringConvertible {
    public var what: String
    public init(_ what: String) { self.what = what }
    public var description: String { what }
}

public struct Namespace: Sendable {
    public private(set) var inodes: [InodeNumber: InodeAttributes] = [:]
    public private(set) var entries: [InodeNumber: [EntryName: InodeNumber]] = [:]
    /// Directory → its parent directory.
    public private(set) var parents: [InodeNumber: InodeNumber] = [:]
    public var nextInode: InodeNumber = rootInode + 1
    /// Lifetime write counters from the newest `counters` record applied.
    public private(set) var lifetime = LifetimeCounters()

    public init() {}

    public func attributes(_ n: InodeNumber) -> InodeAttributes? { inodes[n] }
    public func lookup(_ parent: InodeNumber, _ name: EntryName) -> InodeNumber? { entries[parent]?[name] }
    public func isDirectory(_ n: InodeNumber) -> Bool { inodes[n]?.kind == .directory }

    /// Applies one namespace record. File layout records and log structure records are not its business.
    public mutating func apply(_ record: LogRecord) throws(ReplayProblem) {
        switch record {
        case .inode(let a):
            if let old = inodes[a.number], old.kind != a.kind { throw ReplayProblem("inode \(a.number) changes kind from \(old.kind) to \(a.kind)") }
            inodes[a.number] = a
            if a.kind == .directory, entries[a.number] == nil { entries[a.number] = [:] }
            if a.number == rootInode { parents[rootInode] = rootInode }
            nextInode = max(nextInode, a.number + 1)
        case .link(let parent, let name, let inode):
            guard entries[parent] != nil else { throw ReplayProblem("link into \(parent), which is not a directory") }
            guard entries[parent]![name] == nil else { throw ReplayProblem("link of '\(name)' in \(parent), which exists") }
            guard let a = inodes[inode] else { throw ReplayProblem("link of '\(name)' to missing inode \(inode)") }
            if a.kind == .directory {
                guard parents[inode] == nil else { throw ReplayProblem("second link to directory \(inode)") }
                parents[inode] = parent
            }
            entries[parent]![name] = inode
        case .unlink(let parent, let name):
            guard let n = entries[parent]?[name] else { throw ReplayProblem("unlink of '\(name)' in \(parent), which is absent") }
            entries[parent]![name] = nil
            if parents[n] == parent, inodes[n]?.kind == .directory { parents[n] = nil }
        case .rename(let fp, let fn, let tp, let tn):
            guard let n = entries[fp]?[fn] else { throw ReplayProblem("rename of '\(fn)' in \(fp), which is absent") }
            guard entries[tp] != nil else { throw ReplayProblem("rename into \(tp), which is not a directory") }
            if fp == tp && fn == tn { return }
            if let replaced = entries[tp]![tn], inodes[replaced]?.kind == .directory { parents[replaced] = nil }
            entries[fp]![fn] = nil
            entries[tp]![tn] = n
            if inodes[n]?.kind == .directory { parents[n] = tp }
        case .exchange(let pa, let na, let pb, let nb):
            guard let a = entries[pa]?[na], let b = entries[pb]?[nb] else { throw ReplayProblem("exchange of '\(na)' and '\(nb)': one is absent") }
            entries[pa]![na] = b
            entries[pb]![nb] = a
            if inodes[a]?.kind == .directory { parents[a] = pb }
            if inodes[b]?.kind == .directory { parents[b] = pa }
        case .removeInode(let n):
            guard inodes[n] != nil else { throw ReplayProblem("removal of missing inode \(n)") }
            guard n != rootInode else { throw ReplayProblem("removal of the root directory") }
            if let e = entries[n], !e.isEmpty { throw ReplayProblem("removal of directory \(n), which is not empty") }
            inodes[n] = nil
            entries[n] = nil
            parents[n] = nil
        case .counters(let c):
            lifetime = c
        case .zoneHeader, .next, .checkpointBegin, .checkpointEnd, .file, .tableAdded, .tableRemoved, .indexCounters, .checkpointExtent, .checkpointChecksums:
            break
        }
    }

    /// Whether `ancestor` is `dir` or one of its ancestors (rename must not move a directory into itself).
    public func isAncestor(_ ancestor: InodeNumber, of dir: InodeNumber) -> Bool {
        var at = dir
        for _ in 0...inodes.count {
            if at == ancestor { return true }
            guard let p = parents[at], p != at else { return false }
            at = p
        }
        return false
    }
}

/// Data checksums a log record carries: one CRC-32C per block from `at` on.
public struct ChecksumRun: Sendable, Equatable {
    public var at: DeviceOffset
    public var crcs: [UInt32]
    public init(at: DeviceOffset, crcs: [UInt32]) { self.at = at; self.crcs = crcs }
}

/// What replaying the log builds: the namespace, each file's layout, and the data checksums of
/// the records since the last checkpoint (older ones are in the checkpoint's index tables).
public struct ReplayState: Sendable {
    public var namespace = Namespace()
    public var layouts: [InodeNumber: FileLayout] = [:]
    /// In log order: applied to the index in this order, the newest write of a block wins.
    public var checksumRuns: [ChecksumRun] = []
    /// The metadata index's tables (IndexManifest.swift).
    public var manifest = IndexManifest()
    let zoneSize: UInt64
    let block: UInt64

    public init(zoneSize: UInt64, block: UInt64) {
        self.zoneSize = zoneSize
        self.block = block
    }

    public mutating func apply(_ record: LogRecord) throws(ReplayProblem) {
        try namespace.apply(record)
        try manifest.apply(record)
        switch record {
        case .inode(let a) where a.kind == .file:
            if layouts[a.number] == nil { layouts[a.number] = FileLayout(zoneSize: zoneSize) }
        case .removeInode(let n):
            layouts[n] = nil
        case .file(let n, let change):
            guard layouts[n] != nil else { throw ReplayProblem("layout change of inode \(n), which is not a file") }
            if case .mapped(let e, let crcs, _) = change {
                try check(e, inode: n)
                guard e.kind != .data || UInt64(crcs.count) * block == e.length else {
                    throw ReplayProblem("extent \(e) of inode \(n) has \(crcs.count) checksums for \(e.length / block) blocks")
                }
                if !crcs.isEmpty { checksumRuns.append(ChecksumRun(at: e.device, crcs: crcs)) }
            }
            layouts[n]!.apply(change, block: block)
        case .checkpointChecksums(let run):
            guard run.at.bytes % block == 0 else { throw ReplayProblem("checksums at \(run.at) are not block-aligned") }
            checksumRuns.append(run)
        case .checkpointExtent(let n, let e):
            guard layouts[n] != nil else { throw ReplayProblem("extent of inode \(n), which is not a file") }
            try check(e, inode: n)
            layouts[n]!.apply(.mapped(e, checksums: [], sizeAtLeast: 0), block: block)
        default:
            break
        }
    }

    private func check(_ e: FileExtent, inode n: InodeNumber) throws(ReplayProblem) {
        guard e.length % block == 0, e.fileOffset % block == 0, e.device.bytes % block == 0 else {
            throw ReplayProblem("extent \(e) of inode \(n) is not block-aligned")
        }
        guard e.device.bytes / zoneSize == (e.deviceEnd.bytes - 1) / zoneSize else {
            throw ReplayProblem("extent \(e) of inode \(n) crosses a zone boundary")
        }
    }
}
