// Where the monitoring commands get their figures: from a mount's control file when the file
// system is mounted (live, and the device is not opened), otherwise from the device, read-only.
// And what a mount serves in that control file (the daemon side).
//
// Invariants:
// - A monitoring command never opens a mounted device: a mount point, or a device that has a zbdfs
//   mount, is answered by the mount.
// - The daemon builds every answer from the file system's memory and the zone report; commands
//   other than `reclaim` and `sync` are refused with a message listing the ones it knows.

import ArgumentParser
import Foundation
import ZonedCore
import ZonedFS
import ZonedFUSE
import ZonedMonitor

/// The status of the file system `target` names (a device or a mount point).
func fileSystemStatus(of target: DeviceOptions) throws -> FileSystemStatus {
    if let m = target.servingMount() { return try liveStatus(mountPoint: m.mountPoint) }
    let device = try target.open(exclusive: false)
    defer { device.close() }
    do {
        guard let s = try FileSystemStatus.read(device: device, path: target.device) else {
            throw CLIError.runtime("\(target.device) holds no zbdfs file system (no valid superblock); make one with `zbdfs format \(target.device)`")
        }
        return s
    } catch let e as DeviceError {
        throw runtimeFailure("reading the file system on \(target.device)", e)
    }
}

/// The live status a mount serves.
func liveStatus(mountPoint: String) throws -> FileSystemStatus {
    let bytes: [UInt8]
    do { bytes = try ControlFile.readStatus(mountPoint: mountPoint) } catch {
        throw CLIError.runtime("cannot read the live figures of \(mountPoint): \(error). Is the mount's process still running? (`zbdfs umount \(mountPoint)` and mount again)")
    }
    switch FileSystemStatus.decode(bytes) {
    case .success(let s): return s
    case .failure(let e):
        throw CLIError.runtime("the mount at \(mountPoint) answered something else than its status (\(e.detail.prefix(120))); it may run another zbdfs version — remount it with this one")
    }
}

/// The zbdfs mount that answers for `path` (absolute): the path is its mount point, or its device.
func servingMount(of path: String) -> MountEntry? {
    if let m = MountTable.mount(at: path), m.isZBDFS { return m }
    return MountTable.mounts(ofDevice: path).last
}

extension DeviceOptions {
    /// The zbdfs mount that answers for this device or mount point.
    func servingMount() -> MountEntry? { zbdfs.servingMount(of: absolutePath) }

    /// Refuses a directory that is not a zbdfs mount point (before anything tries to open it).
    func requireDeviceOrMount() throws {
        if PathKind.isDirectory(device), servingMount() == nil {
            throw CLIError.usage("\(device) is a directory but not a zbdfs mount point; give the device, or the mount point of a running `zbdfs mount`")
        }
    }
}

// MARK: The daemon side

/// What `zbdfs reclaim` gets back from the mount.
struct ReclaimResult: Codable {
    var mountPoint: String
    var zonesReclaimed: UInt64
    var bytesMoved: UInt64
    var durationNanoseconds: UInt64
    var freeBytesBefore: UInt64
    var freeBytesAfter: UInt64
    var garbageBytesBefore: UInt64
    var garbageBytesAfter: UInt64
    /// Totals since mount.
    var totalZonesReclaimed: UInt64
    var totalBytesMoved: UInt64
    var writerWaits: UInt64
    var writerWaitNanoseconds: UInt64
    /// Lifetime (data + moved) / data.
    var reclaimWriteAmplification: Double?
}

/// What `zbdfs sync` gets back from the mount.
struct SyncResult: Codable {
    var mountPoint: String
    /// Page-cache bytes written back by this sync.
    var cachedBytesWrittenBack: UInt64
    /// Whether anything was not durable yet when the sync began (false: it wrote nothing).
    var hadUncommittedChanges: Bool
    var durationNanoseconds: UInt64
}

enum MountService {
    static func controlFile(fs: FileSystem, device: String, mountPoint: String, log: FUSELog) -> ControlFile {
        ControlFile(
            status: {
                do { return Array(try FileSystemStatus.live(fs, path: device, mountPoint: mountPoint).json().utf8) } catch {
                    log.write("status for the control file failed: \(error)")
                    return Array("{\"error\": \"\(error)\"}\n".utf8)
                }
            },
            command: { line in run(line, fs: fs, mountPoint: mountPoint, log: log) })
    }

    static let commands = ["reclaim", "sync"]

    static func run(_ line: String, fs: FileSystem, mountPoint: String, log: FUSELog) -> Result<[UInt8], DeviceError> {
        switch line {
        case "reclaim": return reclaim(fs: fs, mountPoint: mountPoint, log: log)
        case "sync": return sync(fs: fs, mountPoint: mountPoint, log: log)
        default:
            return .failure(DeviceError(errno: EINVAL, .write, "unknown control command '\(line.prefix(40))'; known: \(commands.joined(separator: ", "))"))
        }
    }

    static func reclaim(fs: FileSystem, mountPoint: String, log: FUSELog) -> Result<[UInt8], DeviceError> {
        let clock = SystemClock()
        let before = fs.reclaimStats, t0 = clock.nowNanoseconds
        let spaceBefore: FileSystemUsage
        do { spaceBefore = try FileSystemUsage.live(fs) } catch { return .failure(error) }
        do { try fs.reclaim() } catch {
            log.write("reclaim pass asked through the control file failed: \(error)")
            return .failure(error)
        }
        let after = fs.reclaimStats
        let spaceAfter: FileSystemUsage
        do { spaceAfter = try FileSystemUsage.live(fs) } catch { return .failure(error) }
        let r = ReclaimResult(mountPoint: mountPoint, zonesReclaimed: after.zonesReclaimed - before.zonesReclaimed,
                              bytesMoved: after.bytesMoved - before.bytesMoved, durationNanoseconds: clock.nowNanoseconds - t0,
                              freeBytesBefore: spaceBefore.free.bytes, freeBytesAfter: spaceAfter.free.bytes,
                              garbageBytesBefore: spaceBefore.garbage.bytes, garbageBytesAfter: spaceAfter.garbage.bytes,
                              totalZonesReclaimed: after.zonesReclaimed, totalBytesMoved: after.bytesMoved,
                              writerWaits: after.writerWaits, writerWaitNanoseconds: after.writerWaitNanoseconds,
                              reclaimWriteAmplification: fs.lifetime.reclaimWriteAmplification.map { ($0 * 1000).rounded() / 1000 })
        log.write("reclaim pass by hand: \(r.zonesReclaimed) zones reset, \(ByteCount(r.bytesMoved)) moved")
        return .success(Array(jsonText(r).utf8))
    }

    /// `sync(1)` never reaches a FUSE daemon (the kernel sends FUSE_SYNCFS only to virtiofs), so
    /// this is how a user makes everything durable at once without waiting for the periodic commit.
    static func sync(fs: FileSystem, mountPoint: String, log: FUSELog) -> Result<[UInt8], DeviceError> {
        let clock = SystemClock()
        let t0 = clock.nowNanoseconds
        let cached = fs.engine.cachedBytes, pending = fs.hasUncommittedChanges
        do { try fs.sync() } catch {
            log.write("sync asked through the control file failed: \(error)")
            return .failure(error)
        }
        let r = SyncResult(mountPoint: mountPoint, cachedBytesWrittenBack: cached.bytes,
                           hadUncommittedChanges: pending, durationNanoseconds: clock.nowNanoseconds - t0)
        return .success(Array(jsonText(r).utf8))
    }
}
