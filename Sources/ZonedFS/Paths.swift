// Path conveniences for library users, tools and tests: "/a/b/c" resolved from the root.
// Symlinks are not followed (callers that want that read them with `readLink`).

import ZonedCore
import ZonedEngine

extension FileSystem {
    /// The inode at `path` (absolute, '/'-separated; empty components and "." are skipped).
    public func resolve(_ path: String) throws(DeviceError) -> InodeNumber {
        var at = rootInode
        for part in path.split(separator: "/", omittingEmptySubsequences: true) where part != "." {
            if part == ".." { at = parent(of: at) ?? rootInode; continue }
            at = try lookup(at, try EntryName(String(part))).number
        }
        return at
    }

    /// The parent directory's inode and the last name of `path`.
    public func split(_ path: String) throws(DeviceError) -> (InodeNumber, EntryName) {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        guard let last = parts.last else { throw DeviceError.invalid(.lookup, "'\(path)' names no entry") }
        let dir = try resolve(parts.dropLast().joined(separator: "/"))
        return (dir, try EntryName(String(last)))
    }

    @discardableResult
    public func createFile(_ path: String, mode: UInt32 = 0o644) throws(DeviceError) -> InodeNumber {
        let (d, name) = try split(path)
        return try create(d, name, kind: .file, mode: mode, uid: 0, gid: 0).number
    }

    @discardableResult
    public func makeDirectory(_ path: String, mode: UInt32 = 0o755) throws(DeviceError) -> InodeNumber {
        let (d, name) = try split(path)
        return try create(d, name, kind: .directory, mode: mode, uid: 0, gid: 0).number
    }

    /// Writes all of `bytes` at `offset` (buffered unless `direct` and aligned).
    public func write(_ n: InodeNumber, at offset: UInt64, bytes: [UInt8], direct: Bool = false) throws(DeviceError) {
        var done = 0
        while done < bytes.count {
            let r = bytes.withUnsafeBytes { b in
                Result { () throws(DeviceError) -> Int in
                    try write(n, at: offset + UInt64(done), UnsafeRawBufferPointer(rebasing: b[done...]), flags: direct ? [.direct] : [])
                }
            }
            let w = try r.get()
            guard w > 0 else { throw DeviceError.io(.write, "short write of inode \(n) at \(offset + UInt64(done))") }
            done += w
        }
    }

    /// The whole file's bytes.
    public func readAll(_ n: InodeNumber) throws(DeviceError) -> [UInt8] {
        let size = try stat(n).size
        var out = [UInt8](repeating: 0, count: Int(size))
        let got = try out.withUnsafeMutableBytes { b in
            Result { () throws(DeviceError) -> Int in try read(n, at: 0, into: b, flags: []) }
        }.get()
        return Array(out[0..<got])
    }

    /// Every path in the tree (directories end in '/'), sorted, with its inode.
    public func walk() throws(DeviceError) -> [(path: String, inode: InodeNumber)] {
        var out: [(String, InodeNumber)] = []
        func visit(_ dir: InodeNumber, _ prefix: String) throws(DeviceError) {
            for e in try readDirectory(dir) {
                let p = prefix + "/" + e.name.description
                out.append((e.kind == .directory ? p + "/" : p, e.inode))
                if e.kind == .directory { try visit(e.inode, p) }
            }
        }
        try visit(rootInode, "")
        return out
    }
}
