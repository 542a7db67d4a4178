#!/bin/sh
# suite.sh: the guest side of Emulation/run-suite (busybox sh). For each profile it creates a zoned
# device, runs each step against it, removes it, and prints one machine-readable line per
# profile x step:
#
#   ZBDFS-RESULT profile=NAME step=STEP result=PASS|FAIL|SKIP rc=N seconds=S.SS detail=TEXT
#
# followed at the end by "ZBDFS-SUITE-DONE failures=N". The host parses only these lines.
#
#   in the guest:  suite.sh run "PROFILE..." "STEP..."
#   on the host:   sh suite.sh profiles | all-profiles | steps | default-steps | needs STEP |
#                  describe PROFILE   (listing only; no devices)
#
# Profiles: create_NAME sets DEV (the device the steps use) and REMOVE (the command that undoes
# it), and may set SYSDEV (the block device whose sysfs describes DEV, when DEV is not one: the NVMe
# char device /dev/ng0n1 has no queue/ of its own) and BACKEND (the zbdfs-conformance backend,
# default kernel); describe_NAME prints one line. Steps: step_NAME runs against $DEV and returns its status; its
# output goes to the console; detail_NAME (optional) turns that output (in $OUT) into the result's
# detail. skip_NAME (optional) prints a reason when the step does not apply to the profile. A step
# that finds, while running, that it does not apply (zbdfs format refusing a device it cannot use
# by design) writes the reason to $SKIP_FILE and is reported SKIP with it; any other non-zero
# status is FAIL. needs_NAME (optional) lists the binaries under /test the step runs (the host
# copies only those into the guest). Adding a step is one more step_NAME function.
#
# The file system steps, in the default order: format (zbdfs format --force), fs-write-verify
# (zbdfs-fs-check workload: write through the library, unmount, mount, verify every byte, twice),
# zones (zbdfs zones --json, checked by zbdfs-fs-check zones-json), fsck (zbdfs fsck --verify-data).
# When format refused the device (SKIP) or failed (FAIL), fs-write-verify and fsck are SKIPped
# for that profile with the reason: the FAIL is counted once, at format.
#
# Invariants:
# - Every step runs under `timeout` (STEP_TIMEOUT seconds), so a stuck step fails and the suite
#   goes on; only a kernel hang or panic stops it, and the host notices the missing DONE line.
# - Profiles run one after another on a fresh device; the previous one is removed first.
# - SKIP comes only from skip_NAME or from $SKIP_FILE, never from a status: a step that fails for a
#   reason nobody designed must show FAIL.

STEP_TIMEOUT=${STEP_TIMEOUT:-240}
BIN=${BIN:-/test}
CONFORMANCE=${CONFORMANCE:-$BIN/zbdfs-conformance}
ZBDFS=${ZBDFS:-$BIN/zbdfs}
FSCHECK=${FSCHECK:-$BIN/zbdfs-fs-check}
PROFILES_ALL="conv4 maxopen maxactive smalllimits zonecap seqonly nvme nvmept"
STEPS_DEFAULT="conformance format fs-write-verify mount fuse-workload monitor umount remount-verify zones fsck"
OUT=/tmp/step.out
SKIP_FILE=/tmp/step.skip
# Why this profile's file system cannot be used (format refused or failed); empty when it can.
FS_UNUSABLE=/tmp/fs.unusable
# Why the FUSE steps after `mount` cannot run (zbdfs mount failed); empty when they can.
MOUNT_UNUSABLE=/tmp/mount.unusable
# The FUSE steps' mount point, the tree the workload makes in it, and the reference lists it
# leaves in guest RAM (outside the file system under test) for remount-verify.
MNT=/mnt
TREE=$MNT/w
SUMS=/tmp/fuse.sha256
LISTING=/tmp/fuse.find

# ---------------------------------------------------------------- profiles
# null_blk: memory-backed (reads must return what was written), 16 MiB zones, 512 KiB max IO
# (max_sectors=1024; the default 255 splits larger writes), 1 GiB = 64 zones unless said otherwise.
NULLB_COMMON="nr_devices=1 zoned=1 memory_backed=1 gb=1 zone_size=16 max_sectors=1024"

describe_conv4() { echo "null_blk (module params): 64 x 16 MiB zones, 4 conventional, no open/active limits, 4 KiB blocks"; }
create_conv4() { nullb_module "$NULLB_COMMON bs=4096 zone_nr_conv=4"; }

