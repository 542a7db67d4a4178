// The synchronous commands of the NVMe backend (identify, zone management, flush) and where its
// IO queues come from, behind one protocol: `NVMeCharDevice` sends them through libnvme to a
// generic char device (/dev/ngXnY); the host tests put a fake ZNS controller behind it.
//
// Invariants:
// - Every call returns an NVMeOutcome: -errno from the kernel, or the NVMe status. libnvme
//   returns -1 with errno, or the status; errno is read right after the call, before anything
//   else can change it.
// - Buffers handed to libnvme stay owned by the caller and are only read after the call returned.
// - `NVMeCharDevice` owns its descriptor and closes it exactly once, in `close()`; callers (the
//   device's leases) make sure nothing is in flight on it by then.

#if canImport(Glibc)
import Glibc
#endif
import CNVMe
import ZonedCore

/// Identify data structures this backend asks for (CNS with its command set).
public enum NVMeIdentifyKind: Sendable {
    case namespace, controller, zonedNamespace, zonedController
}

protocol NVMeController: AnyObject, Sendable {
    /// The namespace the descriptor addresses.
    func namespaceID() -> Result<UInt32, DeviceError>
    /// Fills `buffer` (4096 bytes) with the identify data.
    func identify(_ kind: NVMeIdentifyKind, nsid: UInt32, into buffer: UnsafeMutableRawBufferPointer) -> NVMeOutcome
    /// Zone Management Receive, Report Zones (all zones, partial report) from `startBlock`.
    func reportZones(nsid: UInt32, startBlock: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> NVMeOutcome
    /// Zone Management Send for the one zone starting at `startBlock`.
    func manageZone(nsid: UInt32, startBlock: UInt64, action: NVMeZoneSendAction) -> NVMeOutcome
    func flush(nsid: UInt32) -> NVMeOutcome
    /// A new queue for data commands.
    func makeQueue(entries: Int) throws(DeviceError) -> NVMeQueue
    /// Releases the descriptor (idempotent).
    func close()
}

/// An NVMe generic char device, driven through libnvme (synchronous) and io_uring (data).
final class NVMeCharDevice: NVMeController, @unchecked Sendable {
    let fd: Int32
    private var closed = false

    init(fd: Int32) { self.fd = fd }

    func namespaceID() -> Result<UInt32, DeviceError> {
        var nsid: UInt32 = 0
        guard nvme_get_nsid(fd, &nsid) == 0 else {
            return .failure(DeviceError(errno: currentErrno(), .open, "NVME_IOCTL_ID (which namespace?)"))
        }
        return .success(nsid)
    }

    func identify(_ kind: NVMeIdentifyKind, nsid: UInt32, into buffer: UnsafeMutableRawBufferPointer) -> NVMeOutcome {
        precondition(buffer.count >= 4096, "identify data is 4096 bytes")
        var args = nvme_identify_args()
        args.args_size = Int32(MemoryLayout<nvme_identify_args>.stride)
        args.fd = fd
        args.data = buffer.baseAddress
        args.timeout = 0  // the kernel's default
        args.cntid = UInt16(NVME_CNTLID_NONE.rawValue)
        args.cns_specific_id = UInt16(NVME_CNSSPECID_NONE.rawValue)
        args.uuidx = UInt8(NVME_UUID_NONE.rawValue)
        switch kind {
        case .namespace: (args.cns, args.csi, args.nsid) = (NVME_IDENTIFY_CNS_NS, NVME_CSI_NVM, nsid)
        case .controller: (args.cns, args.csi, args.nsid) = (NVME_IDENTIFY_CNS_CTRL, NVME_CSI_NVM, UInt32(NVME_NSID_NONE.rawValue))
        case .zonedNamespace: (args.cns, args.csi, args.nsid) = (NVME_IDENTIFY_CNS_CSI_NS, NVME_CSI_ZNS, nsid)
        case .zonedController: (args.cns, args.csi, args.nsid) = (NVME_IDENTIFY_CNS_CSI_CTRL, NVME_CSI_ZNS, UInt32(NVME_NSID_NONE.rawValue))
        }
        let rc = nvme_identify(&args)
        return NVMeOutcome(libnvmeResult: rc, errno: currentErrno())
    }

    func reportZones(nsid: UInt32, startBlock: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> NVMeOutcome {
        var args = nvme_zns_mgmt_recv_args()
        args.args_size = Int32(MemoryLayout<nvme_zns_mgmt_recv_args>.stride)
        args.fd = fd
        args.nsid = nsid
        args.slba = startBlock
        args.data = buffer.baseAddress
        args.data_len = UInt32(buffer.count)
        args.zra = NVME_ZNS_ZRA_REPORT_ZONES
        args.zrasf = UInt16(NVME_ZNS_ZRAS_REPORT_ALL.rawValue)
        // Partial report: the header counts the zones in this buffer, not every zone from slba on.
        args.zras_feat = true
        let rc = nvme_zns_mgmt_recv(&args)
        return NVMeOutcome(libnvmeResult: rc, errno: currentErrno())
    }

    func manageZone(nsid: UInt32, startBlock: UInt64, action: NVMeZoneSendAction) -> NVMeOutcome {
        var args = nvme_zns_mgmt_send_args()
        args.args_size = Int32(MemoryLayout<nvme_zns_mgmt_send_args>.stride)
        args.fd = fd
        args.nsid = nsid
        args.slba = startBlock
        args.zsa = nvme_zns_send_action(UInt32(action.rawValue))
        args.select_all = false
        let rc = nvme_zns_mgmt_send(&args)
        return NVMeOutcome(libnvmeResult: rc, errno: currentErrno())
    }

    func flush(nsid: UInt32) -> NVMeOutcome {
        let rc = nvme_flush(fd, nsid)
        return NVMeOutcome(libnvmeResult: rc, errno: currentErrno())
    }

    func makeQueue(entries: Int) throws(DeviceError) -> NVMeQueue {
        try NVMeRing(entries: entries, fd: fd)
    }

    func close() {
        guard !closed else { return }
        closed = true
        _ = Glibc.close(fd)
    }
}
