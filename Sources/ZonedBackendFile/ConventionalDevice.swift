// A regular file or a non-zoned block device presented as a zoned device whose zones are all
// conventional: the conventional-device mode.
//
// Invariants:
// - Zones are `zoneSize` slices of the target from offset 0; a last partial zone is ignored.
//   Every zone is conventional with condition `.notWritePointer`; device offset X is file
//   (or device) offset X.
// - Reads and writes: block-aligned, non-empty, inside one zone, writes at most maxWriteBytes;
//   EINVAL otherwise. Zone management fails with EINVAL, zone append with EOPNOTSUPP; there are
//   no open or active limits.
// - Thread safe: the only mutable state is the closed flag, under a lock; pread/pwrite are
//   positioned, so IOs need no lock and each call's data is in place when it returns.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ZonedCore

public final class ConventionalDevice: ZonedDevice, Sendable {
    public let geometry: DeviceGeometry
    public var kind: DeviceKind { .conventional }
    public let path: String
    private let file: BackingFile
    private let closed = Locked(false)

    private init(path: String, geometry: DeviceGeometry, file: BackingFile) {
        self.path = path
        self.geometry = geometry
        self.file = file
    }

    /// Opens a regular file or a block device as zones of `zoneSize` (a power of two).
    /// `exclusive` (the default) claims it: another exclusive open fails with EBUSY until `close()`.
    public static func open(path: String, zoneSize: ByteCount = .mib(256), blockSize: ByteCount = ByteCount(4096),
                            maxWriteBytes: ByteCount = .mib(1), exclusive: Bool = true) throws(DeviceError) -> ConventionalDevice {
        let file = try BackingFile(path: path, dataStart: 0, exclusive: exclusive)
        do throws(DeviceError) {
            let size = try targetSize(file)
            let zones = zoneSize.bytes > 0 ? size / zoneSize.bytes : 0
            guard zones >= 1 else {
                throw .invalid(.open, "\(path) holds \(ByteCount(size)), less than one \(zoneSize) zone; use a smaller zone size")
            }
            let g = DeviceGeometry(zoneCount: Int(zones), zoneSize: zoneSize, logicalBlockSize: blockSize,
                                   maxWriteBytes: maxWriteBytes, conventionalZoneCount: Int(zones))
            if let problem = g.problem() { throw .invalid(.open, problem) }
            return ConventionalDevice(path: path, geometry: g, file: file)
        } catch {
            file.close()
            throw error
        }
    }

    /// Creates a sparse regular file of `size` bytes (refuses an existing one unless `overwrite`).
    public static func create(path: String, size: ByteCount, overwrite: Bool = false) throws(DeviceError) {
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC | (overwrite ? O_TRUNC : O_EXCL), 0o644)
        guard fd >= 0 else {
            let e = currentErrno()
            throw DeviceError(errno: e, .create, e == EEXIST ? "\(path) already exists; pass overwrite to replace it" : "cannot create \(path)")
        }
        defer { Glibc.close(fd) }
        guard ftruncate(fd, off_t(size.bytes)) == 0 else { throw .lastErrno(.create, "cannot size \(path) to \(size.bytes) bytes") }
    }

    /// Bytes of a regular file (fstat) or a block device (seek to its end).
    private static func targetSize(_ file: BackingFile) throws(DeviceError) -> UInt64 {
        var st = stat()
        guard fstat(file.bufferedFD, &st) == 0 else { throw .lastErrno(.open, "fstat of \(file.path)") }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return UInt64(st.st_size)
        case S_IFBLK:
            let end = lseek(file.bufferedFD, 0, SEEK_END)
            guard end >= 0 else { throw .lastErrno(.open, "cannot find the size of \(file.path)") }
            return UInt64(end)
        default:
            throw .invalid(.open, "\(file.path) is neither a regular file nor a block device")
        }
    }

    // MARK: ZonedDevice

    public func reportZones(from first: ZoneID, count: Int) throws(DeviceError) -> [Zone] {
        try checkOpen(.report)
        let end = min(geometry.zoneCount, first.int + max(count, 0))
        guard first.int < end else { return [] }
        return (first.int..<end).map { i in
            let id = ZoneID(i)
            return Zone(id: id, type: .conventional, condition: .notWritePointer, start: geometry.zoneStart(id),
                        size: geometry.zoneSize, capacity: geometry.zoneSize, writePointer: geometry.zoneStart(id))
        }
    }

    public func reset(_ zone: ZoneID) throws(DeviceError) { try refuseManagement(zone, .reset) }
    public func openZone(_ zone: ZoneID) throws(DeviceError) { try refuseManagement(zone, .openZone) }
    public func closeZone(_ zone: ZoneID) throws(DeviceError) { try refuseManagement(zone, .closeZone) }
    public func finish(_ zone: ZoneID) throws(DeviceError) { try refuseManagement(zone, .finish) }

    public func write(_ data: UnsafeRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) {
        try checkOpen(.write)
        try checkRange(offset, data.count, .write)
        guard ByteCount(data.count) <= geometry.maxWriteBytes else {
            throw .invalid(.write, "write of \(data.count) B exceeds the max write size \(geometry.maxWriteBytes.bytes) B")
        }
        try file.write(data, at: offset, .write)
    }

    public func append(_ data: UnsafeRawBufferPointer, to zone: ZoneID) throws(DeviceError) -> DeviceOffset {
        try checkOpen(.append)
        throw .notSupported(.append, "a conventional device has no zone append")
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) {
        try checkOpen(.read)
        try checkRange(offset, buffer.count, .read)
        try file.read(into: buffer, at: offset, .read)
    }

    public func flush() throws(DeviceError) {
        try checkOpen(.flush)
        try file.sync(.flush)
    }

    public func close() {
        let wasOpen = closed.withLock { c -> Bool in
            defer { c = true }
            return !c
        }
        if wasOpen { file.close() }
    }

    deinit { close() }

    // MARK: Checks

    private func checkOpen(_ op: DeviceOperation) throws(DeviceError) {
        if closed.withLock({ $0 }) { throw .io(op, "\(path) is closed") }
    }

    private func checkRange(_ offset: DeviceOffset, _ count: Int, _ op: DeviceOperation) throws(DeviceError) {
        let bs = geometry.logicalBlockSize
        guard count > 0, ByteCount(count).isMultiple(of: bs), offset.isAligned(to: bs) else {
            throw .invalid(op, "\(op.rawValue) of \(count) B at \(offset) is not a non-empty multiple of the \(bs.bytes)-byte block size at an aligned offset")
        }
        guard let zone = geometry.zone(containing: offset),
              offset + ByteCount(count) <= geometry.zoneStart(zone) + geometry.zoneSize else {
            throw .invalid(op, "\(op.rawValue) of \(count) B at \(offset) crosses a zone boundary or the device end")
        }
    }

    private func refuseManagement(_ zone: ZoneID, _ op: DeviceOperation) throws(DeviceError) {
        try checkOpen(op)
        throw .invalid(op, "\(op.rawValue) of \(zone): every zone of a conventional device is conventional")
    }
}