describe_maxopen() { echo "null_blk (module params): 64 x 16 MiB zones, all sequential, max open 8, no active limit"; }
create_maxopen() { nullb_module "$NULLB_COMMON bs=4096 zone_nr_conv=0 zone_max_open=8"; }

describe_maxactive() { echo "null_blk (module params): 64 x 16 MiB zones, all sequential, max active 8, no open limit"; }
create_maxactive() { nullb_module "$NULLB_COMMON bs=4096 zone_nr_conv=0 zone_max_active=8"; }

describe_smalllimits() { echo "null_blk (module params): 64 x 16 MiB zones, 2 conventional, max open 3, max active 4"; }
create_smalllimits() { nullb_module "$NULLB_COMMON bs=4096 zone_nr_conv=2 zone_max_open=3 zone_max_active=4"; }

describe_zonecap() { echo "null_blk (configfs): 32 x 16 MiB zones with 12 MiB capacity, 2 conventional, max open 6, max active 8"; }
create_zonecap() {
  nullb_configfs nullb0 "size=512 blocksize=4096 memory_backed=1 zoned=1 zone_size=16 zone_capacity=12 zone_nr_conv=2 zone_max_open=6 zone_max_active=8 max_sectors=1024"
}

describe_seqonly() { echo "null_blk (module params): 64 x 16 MiB zones, sequential only, no limits, 512-byte blocks"; }
create_seqonly() { nullb_module "$NULLB_COMMON bs=512 zone_nr_conv=0"; }

# Only for Emulation/selftest (not in the default list): too few active zones for zbdfs by design.
describe_tinyactive() { echo "null_blk (module params): 64 x 16 MiB zones, all sequential, max open 2, max active 2 (zbdfs needs 3)"; }
create_tinyactive() { nullb_module "$NULLB_COMMON bs=4096 zone_nr_conv=0 zone_max_open=2 zone_max_active=2"; }

describe_nvme() { echo "QEMU NVMe ZNS namespace: 32 x 16 MiB zones, 12 MiB capacity, max open/active 14, zasl=5 (128 KiB append), mq-deadline"; }
create_nvme() {
  modprobe nvme || return 1
  wait_for_block /dev/nvme0n1 || return 1
  # Linux picks no IO scheduler for ZNS; regular writes at QD>1 need mq-deadline to stay ordered.
  echo mq-deadline > /sys/block/nvme0n1/queue/scheduler || return 1
  DEV=/dev/nvme0n1
  REMOVE=true  # the namespace belongs to QEMU; its zones are reset by the steps themselves
}

# The same QEMU namespace as `nvme`, driven from user space: /dev/ng0n1 (its generic char device)
# through ZonedBackendNVMe (libnvme identify and zone management, io_uring passthrough reads,
# writes and zone appends). zbdfs detects the char device; no IO scheduler is involved.
describe_nvmept() { echo "QEMU NVMe ZNS namespace through /dev/ng0n1 (io_uring passthrough, zone append): 32 x 16 MiB zones, 12 MiB capacity, max open/active 14, zasl=5 (128 KiB append)"; }
create_nvmept() {
  modprobe nvme || return 1
  wait_for_block /dev/nvme0n1 || return 1
  wait_for_char /dev/ng0n1 || return 1
  DEV=/dev/ng0n1
  SYSDEV=nvme0n1
  BACKEND=nvme
  REMOVE=true  # the namespace belongs to QEMU; its zones are reset by the steps themselves
}

wait_for_char() {
  i=0
  while [ ! -c "$1" ]; do
    i=$((i + 1))
    [ $i -le 100 ] || { echo "no $1 after 10 s"; return 1; }
    sleep 0.1
  done
}

wait_for_block() {
  i=0
  while [ ! -b "$1" ]; do
    i=$((i + 1))
    [ $i -le 100 ] || { echo "no $1 after 10 s"; return 1; }
    sleep 0.1
  done
}

nullb_module() {
  REMOVE="rmmod null_blk"
  # shellcheck disable=SC2086  # the parameters are words on purpose
  modprobe null_blk $1 || return 1
  wait_for_block /dev/nullb0 || return 1
  DEV=/dev/nullb0
}

