// Reclaim: with live data at 80% of the device, random overwrites of ten times the device's size
// never see ENOSPC and every byte verifies; writing live data up to the limit gets ENOSPC there and
// not before.

import Foundation
import Testing
import ZonedBackendFile
import ZonedCore
import ZonedEngine
@testable import ZonedFS

@Suite("Reclaim", .serialized, .timeLimit(.minutes(10)))
struct ReclaimTests {
    static let geometry = smallZoned(zones: 24, zoneSize: .kib(256), capacity: .kib(256), maxActive: 4)

    /// How the overwrite test runs: reclaim in the writers' threads or in the background, and
    /// (in the writers' threads) on the device with 16 KiB zone appends completing out of order.
    enum Variant: String, CaseIterable, Sendable { case foreground, background, appendOutOfOrder }

    @Test("80% live, overwrites of 10x the device: no ENOSPC, every byte verifies, free space recovers",
          arguments: Variant.allCases)
    func overwritesAtEightyPercent(variant: Variant) throws {
        let s = Scratch()
        let background = variant == .background
        var g = Self.geometry
        if variant == .appendOutOfOrder { g.maxAppendBytes = .kib(16) }
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: g)
        let report = try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        if variant == .appendOutOfOrder { dev.setFaultPlan(FaultPlan(seed: 3, outOfOrderAppends: true)) }
        let fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: background))
        let chunk = 64 << 10
        let files = 8
        let perFile = Int(report.dataCapacity.bytes) * 8 / 10 / files / chunk * chunk
        var model: [[UInt8]] = []
        var inodes: [InodeNumber] = []
        for f in 0..<files {
            let n = try fs.createFile("/f\(f)")
            let data = bytes(perFile, seed: UInt64(f))
            try fs.write(n, at: 0, bytes: data, direct: true)
            inodes.append(n)
            model.append(data)
        }
        try fs.sync()
        var rng = SeededRandom(seed: 42)
        let total = Self.geometry.totalBytes.bytes * 10
        var written: UInt64 = 0
        var minFree = UInt64.max
        while written < total {
            let f = Int(rng.below(UInt64(files)))
            let at = Int(rng.below(UInt64(perFile / 4096 - chunk / 4096 + 1))) * 4096
            let data = rng.bytes(chunk)
            do { try fs.write(inodes[f], at: UInt64(at), bytes: data, direct: true) } catch {
                Issue.record("write after \(written >> 10) KiB: \(error); totals \(fs.engine.allocator.totals); \(fs.reclaimStats); victims \(fs.reclaimer.victims().map { "\($0.id.int):\($0.phase) live \($0.live) g \($0.garbage)" })")
                throw error
            }
            model[f].replaceSubrange(at..<(at + chunk), with: data)
            written += UInt64(chunk)
            minFree = min(minFree, fs.engine.allocator.totals.free.bytes)
            if rng.below(16) == 0 { try fs.fsync(inodes[f]) }
        }
        for f in 0..<files { #expect(try fs.readAll(inodes[f]) == model[f], "file \(f)") }
        let stats = fs.reclaimStats
        #expect(stats.zonesReclaimed > 10 && stats.bytesMoved > 0, "\(stats)")
        // Free space recovers: a full pass leaves at least the garbage-free share of the device free.
        try fs.reclaim()
        let t = fs.engine.allocator.totals
        #expect(t.garbage.bytes < UInt64(Self.geometry.zoneCapacity.bytes) * 4, "garbage left after a full pass: \(t.garbage)")
        #expect(t.free.bytes > minFree, "free space recovered: \(t.free) > \(minFree)")
        #expect(fs.engine.allocator.problem() == nil)
        let wa = Double(written + stats.bytesMoved) / Double(written)
        if variant == .appendOutOfOrder { #expect(fs.engine.stats.landedApartSplits > 0 && fs.engine.allocator.stats.deviceAppends > 0) }
        print("reclaim (\(variant.rawValue)): \(written >> 20) MiB written, \(stats.bytesMoved >> 20) MiB moved, WA \(String(format: "%.2f", wa)), \(stats.zonesReclaimed) zones, writer waits \(stats.writerWaits)")
        try fs.unmount()
        let again = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")), options: MountOptions(backgroundReclaim: false))
        for f in 0..<files { #expect(try again.readAll(inodes[f]) == model[f], "file \(f) after remount") }
        #expect(try Fsck.check(device: again.device, verifyData: true).clean)
        try again.unmount()
    }

    @Test func enospcOnlyWhenLiveDataFillsTheDevice() throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: Self.geometry)
        let report = try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false))
        // Garbage first: write and overwrite so that reclaim has work before the device is full.
        let churn = try fs.createFile("/churn")
        for i in 0..<6 { try fs.write(churn, at: 0, bytes: bytes(512 << 10, seed: UInt64(i)), direct: true) }
        try fs.unlink(rootInode, try EntryName("churn"))
        let n = try fs.createFile("/big")
        var live: UInt64 = 0
        let chunk = 64 << 10
        var failure: DeviceError?
        while failure == nil {
            do throws(DeviceError) {
                try fs.write(n, at: live, bytes: bytes(chunk, seed: live), direct: true)
                live += UInt64(chunk)
            } catch { failure = error }
        }
        #expect(failure?.kind == .noSpace, "\(String(describing: failure))")
        // ENOSPC came when live data reached the data capacity (less at most one zone of slack for
        // the zone a write was finishing), not while garbage was left.
        let slack = Self.geometry.zoneCapacity.bytes
        #expect(live + slack >= report.dataCapacity.bytes, "live \(live) of \(report.dataCapacity.bytes)")
        #expect(live <= report.dataCapacity.bytes)
        #expect(fs.engine.allocator.totals.garbage.bytes < slack)
        try fs.unmount()
    }

    /// In conventional mode NOCOW files keep unchecked extents and fallocate leaves prealloc ones.
    /// Reclaim must move those too: here every zone gets one of each among garbage, so a zone they
    /// pin is never reset and churn of three times the device would end in ENOSPC.
    @Test func conventionalReclaimMovesNocowAndPreallocExtents() throws {
        let s = Scratch()
        let g = smallZoned(zones: 16, zoneSize: .kib(64), capacity: nil, maxActive: 4, conventional: 16)
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: g)
        _ = try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false))
        let churn = try fs.createFile("/churn")
        var model: [InodeNumber: [UInt8]] = [:]
        func pinAndChurn(_ k: Int) throws {
            let n = try fs.createFile("/nocow\(k)")
            _ = try fs.setAttributes(n, AttributeChanges(nocow: true))
            let data = bytes(4096, seed: UInt64(100 + k))
            try fs.write(n, at: 0, bytes: data, direct: true)
            model[n] = data
            let p = try fs.createFile("/pre\(k)")
            try fs.fallocate(p, at: 0, length: 4096)
            model[p] = [UInt8](repeating: 0, count: 4096)
            try fs.write(churn, at: 0, bytes: bytes(24 << 10, seed: UInt64(k)), direct: true)
            try fs.fsync(churn)
        }
        for k in 0..<24 { try pinAndChurn(k) }
        var written: UInt64 = 0
        var round: UInt64 = 0
        while written < g.totalBytes.bytes * 3 {
            do { try fs.write(churn, at: 0, bytes: bytes(48 << 10, seed: 1000 + round), direct: true) } catch {
                Issue.record("churn after \(written >> 10) KiB: \(error); \(fs.reclaimStats); zones \(fs.engine.allocator.accounts.map { "\($0.id.int):\($0.role.rawValue.prefix(2)) l\($0.live.bytes >> 10) g\($0.garbage.bytes >> 10) f\($0.free.bytes >> 10)" })")
                throw error
            }
            written += 48 << 10
            round += 1
        }
        #expect(fs.reclaimStats.zonesReclaimed > 10, "\(fs.reclaimStats)")
        for (n, data) in model { #expect(try fs.readAll(n) == data, "inode \(n)") }
        // Moved NOCOW data is still written in place; moved prealloc space still takes a write.
        let nocow0 = try fs.resolve("/nocow0"), pre0 = try fs.resolve("/pre0")
        let inPlace = fs.engine.stats.nocowWrites
        for n in [nocow0, pre0] {
            let again = bytes(4096, seed: n)
            try fs.write(n, at: 0, bytes: again, direct: true)
            model[n] = again
        }
        #expect(fs.engine.stats.nocowWrites == inPlace + 2)
        #expect(fs.engine.allocator.problem() == nil)
        try fs.unmount()
        let back = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")), options: MountOptions(backgroundReclaim: false))
        for (n, data) in model { #expect(try back.readAll(n) == data, "inode \(n) after remount") }
        #expect(try Fsck.check(device: back.device, verifyData: true).clean)
        try back.unmount()
    }

    /// Every path that allocates, reached when writers have used every free byte but garbage
    /// remains.
    enum Allocating: String, CaseIterable, Sendable { case truncateTail, punchPartialBlock, directWrite, bufferedFsync, bufferedSync }

    /// Each allocating operation reclaims and succeeds when the device has no free space for writers
    /// but garbage: ENOSPC there would be a lie (the crash test's workloads hit it in truncate, whose
    /// rewrite of a partial last block ran outside the reclaim retry).
    @Test(arguments: Allocating.allCases)
    func allocatingOperationsReclaimWhenOnlyGarbageIsLeft(op: Allocating) throws {
        let s = Scratch()
        let dev = try EmulatedZonedDevice.create(path: s.path("img"), geometry: Self.geometry)
        _ = try FileSystem.format(device: dev, options: FormatOptions(uuid: testUUID))
        let fs = try FileSystem.mount(device: dev, options: MountOptions(backgroundReclaim: false))
        let target = try fs.createFile("/target")
        var model = bytes(40_000, seed: 1)
        try fs.write(target, at: 0, bytes: model, direct: false)
        try fs.fsync(target)
        // Overwrite one small file until writers have no space left: all of it became garbage.
        let churn = try fs.createFile("/churn")
        var round: UInt64 = 0
        while fs.engine.allocator.reservable.bytes >= 4096 {
            try fs.write(churn, at: 0, bytes: bytes(4096, seed: round), direct: true)
            round += 1
        }
        #expect(fs.reclaimStats.passes == 0 && fs.engine.allocator.totals.garbage.bytes > Self.geometry.zoneCapacity.bytes * 4)
        switch op {
        case .truncateTail:
            try fs.truncate(target, to: 5000)
            model = Array(model[0..<5000])
        case .punchPartialBlock:
            try fs.punchHole(target, at: 5000, length: 100)
            model.replaceSubrange(5000..<5100, with: [UInt8](repeating: 0, count: 100))
        case .directWrite:
            let data = bytes(8192, seed: 9)
            try fs.write(target, at: 8192, bytes: data, direct: true)
            model.replaceSubrange(8192..<16384, with: data)
        case .bufferedFsync, .bufferedSync:
            let data = bytes(3000, seed: 9)
            try fs.write(target, at: 1000, bytes: data, direct: false)
            model.replaceSubrange(1000..<4000, with: data)
            if op == .bufferedFsync { try fs.fsync(target) } else { try fs.sync() }
        }
        #expect(fs.reclaimStats.passes > 0, "\(fs.reclaimStats)")
        #expect(try fs.readAll(target) == model)
        try fs.unmount()
        let back = try FileSystem.mount(device: try EmulatedZonedDevice.open(path: s.path("img")), options: MountOptions(backgroundReclaim: false))
        #expect(try back.readAll(target) == model)
        try back.unmount()
    }
}
