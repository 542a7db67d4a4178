// The workload users run: standard tools on a mounted emulated zoned device and on conventional
// mode, the same commands in a reference directory on the host's file system, then a manifest of
// both (names, types, modes, link counts, sizes, symlink targets, sha256 of every file) compared
// before and after a remount. fsck (reading every data block) must then be clean.

import Foundation
import Testing

/// The workload. $IN holds the inputs; $DIRECT is "oflag=direct" in the mount and empty in the
/// reference directory (the host's file system refuses unaligned O_DIRECT; the bytes that must
/// land are the same).
let workload = #"""
cd "$1"
cp "$IN/big.bin" big.bin
cp -r "$IN/tree" tree
dd if="$IN/d8m" of=direct-aligned.bin bs=1M $DIRECT status=none
dd if="$IN/d8m" of=direct-4k.bin bs=4k count=300 $DIRECT status=none
dd if="$IN/d8m" of=direct-unaligned.bin bs=1000 count=3000 $DIRECT status=none
dd if="$IN/d8m" of=buffered.bin bs=64k status=none
dd if="$IN/d8m" of=buffered-odd.bin bs=777 count=5000 status=none
# Overwrites inside existing files: aligned direct, unaligned direct, buffered.
dd if="$IN/patch" of=big.bin bs=4096 seek=10 count=3 conv=notrunc $DIRECT status=none
dd if="$IN/patch" of=direct-aligned.bin bs=1000 seek=7 count=5 conv=notrunc $DIRECT status=none
dd if="$IN/patch" of=buffered.bin bs=100 seek=33 count=9 conv=notrunc status=none
printf 'appended\n' >> buffered-odd.bin
mv big.bin moved.bin
ln moved.bin hard.bin
ln -s moved.bin sym.bin
ln -s tree/sub dirlink
echo gone > gone.txt
rm gone.txt
rm tree/sub/f3
mkdir -p a/b/c/d
echo deep > a/b/c/d/deep.txt
find tree -type f | sort > found.txt
tar cf "$2/tree.tar" tree
mkdir untarred
tar xf "$2/tree.tar" -C untarred
chmod 600 moved.bin
chmod 750 a/b
touch -d '2020-01-02 03:04:05' stamp.txt
truncate -s 100000 buffered.bin
truncate -s 5000000 sparse.bin
mv tree/sub renamed-sub
sha256sum moved.bin > sums.txt
"""#

/// Everything the comparison looks at, one line per entry, sorted.
let manifest = #"""
cd "$1"
find . -mindepth 1 \( -type f -printf 'f %p %m %n %s\n' \) -o \( -type l -printf 'l %p %l\n' \) \
  -o \( -type d -printf 'd %p %m\n' \) | LC_ALL=C sort
find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
stat -c 'stamp %Y' stamp.txt
"""#

@Suite("FUSE workload", .serialized, .enabled(if: fuseUnavailable == nil, "\(fuseUnavailable ?? "")"), .timeLimit(.minutes(15)))
struct WorkloadTests {
    @Test(arguments: [Backing.emulated, .conventional])
    func standardToolsSurviveRemount(_ kind: Backing) throws {
        let s = Scratch("work")
        let dev = s.path("dev.img"), ref = s.path("ref"), input = s.path("in")
        try makeDevice(dev, kind)
        let prep = try sh("""
            mkdir -p \(quote(ref)) \(quote(input))/tree/sub && cd \(quote(input))
            head -c 5000000 /dev/urandom > big.bin
            head -c 8388608 /dev/urandom > d8m
            head -c 20000 /dev/urandom > patch
            for i in 1 2 3; do head -c $((i * 3000)) /dev/urandom > tree/f$i; head -c $((i * 7001)) /dev/urandom > tree/sub/f$i; done
            """)
        #expect(prep.status == 0, "\(prep.err)")
        try mount(dev, s.mnt, kind)
        for (dir, direct) in [(ref, ""), (s.mnt, "oflag=direct")] {
            let r = try sh(workload, env: ["IN": input, "DIRECT": direct], argsScript: [dir, s.dir])
            #expect(r.status == 0, "workload in \(dir): \(r.err)")
        }
        let expected = try sh(manifest, argsScript: [ref])
        #expect(expected.status == 0 && expected.out.contains("moved.bin"), "\(expected.err)")
        let live = try sh(manifest, argsScript: [s.mnt])
        #expect(live.out == expected.out, "mounted tree differs:\n\(diff(expected.out, live.out))")
        #expect(try sh("cd \(quote(s.mnt)) && sha256sum -c --quiet sums.txt").status == 0)
        try umount(s.mnt)

        try mount(dev, s.mnt, kind)
        let again = try sh(manifest, argsScript: [s.mnt])
        #expect(again.out == expected.out, "after remount:\n\(diff(expected.out, again.out))")
        try umount(s.mnt)
        let report = try fsck(dev, kind)
        #expect(report.clean, "fsck: \(report.problems)")
        #expect(report.blocksVerified > 0)
    }
}

/// The lines only one side has, for a readable failure.
func diff(_ a: String, _ b: String) -> String {
    let la = Set(a.split(separator: "\n")), lb = Set(b.split(separator: "\n"))
    return (la.subtracting(lb).sorted().map { "- " + $0 } + lb.subtracting(la).sorted().map { "+ " + $0 })
        .prefix(40).joined(separator: "\n")
}
