// Running the built programs from tests: finding them beside the test bundle, and running one to
// completion with its output captured. Shared by the CLI and FUSE test targets.
//
// Invariants:
// - Output goes to temporary files, never pipes: a background process the program leaves behind
//   (a mount daemon, a tmux server) would keep a pipe open and make reading it hang.
// - The files are removed before `run` returns, whatever happened.

import Foundation

/// What a finished program left: its exit status and both output streams.
public struct ProgramRun: Sendable {
    public var status: Int32
    public var out: String
    public var err: String
}

public struct ProgramMissing: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
    public init(message: String) { self.message = message }
}

/// The program `name` built beside the test bundle (or the path in $`environmentOverride`).
public func builtProgram(_ name: String, environmentOverride: String? = nil) throws -> String {
    if let v = environmentOverride, let p = ProcessInfo.processInfo.environment[v] { return p }
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for candidate in [dir, dir.deletingLastPathComponent()] {
        let p = candidate.appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    throw ProgramMissing(message: "\(name) not found beside \(dir.path); run `swift build` first"
                         + (environmentOverride.map { " or set \($0)" } ?? ""))
}

/// Runs `executable` with `args` (and `environment` added to ours) to completion.
public func runProgram(_ executable: String, _ args: [String], environment: [String: String] = [:]) throws -> ProgramRun {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    if !environment.isEmpty {
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let base = NSTemporaryDirectory() + "zbdfs-run-\(UUID().uuidString)"
    let outPath = base + ".out", errPath = base + ".err"
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    defer {
        try? FileManager.default.removeItem(atPath: outPath)
        try? FileManager.default.removeItem(atPath: errPath)
    }
    p.standardOutput = FileHandle(forWritingAtPath: outPath)
    p.standardError = FileHandle(forWritingAtPath: errPath)
    try p.run()
    p.waitUntilExit()
    let o = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let e = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    return ProgramRun(status: p.terminationStatus, out: o, err: e)
}
