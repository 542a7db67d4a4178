// The file (or block device) behind a file-backed device, and the raw positioned IO on it.
//
// Invariants:
// - `dataFD` is opened with O_DIRECT when the file system takes it; when the open fails with
//   EINVAL (tmpfs on older kernels), or a direct IO is refused with EINVAL (an alignment the
//   file system does not accept), the same IO goes through `bufferedFD` instead. Linux keeps the
//   two coherent: a direct IO writes back and invalidates the page-cache range it covers first.
// - Direct IO always uses page-aligned memory: an unaligned caller buffer is bounced through an
//   `AlignedBuffer`, so callers may pass any memory.
// - Positions given to `write`/`read` are device offsets; the file offset is `dataStart + X`.
//   Bytes↔file offsets are converted here and nowhere else.
// - Every call either moves all requested bytes or throws a `DeviceError` built from errno; a
//   short transfer is retried until complete, EOF on read yields zeros (the image is sized up front,
//   so EOF only happens on a truncated image, which `open` rejects).
// - The descriptors are plain integers and immutable, so the type is Sendable; `close()` is called
//   exactly once, by the owning device, after it has marked itself closed.
// - An exclusive open holds flock(LOCK_EX) on `bufferedFD` until `close()`: one process (or one
//   open in a process) drives the device at a time, so a second mount or a format of a mounted
//   device fails with EBUSY instead of both writing the same zones. flock belongs to the open file
//   description, so it goes away with the descriptor, also when the holder is killed.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CZonedShim
import ZonedCore

final class BackingFile: Sendable {
    let path: String
    let dataFD: Int32
    let bufferedFD: Int32
    let isDirect: Bool
    /// File offset of device offset 0.
    let dataStart: UInt64
    /// Set on a discard-data image: the data region holds its records (KeptBlocks.swift).
    let kept: KeptBlocks?

    /// Opens `path` twice: once buffered (header, table, fallback) and once for data IO.
    /// `exclusive`: claim the file (EBUSY when another open holds the claim).
    /// `keptBlockSize`: a discard-data image with that block size (nil: a full image).
    init(path: String, dataStart: UInt64, readOnly: Bool = false, exclusive: Bool = true,
         keptBlockSize: Int? = nil) throws(DeviceError) {
        let access = readOnly ? O_RDONLY : O_RDWR
        let buffered = Glibc.open(path, access | O_CLOEXEC)
        guard buffered >= 0 else {
            throw DeviceError.lastErrno(.open, "cannot open \(path)")
        }
        if exclusive, !BackingFile.claim(buffered) {
            Glibc.close(buffered)
            throw DeviceError(errno: EBUSY, .open, "\(path) is in use: another open holds it exclusively")
        }
        var direct = Glibc.open(path, access | O_CLOEXEC | __O_DIRECT)
        var isDirect = true
        if direct < 0 {
            let e = currentErrno()
            guard e == EINVAL else {
                Glibc.close(buffered)
                throw DeviceError(errno: e, .open, "cannot open \(path) for direct IO")
            }
            // The file system has no O_DIRECT: the data goes through the page cache instead.
            direct = Glibc.open(path, access | O_CLOEXEC)
            isDirect = false
            guard direct >= 0 else {
                let e2 = currentErrno()
                Glibc.close(buffered)
                throw DeviceError(errno: e2, .open, "cannot open \(path)")
            }
        }
        self.path = path
        self.bufferedFD = buffered
        self.dataFD = direct
        self.isDirect = isDirect
        self.dataStart = dataStart
        do {
            kept = try keptBlockSize.map { bs throws(DeviceError) in try KeptBlocks(fd: buffered, path: path, start: dataStart, blockSize: bs) }
        } catch {
            Glibc.close(direct)
            Glibc.close(buffered)
            throw error
        }
    }

    func close() {
        Glibc.close(dataFD)
        Glibc.close(bufferedFD)
    }

    // MARK: Data region (device offsets)

