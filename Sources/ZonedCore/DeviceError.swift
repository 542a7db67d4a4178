// Typed device errors, made from errno in exactly one place: `DeviceError.init(errno:_:_:)`.
//
// Invariants:
// - Every backend reports failures through `DeviceError`; the emulated device raises the same
//   errno a Linux zoned block device would (EIO for a write off the write pointer, ETOOMANYREFS
//   when an open would exceed max open zones, EOVERFLOW when max active zones would be exceeded),
//   so code above the device layer cannot tell an emulated refusal from a kernel one.
// - `errno` round-trips: `DeviceError(errno: e, ...).errno == e` for every e.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Which operation failed, for messages and for fault injection.
public enum DeviceOperation: String, Sendable, Hashable, CaseIterable {
    case open, report, reset, openZone = "open-zone", closeZone = "close-zone", finish
    case read, write, append, flush, close, create
    // File system operations (ZonedFS), named for messages.
    case format, mount, fsck, lookup, namespace
}

public struct DeviceError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// EIO: media error, write off the write pointer, write into a full or read-only zone,
        /// access to an offline zone, or an injected fault.
        case io
        /// ETOOMANYREFS: opening one more zone would exceed the device's max open zones.
        case tooManyOpenZones
        /// EOVERFLOW: activating one more zone would exceed the device's max active zones.
        case tooManyActiveZones
        /// EINVAL: misaligned, out of range, or not allowed on this zone type.
        case invalidArgument
        /// EROFS / EPERM on a read-only target.
        case readOnly
        /// ENOSPC.
        case noSpace
        /// EOPNOTSUPP / ENOTSUP / ENOTTY: the device cannot do this (e.g. zone append).
        case notSupported
        /// EAGAIN.
        case wouldBlock
        /// EBUSY: in use by someone else (mounted, opened exclusively).
        case busy
        /// ENOENT / ENXIO / ENODEV: no such file or device.
        case notFound
        /// EACCES.
        case permissionDenied
        /// EEXIST.
        case exists
        /// ENOTDIR.
        case notDirectory
        /// EISDIR.
        case isDirectory
        /// ENOTEMPTY.
        case notEmpty
        /// ENAMETOOLONG.
        case nameTooLong
        /// EUCLEAN: on-device structures contradict each other (the file system is damaged).
        case corrupted
        /// Anything else; `errno` says what.
        case other
    }

    public var kind: Kind
    public var errno: Int32
    public var operation: DeviceOperation
    /// What was being done, for a human: "write of 4096 B at 0x10000 (zone 1, write pointer 0x11000)".
    public var detail: String

    /// The one place errno becomes a typed error.
    public init(errno code: Int32, _ operation: DeviceOperation, _ detail: String = "") {
        self.errno = code
        self.operation = operation
        self.detail = detail
        switch code {
        case EIO, EILSEQ, ENODATA: kind = .io
        case ETOOMANYREFS: kind = .tooManyOpenZones
        case EOVERFLOW: kind = .tooManyActiveZones
        case EINVAL: kind = .invalidArgument
        case EROFS: kind = .readOnly
        case ENOSPC: kind = .noSpace
        case EOPNOTSUPP, ENOTSUP, ENOTTY: kind = .notSupported
        case EAGAIN: kind = .wouldBlock
        case EBUSY: kind = .busy
        case ENOENT, ENXIO, ENODEV: kind = .notFound
        case EACCES, EPERM: kind = .permissionDenied
        case EEXIST: kind = .exists
        case ENOTDIR: kind = .notDirectory
        case EISDIR: kind = .isDirectory
        case ENOTEMPTY: kind = .notEmpty
        case ENAMETOOLONG: kind = .nameTooLong
        case EUCLEAN: kind = .corrupted
        default: kind = .other
        }
    }

    /// Errors for conditions a backend detects itself, named by the errno the kernel would give.
    public static func io(_ op: DeviceOperation, _ detail: String) -> DeviceError { DeviceError(errno: EIO, op, detail) }
    public static func invalid(_ op: DeviceOperation, _ detail: String) -> DeviceError { DeviceError(errno: EINVAL, op, detail) }
    public static func tooManyOpen(_ op: DeviceOperation, _ detail: String) -> DeviceError { DeviceError(errno: ETOOMANYREFS, op, detail) }
    public static func tooManyActive(_ op: DeviceOperation, _ detail: String) -> DeviceError { DeviceError(errno: EOVERFLOW, op, detail) }
    public static func noSpace(_ op: DeviceOperation, _ detail: String) -> DeviceError { DeviceError(errno: ENOSPC, op, detail) }
    public static func wouldBlock(_ op: DeviceOperation, _ detail: String) -> DeviceError { DeviceError(errno: EAGAIN, op, detail) }
    public static func notSupported(_ op: DeviceOperation, _ detail: String) -> DeviceError { DeviceError(errno: EOPNOTSUPP, op, detail) }
    public static func corrupted(_ op: DeviceOperation, _ detail: String) -> DeviceError { DeviceError(errno: EUCLEAN, op, detail) }

    /// The error for the calling thread's current errno.
    public static func lastErrno(_ op: DeviceOperation, _ detail: String = "") -> DeviceError {
        DeviceError(errno: currentErrno(), op, detail)
    }

    public var errnoName: String { DeviceError.name(ofErrno: errno) }

    public var description: String {
        let what = detail.isEmpty ? operation.rawValue : "\(operation.rawValue): \(detail)"
        return "\(what): \(errnoName) (\(DeviceError.message(ofErrno: errno)))"
    }

    public static func message(ofErrno code: Int32) -> String {
        guard let p = strerror(code) else { return "errno \(code)" }
        return String(cString: p)
    }

    public static func name(ofErrno code: Int32) -> String {
        switch code {
        case EIO: return "EIO"
        case ETOOMANYREFS: return "ETOOMANYREFS"
        case EOVERFLOW: return "EOVERFLOW"
        case EINVAL: return "EINVAL"
        case EROFS: return "EROFS"
        case ENOSPC: return "ENOSPC"
        case EOPNOTSUPP: return "EOPNOTSUPP"
        case ENOTTY: return "ENOTTY"
        case EAGAIN: return "EAGAIN"
        case EBUSY: return "EBUSY"
        case ENOENT: return "ENOENT"
        case ENXIO: return "ENXIO"
        case ENODEV: return "ENODEV"
        case EACCES: return "EACCES"
        case EPERM: return "EPERM"
        case EILSEQ: return "EILSEQ"
        case ENODATA: return "ENODATA"
        case EEXIST: return "EEXIST"
        case EISDIR: return "EISDIR"
        case ENOTDIR: return "ENOTDIR"
        case ENOTEMPTY: return "ENOTEMPTY"
        case ENAMETOOLONG: return "ENAMETOOLONG"
        case EUCLEAN: return "EUCLEAN"
        case EXDEV: return "EXDEV"
        case ELOOP: return "ELOOP"
        default: return "errno \(code)"
        }
    }
}

/// The calling thread's errno.
@inline(__always) public func currentErrno() -> Int32 {
    #if canImport(Glibc) || canImport(Musl) || canImport(Darwin)
    return errno
    #else
    return 0
    #endif
}