# nullb_configfs NAME "attr=value ...": one device through /sys/kernel/config/nullb/NAME (disk NAME).
nullb_configfs() {
  REMOVE="rmmod null_blk"
  modprobe null_blk nr_devices=0 || return 1
  grep -q configfs /proc/mounts || mount -t configfs none /sys/kernel/config || return 1
  d=/sys/kernel/config/nullb/$1
  mkdir "$d" || return 1
  REMOVE="echo 0 > $d/power; rmdir $d && rmmod null_blk"
  for kv in $2; do
    [ -e "$d/${kv%%=*}" ] || { echo "configfs has no attribute ${kv%%=*} (features: $(cat /sys/kernel/config/nullb/features))"; return 1; }
    echo "${kv#*=}" > "$d/${kv%%=*}" || { echo "cannot set ${kv%%=*}=${kv#*=}"; return 1; }
  done
  echo 1 > "$d/power" || return 1
  # Linux 6.1 names the disk after the configfs directory; later kernels may use nullbINDEX.
  DEV=/dev/$1
  [ -e "/sys/block/$1" ] || DEV=/dev/nullb$(cat "$d/index")
  wait_for_block "$DEV" || { echo "power=$(cat $d/power) index=$(cat $d/index) blocks: $(ls /sys/block)"; dmesg | tail -n 5; return 1; }
}

# ---------------------------------------------------------------- steps
needs_conformance() { echo zbdfs-conformance; }
step_conformance() { timeout -s KILL "$STEP_TIMEOUT" "$CONFORMANCE" "$DEV" --backend "${BACKEND:-kernel}"; }
detail_conformance() {
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' "$OUT" | tail -1)
  failed=$(sed -n 's/^FAIL \([^:]*\):.*/\1/p' "$OUT" | tr '\n' ' ')
  echo "${line:-no summary line}${failed:+; FAILED: $failed}"
}

# zbdfs format --force. A device zbdfs cannot use by design (FormatRequirements: too few zones,
# zones too small, too few open/active zones) makes format exit 2 with "cannot format DEV: ...
# zbdfs needs ..."; that is SKIP with format's reason. Anything else non-zero is FAIL.
needs_format() { echo zbdfs; }
step_format() {
  timeout -s KILL "$STEP_TIMEOUT" "$ZBDFS" format "$DEV" --force > /tmp/format.out 2>&1
  rc=$?
  cat /tmp/format.out
  [ $rc -eq 0 ] && return 0
  why=$(sed -n 's/^zbdfs: cannot format [^:]*: \(.*zbdfs needs.*\)\. Nothing was written\.$/\1/p' /tmp/format.out | head -n 1)
  if [ $rc -eq 2 ] && [ -n "$why" ]; then
    echo "zbdfs format refused: $why" > "$SKIP_FILE"
    echo "zbdfs format refused the device: $why" > "$FS_UNUSABLE"
  else
    echo "zbdfs format failed (exit $rc)" > "$FS_UNUSABLE"
  fi
  return $rc
}
detail_format() {
  space=$(sed -n 's/^space *\([^;]*\);.*/\1/p' "$OUT")
  [ -n "$space" ] && { echo "$space"; return; }
  grep -m 1 '^zbdfs: ' "$OUT" || grep -v '^\[' "$OUT" | tail -n 1
}

# The library workload on the formatted device (Sources/zbdfs-fs-check): see that file.
needs_fs_write_verify() { echo zbdfs-fs-check; }
skip_fs_write_verify() { fs_unusable; }
step_fs_write_verify() { timeout -s KILL "$STEP_TIMEOUT" "$FSCHECK" workload "$DEV"; }
detail_fs_write_verify() { sed -n 's/^fs-write-verify: \(PASS \)\{0,1\}//p' "$OUT" | tail -n 1 | grep . || grep -v '^\[' "$OUT" | tail -n 1; }

