// NVMe completion status, and the one place it becomes a DeviceError.
//
// Invariants:
// - Linux hands passthrough callers the status as the CQE's status field shifted right by one
//   (the phase bit dropped): bits 7:0 status code (SC), 10:8 status code type (SCT), 12:11 command
//   retry delay, 13 more, 14 do not retry. The ioctl path (libnvme) and io_uring's cqe->res give
//   the same value; negative values there are -errno from the kernel itself, never a status.
// - `NVMeStatus.errno` is the only mapping from NVMe status to errno, and `error(_:_:)` the only
//   way this backend turns a status into a DeviceError (through DeviceError(errno:), the project's
//   one errno mapping). The errno chosen is the one Linux's block layer gives for the same status
//   (nvme_error_status → blk_status_to_errno), so a refusal reads the same through the kernel
//   backend on /dev/nvmeXnY and through this one on /dev/ngXnY: Zone Invalid Write, Zone Is Full,
//   Zone Boundary Error and Invalid Zone State Transition are EIO, Too Many Open Zones is
//   ETOOMANYREFS, Too Many Active Zones is EOVERFLOW. Where Linux's choice would mislead (Invalid
//   Field → EOPNOTSUPP) we say EINVAL, because the fault is in the command we built.
// - Unknown codes are EIO and keep their numbers in the message: never a guess that hides them.

import ZonedCore
#if canImport(Glibc)
import Glibc
#endif

public struct NVMeStatus: Hashable, Sendable, CustomStringConvertible {
    /// The status as Linux returns it (see the invariants).
    public let raw: UInt16

    public init(raw: UInt16) { self.raw = raw }
    public init(type: UInt8, code: UInt8) { raw = UInt16(type & 0x7) << 8 | UInt16(code) }

    public static let success = NVMeStatus(raw: 0)

    /// Status code type: 0 generic, 1 command specific, 2 media and data integrity, 3 path.
    public var type: UInt8 { UInt8((raw >> 8) & 0x7) }
    public var code: UInt8 { UInt8(raw & 0xFF) }
    public var doNotRetry: Bool { raw & 0x4000 != 0 }
    public var isSuccess: Bool { type == 0 && code == 0 }

    // The statuses zoned writes meet (NVMe ZNS command set, command specific).
    public static let zoneBoundaryError = NVMeStatus(type: 1, code: 0xB8)
    public static let zoneIsFull = NVMeStatus(type: 1, code: 0xB9)
    public static let zoneIsReadOnly = NVMeStatus(type: 1, code: 0xBA)
    public static let zoneIsOffline = NVMeStatus(type: 1, code: 0xBB)
    public static let zoneInvalidWrite = NVMeStatus(type: 1, code: 0xBC)
    public static let tooManyActiveZones = NVMeStatus(type: 1, code: 0xBD)
    public static let tooManyOpenZones = NVMeStatus(type: 1, code: 0xBE)
    public static let invalidZoneStateTransition = NVMeStatus(type: 1, code: 0xBF)
    public static let invalidOpcode = NVMeStatus(type: 0, code: 0x01)
    public static let invalidField = NVMeStatus(type: 0, code: 0x02)
    public static let lbaOutOfRange = NVMeStatus(type: 0, code: 0x80)

    /// The errno Linux would report for this status (see the invariants for the exceptions).
    public var errno: Int32 {
        switch (type, code) {
        case (0, 0x00): return 0
        case (0, 0x01): return EOPNOTSUPP       // Invalid Command Opcode
        case (0, 0x02): return EINVAL           // Invalid Field in Command
        case (0, 0x0B): return EINVAL           // Invalid Namespace or Format
        case (0, 0x80): return EINVAL           // LBA Out of Range
        case (0, 0x81): return ENOSPC           // Capacity Exceeded
        case (1, 0xBD): return EOVERFLOW        // Too Many Active Zones
        case (1, 0xBE): return ETOOMANYREFS     // Too Many Open Zones
        default: return EIO
        }
    }

    /// The spec's name for the status, when we know it.
    public var name: String? {
        switch (type, code) {
        case (0, 0x00): return "Successful Completion"
        case (0, 0x01): return "Invalid Command Opcode"
        case (0, 0x02): return "Invalid Field in Command"
        case (0, 0x04): return "Data Transfer Error"
        case (0, 0x06): return "Internal Error"
        case (0, 0x07): return "Command Abort Requested"
        case (0, 0x0B): return "Invalid Namespace or Format"
        case (0, 0x80): return "LBA Out of Range"
        case (0, 0x81): return "Capacity Exceeded"
        case (0, 0x82): return "Namespace Not Ready"
        case (1, 0xB8): return "Zone Boundary Error"
        case (1, 0xB9): return "Zone Is Full"
        case (1, 0xBA): return "Zone Is Read Only"
        case (1, 0xBB): return "Zone Is Offline"
        case (1, 0xBC): return "Zone Invalid Write"
        case (1, 0xBD): return "Too Many Active Zones"
        case (1, 0xBE): return "Too Many Open Zones"
        case (1, 0xBF): return "Invalid Zone State Transition"
        case (2, 0x80): return "Write Fault"
        case (2, 0x81): return "Unrecovered Read Error"
        case (2, 0x86): return "Access Denied"
        default: return nil
        }
    }

    public var description: String {
        let hex = "0x" + String(raw & 0x7FF, radix: 16)
        return "NVMe status \(hex) (\(name ?? "type \(type) code 0x\(String(code, radix: 16))"))"
    }

    /// The DeviceError for this (failed) status: the errno above, the status named in the detail.
    public func error(_ op: DeviceOperation, _ what: String) -> DeviceError {
        DeviceError(errno: errno == 0 ? EIO : errno, op, "\(what): \(self)")
    }
}

/// What a passthrough command returned: Linux gives -errno when the kernel itself refused or
/// failed it, else the NVMe status (0 = success).
enum NVMeOutcome: Equatable {
    case success
    case status(NVMeStatus)
    case kernel(errno: Int32)

    /// From io_uring's cqe->res of a passthrough command: -errno, 0, or the NVMe status.
    init(cqeResult res: Int32) {
        if res == 0 {
            self = .success
        } else if res > 0 {
            self = .status(NVMeStatus(raw: UInt16(truncatingIfNeeded: res)))
        } else {
            self = .kernel(errno: res == Int32.min ? EIO : -res)
        }
    }

    /// From a libnvme call (the passthrough ioctl): -1 with `errno` set, 0, or the NVMe status.
    init(libnvmeResult rc: Int32, errno e: Int32) {
        if rc < 0 {
            self = .kernel(errno: e > 0 ? e : EIO)
        } else {
            self = NVMeOutcome(cqeResult: rc)
        }
    }

    /// nil on success, else the typed error.
    func error(_ op: DeviceOperation, _ what: String) -> DeviceError? {
        switch self {
        case .success: return nil
        case .status(let s): return s.isSuccess ? nil : s.error(op, what)
        case .kernel(let e): return DeviceError(errno: e, op, what)
        }
    }
}
