// What `zbdfs top` draws: one frame from a status snapshot (and the one before, for rates).
//
// Invariants:
// - Pure: the same snapshots, width and style give the same lines (tests render frames directly).
// - Every line fits `width` columns (the grid wraps to it; long text lines are cut).
// - Plain style has no escape sequences at all (for pipes and logs); the terminal style adds only
//   SGR colour codes, which take no columns.
// - Grid cell of zone i: its fill as a glyph (eighths of capacity written), its colour its
//   condition; plain style writes the condition's letter and the fill in tenths instead.
// - The grid has at most `gridRows` rows: past that many zones a cell is a group of consecutive
//   zones (the same count in every cell but the last), drawn with the condition most of them
//   have and their summed fill, and the legend says "1 cell = N zones". A drive of 80,000 zones
//   would otherwise be thousands of rows, more than any terminal shows.

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
    /// The most rows the zone grid takes (the terminal's height less the text lines).
    public var gridRows: Int

    public init(current: FileSystemStatus, previous: FileSystemStatus?, width: Int, style: Style, stamp: String = "",
                quitHint: Bool = false, gridRows: Int = 32) {
        self.gridRows = max(1, gridRows)
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
        out.append("zones   open \(sum.openZones)/\(CountText.limit(sum.maxOpenZones))  active \(sum.activeZones)/\(CountText.limit(sum.maxActiveZones))  "
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

    /// One grid cell: zones first..<first+count, folded to one condition and one fill.
    struct Cell {
        var first: Int
        var condition: String
        var written: UInt64
        var capacity: UInt64
    }

    var cellWidth: Int { style == .terminal ? 2 : 3 }
    var labelWidth: Int { String(max(0, current.zones.zones.count - 1)).count }
    var cellsPerRow: Int { max(1, (width - labelWidth - 3) / cellWidth) }

    /// Zones per cell so that the grid fits `gridRows` rows of `cellsPerRow` cells.
    public var zonesPerCell: Int {
        let fit = cellsPerRow * gridRows
        return max(1, (current.zones.zones.count + fit - 1) / fit)
    }

    /// Rows of cells, each row prefixed with the index of its first zone.
    func grid() -> [String] {
        let cells = self.cells()
        let perRow = cellsPerRow
        return stride(from: 0, to: cells.count, by: perRow).map { i in
            let row = cells[i..<min(cells.count, i + perRow)]
            return String(row.first!.first).leftPadded(labelWidth) + " | " + row.map(cell).joined()
        }
    }

    func cells() -> [Cell] {
        let zones = current.zones.zones, group = zonesPerCell
        return stride(from: 0, to: zones.count, by: group).map { start in
            let part = zones[start..<min(zones.count, start + group)]
            return Cell(first: start, condition: TopView.dominantCondition(part),
                        written: part.reduce(0) { $0 + min($1.writtenBytes, $1.capacityBytes) },
                        capacity: part.reduce(0) { $0 + $1.capacityBytes })
        }
    }

    /// The condition most zones of `part` have; a tie goes to the one first in ZoneCondition's
    /// order, so the same zones always draw the same cell.
    static func dominantCondition(_ part: ArraySlice<ZoneReport.Entry>) -> String {
        if part.count == 1 { return part.first!.condition }
        var counts: [String: Int] = [:]
        for z in part { counts[z.condition, default: 0] += 1 }
        let order = ZoneCondition.allCases.map(\.rawValue)
        let rank = { (c: String) in order.firstIndex(of: c) ?? order.count }
        return counts.max { a, b in a.value != b.value ? a.value < b.value : rank(a.key) > rank(b.key) }!.key
    }

    func cell(_ c: Cell) -> String {
        let cap = max(1, c.capacity)
        let fill = Double(min(c.written, cap)) / Double(cap)
        switch style {
        case .plain:
            return TopView.letter(c.condition) + String(min(9, Int(fill * 10))) + " "
        case .terminal:
            let glyphs: [Character] = [".", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]
            let g = glyphs[min(8, Int((fill * 8).rounded(.up)))]
            return "\u{1B}[\(TopView.colour(c.condition))m\(g)\u{1B}[0m "
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
        let group = zonesPerCell
        let scale = group == 1 ? [] : ["1 cell = \(group) zones (the condition most of them have, their fill summed)"]
        return scale + conditionLegend()
    }

    func conditionLegend() -> [String] {
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
    func ms(_ ns: UInt64) -> String { String(ns / 1_000_000) }
}

extension String {
    fileprivate func leftPadded(_ n: Int) -> String { String(repeating: " ", count: max(0, n - count)) + self }
}