    func write(_ data: UnsafeRawBufferPointer, at offset: DeviceOffset, _ op: DeviceOperation) throws(DeviceError) {
        guard data.count > 0 else { return }
        if let kept { return try kept.write(data, at: offset, op) }
        if isAligned(data.baseAddress) {
            try writeData(data, fileOffset: dataStart + offset.bytes, op)
        } else {
            let bounce = AlignedBuffer(count: data.count)
            bounce.mutable.copyMemory(from: data)
            try writeData(bounce.readOnly, fileOffset: dataStart + offset.bytes, op)
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: DeviceOffset, _ op: DeviceOperation) throws(DeviceError) {
        guard buffer.count > 0 else { return }
        if let kept { return try kept.read(into: buffer, at: offset, op) }
        if isAligned(buffer.baseAddress) {
            try readData(buffer, fileOffset: dataStart + offset.bytes, op)
        } else {
            let bounce = AlignedBuffer(count: buffer.count)
            try readData(bounce.mutable, fileOffset: dataStart + offset.bytes, op)
            buffer.copyMemory(from: bounce.readOnly)
        }
    }

    func sync(_ op: DeviceOperation) throws(DeviceError) {
        guard fdatasync(bufferedFD) == 0 else { throw DeviceError.lastErrno(op, "fdatasync of \(path)") }
    }

    // MARK: Raw file offsets (header and zone table, buffered)

    func writeRaw(_ bytes: [UInt8], fileOffset: UInt64, _ op: DeviceOperation) throws(DeviceError) {
        let result: DeviceError? = bytes.withUnsafeBytes { b in
            do throws(DeviceError) {
                try BackingFile.pwriteAll(bufferedFD, b, fileOffset, op, path)
                return nil
            } catch { return error }
        }
        if let result { throw result }
    }

    /// Reads up to `count` bytes; fewer when the file ends first.
    func readRaw(count: Int, fileOffset: UInt64, _ op: DeviceOperation) throws(DeviceError) -> [UInt8] {
        try BackingFile.readPrefix(fd: bufferedFD, count: count, fileOffset: fileOffset, op, path)
    }

    func fileSize() throws(DeviceError) -> UInt64 {
        var st = stat()
        guard fstat(bufferedFD, &st) == 0 else { throw DeviceError.lastErrno(.open, "fstat of \(path)") }
        return UInt64(st.st_size)
    }

    // MARK: Exclusive claim

    /// Takes the exclusive claim on `fd`; false only when someone else holds it. A file system
    /// without flock support (ENOLCK, EINVAL) cannot hold claims: the open goes on.
    ///
    /// A refusal is retried for a moment before it counts: a child another thread is spawning
    /// shares this process's descriptors until it execs (close-on-exec acts only then), so a
    /// claim this process just gave up can still be held by that copy for a few milliseconds.
    /// A real holder (a mount) holds it for far longer than `claimPatience`.
    static func claim(_ fd: Int32) -> Bool {
        var deadline: UInt64?
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = currentErrno()
            if e == EINTR { continue }
            guard e == EWOULDBLOCK else { return true }
            let now = SystemClock().nowNanoseconds
            if deadline == nil { deadline = now + claimPatience }
            if now >= deadline! { return false }
            usleep(2_000)
        }
        return true
    }

    static let claimPatience: UInt64 = 500_000_000

    /// Gives the claim up before `close()` (a power cut: the machine that held it is gone).
    func releaseClaim() {
        _ = flock(bufferedFD, LOCK_UN)
    }

    // MARK: Helpers

    private func isAligned(_ p: UnsafeRawPointer?) -> Bool {
        guard isDirect, let p else { return !isDirect }
        return UInt(bitPattern: p) % UInt(AlignedBuffer.alignment) == 0
    }

    /// Makes device bytes [offset, offset+length) read as zeros (a zone reset: real devices return
    /// zeros for what was never written since, also after a finish). Falls back to writing zeros
    /// where the file system cannot punch holes.
    func zero(at offset: DeviceOffset, length: ByteCount, _ op: DeviceOperation) throws(DeviceError) {
        if let kept { return try kept.zero(at: offset, length: length, op) }
        let start = off_t(dataStart + offset.bytes), count = off_t(length.bytes)
        if zbdfs_punch_hole(bufferedFD, UInt64(start), UInt64(count)) == 0 { return }
        let chunk = [UInt8](repeating: 0, count: 1 << 20)
        var done: UInt64 = 0
        while done < length.bytes {
            let n = Int(min(UInt64(chunk.count), length.bytes - done))
            try writeRaw(Array(chunk[0..<n]), fileOffset: dataStart + offset.bytes + done, op)
            done += UInt64(n)
        }
    }

    private func writeData(_ data: UnsafeRawBufferPointer, fileOffset: UInt64, _ op: DeviceOperation) throws(DeviceError) {
        do {
            try BackingFile.pwriteAll(dataFD, data, fileOffset, op, path)
        } catch where error.errno == EINVAL && isDirect {
            // The file system refused this direct IO's alignment: use the page cache for it.
            try BackingFile.pwriteAll(bufferedFD, data, fileOffset, op, path)
        }
    }

    private func readData(_ buffer: UnsafeMutableRawBufferPointer, fileOffset: UInt64, _ op: DeviceOperation) throws(DeviceError) {
        do {
            try BackingFile.preadAll(dataFD, buffer, fileOffset, op, path)
        } catch where error.errno == EINVAL && isDirect {
            try BackingFile.preadAll(bufferedFD, buffer, fileOffset, op, path)
        }
    }