# zbdfs zones --json exits 0 and is a consistent zone report for this device (zone count from sysfs,
# and, through NVMe passthrough, the append limit Linux derived from the same namespace).
needs_zones() { echo zbdfs zbdfs-fs-check; }
step_zones() {
  timeout -s KILL "$STEP_TIMEOUT" "$ZBDFS" zones "$DEV" --json > /tmp/zones.json
  rc=$?
  [ $rc -eq 0 ] || { echo "zbdfs zones --json exited $rc"; return $rc; }
  timeout -s KILL "$STEP_TIMEOUT" "$ZBDFS" zones "$DEV" | grep -E '^(limits|summary)'
  check_append_limit || return 1
  timeout -s KILL "$STEP_TIMEOUT" "$FSCHECK" zones-json /tmp/zones.json --zones "$(cat "/sys/block/$(sysdev)/queue/nr_zones")"
}
# Through NVMe passthrough zbdfs appends itself, so its append limit must be the one Linux derived
# from the same namespace (ZASL): queue/zone_append_max_bytes. (The kernel backend has no zone
# append to user space; its rows do not check this.)
check_append_limit() {
  [ "${BACKEND:-kernel}" = nvme ] || return 0
  got=$(sed -n 's/.*"max_append_bytes" *: *\([0-9]*\).*/\1/p' /tmp/zones.json | head -n 1)
  want=$(cat "/sys/block/$(sysdev)/queue/zone_append_max_bytes")
  [ "$got" = "$want" ] || { echo "zones: FAIL zbdfs zones --json says max_append_bytes=$got, expected $want"; return 1; }
  # The block device with --backend nvme is driven through its char device too.
  via=$(timeout -s KILL "$STEP_TIMEOUT" "$ZBDFS" zones "/dev/$(sysdev)" --backend nvme --json | sed -n 's/.*"backend" *: *"\([a-z]*\)".*/\1/p' | head -n 1)
  [ "$via" = nvme ] || { echo "zones: FAIL zbdfs zones /dev/$(sysdev) --backend nvme answered with backend '$via'"; return 1; }
  echo "zones: append limit $got B as expected; /dev/$(sysdev) --backend nvme reaches $DEV"
}
detail_zones() { sed -n 's/^zones: \(PASS \)\{0,1\}//p' "$OUT" | tail -n 1 | grep . || grep -v '^\[' "$OUT" | tail -n 1; }

# zbdfs fsck --verify-data: the file system the steps before left is clean, every data block's
# checksum holds.
needs_fsck() { echo zbdfs; }
skip_fsck() { fs_unusable; }
step_fsck() { timeout -s KILL "$STEP_TIMEOUT" "$ZBDFS" fsck "$DEV" --verify-data; }
detail_fsck() {
  if grep -q '^fsck .*: clean' "$OUT"; then
    echo "clean; $(sed -n 's/^namespace *//p' "$OUT"); $(sed -n 's/^data *//p' "$OUT")"
  else
    p=$(grep -m 1 '^  - ' "$OUT" | sed 's/^  - //')
    echo "$(grep -m 1 '^fsck ' "$OUT")${p:+: $p}"
  fi
}

# The FUSE steps: zbdfs mount (libfuse3 low-level API, /dev/fuse of the guest kernel's fuse module),
# standard tools (busybox) through the mount, zbdfs umount, and a second mount that checks what the
# first one left. When mount fails (FAIL) the three after it are SKIPped with the reason, so the
# failure is counted once; a mount left behind by a failed step is unmounted before `zones`
# (run_profile), so zones, fsck and the teardown still see a free device.
mounted() { grep -q "^[^ ]* $MNT fuse.zbdfs " /proc/mounts; }

# zbdfs mount DEV /mnt; PASS when the command returned (it returns once the mount is ready) and the
# kernel lists /mnt as a fuse.zbdfs mount whose root can be listed.
needs_mount() { echo zbdfs; }
skip_mount() { fs_unusable; }
step_mount() {
  rm -f "$MOUNT_UNUSABLE"
  if do_mount; then return 0; fi
  echo "zbdfs mount failed (counted at mount)" > "$MOUNT_UNUSABLE"
  return 1
}
do_mount() {
  grep -qw fuse /proc/filesystems || modprobe fuse || { echo "modprobe fuse failed"; return 1; }
  [ -c /dev/fuse ] || { echo "no /dev/fuse character device after loading fuse"; return 1; }
  mkdir -p "$MNT" || return 1
  timeout -s KILL "$STEP_TIMEOUT" "$ZBDFS" mount "$DEV" "$MNT" || { echo "zbdfs mount exited $?"; return 1; }
  mounted || { echo "zbdfs mount returned 0 but /proc/mounts has no fuse.zbdfs at $MNT"; return 1; }
  ls -la "$MNT" > /dev/null || return 1
  echo "mount: ready: $(grep " $MNT " /proc/mounts)"
}
detail_mount() { sed -n 's/^mount: //p' "$OUT" | tail -n 1 | grep . || grep -m 1 '^zbdfs: ' "$OUT" || grep -v '^\[' "$OUT" | tail -n 1; }

fuse_unusable() { fs_unusable || { [ -s "$MOUNT_UNUSABLE" ] && cat "$MOUNT_UNUSABLE"; }; }

