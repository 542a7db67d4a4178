// The append table (--append): the engine on the emulated zoned device writing sequential 1 MiB
// direct writes at queue depth 1 and 8, with zone append and with writes at the write pointer,
// measured in the same run.
//
// Columns: the same 64 MiB-zone, max-active-14 device each time, at two piece sizes —
//   wap 1M     the device takes 1 MiB writes and offers 1 MiB appends, the engine is told not to
//              append (EngineConfig.zoneAppend = false, the mount's -o noappend): one write per
//              zone at a time, at the pointer the allocator tracks
//   app 1M     zone append of 1 MiB: one append per write
//   wap N      --max-append (default 128 KiB) as the device's write limit too, written at the
//              pointer: 1 MiB / N writes per 1 MiB write, one at a time
//   app N      zone append limited to N: each 1 MiB write is one batch of 1 MiB / N appends,
//              all submitted together
// so append and write-at-pointer compare at the same piece size (the emulator pays per IO).
// Every figure is the median of --repeat rounds; each round runs every column once, in an order
// that rotates from round to round so no column always runs first (or last) on a warm machine.

import Foundation
import ZonedCore
import ZonedEngine

struct AppendColumn {
    var name: String
    var maxWrite: ByteCount
    var maxAppend: ByteCount
    var zoneAppend: Bool
    var key: String
}

func appendColumns(smallAppend: ByteCount) -> [AppendColumn] {
    let k = smallAppend.bytes >> 10
    return [AppendColumn(name: "wap 1M", maxWrite: .mib(1), maxAppend: .mib(1), zoneAppend: false, key: "write_at_pointer_1mib"),
            AppendColumn(name: "append 1M", maxWrite: .mib(1), maxAppend: .mib(1), zoneAppend: true, key: "append_1mib"),
            AppendColumn(name: "wap \(k)K", maxWrite: smallAppend, maxAppend: smallAppend, zoneAppend: false, key: "write_at_pointer_\(k)kib"),
            AppendColumn(name: "append \(k)K", maxWrite: smallAppend, maxAppend: smallAppend, zoneAppend: true, key: "append_\(k)kib")]
}

/// One round: both sequential workloads for one column, each on a fresh device.
func benchAppendColumn(_ c: AppendColumn, o: Options) throws -> (results: [Workload: Measurement], appendsPerWrite: Double) {
    let total = Int(o.size.bytes)
    var out: [Workload: Measurement] = [:]
    var appends: UInt64 = 0, writes: UInt64 = 0
    do {
        let d = try BenchDevice(kind: "zoned", dir: o.dir, size: o.size, checksums: o.checksums, maxAppend: c.maxAppend, maxWrite: c.maxWrite, zoneAppend: c.zoneAppend)
        out[.seqWrite1] = try sequentialWrite(d.engine, total: total).1
        appends += d.engine.allocator.stats.deviceAppends
        writes += UInt64(total >> 20)
    }
    do {
        let d = try BenchDevice(kind: "zoned", dir: o.dir, size: o.size, checksums: o.checksums, maxAppend: c.maxAppend, maxWrite: c.maxWrite, zoneAppend: c.zoneAppend)
        out[.seqWrite8] = try concurrentSequentialWrites(d.engine, total: total)
        appends += d.engine.allocator.stats.deviceAppends
        if ProcessInfo.processInfo.environment["ZBDFS_BENCH_DEBUG"] != nil {
            FileHandle.standardError.write(Data("\(c.name) qd8: \(out[.seqWrite8]!.mbPerSecond) MB/s \(d.engine.allocator.stats) \(d.engine.stats)\n".utf8))
        }
        writes += UInt64(total >> 20)
    }
    return (out, Double(appends) / Double(max(1, writes)))
}

func runAppendBench(o: Options) throws {
    let columns = appendColumns(smallAppend: o.maxAppend)
    var rounds: [[[Workload: Measurement]]] = Array(repeating: [], count: columns.count)
    var appendsPerWrite = Array(repeating: 0.0, count: columns.count)
    for round in 0..<o.repeats {
        if !o.json { FileHandle.standardError.write(Data("zbdfs-bench: append round \(round + 1) of \(o.repeats)\n".utf8)) }
        for k in 0..<columns.count {
            let i = (k + round) % columns.count
            let r = try benchAppendColumn(columns[i], o: o)
            rounds[i].append(r.results)
            appendsPerWrite[i] = r.appendsPerWrite
        }
    }
    let medians = rounds.map(median)
    let workloads: [Workload] = [.seqWrite1, .seqWrite8]
    if o.json {
        var rows: [[String: Any]] = []
        for w in workloads {
            var r: [String: Any] = ["workload": w.rawValue]
            for (i, c) in columns.enumerated() {
                if let m = medians[i][w] { r[c.key] = ["mb_per_second": m.mbPerSecond, "bytes": m.bytes, "seconds": m.seconds] }
            }
            rows.append(r)
        }
        let cols: [[String: Any]] = columns.enumerated().map { i, c in
            ["key": c.key, "max_write_bytes": c.maxWrite.bytes, "max_append_bytes": c.maxAppend.bytes, "zone_append": c.zoneAppend,
             "device_appends_per_write": appendsPerWrite[i]]
        }
        let top: [String: Any] = ["dir": o.dir, "size_bytes": o.size.bytes, "rounds": o.repeats, "columns": cols, "append": rows]
        let data = try JSONSerialization.data(withJSONObject: top, options: [.prettyPrinted, .sortedKeys])
        print(String(decoding: data, as: UTF8.self))
        return
    }
    let k = o.maxAppend.bytes >> 10
    print("zbdfs-bench --append: engine API on an emulated zoned device in \(o.dir) (64 MiB zones, max active 14), 1 MiB direct writes, "
          + "\(o.size) per workload, median of \(o.repeats) rounds\(o.checksums ? "" : ", without data checksums")")
    print("wap = write at the write pointer (one IO per zone at a time); append = zone append (one batch per write); 1M / \(k)K = the device's write and append limit")
    let widths = [18, 11, 11, 11, 11, 11, 13]
    print(benchLine(["workload"] + columns.map(\.name) + ["app/wap 1M", "app/wap \(k)K"], widths))
    for w in workloads {
        let m = columns.indices.map { medians[$0][w] }
        func rate(_ x: Measurement?) -> String { x.map { String(format: "%.0f MB/s", $0.mbPerSecond) } ?? "-" }
        func ratio(_ a: Measurement?, _ b: Measurement?) -> String {
            guard let a, let b else { return "-" }
            return String(format: "%.2f", a.mbPerSecond / b.mbPerSecond)
        }
        print(benchLine([w.rawValue] + m.map(rate) + [ratio(m[1], m[0]), ratio(m[3], m[2])], widths))
    }
    print("device appends per 1 MiB write: " + columns.indices.map { "\(columns[$0].name) \(String(format: "%.1f", appendsPerWrite[$0]))" }.joined(separator: ", "))
}

/// A table row: the first cell left-aligned, the others right-aligned to `widths`.
func benchLine(_ cells: [String], _ widths: [Int]) -> String {
    zip(cells, widths).enumerated().map { i, p in
        i == 0 ? p.0.padding(toLength: p.1, withPad: " ", startingAt: 0)
               : String(repeating: " ", count: max(0, p.1 - p.0.count)) + p.0
    }.joined(separator: " ")
}
