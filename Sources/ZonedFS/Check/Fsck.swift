// fsck: a read-only check of a zbdfs device.
//
// Invariants:
// - Never writes the device (it only reports zones, reads and replays).
// - A finding is a `problem` when the file system is inconsistent (mount would refuse, or data
//   could be lost or exposed); a `note` when it is the expected state after a crash (a torn
//   superblock copy, orphans awaiting removal, garbage below a write pointer).
// - Throws only when the device cannot be read at all (the CLI's exit 2).

import ZonedCore
import ZonedEngine
import ZonedIndex

public struct FsckReport: Sendable {
    public var problems: [String] = []
    public var notes: [String] = []
    public var superblockGeneration: UInt64?
    public var label = ""
    public var logZones: [Int] = []
    public var logFrames = 0
    public var logRecords = 0
    public var logEnd = ""
    public var inodes = 0
    public var directories = 0
    public var files = 0
    public var symlinks = 0
    public var extents = 0
    public var liveBytes: UInt64 = 0
    public var garbageBytes: UInt64 = 0
    public var blocksVerified = 0
    public var indexTables = 0
    public var indexBytes: UInt64 = 0
    public var indexEntries = 0
    public var clean: Bool { problems.isEmpty }
}

public enum Fsck {
    /// Checks `device`. `verifyData` also reads every checksummed block and compares.
    public static func check(device: any ZonedDevice, verifyData: Bool = false,
                             progress: ((String) -> Void)? = nil) throws(DeviceError) -> FsckReport {
        var r = FsckReport()
        let g = device.geometry
        progress?("superblocks")
        let found = try SuperblockIO.newest(device: device)
        for (i, c) in found.copies.enumerated() {
            if case .invalid(let why) = c { r.notes.append("superblock copy in zone \(i) is not valid (\(why)); the other copy is used") }
        }
        guard let (sb, _) = found.best else {
            if let v = SuperblockIO.otherVersion(found.copies) {
                r.problems.append(SuperblockIO.versionProblem(v))
                return r
            }
            r.problems.append("no valid superblock in zones 0 and 1: not a zbdfs device, or both copies are damaged")
            return r
        }
        r.superblockGeneration = sb.generation
        r.label = sb.label
        if let m = sb.geometryMismatch(g) {
            r.problems.append("the device geometry differs from the superblock's: \(m)")
            return r
        }
        progress?("metadata log")
        let replay = try LogReplay.read(device: device, superblock: sb)
        r.logZones = replay.chain.map(\.int)
        r.logFrames = replay.frames
        r.logRecords = replay.records
        r.logEnd = replay.end
        r.problems += replay.damage
        let zones = try device.reportAllZones()
        let ns = replay.state.namespace
        progress?("extents")
        checkExtents(replay.state, zones: zones, geometry: g, superblock: sb, chain: replay.chain, into: &r)
        progress?("namespace")
        checkNamespace(ns, into: &r)
        progress?("metadata index")
        guard let checksums = checkIndex(replay.state, device: device, zones: zones, progress: progress, into: &r) else { return r }
        if verifyData {
            progress?("data checksums")
            try verify(replay.state, checksums: checksums, device: device, into: &r)
        }
        return r
    }

    /// Every table of the manifest: inside one zone below its write pointer, readable whole (block
    /// checksums, key order, counts). Returns the index as checksums (the log's newer ones set
    /// again in memory, nothing written), or nil when it cannot be opened.
    static func checkIndex(_ state: ReplayState, device: any ZonedDevice, zones: [Zone],
                           progress: ((String) -> Void)?, into r: inout FsckReport) -> IndexChecksums? {
        let m = state.manifest
        r.indexTables = m.tables.count
        var fit = true
        for d in m.tables.values.sorted(by: { $0.id < $1.id }) {
            r.indexBytes += d.location.length
            if let p = IndexZones.problem(d, zones: zones, geometry: device.geometry) { r.problems.append(p); fit = false }
        }
        guard fit else { return nil }
        let index: MetadataIndex
        do {
            var config = IndexConfig()
            config.merge = IndexChecksums.chunkMerge
            index = try MetadataIndex(store: ReadOnlyTableStore(device: device), cache: BlockCache(capacity: 16 << 20), config: config,
                                      manifest: m.tables.keys.sorted().map { m.tables[$0]! }, nextTableID: m.nextTableID)
        } catch {
            r.problems.append("the metadata index cannot be opened: \(error)")
            return nil
        }
        var entries = 0
        r.problems += index.checkTables({ _ in entries += 1 }, progress: { done, all in
            if done % 16 == 0 || done == all { progress?("metadata index: \(done)/\(all) tables") }
        })
        r.indexEntries = entries
        let checksums = IndexChecksums(index: index, block: device.geometry.logicalBlockSize)
        checksums.restore(state.checksumRuns)
        return checksums
    }

