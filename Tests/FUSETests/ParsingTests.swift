// Unit tests without a mount: -o option lists and the kernel's mount table.

import Testing
@testable import ZonedFUSE

@Suite(.timeLimit(.minutes(10))) struct OptionParsingTests {
    @Test func oursLibfusesAndFstabOnlyOptions() throws {
        let o = try FUSEMountOptions(parsing: ["ro,allow_other", "noatime,defaults,noauto,x-systemd.automount,_netdev"])
        #expect(o.readOnly && o.allowOther && !o.debug)
        #expect(o.passThrough == ["ro", "allow_other", "noatime"])
        let args = o.fuseArguments(fsname: "/srv/a,b\\c.img")
        #expect(args == ["zbdfs", "-o", "default_permissions,fsname=/srv/a\\,b\\\\c.img,subtype=zbdfs,ro,allow_other,noatime"])
        #expect(try FUSEMountOptions(parsing: ["ro,rw"]).readOnly == false)
        #expect(try FUSEMountOptions(parsing: ["default_permissions"]).passThrough.isEmpty)
        let wap = try FUSEMountOptions(parsing: ["rw,noappend"])
        #expect(!wap.zoneAppend && wap.passThrough.isEmpty, "noappend is ours, not libfuse's")
        #expect(try FUSEMountOptions(parsing: ["noappend,append"]).zoneAppend && FUSEMountOptions().zoneAppend)
    }

    @Test func unknownAndFixedOptionsAreRefusedByName() {
        #expect(throws: FUSEOptionError.self) { try FUSEMountOptions(parsing: ["ro,bogus"]) }
        #expect(throws: FUSEOptionError.self) { try FUSEMountOptions(parsing: ["fsname=x"]) }
        #expect(throws: FUSEOptionError.self) { try FUSEMountOptions(parsing: ["max_read"]) }  // needs a value
        do {
            _ = try FUSEMountOptions(parsing: ["nosuid,frobnicate=3"])
        } catch {
            #expect(error.message.contains("'frobnicate=3'"))
        }
    }

    /// `commit=SECONDS` is ours (never passed to libfuse), whole seconds from 0 to an hour.
    @Test func commitIntervalOption() throws {
        #expect(FUSEMountOptions().commitSeconds == 5, "ext4's default")
        let o = try FUSEMountOptions(parsing: ["rw,commit=30"])
        #expect(o.commitSeconds == 30 && o.passThrough.isEmpty)
        #expect(try FUSEMountOptions(parsing: ["commit=0"]).commitSeconds == 0)
        for bad in ["commit", "commit=", "commit=-1", "commit=1.5", "commit=soon", "commit=3601"] {
            do {
                _ = try FUSEMountOptions(parsing: [bad])
                Issue.record("\(bad) was taken")
            } catch {
                #expect(error.message.contains("commit="), "\(bad): \(error.message)")
            }
        }
    }

    /// `cache=SIZE` is ours too: a size from 1 MiB to 1 TiB, 128 MiB when not given.
    @Test func cacheSizeOption() throws {
        #expect(FUSEMountOptions().cacheBytes == 128 << 20)
        let o = try FUSEMountOptions(parsing: ["rw,cache=2G"])
        #expect(o.cacheBytes == 2 << 30 && o.passThrough.isEmpty)
        #expect(try FUSEMountOptions(parsing: ["cache=1M"]).cacheBytes == 1 << 20)
        for bad in ["cache", "cache=", "cache=lots", "cache=512K", "cache=2T"] {
            do {
                _ = try FUSEMountOptions(parsing: [bad])
                Issue.record("\(bad) was taken")
            } catch {
                #expect(error.message.contains("cache=SIZE") || error.message.contains("from 1M to 1T"), "\(bad): \(error.message)")
            }
        }
    }

    @Test func commaEscapes() {
        #expect(FUSEMountOptions.split("a\\,b,c") == ["a,b", "c"])
        #expect(FUSEMountOptions.escape("x,y\\z") == "x\\,y\\\\z")
    }
}

@Suite(.timeLimit(.minutes(10))) struct MountTableTests {
    static let sample = """
        22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
        42 27 0:39 / /tmp/with\\040space/mnt rw,nosuid,nodev,relatime shared:1 master:2 - fuse.zbdfs /tmp/dev\\040one.img rw,user_id=0,group_id=0,default_permissions
        43 27 0:40 / /mnt/b rw,relatime - fuse.zbdfs /srv/b.img rw,user_id=0,group_id=0
        garbage line
        44 27 0:41 / /mnt/c rw - ext4
        """

    @Test func parsesEscapesAndOptionalFields() {
        let t = MountTable.parse(Self.sample)
        #expect(t.count == 3)
        #expect(t[1].mountPoint == "/tmp/with space/mnt" && t[1].source == "/tmp/dev one.img" && t[1].isZBDFS)
        #expect(t[0].fileSystemType == "proc" && !t[0].isZBDFS)
        #expect(MountTable.mounts(ofDevice: "/srv/b.img", in: t).map(\.mountPoint) == ["/mnt/b"])
        #expect(MountTable.mount(at: "/proc", in: t)?.fileSystemType == "proc")
        #expect(MountTable.unescape("a\\134b\\011") == "a\\b\t")
        #expect(MountTable.unescape("trailing\\04") == "trailing\\04")
    }
}
