// What `zbdfs top` draws: one frame from a status snapshot (and the one before, for rates).
//
// Invariants:
// - Pure: the same snapshots, width and style give the same lines (tests render frames directly).
// - Every line fits `width` columns (the grid wraps to it; long text lines are cut).
// - Plain style has no escape sequences at all (for pipes and logs); the terminal style adds only
//   SGR colour codes, which take no columns.
// - Grid cell of zone i: its fill as a glyph (eighths of capacity written), its colour its
//   condition; plain style writes the condition's letter and the fill in tenths instead.

import Foundation
import ZonedCore

public struct TopView {
    public enum Style: Sendable { case terminal, plain }

    public var current: FileSystemStatus
    public var previous: FileSystemStatus?
    public var width: Int
    public var style: Style
    /// Shown in the header (e.g. the wall-clock time); the view itself reads no clock.
    public var stamp: String
    /// Whether the header says "q quits" (only when top reads keys).
    public var quitHint: Bool

    public init(current: FileSystemStatus, previous: FileSystemStatus?, width: Int, style: Style, stamp: String = "",
                quitHint: Bool = false) {
        self.current = current
        self.previous = previous
        self.width = max(40, width)
        self.style = style
        self.stamp = stamp
        self.quitHint = quitHint
    }

    public func lines() -> [String] {
        var out = header() + [""] + grid() + [""] + legend()
        out = out.map(cut)
        return out
    }

    // MARK: Text lines

    func header() -> [String] {
        let s = current, sp = s.space, sum = s.zones.summary
        let title = "zbdfs top  \(s.mountPoint ?? s.zones.device)  (\(s.zones.device), \(s.zones.backend))"
        var out = [title + (stamp.isEmpty ? "" : "  \(stamp)") + (quitHint ? "  q quits" : "")]
        out.append("space   size \(fmt(sp.sizeBytes))  used \(fmt(sp.usedBytes)) (\(pct(sp.usedBytes, sp.sizeBytes)))  free \(fmt(sp.freeBytes))  garbage \(fmt(sp.garbageBytes))  unusable \(fmt(sp.unusableBytes))")
        out.append("zones   open \(sum.openZones)/\(limit(sum.maxOpenZones))  active \(sum.activeZones)/\(limit(sum.maxActiveZones))  "
                   + conditionCounts())
        out.append("io      write \(rate(\.userBytesWritten))  read \(rate(\.userBytesRead))  device write \(rate(\.deviceBytesWritten))  "
                   + "write amp \(s.writeAmplification.map { String(format: "%.2f", $0) } ?? "-") since format"
                   + (s.activity.map { $0.cachedBytes > 0 ? ", \(fmt($0.cachedBytes)) cached" : "" } ?? ""))
        if let a = s.activity {
            out.append("waits   zone finish \(a.zoneFinishWaits) (\(ms(a.zoneFinishWaitNanoseconds)) ms)  reclaim \(a.reclaimWriterWaits) (\(ms(a.reclaimWriterWaitNanoseconds)) ms)  "
                       + "reclaimed \(a.zonesReclaimed) zones, moved \(fmt(a.reclaimBytesMoved))")
        }
        return out
    }

    func conditionCounts() -> String {
        let order = ZoneCondition.allCases.map(\.rawValue)
        return current.zones.summary.byCondition.sorted { (order.firstIndex(of: $0.key) ?? 99) < (order.firstIndex(of: $1.key) ?? 99) }
            .map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    }

    /// Bytes per second of a counter between the two snapshots; "-" without a previous one.
    func rate(_ counter: KeyPath<FileSystemStatus.Activity, UInt64>) -> String {
        guard let p = previous, let a = p.activity, let b = current.activity,
              current.sampledAtNanoseconds > p.sampledAtNanoseconds else { return "-" }
        let bytes = b[keyPath: counter] >= a[keyPath: counter] ? b[keyPath: counter] - a[keyPath: counter] : 0
        let seconds = Double(current.sampledAtNanoseconds - p.sampledAtNanoseconds) / 1e9
        return fmt(UInt64(Double(bytes) / seconds)) + "/s"
    }