# Busybox tools through the mount. busybox dd's oflag=direct opens with O_DIRECT and writes from a
# page-aligned (mmap'd) buffer, so bs=64k/1M writes are aligned direct writes; the plain dd goes
# through the page cache. Every file's sha256 and the tree's listing go to guest RAM for
# remount-verify.
needs_fuse_workload() { echo zbdfs; }
skip_fuse_workload() { fuse_unusable; }
step_fuse_workload() { timeout -s KILL "$STEP_TIMEOUT" sh "$0" fuse-workload-body; }
fuse_workload_body() {
  set -eo pipefail
  mounted || { echo "fuse-workload: $MNT is not a zbdfs mount (run the mount step first)"; exit 1; }
  rm -rf "$TREE"
  mkdir -p "$TREE/bin" "$TREE/deep/a/b/c" "$TREE/dd"
  # Files from the initramfs: busybox, the shared libraries the binaries load (glibc, libfuse3,
  # ...; a few MiB), this script, init, the modules tree.
  cp /bin/busybox "$TREE/bin/"
  cp -r /lib/x86_64-linux-gnu "$TREE/lib"
  cp /suite.sh /init "$TREE/deep/a/b/c/"
  cp -r /lib/modules "$TREE/deep/modules"
  # Buffered (page cache), unaligned size and aligned.
  dd if=/dev/urandom of="$TREE/dd/buffered-odd.bin" bs=1000 count=777 2>&1 | tail -n 1
  dd if=/dev/urandom of="$TREE/dd/buffered.bin" bs=64k count=64 conv=fsync 2>&1 | tail -n 1
  # O_DIRECT, aligned: 4 MiB in 1 MiB writes and 2 MiB in 64 KiB writes; then direct over part of
  # the buffered file (an aligned overwrite in place of page-cache data).
  dd if=/dev/urandom of="$TREE/dd/direct-1m.bin" bs=1M count=4 oflag=direct conv=fsync 2>&1 | tail -n 1
  dd if=/dev/urandom of="$TREE/dd/direct-64k.bin" bs=64k count=32 oflag=direct 2>&1 | tail -n 1
  dd if=/dev/urandom of="$TREE/dd/buffered.bin" bs=64k count=8 seek=16 oflag=direct conv=notrunc 2>&1 | tail -n 1
  # Read back through O_DIRECT must equal the buffered read.
  a=$(dd if="$TREE/dd/direct-1m.bin" bs=1M iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
  b=$(sha256sum < "$TREE/dd/direct-1m.bin" | cut -d' ' -f1)
  [ "$a" = "$b" ] || { echo "fuse-workload: direct read $a != buffered read $b"; exit 1; }
  # Renames, links, removal.
  mv "$TREE/deep/a/b/c/init" "$TREE/deep/init.moved"
  mv "$TREE/deep/a/b" "$TREE/deep/b.moved"
  ln "$TREE/dd/direct-64k.bin" "$TREE/dd/hardlink.bin"
  ln -s ../dd/buffered.bin "$TREE/bin/symlink.bin"
  ln -s /nowhere "$TREE/bin/dangling"
  cp "$TREE/bin/busybox" "$TREE/doomed"
  rm "$TREE/doomed"
  rm -r "$TREE/deep/modules/"*/kernel/drivers 2>/dev/null || true
  [ "$(stat -c %h "$TREE/dd/hardlink.bin")" = 2 ] || { echo "fuse-workload: hard link count $(stat -c %h "$TREE/dd/hardlink.bin") != 2"; exit 1; }
  [ "$(readlink "$TREE/bin/symlink.bin")" = ../dd/buffered.bin ] || { echo "fuse-workload: symlink target wrong"; exit 1; }
  cmp "$TREE/bin/symlink.bin" "$TREE/dd/buffered.bin"
  cmp "$TREE/bin/busybox" /bin/busybox
  sync
  # The reference: sha256 of every regular file (through the symlink too) and the listing.
  (cd "$MNT" && find w -type f | sort | xargs sha256sum && sha256sum w/bin/symlink.bin) > "$SUMS"
  (cd "$MNT" && find w | sort | while read -r f; do echo "$f $(stat -c '%F %s %h' "$f") $(readlink "$f" || true)"; done) > "$LISTING"
  echo "fuse-workload: PASS $(wc -l < "$SUMS") files hashed, $(find "$TREE" | wc -l) entries, $(du -sk "$TREE" | cut -f1) KiB; dd buffered and oflag=direct (aligned, 1 MiB and 64 KiB) written, iflag=direct read matches"
}
detail_fuse_workload() { sed -n 's/^fuse-workload: \(PASS \)\{0,1\}//p' "$OUT" | tail -n 1 | grep . || grep -v '^\[' "$OUT" | tail -n 1; }

# Live monitoring of the mount on a real device: `zbdfs sync` first, then df and zones answered by
# the mount (not the device), one plain top frame, a reclaim pass by hand; the mount's zone report
# is the same before and after the monitors (they write nothing), and a second sync has nothing left.
needs_monitor() { echo zbdfs; }
skip_monitor() { fuse_unusable; }
step_monitor() { timeout -s KILL "$STEP_TIMEOUT" sh "$0" monitor-body; }
monitor_body() {
  set -eo pipefail
  mounted || { echo "monitor: $MNT is not a zbdfs mount (run the mount step first)"; exit 1; }
  dev=$(awk -v m="$MNT" '$2 == m && $3 == "fuse.zbdfs" { print $1 }' /proc/mounts)
  # The workload's `sync` never reached the daemon (FUSE gets no syncfs): commit its cached data
  # now, or the periodic commit lands between the two reports.
  synced=$("$ZBDFS" sync "$MNT")
  before=$("$ZBDFS" zones "$MNT" --json)
  df=$("$ZBDFS" df "$dev" --json)
  # `case`, not `echo | grep -q`: under pipefail grep's early exit can fail the pipeline (SIGPIPE).
  case "$df" in *'"source" : "mount"'*) ;; *) echo "monitor: df of the mounted device was not answered by the mount"; exit 1 ;; esac
  top=$("$ZBDFS" top "$MNT" --count 1)
  case "$top" in *' | '*) ;; *) echo "monitor: top printed no zone grid"; exit 1 ;; esac
  after=$("$ZBDFS" zones "$MNT" --json)
  if [ "$before" != "$after" ]; then
    echo "$before" > /tmp/monitor-before.json; echo "$after" > /tmp/monitor-after.json
    diff /tmp/monitor-before.json /tmp/monitor-after.json | head -n 40 || true
    echo "monitor: the zone report changed while only monitors ran (diff above)"; exit 1
  fi
  again=$("$ZBDFS" sync "$MNT")
  case "$again" in *'already durable'*) ;; *) echo "monitor: a second zbdfs sync still had work: $again"; exit 1 ;; esac
  r=$("$ZBDFS" reclaim "$MNT" --json)
  zones=$(echo "$r" | sed -n 's/.*"zones_reclaimed" : \([0-9]*\).*/\1/p')
  used=$(echo "$df" | sed -n 's/.*"used_bytes" : \([0-9]*\).*/\1/p')
  wa=$(echo "$df" | sed -n 's/.*"write_amplification" : \([0-9.]*\).*/\1/p')
  echo "monitor: PASS zbdfs sync (${synced#*: }), live df from the mount (used $used B, write amp $wa), top grid, zone report unchanged by monitors; reclaim by hand reset $zones zones"
}
detail_monitor() { sed -n 's/^monitor: \(PASS \)\{0,1\}//p' "$OUT" | tail -n 1 | grep . || grep -v '^\[' "$OUT" | tail -n 1; }

