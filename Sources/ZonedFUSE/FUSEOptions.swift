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
// - Ours (`noappend`/`append`, `commit=`, `cache=`) are never passed on to libfuse.

import ZonedCore

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
    /// `commit=SECONDS`: how often the file system commits changes nobody fsync'd (0: never).
    /// `sync(1)` does not reach a FUSE daemon, so this bounds what a crash can lose.
    public var commitSeconds = FUSEMountOptions.defaultCommitSeconds
    /// `cache=SIZE`: how much of the on-device metadata index (data checksums today) the daemon
    /// keeps in memory (`MountOptions.cacheSize`).
    public var cacheBytes = FUSEMountOptions.defaultCacheBytes
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

    public static let defaultCacheBytes: UInt64 = 128 << 20
    static let minCacheBytes: UInt64 = 1 << 20
    static let maxCacheBytes: UInt64 = 1 << 40

    /// ext4's default; btrfs takes 30.
    public static let defaultCommitSeconds = 5
    /// Beyond an hour a crash would lose more than anyone means to risk; 0 says "never" plainly.
    public static let maxCommitSeconds = 3600

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
        case "commit": commitSeconds = try FUSEMountOptions.commitSeconds(option)
        case "cache": cacheBytes = try FUSEMountOptions.cacheBytes(option)
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
            throw FUSEOptionError(message: "unknown mount option '\(option)'; zbdfs takes ro, rw, noappend, append, commit=SECONDS, cache=SIZE, allow_other, allow_root, auto_unmount, debug, max_read=N and the generic flags (nosuid, nodev, noexec, noatime, sync, dirsync, ...)")
        }
    }

    /// The seconds of `commit=SECONDS`: whole seconds from 0 (no periodic commit) to an hour.
    static func commitSeconds(_ option: String) throws(FUSEOptionError) -> Int {
        let range = "whole seconds from 0 (no periodic commits) to \(maxCommitSeconds), e.g. commit=\(defaultCommitSeconds) (the default)"
        guard let eq = option.firstIndex(of: "=") else {
            throw FUSEOptionError(message: "-o commit needs a value: give commit=SECONDS, \(range)")
        }
        let value = option[option.index(after: eq)...]
        guard let seconds = Int(value), seconds >= 0 else {
            throw FUSEOptionError(message: "-o \(option): give \(range)")
        }
        guard seconds <= maxCommitSeconds else {
            throw FUSEOptionError(message: "-o \(option) is more than an hour: a crash could lose that much work nobody fsync'd; give at most commit=\(maxCommitSeconds), or commit=0 to turn periodic commits off")
        }
        return seconds
    }

    /// The bytes of `cache=SIZE` (a size such as 64M or 1G): 1 MiB to 1 TiB.
    static func cacheBytes(_ option: String) throws(FUSEOptionError) -> UInt64 {
        let range = "a size from 1M to 1T, e.g. cache=128M (the default) or cache=2G"
        guard let eq = option.firstIndex(of: "=") else {
            throw FUSEOptionError(message: "-o cache needs a value: give cache=SIZE, \(range)")
        }
        guard let size = ByteCount(parsing: String(option[option.index(after: eq)...])) else {
            throw FUSEOptionError(message: "-o \(option): give \(range)")
        }
        guard size.bytes >= minCacheBytes, size.bytes <= maxCacheBytes else {
            throw FUSEOptionError(message: "-o \(option) is out of range: give \(range)")
        }
        return size.bytes
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