    static func checkExtents(_ state: ReplayState, zones: [Zone], geometry g: DeviceGeometry, superblock sb: Superblock,
                             chain: [ZoneID], into r: inout FsckReport) {
        var all: [(FileExtent, InodeNumber)] = []
        var live: [ZoneID: UInt64] = [:]
        let tables = state.manifest.tables.values.compactMap { g.zone(containing: DeviceOffset($0.location.address)) }
        let reserved = Set([sb.superblockZones.0, sb.superblockZones.1] + chain + tables)
        for (n, layout) in state.layouts {
            for e in layout.map.extents {
                all.append((e, n))
                if let p = ZoneUsage.problem(e, inode: n, zones: zones, geometry: g) { r.problems.append(p); continue }
                let z = g.zone(containing: e.device)!
                if reserved.contains(z) { r.problems.append("inode \(n): extent \(e) lies in zone \(z.int), which holds the superblock, the log or index tables") }
                live[z, default: 0] += e.length
            }
            if let last = layout.map.extents.last, last.fileEnd > (layout.size + g.logicalBlockSize.bytes - 1) / g.logicalBlockSize.bytes * g.logicalBlockSize.bytes,
               last.kind != .prealloc {
                r.problems.append("inode \(n): data mapped past its size \(layout.size)")
            }
        }
        r.extents = all.count
        all.sort { $0.0.device < $1.0.device }
        for (a, b) in zip(all, all.dropFirst()) where a.0.deviceEnd > b.0.device {
            r.problems.append("extents overlap on the device: inode \(a.1) \(a.0) and inode \(b.1) \(b.0)")
        }
        for z in zones where z.type.isSequential && !reserved.contains(z.id) {
            let written = z.writePointer > z.start ? (z.writePointer - z.start).bytes : 0
            let l = live[z.id] ?? 0
            r.liveBytes += l
            if l > written, z.condition != .full { r.problems.append("zone \(z.id.int) holds \(l) live bytes but only \(written) are written") }
            if written > l { r.garbageBytes += written - l }
        }
        for (z, l) in live where g.isConventional(z) { r.liveBytes += l }
    }

    static func checkNamespace(_ ns: Namespace, into r: inout FsckReport) {
        r.inodes = ns.inodes.count
        guard let root = ns.inodes[rootInode], root.kind == .directory else {
            r.problems.append("the root directory (inode 1) is missing")
            return
        }
        var names: [InodeNumber: Int] = [:]
        var subdirs: [InodeNumber: Int] = [:]
        for (dir, entries) in ns.entries {
            for (name, n) in entries {
                guard let a = ns.inodes[n] else { r.problems.append("entry '\(name)' in directory \(dir) names missing inode \(n)"); continue }
                names[n, default: 0] += 1
                if a.kind == .directory { subdirs[dir, default: 0] += 1 }
            }
        }
        var reachable = Set<InodeNumber>([rootInode])
        var queue = [rootInode]
        while let d = queue.popLast() {
            for n in ns.entries[d, default: [:]].values where !reachable.contains(n) {
                reachable.insert(n)
                if ns.isDirectory(n) { queue.append(n) }
            }
        }
        for (n, a) in ns.inodes.sorted(by: { $0.key < $1.key }) {
            switch a.kind {
            case .directory:
                r.directories += 1
                let want = UInt32(2 + subdirs[n, default: 0])
                if a.nlink != want { r.problems.append("directory \(n) has link count \(a.nlink), its entries say \(want)") }
                if n != rootInode, names[n, default: 0] != 1 { r.problems.append("directory \(n) is named by \(names[n, default: 0]) entries") }
            case .file, .symlink:
                if a.kind == .file { r.files += 1 } else { r.symlinks += 1 }
                let want = UInt32(names[n, default: 0])
                if a.nlink == 0 && want == 0 {
                    r.notes.append("inode \(n) is an orphan (unlinked while open); mount removes it")
                } else if a.nlink != want {
                    r.problems.append("inode \(n) has link count \(a.nlink), but \(want) entries name it")
                }
            }
            if !reachable.contains(n), a.nlink > 0 { r.problems.append("inode \(n) cannot be reached from the root") }
        }
    }

    /// Reads every checksummed data block and compares. Reads go in chunks of up to 1 MiB inside
    /// one zone, not block by block: on a kernel zoned device each read near a zone's write
    /// pointer also costs a zone report, and 512-byte blocks made fsck of 30 MiB take minutes
    /// in the QEMU guest. A chunk that cannot be read is read again block by block, so a problem
    /// still names the block.
    static func verify(_ state: ReplayState, checksums: IndexChecksums, device: any ZonedDevice, into r: inout FsckReport) throws(DeviceError) {
        let g = device.geometry
        let block = Int(g.logicalBlockSize.bytes)
        let chunkBlocks = max(1, (1 << 20) / block)
        let buffer = AlignedBuffer(count: chunkBlocks * block)
        for (n, layout) in state.layouts.sorted(by: { $0.key < $1.key }) {
            for e in layout.map.extents where e.kind == .data {
                let crcs: [UInt32]
                do { crcs = try checksums.get(e.device, count: Int(e.length) / block) } catch {
                    r.problems.append("inode \(n): the checksums of extent \(e) cannot be read from the index (\(error))")
                    continue
                }
                var i = 0
                while i < crcs.count {
                    let at = e.device + ByteCount(UInt64(i * block))
                    let toZoneEnd = g.zone(containing: at).map { Int(((g.zoneStart($0) + g.zoneSize) - at).bytes) / block } ?? 1
                    let count = max(1, min(chunkBlocks, crcs.count - i, toZoneEnd))
                    var whole = true
                    do { try device.read(into: buffer.slice(0, count * block), at: at) } catch { whole = false }
                    for k in 0..<count {
                        let blockAt = at + ByteCount(UInt64(k * block))
                        let piece = buffer.slice(k * block, block)
                        if !whole {
                            do { try device.read(into: piece, at: blockAt) } catch {
                                r.problems.append("inode \(n): block at \(blockAt) cannot be read (\(error))")
                                continue
                            }
                        }
                        if CRC32C.checksum(UnsafeRawBufferPointer(piece)) != crcs[i + k] {
                            r.problems.append("inode \(n): block at file offset \(e.fileOffset + UInt64((i + k) * block)) (device \(blockAt)) does not match its checksum")
                        }
                        r.blocksVerified += 1
                    }
                    i += count
                }
            }
        }
    }
}
