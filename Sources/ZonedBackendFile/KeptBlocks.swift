// The data region of a discard-data image (`zbdfs emulate create --discard-data`): a device of
// drive size (20 TiB, 80,000 zones) in a small file, for scale and speed work.
//
// What it keeps: only blocks that hold a non-zero byte. A block of zeros is never stored, and a
// block nobody kept reads as zeros — so a workload that writes zeros (the scale benchmark) costs
// no space, while the file system's own metadata (superblock, log, checkpoints: never all
// zeros) is kept and the image mounts again. This is not null_blk's memory_backed=0, which keeps
// nothing: a file system on that cannot be mounted twice. Non-zero file data is kept too; the
// benchmark simply writes none. Write pointers, conditions and limits are the zone table's
// business, exactly as in a full image.
//
// Layout: records appended from `start` (the image's dataStart) to the end of the file, each
//   u64 device offset (block aligned), u32 kind << 31 | block count, u32 crc32c of the 12 header
//   bytes and the payload; kind 0 carries `count` blocks of data, kind 1 (zeroed) none: it says
//   the range reads as zeros again (a reset, or zeros written over kept blocks).
//
// Invariants:
// - The newest record for a block decides what it reads; `index` maps every kept block to the
//   file offset of its newest bytes and holds nothing else (zeroed blocks are removed).
// - Opening replays the records in order; a torn or damaged tail record (short, or a bad crc)
//   ends the replay and is cut off, so later appends never follow garbage.
// - A zeroed record is appended only when it drops a kept block: writing zeros over zeros and
//   resetting an untouched zone add nothing.
// - One lock guards the index and the append position; IO to distinct zones may interleave.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ZonedCore

final class KeptBlocks: @unchecked Sendable {
    static let headerBytes = 16
    private static let zeroedKind: UInt32 = 1 << 31

    private let fd: Int32
    private let path: String
    private let start: UInt64
    let blockSize: Int
    private let lock = Lock()
    /// Device block number → file offset of its newest kept bytes.
    private var index: [UInt64: UInt64] = [:]
    /// Where the next record goes.
    private var end: UInt64

    /// Replays the records of the image open as `fd`.
    init(fd: Int32, path: String, start: UInt64, blockSize: Int) throws(DeviceError) {
        self.fd = fd
        self.path = path
        self.start = start
        self.blockSize = blockSize
        end = start
        try replay()
    }

    /// Blocks kept now (the metadata a scale run leaves).
    var keptBlocks: Int { lock.withLock { index.count } }

    /// Bytes of records in the file, superseded ones included.
    var recordBytes: UInt64 { lock.withLock { end - start } }

    // MARK: IO

