// `zbdfs top MOUNTPOINT`: the live view. It talks to the mount through its control file and never
// opens the device.
//
// Terminal handling (top): on a tty it switches to the alternate screen, hides the cursor and
// reads keys unbuffered; whatever ends it (q, Ctrl-C, SIGTERM, the mount going away) restores
// the terminal first. With --count it prints that many frames and leaves them on the screen (in
// colour on a tty). Not on a tty it prints plain-text frames (no escape codes), one per interval,
// separated by a blank line.

import ArgumentParser
import Foundation
import ZonedCore
import ZonedFUSE
import ZonedMonitor

/// Set by the signal handler; the loop checks it after every wait.
nonisolated(unsafe) private var topStop: sig_atomic_t = 0

struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Watch a mounted zbdfs file system live: zone grid, throughput, zone-finish waits, zone limits.",
        discussion: """
        Refreshes every second (--interval). The grid has one cell per zone: on a terminal its
        glyph is the zone's fill (. empty to █ full) and its colour the condition (grey empty,
        green open, yellow closed, blue full, red read-only/offline); in plain text (stdout not a
        terminal) each cell is the condition's letter and the fill in tenths. Above the grid:
        space, open and active zones against the device's limits, write and read throughput,
        device writes, write amplification, zone-finish and reclaim waits. Press q to quit.
        With --count N it prints N frames and exits, leaving them on the screen.
        Reads the mount's control file only; the device is never opened. Examples:
          zbdfs top /mnt/zb
          zbdfs top /mnt/zb --count 3 | cat      (three plain frames)
        """
    )

    @Argument(help: ArgumentHelp("The mount point (or its device).", valueName: "mountpoint"))
    var mountpoint: String

    @Option(help: ArgumentHelp("Seconds between refreshes.", valueName: "seconds"))
    var interval: Double = 1

    @Option(help: ArgumentHelp("Stop after this many frames (default: until q).", valueName: "n"))
    var count: Int?

    func validate() throws {
        guard interval >= 0.1, interval <= 3600 else { throw ValidationError("--interval \(interval): give 0.1 to 3600 seconds") }
        if let c = count, c < 1 { throw ValidationError("--count \(c): give at least 1") }
    }

    func run() throws {
        let mnt = try servingMountPoint(mountpoint, for: "top")
        let tty = isatty(STDOUT_FILENO) == 1
        // --count prints its frames and leaves them on screen; without it top takes the screen.
        let terminal = tty && count == nil ? TerminalScreen.enter() : nil
        defer { terminal?.leave() }
        signal(SIGINT) { _ in topStop = 1 }
        signal(SIGTERM) { _ in topStop = 1 }
        var previous: FileSystemStatus?
        var frames = 0
        while topStop == 0 {
            let status = try liveStatus(mountPoint: mnt)
            let stamp = Top.clockTime()
            // The grid gets the screen less the text lines (header, blank lines, legend: about
            // 10); a pipe gets 32 rows, so a frame of any device stays a page.
            let view = TopView(current: status, previous: previous, width: tty ? TerminalScreen.columns() : 100,
                               style: tty ? .terminal : .plain, stamp: stamp, quitHint: terminal != nil,
                               gridRows: tty ? max(4, TerminalScreen.rows() - 10) : 32)
            if let terminal { terminal.draw(view.lines()) } else {
                FileHandle.standardOutput.write(Data(((frames > 0 ? "\n" : "") + view.lines().joined(separator: "\n") + "\n").utf8))
            }
            previous = status
            frames += 1
            if let c = count, frames >= c { break }
            if let terminal { if terminal.waitForQuit(seconds: interval) { break } } else { Top.sleep(interval) }
        }
    }

    static func sleep(_ seconds: Double) {
        var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - seconds.rounded(.down)) * 1e9))
        nanosleep(&ts, nil)
    }

    static func clockTime() -> String {
        var t = time(nil)
        var tmv = tm()
        localtime_r(&t, &tmv)
        return String(format: "%02d:%02d:%02d", tmv.tm_hour, tmv.tm_min, tmv.tm_sec)
    }
}

/// The terminal while top runs: alternate screen, hidden cursor, keys read one at a time.
final class TerminalScreen {
    private var saved = termios()

    static func enter() -> TerminalScreen {
        let t = TerminalScreen()
        tcgetattr(STDIN_FILENO, &t.saved)
        var raw = t.saved
        raw.c_lflag &= ~tcflag_t(ICANON | ECHO)
        tcsetattr(STDIN_FILENO, TCSANOW, &raw)
        t.write("\u{1B}[?1049h\u{1B}[?25l")
        return t
    }

    func leave() {
        write("\u{1B}[?25h\u{1B}[?1049l")
        tcsetattr(STDIN_FILENO, TCSANOW, &saved)
    }

    func draw(_ lines: [String]) {
        write("\u{1B}[H\u{1B}[2J" + lines.joined(separator: "\r\n"))
    }

    /// Waits up to `seconds` for a key; true when it was q (or stdin closed).
    func waitForQuit(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while topStop == 0 {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { return false }
            var p = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, Int32(left * 1000))
            if r < 0 { if errno == EINTR { continue } else { return true } }
            if r == 0 { return false }
            var c: UInt8 = 0
            let n = Glibc.read(STDIN_FILENO, &c, 1)
            if n <= 0 { return true }
            if c == UInt8(ascii: "q") || c == UInt8(ascii: "Q") { return true }
        }
        return true
    }

    static func rows() -> Int {
        var w = winsize()
        return ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &w) == 0 && w.ws_row > 0 ? Int(w.ws_row) : 24
    }

    static func columns() -> Int {
        var w = winsize()
        return ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &w) == 0 && w.ws_col > 0 ? Int(w.ws_col) : 80
    }

    private func write(_ s: String) {
        FileHandle.standardOutput.write(Data(s.utf8))
    }
}
