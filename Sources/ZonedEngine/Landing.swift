// Where the pieces of a write landed, and the extents that makes: the seed's record-the-physical-
// address-at-completion step for zone append (btrfs records each bio's sector in its checksum
// list when it completes, and when the ordered extent finishes splits it wherever consecutive
// bios did not land back to back).
//
// Invariants:
// - A piece's device address is known only once its IO completed: with zone append the device
//   picks it. Nothing is mapped before every piece of the batch has completed and been recorded.
// - `contiguousRuns` covers its pieces exactly, in file order. A run is a maximal group of pieces
//   consecutive in the file AND back to back on the device, so each run is one extent contiguous
//   on the device. Pieces appended in one batch may complete in any order (piece 2 landing before
//   piece 1) or between another writer's appends to the zone: then they make several runs.
// - A run's checksums are its pieces' checksums in file order. They were computed from the bytes
//   sent and are stored under the address those bytes landed at (Checksums.swift keys by device),
//   so they follow the data wherever the device put it.

import ZonedAllocator
import ZonedCore

/// One completed piece of a write: its file range, where the device put it, its block checksums.
struct LandedPiece: Equatable, Sendable {
    var fileOffset: UInt64
    var length: UInt64
    var device: DeviceOffset
    /// One CRC-32C per block; empty when the data is not checksummed.
    var checksums: [UInt32]

    var fileEnd: UInt64 { fileOffset + length }
    var deviceEnd: DeviceOffset { device + ByteCount(length) }

    /// The extent this run of bytes maps to.
    func extent(kind: FileExtent.Kind) -> FileExtent {
        FileExtent(fileOffset: fileOffset, length: length, device: device, kind: kind)
    }

    /// Merges pieces (in any order) into runs contiguous in the file and on the device, in file order.
    static func contiguousRuns(_ pieces: [LandedPiece]) -> [LandedPiece] {
        var runs: [LandedPiece] = []
        for p in pieces.sorted(by: { $0.fileOffset < $1.fileOffset }) {
            if var last = runs.last, last.fileEnd == p.fileOffset, last.deviceEnd == p.device {
                last.length += p.length
                last.checksums += p.checksums
                runs[runs.count - 1] = last
            } else {
                runs.append(p)
            }
        }
        return runs
    }
}

/// What one batch of pieces did. Short writes are prefixes (as the seed's): only the pieces before
/// the first failure are kept; pieces after it that landed anyway (appends do not stop at a failed
/// neighbour) hold bytes nothing will reference.
struct BatchOutcome {
    /// The longest prefix of pieces that all landed, in file order.
    var kept: [LandedPiece] = []
    /// Pieces past the first failure that landed anyway: garbage at once.
    var stray: [LandedPiece] = []
    var failure: DeviceError?

    var keptBytes: UInt64 { kept.reduce(0) { $0 + $1.length } }
    /// Every byte the device took for this batch (what the grant must be completed with).
    var landedBytes: UInt64 { keptBytes + stray.reduce(0) { $0 + $1.length } }
}

extension Engine {
    /// Sends `source` (the file's bytes from `fileOffset`) into the grant's zone as one device
    /// batch of pieces of at most the zone's piece limit, all in flight together when the zone
    /// is appended to. Checksums (when `checksummed`) are taken from the bytes before the device
    /// sees them. `nowait`: EAGAIN for the whole batch, before any IO, when the zone's sequencer
    /// is busy.
    func sendBatch(_ grant: ZoneGrant, _ source: UnsafeRawBufferPointer, fileOffset: UInt64,
                   checksummed: Bool, nowait: Bool = false) -> BatchOutcome {
        let maxPiece = allocator.pieceLimit(grant.zone).int
        var pieces: [UnsafeRawBufferPointer] = []
        var at = 0
        while at < source.count {
            let n = min(maxPiece, source.count - at)
            pieces.append(UnsafeRawBufferPointer(rebasing: source[at..<(at + n)]))
            at += n
        }
        let crcs = pieces.map { checksummed ? ChecksumStore.compute($0, block: Int(block)) : [] }
        let results = allocator.submit(grant, pieces, nowait: nowait)
        var outcome = BatchOutcome()
        var offset = fileOffset
        for (i, result) in results.enumerated() {
            let length = UInt64(pieces[i].count)
            switch result {
            case .success(let device):
                let p = LandedPiece(fileOffset: offset, length: length, device: device, checksums: crcs[i])
                if outcome.failure == nil { outcome.kept.append(p) } else { outcome.stray.append(p) }
            case .failure(let error):
                if outcome.failure == nil { outcome.failure = error }
            }
            offset += length
        }
        count { $0.deviceBytesWritten += outcome.landedBytes }
        return outcome
    }

    /// Accounts bytes that landed but that no file will reference as garbage.
    func discardStray(_ pieces: [LandedPiece]) {
        discard(pieces.map { $0.extent(kind: .data) })
    }
}