    func write(_ data: UnsafeRawBufferPointer, at offset: DeviceOffset, _ op: DeviceOperation) throws(DeviceError) {
        precondition(offset.bytes % UInt64(blockSize) == 0 && data.count % blockSize == 0, "unaligned write to a discard-data image")
        try lock.withLock { () throws(DeviceError) in
            var i = 0
            let blocks = data.count / blockSize
            while i < blocks {
                let zero = isZero(data, block: i)
                var j = i + 1
                while j < blocks, isZero(data, block: j) == zero { j += 1 }
                let first = offset.bytes / UInt64(blockSize) + UInt64(i)
                if zero {
                    try drop(first: first, count: j - i, op)
                } else {
                    try keep(UnsafeRawBufferPointer(rebasing: data[(i * blockSize)..<(j * blockSize)]), first: first, op)
                }
                i = j
            }
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: DeviceOffset, _ op: DeviceOperation) throws(DeviceError) {
        precondition(offset.bytes % UInt64(blockSize) == 0 && buffer.count % blockSize == 0, "unaligned read of a discard-data image")
        try lock.withLock { () throws(DeviceError) in
            let first = offset.bytes / UInt64(blockSize)
            for b in 0..<(buffer.count / blockSize) {
                let part = UnsafeMutableRawBufferPointer(rebasing: buffer[(b * blockSize)..<((b + 1) * blockSize)])
                if let at = index[first + UInt64(b)] {
                    try BackingFile.preadAll(fd, part, at, op, path)
                } else {
                    part.initializeMemory(as: UInt8.self, repeating: 0)
                }
            }
        }
    }

    /// Makes [offset, offset+length) read as zeros (a zone reset).
    func zero(at offset: DeviceOffset, length: ByteCount, _ op: DeviceOperation) throws(DeviceError) {
        let bs = UInt64(blockSize)
        let first = offset.bytes / bs, blocks = (length.bytes + bs - 1) / bs
        // A record counts at most 2^31 - 1 blocks; a reset of a drive-sized range is split.
        let most = UInt64(Int32.max)
        try lock.withLock { () throws(DeviceError) in
            var done: UInt64 = 0
            while done < blocks {
                let n = min(most, blocks - done)
                try drop(first: first + done, count: Int(n), op)
                done += n
            }
        }
    }

    // MARK: Records (under the lock)

    private func keep(_ data: UnsafeRawBufferPointer, first: UInt64, _ op: DeviceOperation) throws(DeviceError) {
        let count = data.count / blockSize
        let header = recordHeader(first: first, word: UInt32(count), payload: data)
        try append(header, data, op)
        let payload = end - UInt64(data.count)
        for b in 0..<count { index[first + UInt64(b)] = payload + UInt64(b * blockSize) }
    }

    /// Forgets the kept blocks in the range; records that only when there were some.
    private func drop(first: UInt64, count: Int, _ op: DeviceOperation) throws(DeviceError) {
        let range = first..<(first + UInt64(count))
        let hit: Bool
        if count > index.count {
            // A whole zone of a big device against a small index: walk the index, not the range.
            let keys = index.keys.filter { range.contains($0) }
            keys.forEach { index[$0] = nil }
            hit = !keys.isEmpty
        } else {
            var any = false
            for b in range where index.removeValue(forKey: b) != nil { any = true }
            hit = any
        }
        guard hit else { return }
        let header = recordHeader(first: first, word: KeptBlocks.zeroedKind | UInt32(count), payload: UnsafeRawBufferPointer(start: nil, count: 0))
        try append(header, UnsafeRawBufferPointer(start: nil, count: 0), op)
    }

    private func recordHeader(first: UInt64, word: UInt32, payload: UnsafeRawBufferPointer) -> [UInt8] {
        var w = ByteWriter(capacity: KeptBlocks.headerBytes)
        w.u64(first * UInt64(blockSize))
        w.u32(word)
        let crc = w.bytes.withUnsafeBytes { CRC32C.update(CRC32C.checksum($0), payload) }
        w.u32(crc)
        return w.bytes
    }

    private func append(_ header: [UInt8], _ payload: UnsafeRawBufferPointer, _ op: DeviceOperation) throws(DeviceError) {
        let failure: DeviceError? = header.withUnsafeBytes { h in
            do throws(DeviceError) {
                try BackingFile.pwriteAll(fd, h, end, op, path)
                return nil
            } catch { return error }
        }
        if let failure { throw failure }
        if payload.count > 0 { try BackingFile.pwriteAll(fd, payload, end + UInt64(header.count), op, path) }
        end += UInt64(header.count + payload.count)
    }

    private func isZero(_ data: UnsafeRawBufferPointer, block: Int) -> Bool {
        let p = data.baseAddress! + block * blockSize
        return p.load(as: UInt8.self) == 0 && memcmp(p, p + 1, blockSize - 1) == 0
    }

    // MARK: Replay

    private func replay() throws(DeviceError) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .lastErrno(.open, "fstat of \(path)") }
        let size = UInt64(st.st_size)
        var at = start
        var payload = [UInt8]()
        while at + UInt64(KeptBlocks.headerBytes) <= size {
            let h = try BackingFile.readPrefix(fd: fd, count: KeptBlocks.headerBytes, fileOffset: at, .open, path)
            var r = ByteReader(h)
            guard let device = try? r.u64("offset"), let word = try? r.u32("kind"), let crc = try? r.u32("crc") else { break }
            let zeroed = word & KeptBlocks.zeroedKind != 0
            let count = Int(word & ~KeptBlocks.zeroedKind)
            let bytes = zeroed ? 0 : count * blockSize
            guard device % UInt64(blockSize) == 0, at + UInt64(KeptBlocks.headerBytes + bytes) <= size else { break }
            payload = bytes == 0 ? [] : try BackingFile.readPrefix(fd: fd, count: bytes, fileOffset: at + UInt64(KeptBlocks.headerBytes), .open, path)
            let sum = payload.withUnsafeBytes { p in h.withUnsafeBytes { CRC32C.update(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<12])), p) } }
            guard sum == crc else { break }
            let first = device / UInt64(blockSize)
            for b in 0..<count {
                index[first + UInt64(b)] = zeroed ? nil : at + UInt64(KeptBlocks.headerBytes + b * blockSize)
            }
            at += UInt64(KeptBlocks.headerBytes + bytes)
        }
        end = at
        if at < size, ftruncate(fd, off_t(at)) != 0 { throw .lastErrno(.open, "cannot cut the torn tail of \(path)") }
    }
}
