# Shared by Emulation/run-guest and Emulation/run-suite (sourced, not run): the guest kernel and
# the pieces of an initramfs. Callers set `set -euo pipefail` and define die().
#
# Invariants:
# - Nothing is installed on the host: Debian's kernel package is downloaded with `apt-get download`
#   and unpacked under Emulation/cache/ (git-ignored), once; later runs reuse it.
# - The kernel version is pinned (KVER); ZBDFS_GUEST_KVER overrides it. When the pinned package is
#   gone from the archive (Debian drops old kernel ABIs at point releases) the one that
#   linux-image-amd64 depends on is used instead, with a warning.

KVER="${ZBDFS_GUEST_KVER:-6.1.0-56-amd64}"
EMU_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO="$(cd "$EMU_DIR/.." && pwd)"
CACHE="$EMU_DIR/cache"
WORKROOT="$EMU_DIR/work"

# Host tools every guest run needs; tools/setup --guest installs them.
need_guest_tools() {
  local missing=() t
  for t in qemu-system-x86_64 busybox cpio depmod modprobe xz dpkg-deb apt-get apt-cache ldd timeout; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}; run: tools/setup --guest"
  # Not `busybox --list | grep -q`: under pipefail grep's early exit can kill busybox with SIGPIPE
  # and fail the check on a busybox that has modprobe (CI saw exactly that).
  grep -qx modprobe <<<"$(busybox --list)" || die "busybox lacks modprobe; install busybox-static"
  # A dynamic busybox would need its libraries in the initramfs.
  if ldd "$(command -v busybox)" >/dev/null 2>&1; then die "busybox is not static; install busybox-static"; fi
}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Makes sure apt knows the kernel package (a clean machine or container may have no package lists),
# falling back to the current bookworm kernel when the pinned one has left the archive (unless
# ZBDFS_GUEST_KVER asked for that exact one).
resolve_kernel_package() {
  if ! apt-cache show "linux-image-$KVER" >/dev/null 2>&1; then
    echo "guest: apt does not know linux-image-$KVER; running apt-get update" >&2
    as_root timeout 300 apt-get update -qq >/dev/null || die "apt-get update failed"
  fi
  apt-cache show "linux-image-$KVER" >/dev/null 2>&1 && return 0
  [ -z "${ZBDFS_GUEST_KVER:-}" ] || die "linux-image-$KVER (ZBDFS_GUEST_KVER) is not in the archive"
  local current
  current=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: linux-image-\([0-9].*-amd64\)$/\1/p' | head -1)
  [ -n "$current" ] || die "neither linux-image-$KVER nor linux-image-amd64 is known to apt"
  echo "guest: WARNING: linux-image-$KVER has left the archive; using linux-image-$current (pin with ZBDFS_GUEST_KVER)" >&2
  KVER="$current"
}

# Sets KROOT (the unpacked package, modules indexed) and VMLINUX (the ELF kernel, for a PVH boot).
prepare_kernel() {
  local deb
  if [ ! -s "$CACHE/linux-$KVER/vmlinux" ] && ! ls "$CACHE"/linux-image-"$KVER"_*.deb >/dev/null 2>&1; then
    resolve_kernel_package
  fi
  KROOT="$CACHE/linux-$KVER/root"
  VMLINUX="$CACHE/linux-$KVER/vmlinux"
  [ -s "$VMLINUX" ] && [ -f "$KROOT/lib/modules/$KVER/modules.dep" ] && return 0
  mkdir -p "$CACHE/linux-$KVER"
  deb=$(ls "$CACHE"/linux-image-"$KVER"_*.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    echo "guest: downloading linux-image-$KVER (~70 MB, once, into $CACHE)" >&2
    # As root apt warns that it cannot drop privileges to write into our folder; harmless.
    (cd "$CACHE" && timeout 600 apt-get download -q "linux-image-$KVER" 2>&1 | { grep -v "unsandboxed as root" || true; } >&2) || true
    deb=$(ls "$CACHE"/linux-image-"$KVER"_*.deb 2>/dev/null | head -1 || true)
    [ -n "$deb" ] || die "apt-get download linux-image-$KVER failed"
  fi
  echo "guest: unpacking $(basename "$deb") (not installed) and extracting vmlinux" >&2
  rm -rf "$KROOT" && mkdir -p "$KROOT"
  dpkg-deb -x "$deb" "$KROOT"
  depmod -b "$KROOT" "$KVER"
  extract_vmlinux "$KROOT/boot/vmlinuz-$KVER" "$VMLINUX"
}

# Tries every xz stream start in the bzImage until one decompresses to an ELF file.
# xz stops after one stream and closes the pipe, so `tail` may die of SIGPIPE: that is expected
# and must not fail the pipeline under pipefail (it used to, depending on timing).
extract_vmlinux() {
  local image="$1" out="$2" off
  for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$image" | cut -d: -f1); do
    if { tail -c +"$((off + 1))" "$image" || true; } | xz -dc --single-stream > "$out.tmp" 2>/dev/null \
       && [ "$(head -c 4 "$out.tmp" | od -An -c | tr -d ' ')" = "177ELF" ]; then
      mv "$out.tmp" "$out"
      return 0
    fi
  done
  rm -f "$out.tmp"
  die "no xz-compressed ELF found in $image"
}

# Builds a SwiftPM product as a static-stdlib release binary; prints its path.
build_static_product() {
  echo "guest: building $1 (release, static Swift stdlib)" >&2
  (cd "$REPO" && timeout 1200 swift build -c release --static-swift-stdlib --product "$1" >&2)
  echo "$REPO/.build/release/$1"
}

# Copies a binary to ROOT/test/, without its symbol tables when `strip` is there (the initramfs
# lives in guest RAM, and the kernel unpacks it faster when it is smaller).
copy_test_binary() {
  mkdir -p "$ROOT/test"
  if command -v strip >/dev/null && strip -o "$ROOT/test/$(basename "$1")" "$1" 2>/dev/null; then return 0; fi
  cp "$1" "$ROOT/test/$(basename "$1")"
}

# Copies a host file to the same path under the initramfs root ROOT.
copy_in() { mkdir -p "$ROOT$(dirname "$1")" && cp -L "$1" "$ROOT$1"; }

# Shared libraries a binary needs, as ldd lists them (ldd exits non-zero on static files).
copy_libraries() {
  local lib
  for lib in $( (ldd "$1" 2>/dev/null || true) | grep -o '/[^ )]*'); do
    copy_in "$lib"
  done
}

# Kernel modules with their dependencies, and the module index, into ROOT.
copy_modules() {
  local mod ko rel
  mkdir -p "$ROOT/lib/modules/$KVER"
  cp "$KROOT/lib/modules/$KVER"/modules.* "$ROOT/lib/modules/$KVER/"
  for mod in "$@"; do
    for ko in $(modprobe --show-depends -d "$KROOT" -S "$KVER" "$mod" | awk '$1 == "insmod" { print $2 }'); do
      rel="${ko#"$KROOT"}"
      mkdir -p "$ROOT$(dirname "$rel")"
      cp "$ko" "$ROOT$rel"
    done
  done
}

# busybox as /bin/busybox; the init script installs its applets.
copy_busybox() { mkdir -p "$ROOT/bin" && cp "$(command -v busybox)" "$ROOT/bin/busybox"; }

# Packs ROOT uncompressed (the kernel unpacks it faster than it would decompress it under TCG).
pack_initramfs() { (cd "$ROOT" && find . | cpio -o -H newc --quiet) > "$1"; }