# zbdfs umount /mnt: flushes, unmounts, waits until the daemon released the device.
needs_umount() { echo zbdfs; }
skip_umount() { fuse_unusable; }
step_umount() {
  timeout -s KILL "$STEP_TIMEOUT" "$ZBDFS" umount "$MNT" || { echo "zbdfs umount exited $?"; mnt_holders; return 1; }
  ! mounted || { echo "umount: $MNT is still mounted"; return 1; }
  echo "umount: $MNT unmounted, $DEV released"
}
detail_umount() { sed -n 's/^umount: //p' "$OUT" | tail -n 1 | grep . || grep -m 1 '^zbdfs: ' "$OUT" || grep -v '^\[' "$OUT" | tail -n 1; }

# What keeps $MNT busy when an unmount is refused: every process whose working directory, root or
# open file is inside it (busybox has no fuser -m).
mnt_holders() {
  for p in /proc/[0-9]*; do
    for l in "$p/cwd" "$p/root" "$p"/fd/*; do
      t=$(readlink "$l" 2>/dev/null) || continue
      case "$t" in "$MNT"|"$MNT"/*) echo "holder: pid ${p#/proc/} ($(cat "$p/comm" 2>/dev/null)) $l -> $t";; esac
    done
  done
}

# Mount again, `sha256sum -c` the workload's list and compare the listing, unmount.
needs_remount_verify() { echo zbdfs; }
skip_remount_verify() { fuse_unusable; }
step_remount_verify() {
  [ -s "$SUMS" ] || { echo "remount-verify: no checksum list (fuse-workload did not finish)"; return 1; }
  do_mount || return 1
  rc=0
  # busybox timeout leaves a watcher process behind for up to a second after the command ends, in
  # the directory it started in: it must not start inside $MNT, or it keeps the umount below busy.
  timeout -s KILL "$STEP_TIMEOUT" sh -c 'cd "$1" && sha256sum -c "$2"' sh "$MNT" "$SUMS" > /tmp/sumcheck.out 2>&1 || rc=1
  grep -v ': OK$' /tmp/sumcheck.out
  (cd "$MNT" && find w | sort | while read -r f; do echo "$f $(stat -c '%F %s %h' "$f") $(readlink "$f" || true)"; done) > /tmp/fuse.find.2
  if ! cmp -s "$LISTING" /tmp/fuse.find.2; then echo "remount-verify: the tree differs after remount:"; diff "$LISTING" /tmp/fuse.find.2 | head -n 20; rc=1; fi
  timeout -s KILL "$STEP_TIMEOUT" "$ZBDFS" umount "$MNT" || { echo "zbdfs umount exited $?"; mnt_holders; rc=1; }
  [ $rc -ne 0 ] || echo "remount-verify: PASS $(grep -c ': OK$' /tmp/sumcheck.out) files match their sha256, tree listing identical ($(wc -l < "$LISTING") entries)"
  return $rc
}
detail_remount_verify() { sed -n 's/^remount-verify: \(PASS \)\{0,1\}//p' "$OUT" | tail -n 1 | grep . || grep -m 1 'FAILED' "$OUT" || grep -v '^\[' "$OUT" | tail -n 1; }

# A mount a failed step left behind would keep the device busy for zones, fsck and the teardown.
leave_mount() {
  mounted || return 0
  echo "ZBDFS-GUEST: $MNT still mounted (a step failed, or no umount step ran); zbdfs umount $MNT"
  timeout -s KILL 60 "$ZBDFS" umount "$MNT" || umount -l "$MNT"
}

fs_unusable() { [ -s "$FS_UNUSABLE" ] && cat "$FS_UNUSABLE"; }

# Self-test steps (Emulation/selftest): they prove the harness reports what happens.
# Four KiB written at the write pointer of the last zone (always sequential): must pass.
step_selftest_at_wp() { dd_last_zone 0; }
# Four KiB written 32 KiB past the write pointer, expecting success: a deliberately broken step;
# the kernel refuses it with EIO, so it must show as FAIL.
step_selftest_off_wp() { dd_last_zone 8; }
# Crashes the kernel: the suite never finishes, the host must notice.
step_selftest_panic() { echo "selftest: crashing the kernel on purpose"; echo c > /proc/sysrq-trigger; sleep 5; }

detail_selftest_at_wp() { dd_detail; }
detail_selftest_off_wp() { dd_detail; }
dd_detail() { grep -m 1 '^dd: ' "$OUT" || grep 'records out' "$OUT" | tail -n 1; }

# dd_last_zone K: one 4 KiB write at the last zone's start + K x 4 KiB. busybox dd falls back to
# buffered IO when O_DIRECT refuses its (unaligned) buffer, and the page cache then writes whole
# 4 KiB pages: so 4 KiB units only, and fsync so a failed writeback still fails the command.
dd_last_zone() {
  q=/sys/block/${DEV#/dev/}/queue
  start=$(( ($(cat $q/nr_zones) - 1) * $(cat $q/chunk_sectors) / 8 ))
  echo "selftest: writing 4 KiB at 4 KiB block $((start + $1)) (last zone start + $1 blocks)"
  timeout -s KILL "$STEP_TIMEOUT" dd if=/dev/zero of="$DEV" bs=4096 count=1 seek=$((start + $1)) oflag=direct conv=notrunc,fsync 2>&1
}

# ---------------------------------------------------------------- runner
now() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# result PROFILE STEP RESULT RC T0 DETAIL
result() {
  echo "ZBDFS-RESULT profile=$1 step=$2 result=$3 rc=$4 seconds=$(elapsed "$5" "$(now)") detail=$6"
  [ "$3" != FAIL ] || FAILURES=$((FAILURES + 1))
}

# The block device whose sysfs describes $DEV.
sysdev() { echo "${SYSDEV:-${DEV#/dev/}}"; }

sysfs_summary() {
  q=/sys/block/$(sysdev)/queue
  echo "$1${SYSDEV:+ (sysfs of $SYSDEV)} $(cat $q/zoned) nr_zones=$(cat $q/nr_zones) zone_sectors=$(cat $q/chunk_sectors) lbs=$(cat $q/logical_block_size) max_open=$(cat $q/max_open_zones) max_active=$(cat $q/max_active_zones) max_sectors_kb=$(cat $q/max_sectors_kb) scheduler=$(sed 's/.*\[\(.*\)\].*/\1/' $q/scheduler)${SYSDEV:+ $(passthrough_limits "$q")}"
}
# What bounds one passthrough command (ZonedBackendNVMe reads the same attributes).
passthrough_limits() { echo "max_hw_sectors_kb=$(cat "$1"/max_hw_sectors_kb) max_segments=$(cat "$1"/max_segments) zone_append_max_bytes=$(cat "$1"/zone_append_max_bytes 2>/dev/null || echo ?)"; }