    // MARK: The zone grid

    /// Rows of cells, each row prefixed with the index of its first zone.
    func grid() -> [String] {
        let zones = current.zones.zones
        let cellWidth = style == .terminal ? 2 : 3
        let prefix = String(zones.count - 1).count
        let perRow = max(1, (width - prefix - 3) / cellWidth)
        var out: [String] = []
        var i = 0
        while i < zones.count {
            let row = zones[i..<min(zones.count, i + perRow)]
            let label = String(i).leftPadded(prefix) + " | "
            out.append(label + row.map(cell).joined())
            i += perRow
        }
        return out
    }

    func cell(_ z: ZoneReport.Entry) -> String {
        let cap = max(1, z.capacityBytes)
        let fill = Double(min(z.writtenBytes, cap)) / Double(cap)
        switch style {
        case .plain:
            return TopView.letter(z.condition) + String(min(9, Int(fill * 10))) + " "
        case .terminal:
            let glyphs: [Character] = [".", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]
            let g = glyphs[min(8, Int((fill * 8).rounded(.up)))]
            return "\u{1B}[\(TopView.colour(z.condition))m\(g)\u{1B}[0m "
        }
    }

    static func letter(_ condition: String) -> String {
        switch ZoneCondition(rawValue: condition) {
        case .empty: return "E"
        case .implicitlyOpen: return "o"
        case .explicitlyOpen: return "O"
        case .closed: return "C"
        case .full: return "F"
        case .readOnly: return "R"
        case .offline: return "X"
        case .notWritePointer, nil: return "N"
        }
    }

    /// SGR foreground colour per condition.
    static func colour(_ condition: String) -> String {
        switch ZoneCondition(rawValue: condition) {
        case .empty: return "90"              // grey
        case .implicitlyOpen, .explicitlyOpen: return "32;1"  // bright green
        case .closed: return "33"             // yellow
        case .full: return "34;1"             // blue
        case .readOnly, .offline: return "31;1"  // red
        case .notWritePointer, nil: return "37"  // white
        }
    }

    func legend() -> [String] {
        switch style {
        case .plain:
            return ["cells: condition (E empty, o/O open, C closed, F full, R/X read-only/offline, N conv.) + fill in tenths"]
        case .terminal:
            let parts = [("empty", "empty"), ("open", "implicit-open"), ("closed", "closed"), ("full", "full"), ("read-only/offline", "offline")]
            return ["cells: fill . ▁ … █ of capacity; colour: " + parts.map { "\u{1B}[\(TopView.colour($0.1))m\($0.0)\u{1B}[0m" }.joined(separator: " ")]
        }
    }

    // MARK: Formatting

    /// Cuts a line to `width` visible columns, keeping escape sequences whole.
    func cut(_ line: String) -> String {
        var out = "", visible = 0, inEscape = false
        for ch in line {
            if ch == "\u{1B}" { inEscape = true }
            if inEscape {
                out.append(ch)
                if ch == "m" { inEscape = false }
                continue
            }
            guard visible < width else { break }
            out.append(ch)
            visible += 1
        }
        return style == .terminal && out.contains("\u{1B}") ? out + "\u{1B}[0m" : out
    }

    func fmt(_ b: UInt64) -> String { ByteCount.format(b) }
    func pct(_ a: UInt64, _ b: UInt64) -> String { String(Int((100 * Double(a) / Double(max(1, b))).rounded())) + "%" }
    func limit(_ n: Int) -> String { n == 0 ? "unlimited" : String(n) }
    func ms(_ ns: UInt64) -> String { String(ns / 1_000_000) }
}

extension String {
    fileprivate func leftPadded(_ n: Int) -> String { String(repeating: " ", count: max(0, n - count)) + self }
}
