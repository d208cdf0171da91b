#!/bin/bash
# Build the current guest kernel from Debian unstable's newest kernel source package.
#   vmtest/build-kernel-current.sh CACHE [LOGFILE]
# The newest `linux-source-X.Y` in Debian unstable (7.x; the private apt state of
# vmtest/apt.sh pins unstable so that only linux-source comes from it), `make allnoconfig`
# with vmtest/kernel-current.config as the only options (CONFIG_IOMMUFD,
# CONFIG_IOMMUFD_VFIO_CONTAINER, virtio-iommu, VT-d; everything built in), `make vmlinux`
# (QEMU boots it through PVH). A copy of vmtest/build-kernel.sh with another package and
# fragment, kept separate so that editing it does not change the cache key (and force a
# rebuild) of the 6.12 iommufd kernel.
#
# Leaves CACHE/kernel-current/KEY/{kernel,config,version,modules/,load-order} (the layout
# of vmtest/kernel.sh; no modules) and prints that directory. KEY = source package
# version + a hash of the config fragment and this script, so a warm run only looks the
# version up. The unpacked source stays in CACHE/kernel-iommufd/src-VERSION for rebuilds.
# CACHE is shared by every work tree (see vmtest/run): a lock on CACHE/kernel-current/lock
# makes a concurrent run wait for the build instead of building the same tree twice.
# Build dependencies (gcc, make, bc, bison, flex, libelf-dev) are installed when missing.
# Exit status non-zero on any failure, with the reason on stderr and the build log in
# LOGFILE (default CACHE/kernel-current/build.log).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=$(realpath -m "$1")
TOP=$CACHE/kernel-current
LOG=${2:-$TOP/build.log}
FRAG=$HERE/kernel-current.config
mkdir -p "$TOP"
exec 9>"$TOP/lock"
flock 9
. "$HERE/apt.sh"
PKG=$(apt_p apt-cache pkgnames linux-source- | grep -E '^linux-source-[0-9]+\.[0-9]+$' | sort -V | tail -1 || true)
[ -n "$PKG" ] || { echo "build-kernel: no linux-source-X.Y package in the Debian archive" >&2; exit 1; }

VER=$(apt_p apt-cache policy "$PKG" | sed -n 's/^ *Candidate: *//p')
if [ -z "$VER" ] || [ "$VER" = "(none)" ]; then
  echo "build-kernel: no $PKG package in the Debian archive" >&2; exit 1
fi
HASH=$(cat "$FRAG" "$0" | sha256sum | cut -c1-12)
KEY=$VER-$HASH
OUT=$TOP/$KEY
[ -e "$OUT/kernel" ] && { echo "$OUT"; exit 0; }

# ---- build dependencies
need=()
for t in gcc:gcc make:make bc:bc bison:bison flex:flex; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
[ -e /usr/include/libelf.h ] || [ -e /usr/include/gelf.h ] || need+=(libelf-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "build-kernel: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need[@]}" >&2 || { apt-get update -q >&2 && apt-get install -y -q "${need[@]}" >&2; }
fi

# ---- source (Debian's linux-source ships the tree as /usr/src/linux-source-X.tar.xz)
SRC=$TOP/src-$VER
if [ ! -e "$SRC/.unpacked" ]; then
  echo "build-kernel: downloading $PKG $VER" >&2
  rm -rf "$SRC" "$TOP/dl"; mkdir -p "$TOP/dl" "$SRC"
  (cd "$TOP/dl" && apt_p apt-get -q download "$PKG=$VER" >&2)
  echo "build-kernel: unpacking" >&2
  dpkg-deb --fsys-tarfile "$TOP"/dl/*.deb | tar -xO "./usr/src/$PKG.tar.xz" | xz -dc \
    | tar -x -C "$SRC" --strip-components=1
  rm -rf "$TOP/dl"
  [ -e "$SRC/Makefile" ] || { echo "build-kernel: $PKG $VER has no kernel tree" >&2; exit 1; }
  touch "$SRC/.unpacked"
fi

# ---- configure and build (out of tree, so the source stays clean)
B=$TOP/build-$KEY
rm -rf "$B"; mkdir -p "$B"
grep -E '^CONFIG_' "$FRAG" > "$B/allno.config"
mk() { make -C "$SRC" O="$B" ARCH=x86_64 "$@"; }
echo "build-kernel: configuring $PKG $VER (log: $LOG)" >&2
t0=$(date +%s)
if ! mk KCONFIG_ALLCONFIG="$B/allno.config" allnoconfig > "$LOG" 2>&1; then
  tail -20 "$LOG" >&2; echo "build-kernel: allnoconfig failed" >&2; exit 1
fi
# Every wanted option must have survived (an unmet dependency drops it silently).
missing=0
while IFS= read -r line; do
  case $line in
    CONFIG_*=*) grep -qx "$line" "$B/.config" || { echo "build-kernel: .config lacks $line" >&2; missing=1; } ;;
    "# CONFIG_"*" is not set") sym=${line#\# }; sym=${sym%% *}
      grep -q "^$sym=" "$B/.config" && { echo "build-kernel: .config sets $sym" >&2; missing=1; } ;;
  esac
done < "$FRAG"
[ $missing = 0 ] || exit 1
echo "build-kernel: building vmlinux with make -j$(nproc)" >&2
if ! mk -j"$(nproc)" vmlinux >> "$LOG" 2>&1; then
  tail -30 "$LOG" >&2; echo "build-kernel: make vmlinux failed (log: $LOG)" >&2; exit 1
fi
echo "build-kernel: built in $(( $(date +%s) - t0 )) s" >&2

T=$TOP/tmp-$KEY
rm -rf "$T"; mkdir -p "$T/modules"
cp "$B/vmlinux" "$T/kernel"
cp "$B/.config" "$T/config"
make -s -C "$SRC" O="$B" ARCH=x86_64 kernelrelease > "$T/version"
: > "$T/load-order"
rm -rf "$OUT"; mv "$T" "$OUT"; rm -rf "$B"
echo "$OUT"
