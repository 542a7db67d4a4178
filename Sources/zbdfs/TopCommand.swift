// `zbdfs top MOUNTPOINT`: the live view, and `zbdfs reclaim MOUNTPOINT`: a reclaim pass by hand.
// Both talk to the mount through its control file; neither opens the device.
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
            let view = TopView(current: status, previous: previous, width: tty ? TerminalScreen.columns() : 100,
                               style: tty ? .terminal : .plain, stamp: stamp, quitHint: terminal != nil)
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

    static func columns() -> Int {
        var w = winsize()
        return ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &w) == 0 && w.ws_col > 0 ? Int(w.ws_col) : 80
    }

    private func write(_ s: String) {
        FileHandle.standardOutput.write(Data(s.utf8))
    }
}

/// The mount point serving `path` (a mount point or a mounted device), or a usage error naming the fix.
func servingMountPoint(_ path: String, for command: String) throws -> String {
    let abs = PathKind.absolute(path)
    if let m = servingMount(of: abs) { return m.mountPoint }
    if PathKind.isDirectory(abs) {
        throw CLIError.usage("\(path) is not a zbdfs mount point; mount one first with `zbdfs mount DEVICE \(path)`")
    }
    throw CLIError.usage("\(path) is not mounted; `zbdfs \(command)` works on a running mount (`zbdfs mount \(path) MOUNTPOINT`)")
}

struct Reclaim: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a zone reclaim pass on a mounted zbdfs file system now.",
        discussion: """
        Reclaim moves the live data out of zones that are mostly garbage (cost-benefit order:
        emptiest and coldest first) and resets them, so their space is free again. It also runs
        by itself, in the background when free space is low and whenever a writer finds no
        space. This asks the mount for a pass at once and waits for it; the mount keeps serving
        meanwhile. Prints what the pass did and the totals since mount: zones reclaimed, bytes
        moved, reclaim write amplification ((file data + moved) / file data, since format), and
        the time writers spent waiting for reclaim. --json prints the same, sizes in bytes.
        """
    )

    @Argument(help: ArgumentHelp("The mount point (or its device).", valueName: "mountpoint"))
    var mountpoint: String

    @Flag(help: "Print JSON (sizes in bytes, times in nanoseconds).") var json = false

    func run() throws {
        let mnt = try servingMountPoint(mountpoint, for: "reclaim")
        if !json { printError("reclaiming on \(mnt)…") }
        let bytes: [UInt8]
        do { bytes = try ControlFile.run("reclaim", mountPoint: mnt) } catch {
            throw CLIError.runtime("the reclaim pass on \(mnt) failed: \(error). The file system keeps its data; see the mount's log (syslog) and `zbdfs df \(mnt)`")
        }
        let dec = JSONDecoder()
        dec.keyDecodingStrategy = .convertFromSnakeCase
        guard let r = try? dec.decode(ReclaimResult.self, from: Data(bytes)) else {
            throw CLIError.runtime("the mount at \(mnt) answered something else than a reclaim result; it may run another zbdfs version — remount it with this one")
        }
        if json {
            print(jsonText(r))
            return
        }
        func f(_ b: UInt64) -> String { ByteCount.format(b) }
        print("reclaimed  \(r.zonesReclaimed) zones, moved \(f(r.bytesMoved)) in \(r.durationNanoseconds / 1_000_000) ms")
        print("free       \(f(r.freeBytesBefore)) -> \(f(r.freeBytesAfter)); garbage \(f(r.garbageBytesBefore)) -> \(f(r.garbageBytesAfter))")
        print("since mount \(r.totalZonesReclaimed) zones reclaimed, \(f(r.totalBytesMoved)) moved; writers waited for reclaim \(r.writerWaits) times, \(r.writerWaitNanoseconds / 1_000_000) ms")
        print("reclaim write amplification \(r.reclaimWriteAmplification.map { String(format: "%.3f", $0) } ?? "-") since format")
    }
}
