// NVMe status → errno: the one mapping, checked against what Linux gives for the same status.

#if canImport(Glibc)
import Glibc
#endif
import Testing
import ZonedCore
@testable import ZonedBackendNVMe

@Suite("NVMe status", .timeLimit(.minutes(10)))
struct StatusTests {
    @Test func zoneStatusesMapLikeTheKernel() {
        #expect(NVMeStatus.zoneInvalidWrite.errno == EIO)
        #expect(NVMeStatus.zoneIsFull.errno == EIO)
        #expect(NVMeStatus.zoneBoundaryError.errno == EIO)
        #expect(NVMeStatus.invalidZoneStateTransition.errno == EIO)
        #expect(NVMeStatus.tooManyOpenZones.errno == ETOOMANYREFS)
        #expect(NVMeStatus.tooManyActiveZones.errno == EOVERFLOW)
        #expect(NVMeStatus.invalidField.errno == EINVAL)
        #expect(NVMeStatus.invalidOpcode.errno == EOPNOTSUPP)
        #expect(NVMeStatus(type: 7, code: 0x42).errno == EIO)
    }

    @Test func retryAndMoreBitsDoNotChangeTheMeaning() {
        let dnr = NVMeStatus(raw: NVMeStatus.tooManyOpenZones.raw | 0x4000 | 0x2000)
        #expect(dnr.doNotRetry)
        #expect(dnr.errno == ETOOMANYREFS)
        #expect(dnr.name == "Too Many Open Zones")
        #expect(dnr.error(.write, "w").kind == .tooManyOpenZones)
    }

    @Test func outcomesFromCQEAndLibnvme() {
        #expect(NVMeOutcome(cqeResult: 0) == .success)
        #expect(NVMeOutcome(cqeResult: -EINVAL) == .kernel(errno: EINVAL))
        #expect(NVMeOutcome(cqeResult: 0x1bc) == .status(.zoneInvalidWrite))
        #expect(NVMeOutcome(cqeResult: Int32.min) == .kernel(errno: EIO))
        #expect(NVMeOutcome(libnvmeResult: -1, errno: EACCES) == .kernel(errno: EACCES))
        #expect(NVMeOutcome(libnvmeResult: -1, errno: 0) == .kernel(errno: EIO))
        #expect(NVMeOutcome(libnvmeResult: 0x1be, errno: 0) == .status(.tooManyOpenZones))
        let e = NVMeOutcome(cqeResult: 0x1bd).error(.openZone, "open of zone 3")
        #expect(e?.errno == EOVERFLOW)
        #expect(e?.detail.contains("Too Many Active Zones") == true)
        #expect(NVMeOutcome(cqeResult: 0).error(.read, "r") == nil)
    }
}
