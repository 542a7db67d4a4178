// Truncate, punch hole and fallocate.
//
// Invariants:
// - Each runs under the exclusive inode lock, after writing back the file's page cache and after
//   every overlapping ordered extent has finished.
// - Device ranges that stop being referenced are accounted as garbage at once.
// - Truncating to a size inside a block zeroes the rest of that block (copy on write), so bytes past
//   EOF are zero and a later extending write or truncate-up exposes zeros.
// - fallocate preallocates only in conventional mode, where space can be claimed without writing
//   it; on zoned devices space exists only once written, so it answers EOPNOTSUPP (the mount maps
//   that to the errno FUSE expects).

import ZonedCore

extension Engine {
    public func truncate(_ n: InodeNumber, to newSize: UInt64) throws(DeviceError) {
        let inode = try inode(n)
        _ = inode.lock.lock(.exclusive)
        defer { inode.lock.unlock() }
        try writeBack(inode)
        _ = waitForOrdered(inode, 0, UInt64.max, nowait: false)
        let old = inode.state.withLock { inode.size }
        if newSize < old {
            if newSize % block != 0 { try zeroInBlock(inode, newSize, roundUp(newSize)) }
        }
        discard(inode.state.withLock { apply(inode, .truncated(to: newSize)) })
    }

    /// Deallocates [offset, offset+length): reads as zeros afterwards; the size does not change.
    public func punchHole(_ n: InodeNumber, at offset: UInt64, length: UInt64) throws(DeviceError) {
        guard length > 0 else { return }
        let inode = try inode(n)
        _ = inode.lock.lock(.exclusive)
        defer { inode.lock.unlock() }
        try writeBack(inode)
        let end = offset + length
        _ = waitForOrdered(inode, roundDown(offset), roundUp(end), nowait: false)
        let fullStart = roundUp(offset), fullEnd = roundDown(end)
        if fullStart > fullEnd {  // inside one block
            try zeroInBlock(inode, offset, end)
            return
        }
        if offset < fullStart { try zeroInBlock(inode, offset, fullStart) }
        if fullEnd < end { try zeroInBlock(inode, fullEnd, end) }
        if fullStart < fullEnd {
            discard(inode.state.withLock { apply(inode, .punched(at: fullStart, length: fullEnd - fullStart)) })
        }
    }

    /// Preallocates [offset, offset+length) (mode 0: the size grows to cover it).
    public func fallocate(_ n: InodeNumber, at offset: UInt64, length: UInt64) throws(DeviceError) {
        guard length > 0 else { return }
        guard isConventionalMode else {
            throw DeviceError.notSupported(.write, "preallocation needs conventional mode: zoned space exists only once written")
        }
        let inode = try inode(n)
        _ = inode.lock.lock(.exclusive)
        defer { inode.lock.unlock() }
        try writeBack(inode)
        let s = roundDown(offset), e = roundUp(offset + length)
        _ = waitForOrdered(inode, s, e, nowait: false)
        let holes = inode.state.withLock { inode.map.lookup(s, e - s) }.compactMap { r -> (UInt64, UInt64)? in
            if case .hole(let o, let l) = r { return (o, l) } else { return nil }
        }
        var reservation = ReservationBox(try allocator.reserve(ByteCount(holes.reduce(0) { $0 + $1.1 })))
        for (start, len) in holes { try mapPrealloc(inode, at: start, length: len, &reservation, forReclaim: false) }
        inode.state.withLock { _ = apply(inode, .extended(to: offset + length)) }
    }

    /// Maps [start, start+length) of `inode` as prealloc in new space taken without IO (conventional
    /// zones only: sequential zones' space exists only once written), under `reservation`. Reclaim's
    /// moves may take the reclaim reserve and keep to the zone they started in; whatever the range
    /// mapped before becomes garbage.
    func mapPrealloc(_ inode: Inode, at start: UInt64, length: UInt64, _ reservation: inout ReservationBox,
                     forReclaim: Bool) throws(DeviceError) {
        var at = start
        var hint: ZoneID?
        while at < start + length {
            let grant = try allocator.grant(ByteCount(start + length - at), hint: forReclaim ? hint : nil, useReserve: forReclaim)
            reservation.use(grant.length)
            hint = grant.zone
            let dev = allocator.claim(grant, grant.length)
            allocator.complete(grant, written: grant.length)
            let e = FileExtent(fileOffset: at, length: grant.length.bytes, device: dev, kind: .prealloc)
            discard(inode.state.withLock { apply(inode, .mapped(e, checksums: [], sizeAtLeast: 0)) })
            at += grant.length.bytes
        }
    }
}
