// Reading the metadata log back: from the superblock's log start, frame by frame, zone by zone.
//
// Invariants:
// - Replay never writes. It stops at the first frame that is not the log's next one (bad magic,
//   checksum, file system id or sequence number) — the end of the log.
// - On a sequential zone a bad frame is a torn write only when it is the last thing below the
//   write pointer (a power cut keeps a prefix of what was sent, so a torn frame has nothing after
//   it). A bad frame with valid-looking writes after it is damage, reported in `damage` — except in
//   a full zone, whose write pointer may come from a finish rather than from writes.
// - A checkpoint replaces the state only once its `checkpointEnd` is read; a torn checkpoint leaves
//   the state it would have replaced.
// - A record that does not fit the state (a link to a missing inode, ...) is damage, not a trap.

import ZonedCore
import ZonedEngine

public struct LogReplay: Sendable {
    public var state: ReplayState
    /// Log zones read, from the log start on.
    public var chain: [ZoneID] = []
    public var nextSequence: UInt64
    public var frames = 0
    public var records = 0
    public var checkpoints = 0
    /// Why the log ended where it did.
    public var end = ""
    /// Problems that make the log untrustworthy (mount refuses, fsck lists them).
    public var damage: [String] = []

    public static func read(device: any ZonedDevice, superblock sb: Superblock) throws(DeviceError) -> LogReplay {
        let g = device.geometry
        let block = Int(g.logicalBlockSize.bytes)
        var out = LogReplay(state: ReplayState(zoneSize: g.zoneSize.bytes, block: UInt64(block)), nextSequence: sb.logStartSequence)
        var pending: ReplayState?
        var sawCheckpoint = false
        var zone = sb.logStartZone
        var cameFrom: ZoneID?
        zones: while true {
            guard !out.chain.contains(zone), g.contains(zone) else {
                out.damage.append("the log's zone chain loops or leaves the device at zone \(zone.int)")
                break
            }
            let info = try device.zone(zone)
            let sequential = !g.isConventional(zone)
            let start = g.zoneStart(zone)
            let limit = sequential ? info.writePointer : start + g.zoneCapacity
            var at = start
            var next: ZoneID?
            var first = true
            frames: while at < limit {
                let frame: (LogFrameHeader, [LogRecord])
                switch readFrame(device, at: at, limit: limit, block: block, fsid: sb.fsid, sequence: out.nextSequence) {
                case .frame(let h, let rs): frame = (h, rs)
                case .end(let why, let frameEnd):
                    // A full zone may have been finished after its last frame (mount finishes the old
                    // log zones), so its write pointer says nothing about where the frames end.
                    if sequential, info.condition != .full, frameEnd < limit {
                        out.damage.append("log frame at \(at) in zone \(zone.int) is bad (\(why)) but the zone holds writes up to \(limit)")
                    }
                    out.end = "\(why) at \(at) (zone \(zone.int))"
                    if first && !out.chain.isEmpty { out.end += ": the zone was never started" }
                    break zones
                }
                let records = frame.1
                if first {
                    guard case .zoneHeader(let prev)? = records.first, cameFrom == nil || prev == cameFrom else {
                        out.end = "zone \(zone.int) does not continue the log from zone \(cameFrom.map { String($0.int) } ?? "-")"
                        if out.chain.isEmpty { out.damage.append("the log start (zone \(zone.int)) has no zone header") }
                        break zones
                    }
                    out.chain.append(zone)
                    first = false
                }
                out.frames += 1
                out.nextSequence += 1
                at = at + ByteCount(frame.0.frameBytes(block: block))
                for r in records {
                    out.records += 1
                    switch r {
                    case .zoneHeader: continue
                    case .next(let z): next = z
                    case .checkpointBegin(let n):
                        pending = ReplayState(zoneSize: g.zoneSize.bytes, block: UInt64(block))
                        pending!.namespace.nextInode = n
                    case .checkpointEnd:
                        guard let p = pending else { out.damage.append("checkpoint end without a beginning in zone \(zone.int)"); break zones }
                        out.state = p
                        pending = nil
                        sawCheckpoint = true
                        out.checkpoints += 1
                    case .checkpointExtent where pending == nil, .checkpointChecksums where pending == nil:
                        out.damage.append("a checkpoint's record outside a checkpoint in zone \(zone.int)")
                        break zones
                    default:
                        do {
                            if pending != nil { try pending!.apply(r) } else { try out.state.apply(r) }
                        } catch {
                            out.damage.append("log record in zone \(zone.int) does not fit: \(error.what)")
                            break zones
                        }
                    }
                }
                if next != nil { break frames }
            }
            guard let n = next else {
                if out.end.isEmpty { out.end = "write pointer of zone \(zone.int)" }
                break
            }
            cameFrom = zone
            zone = n
        }
        if !sawCheckpoint { out.damage.append("the log holds no complete checkpoint (log start zone \(sb.logStartZone.int))") }
        return out
    }

    enum FrameRead {
        case frame(LogFrameHeader, [LogRecord])
        /// Not a frame of this log; `frameEnd` is how far the bad bytes reach.
        case end(String, frameEnd: DeviceOffset)
    }

    static func readFrame(_ device: any ZonedDevice, at: DeviceOffset, limit: DeviceOffset, block: Int,
                          fsid: UInt64, sequence: UInt64) -> FrameRead {
        let first = AlignedBuffer(count: block)
        do { try device.read(into: first.mutable, at: at) } catch { return .end("unreadable (\(error))", frameEnd: at + ByteCount(block)) }
        let headerBytes = Array(first.readOnly[0..<LogFrameHeader.size])
        let h: LogFrameHeader
        do { h = try LogFrameHeader.decode(headerBytes) } catch {
            if headerBytes.allSatisfy({ $0 == 0 }) { return .end("no frame", frameEnd: at) }
            return .end("bad frame header: \(error)", frameEnd: at + ByteCount(block))
        }
        let size = h.frameBytes(block: block)
        let end = at + ByteCount(size)
        guard h.fsid == fsid else { return .end("frame of another file system", frameEnd: at) }
        guard h.sequence == sequence else { return .end("frame sequence \(h.sequence), expected \(sequence)", frameEnd: at) }
        guard end <= limit else { return .end("frame runs past the written end (torn)", frameEnd: limit) }
        let whole = AlignedBuffer(count: size)
        whole.slice(0, block).copyMemory(from: first.readOnly)
        var done = block
        let maxIO = device.geometry.maxWriteBytes.int
        while done < size {
            let n = min(maxIO, size - done)
            do { try device.read(into: whole.slice(done, n), at: at + ByteCount(done)) } catch { return .end("unreadable (\(error))", frameEnd: end) }
            done += n
        }
        do {
            let (hh, records) = try LogFrame.decode(Array(whole.readOnly), block: block)
            return .frame(hh, records)
        } catch {
            return .end("bad frame: \(error)", frameEnd: end)
        }
    }
}
