// Zone append in batches: the rule a device with a queue (io_uring NVMe passthrough) can break
// that single appends cannot show — several appends to one zone in flight at once.
//
// Invariants: as for every check (Harness.swift); this file only adds checks to the suite's list.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ZonedCore

extension ConformanceSuite {
    static let batchAppend = ConformanceCheck(
        "batch-append", "a batch of zone appends to one zone completes each exactly once, each where its completion says with its own data, together tiling the zone from its start; without append support each fails with EOPNOTSUPP",
        skipUnless: { g in g.sequentialZoneCount >= 1 ? nil : "needs a sequential zone" }
    ) { t in
        let d = t.device, g = d.geometry, bs = g.block, z = g.sequentialZones[0]
        let start = g.zoneStart(z)
        guard g.supportsZoneAppend else {
            let b = pattern(bs, seed: 400)
            let done = d.submit((0..<3).map { _ in .append(b.readOnly, zone: z) })
            try expect(done.map(\.index).sorted() == [0, 1, 2], "completions \(done.map(\.index)) do not cover the batch once each")
            for c in done {
                guard case .failure(let e) = c.result else { throw ConformanceFailure("append \(c.index) succeeded on a device without zone append") }
                try expect(e.errno == EOPNOTSUPP, "append \(c.index): expected EOPNOTSUPP, got \(e.errnoName) (\(e))")
            }
            return
        }
        // Mixed sizes from one block up to the append limit, as many as fit in the zone's capacity.
        var sizes = (0..<15).map { min(bs * UInt64(1 + $0 % 4), g.maxAppendBytes) } + [g.maxAppendBytes]
        while sizes.reduce(ByteCount.zero, +) > g.zoneCapacity { sizes.removeLast() }
        let buffers = sizes.enumerated().map { i, n in pattern(n, seed: 410 + UInt64(i)) }
        let done = d.submit(buffers.map { .append($0.readOnly, zone: z) })
        try expect(done.map(\.index).sorted() == Array(buffers.indices), "completions \(done.map(\.index).sorted()) do not cover the batch once each")
        var landed: [(at: DeviceOffset, index: Int)] = []
        for c in done {
            switch c.result {
            case .success(let at): landed.append((at, c.index))
            case .failure(let e): throw ConformanceFailure("append \(c.index) of \(sizes[c.index]) failed: \(e)")
            }
        }
        landed.sort { $0.at < $1.at }
        var next = start
        for l in landed {
            try expect(l.at == next, "append \(l.index) landed at \(l.at); the appends before it end at \(next) (a gap or an overlap)")
            next = next + sizes[l.index]
        }
        let wp = try zoneState(d, z).writePointer
        try expect(wp == next, "write pointer \(wp) after the appends, expected \(next)")
        for l in landed { try expectBytes(d, at: l.at, equal: buffers[l.index], "append \(l.index)") }
    }
}
