// The zbdfs command line: the only place a backend meets the rest of the program.
//
// Exit status (documented in README.md and --help):
//   0 success; 1 a runtime failure (the device refused, IO failed); 2 bad usage (unparseable or
//   inconsistent arguments, a path of the wrong kind, a zone index out of range). Every failure is
//   one line on stderr that names the cause and the fix — never a Swift crash trace — and bad
//   usage is detected before anything is written.

import ArgumentParser
import Foundation
import ZonedMonitor

@main
struct ZBDFS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zbdfs",
        abstract: "A storage engine and file system for zoned block devices.",
        discussion: """
        zbdfs works on host-managed SMR drives, NVMe ZNS namespaces, null_blk zoned devices, and on
        emulated zoned devices kept in a regular file (the default for trying it out):

          zbdfs emulate create dev.zimg --size 1G --zone-size 64M --max-active 8
          zbdfs zones dev.zimg
          zbdfs zone finish dev.zimg 3
          zbdfs format dev.zimg --label data
          zbdfs fsck dev.zimg

        Exit status: 0 success, 1 runtime failure, 2 bad usage (fsck: 1 problems found, 2 cannot \
        read the device).
        """,
        version: "zbdfs \(versionString)",
        subcommands: [Emulate.self, Zones.self, ZoneCommand.self, Format.self, FsckCommand.self, Df.self, Zonemap.self,
                      Mount.self, Umount.self, Sync.self, Top.self, Reclaim.self]
    )

    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let e as CLIError {
            FileHandle.standardError.write(Data("zbdfs: \(e.message)\n".utf8))
            Foundation.exit(e.status)
        } catch let e as QuietExit {
            Foundation.exit(e.status)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            // ArgumentParser reports usage errors as EX_USAGE (64); we promise 2.
            Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}

let versionString = "0.1.0"

/// A failure the user can act on: one line naming the cause and the fix.
struct CLIError: Error {
    var message: String
    var status: Int32

    static func usage(_ message: String) -> CLIError { CLIError(message: message, status: 2) }
    static func runtime(_ message: String) -> CLIError { CLIError(message: message, status: 1) }
}

/// Ends the command with `status` after it has printed everything it has to say (fsck's
/// "problems found" is a report on stdout, not an error line).
struct QuietExit: Error {
    var status: Int32
}

/// Writes one line to stderr (progress, notes).
func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Pretty, key-sorted JSON with snake_case keys, as every --json report prints.
func jsonText<T: Encodable>(_ value: T) -> String { reportJSON(value) }