run_profile() {
  p=$1
  echo "ZBDFS-PROFILE $p: $(describe_"$p")"
  t0=$(now) DEV="" REMOVE="" SYSDEV="" BACKEND=""
  create_"$p" > "$OUT" 2>&1
  rc=$?
  cat "$OUT"
  if [ $rc -ne 0 ] || [ -z "$DEV" ]; then
    result "$p" setup FAIL "$rc" "$t0" "could not create the device: $(tail -n 1 "$OUT")"
    for s in $STEPS; do result "$p" "$s" SKIP - "$(now)" "device setup failed"; done
    t0=$(now)
    if [ -z "$REMOVE" ] || sh -c "$REMOVE" > "$OUT" 2>&1; then
      result "$p" teardown PASS 0 "$t0" "${REMOVE:-nothing to undo}"
    else
      result "$p" teardown FAIL 1 "$t0" "$REMOVE: $(tail -n 1 "$OUT")"
    fi
    return
  fi
  result "$p" setup PASS 0 "$t0" "$(sysfs_summary "$DEV")"
  rm -f "$FS_UNUSABLE" "$MOUNT_UNUSABLE" "$SUMS" "$LISTING"
  for s in $STEPS; do
    f=$(echo "$s" | tr '-' '_')
    case "$s" in zones|fsck) leave_mount ;; esac
    t0=$(now)
    if command -v skip_"$f" >/dev/null && why=$(skip_"$f") && [ -n "$why" ]; then
      result "$p" "$s" SKIP - "$t0" "$why"
      continue
    fi
    echo "ZBDFS-STEP $p $s: start"
    rm -f "$SKIP_FILE"
    # The step's output goes to the console as it comes and into $OUT for the detail.
    { step_"$f"; echo $? > /tmp/step.rc; } 2>&1 | tee "$OUT"
    rc=$(cat /tmp/step.rc)
    if command -v detail_"$f" >/dev/null; then detail=$(detail_"$f"); else detail=$(grep -v '^\[' "$OUT" | tail -n 1); fi
    [ "$rc" -eq 137 ] && detail="killed after ${STEP_TIMEOUT}s; $detail"
    if [ "$rc" -eq 0 ]; then
      result "$p" "$s" PASS 0 "$t0" "$detail"
    elif [ -s "$SKIP_FILE" ]; then
      result "$p" "$s" SKIP "$rc" "$t0" "$(cat "$SKIP_FILE")"
    else
      result "$p" "$s" FAIL "$rc" "$t0" "$detail"
    fi
  done
  leave_mount
  t0=$(now)
  if sh -c "$REMOVE" > "$OUT" 2>&1; then
    result "$p" teardown PASS 0 "$t0" "$REMOVE"
  else
    result "$p" teardown FAIL 1 "$t0" "$REMOVE: $(tail -n 1 "$OUT")"
  fi
}

case "${1:-}" in
  profiles) echo "$PROFILES_ALL" ;;
  all-profiles) sed -n 's/^create_\([a-z0-9_]*\)().*/\1/p' "$0" ;;
  steps) sed -n 's/^step_\([a-z0-9_]*\)().*/\1/p' "$0" | tr '_' '-' ;;
  default-steps) echo "$STEPS_DEFAULT" ;;
  needs) f=$(echo "$2" | tr '-' '_'); if command -v needs_"$f" >/dev/null; then needs_"$f"; fi ;;
  describe) describe_"$2" ;;
  fuse-workload-body) fuse_workload_body ;;
  monitor-body) monitor_body ;;
  run)
    PROFILES=$2 STEPS=$3 FAILURES=0
    for p in $PROFILES; do run_profile "$p"; done
    echo "ZBDFS-SUITE-DONE failures=$FAILURES"
    ;;
  *) echo "usage: suite.sh run \"PROFILES\" \"STEPS\" | profiles | all-profiles | steps | default-steps | needs STEP | describe PROFILE" >&2; exit 2 ;;
esac
