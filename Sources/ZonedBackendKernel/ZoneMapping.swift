// libzbd's zone descriptors in ZonedCore's terms.
//
// Invariants:
// - libzbd speaks bytes, like ZonedCore: no sector arithmetic happens here.
// - The mapped zone keeps ZonedCore's rules even where the kernel's report says something else:
//   a conventional zone's write pointer is its start; a full zone's write pointer is its capacity
//   end (Linux reports the zone end, which lies past a ZNS zone's capacity); a read-only or
//   offline zone's write pointer (undefined by ZBC/ZNS) is clamped into [start, capacity end].
// - An unknown type or condition code is an error, never a guess.

import CZBD
import ZonedCore

enum ZoneMapping {
    static func type(_ raw: UInt32) -> ZoneType? {
        switch raw {
        case ZBD_ZONE_TYPE_CNV.rawValue: return .conventional
        case ZBD_ZONE_TYPE_SWR.rawValue: return .sequentialWriteRequired
        case ZBD_ZONE_TYPE_SWP.rawValue: return .sequentialWritePreferred
        default: return nil
        }
    }

    static func condition(_ raw: UInt32) -> ZoneCondition? {
        switch raw {
        case ZBD_ZONE_COND_NOT_WP.rawValue: return .notWritePointer
        case ZBD_ZONE_COND_EMPTY.rawValue: return .empty
        case ZBD_ZONE_COND_IMP_OPEN.rawValue: return .implicitlyOpen
        case ZBD_ZONE_COND_EXP_OPEN.rawValue: return .explicitlyOpen
        case ZBD_ZONE_COND_CLOSED.rawValue: return .closed
        case ZBD_ZONE_COND_FULL.rawValue: return .full
        case ZBD_ZONE_COND_READONLY.rawValue: return .readOnly
        case ZBD_ZONE_COND_OFFLINE.rawValue: return .offline
        default: return nil
        }
    }

    /// The zone `z` describes, numbered by `zoneSize`.
    static func zone(_ z: zbd_zone, zoneSize: ByteCount) throws(DeviceError) -> Zone {
        let start = DeviceOffset(UInt64(z.start))
        let id = ZoneID(UInt32(z.start / UInt64(zoneSize.bytes)))
        guard let type = type(z.type) else {
            throw .io(.report, "\(id) has unknown zone type \(z.type)")
        }
        guard let cond = condition(z.cond) else {
            throw .io(.report, "\(id) has unknown zone condition 0x\(String(z.cond, radix: 16))")
        }
        let size = ByteCount(UInt64(z.len))
        // Conventional zones have no capacity of their own in ZBC; the whole zone takes writes.
        let capacity = type == .conventional || z.capacity == 0 ? size : ByteCount(UInt64(z.capacity))
        let capEnd = start + capacity
        let wp: DeviceOffset
        switch cond {
        case .notWritePointer: wp = start
        case .full: wp = capEnd
        default:
            let raw = DeviceOffset(UInt64(z.wp))
            wp = raw < start ? start : (capEnd < raw ? capEnd : raw)
        }
        return Zone(id: id, type: type, condition: cond, start: start, size: size,
                    capacity: capacity, writePointer: wp)
    }
}