    static func pwriteAll(_ fd: Int32, _ data: UnsafeRawBufferPointer, _ fileOffset: UInt64,
                          _ op: DeviceOperation, _ path: String) throws(DeviceError) {
        var done = 0
        while done < data.count {
            let n = pwrite(fd, data.baseAddress! + done, data.count - done, off_t(fileOffset + UInt64(done)))
            if n < 0 {
                if currentErrno() == EINTR { continue }
                throw DeviceError.lastErrno(op, "pwrite of \(data.count - done) B at file offset \(fileOffset + UInt64(done)) of \(path)")
            }
            guard n > 0 else { throw DeviceError.io(op, "pwrite made no progress at file offset \(fileOffset + UInt64(done)) of \(path)") }
            done += n
        }
    }

    static func preadAll(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, _ fileOffset: UInt64,
                         _ op: DeviceOperation, _ path: String) throws(DeviceError) {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(fileOffset + UInt64(done)))
            if n < 0 {
                if currentErrno() == EINTR { continue }
                throw DeviceError.lastErrno(op, "pread of \(buffer.count - done) B at file offset \(fileOffset + UInt64(done)) of \(path)")
            }
            if n == 0 {
                // Past the end of the file: the rest reads as zeros.
                (buffer.baseAddress! + done).initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count - done)
                return
            }
            done += n
        }
    }

    static func readPrefix(fd: Int32, count: Int, fileOffset: UInt64, _ op: DeviceOperation,
                           _ path: String) throws(DeviceError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { b in
                pread(fd, b.baseAddress! + done, count - done, off_t(fileOffset + UInt64(done)))
            }
            if n < 0 {
                if currentErrno() == EINTR { continue }
                throw DeviceError.lastErrno(op, "read of \(path) at file offset \(fileOffset + UInt64(done))")
            }
            if n == 0 { break }
            done += n
        }
        return Array(out[0..<done])
    }
}

/// Whether a file-backed device is claimed by an exclusive open (a mount) right now.
public enum DeviceClaim {
    /// True while some open of `path` holds the exclusive claim (probes with a shared lock).
    public static func isHeld(path: String) -> Bool {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        while flock(fd, LOCK_SH | LOCK_NB) != 0 {
            let e = currentErrno()
            if e == EINTR { continue }
            return e == EWOULDBLOCK
        }
        return false
    }
}

extension BackingFile {
    /// lseek's SEEK_DATA and SEEK_HOLE (Linux values; Glibc hides them behind _GNU_SOURCE).
    static let seekData: Int32 = 3
    static let seekHole: Int32 = 4

    /// Copies the whole file, header and tables included, to a new file at `path` (replacing
    /// one there). Only the ranges that hold data are read and written (SEEK_DATA/SEEK_HOLE), so
    /// the copy of a sparse image of a big device is as sparse and as quick as its data.
    func copy(to path: String, _ op: DeviceOperation) throws(DeviceError) {
        let size = try fileSize()
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw DeviceError.lastErrno(op, "cannot create \(path)") }
        defer { Glibc.close(fd) }
        let chunk = 1 << 20
        var buffer = [UInt8](repeating: 0, count: chunk)
        var at: UInt64 = 0
        while at < size {
            let data = lseek(bufferedFD, off_t(at), BackingFile.seekData)
            if data < 0 {
                if errno == ENXIO { break }       // only a hole is left
                throw DeviceError.lastErrno(op, "cannot find the data of \(self.path)")
            }
            let hole = lseek(bufferedFD, data, BackingFile.seekHole)
            guard hole >= data else { throw DeviceError.lastErrno(op, "cannot find the data of \(self.path)") }
            at = UInt64(data)
            let stop = min(UInt64(hole), size)
            while at < stop {
                let n = Int(min(UInt64(chunk), stop - at))
                let failure: DeviceError? = buffer.withUnsafeMutableBytes { b in
                    do throws(DeviceError) {
                        let part = UnsafeMutableRawBufferPointer(rebasing: b[0..<n])
                        try BackingFile.preadAll(bufferedFD, part, at, op, self.path)
                        try BackingFile.pwriteAll(fd, UnsafeRawBufferPointer(part), at, op, path)
                        return nil
                    } catch { return error }
                }
                if let failure { throw failure }
                at += UInt64(n)
            }
        }
        guard ftruncate(fd, off_t(size)) == 0 else { throw DeviceError.lastErrno(op, "cannot size \(path)") }
    }
}
