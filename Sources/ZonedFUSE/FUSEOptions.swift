// `-o` mount options: ours, the ones libfuse and the kernel take, and the fstab-only ones.
//
// Invariants:
// - Every option is checked here, before the device is opened, so an unknown option is a usage
//   error that names it, never a libfuse message on a daemon's closed stderr.
// - zbdfs always mounts with `default_permissions` (the kernel checks permissions; the file system
//   does not repeat them), `fsname=` the absolute device path (so the mount table names the
//   device: the exclusive-open error finds the mount by it) and `subtype=zbdfs`. Users cannot
//   override those three.
// - fstab-only options (`defaults`, `noauto`, `nofail`, `_netdev`, `x-*`, ...) are accepted and
//   dropped: they mean something to mount(8), nothing to the file system.

public struct FUSEOptionError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

public struct FUSEMountOptions: Sendable, Equatable {
    public var readOnly = false
    public var allowOther = false
    public var debug = false
    /// `noappend`: write sequential zones at the write pointer even when the device has zone
    /// append (to compare the two); `append` (the default) undoes it. Ours only: not passed on.
    public var zoneAppend = true
    /// Options for libfuse and the kernel, as given (`ro` and `allow_other` included).
    public var passThrough: [String] = []

    /// Kernel flags libfuse hands to mount(2) and options libfuse itself interprets.
    static let fuseFlags: Set<String> = [
        "suid", "nosuid", "dev", "nodev", "exec", "noexec", "async", "sync", "dirsync",
        "atime", "noatime", "diratime", "nodiratime", "relatime", "norelatime", "strictatime",
        "nostrictatime", "lazytime", "nolazytime", "symfollow", "nosymfollow",
        "allow_root", "auto_unmount",
    ]
    /// `name=value` options libfuse takes.
    static let fuseValued: Set<String> = ["max_read", "context", "fscontext", "defcontext", "rootcontext"]
    /// Options only mount(8) and fstab care about.
    static let fstabOnly: Set<String> = ["defaults", "auto", "noauto", "user", "nouser", "users", "owner",
                                         "group", "nofail", "_netdev", "loop"]
    /// Options zbdfs sets itself.
    static let fixed: Set<String> = ["fsname", "subtype", "default_permissions", "fd", "user_id", "group_id",
                                     "rootmode", "blkdev", "blksize"]

    public init() {}

    /// Parses `-o` arguments (each a comma-separated list; a backslash escapes a comma).
    public init(parsing lists: [String]) throws(FUSEOptionError) {
        for list in lists {
            for option in FUSEMountOptions.split(list) where !option.isEmpty {
                try take(option)
            }
        }
    }

    private mutating func take(_ option: String) throws(FUSEOptionError) {
        let name = option.split(separator: "=", maxSplits: 1).first.map(String.init) ?? option
        switch name {
        case "ro": readOnly = true; passThrough.append("ro")
        case "rw": readOnly = false; passThrough.removeAll { $0 == "ro" }
        case "allow_other": allowOther = true; passThrough.append(option)
        case "debug": debug = true; passThrough.append(option)
        case "noappend": zoneAppend = false
        case "append": zoneAppend = true
        case _ where FUSEMountOptions.fstabOnly.contains(name) || name.hasPrefix("x-") || name == "comment":
            return
        case _ where FUSEMountOptions.fixed.contains(name):
            if name == "default_permissions" { return }
            throw FUSEOptionError(message: "-o \(name) is set by zbdfs itself (fsname is the device path, subtype zbdfs); leave it out")
        case _ where option.contains("=") && FUSEMountOptions.fuseValued.contains(name):
            passThrough.append(option)
        case _ where !option.contains("=") && FUSEMountOptions.fuseFlags.contains(name):
            passThrough.append(option)
        default:
            throw FUSEOptionError(message: "unknown mount option '\(option)'; zbdfs takes ro, rw, noappend, append, allow_other, allow_root, auto_unmount, debug, max_read=N and the generic flags (nosuid, nodev, noexec, noatime, sync, dirsync, ...)")
        }
    }

    /// The argument vector for libfuse's session: program name, then one `-o` list.
    public func fuseArguments(fsname: String) -> [String] {
        let fixed = ["default_permissions", "fsname=" + FUSEMountOptions.escape(fsname), "subtype=zbdfs"]
        return ["zbdfs", "-o", (fixed + passThrough).joined(separator: ",")]
    }

    /// Splits a comma-separated list; `\,` is a literal comma and `\\` a backslash.
    static func split(_ list: String) -> [String] {
        var out: [String] = [], current = ""
        var escaped = false
        for c in list {
            if escaped { current.append(c); escaped = false }
            else if c == "\\" { escaped = true }
            else if c == "," { out.append(current); current = "" }
            else { current.append(c) }
        }
        out.append(current)
        return out
    }

    /// Escapes what libfuse's option parser would split on or unescape.
    static func escape(_ value: String) -> String {
        var out = ""
        for c in value {
            if c == "," || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out
    }
}
