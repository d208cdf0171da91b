#!/bin/bash
# Fetch what the pseries (sPAPR TCE) boot needs into the vmtest cache, never installing
# anything on the host: Debian's ppc64el 6.12 kernel from bookworm-backports (its VFIO
# sPAPR modules) and ppc64el busybox-static, through the private apt state of
# vmtest/apt.sh with APT_ARCH=ppc64el (the host's dpkg architecture list stays untouched).
#   vmtest/pseries-kernel.sh CACHE [FLAVOUR]
# FLAVOUR is Debian's ppc64el kernel flavour: `powerpc64le` (the default; 4 KiB pages)
# or `powerpc64le-64k` (64 KiB pages, CONFIG_PPC_64K_PAGES).
# Leaves CACHE/kernel-pseries-6.12/PACKAGE-VERSION/ (powerpc64le) or
# CACHE/kernel-pseries-6.12-64k/PACKAGE-VERSION/ (powerpc64le-64k) holding
# {vmlinux,version,busybox,modules/*.ko,load-order} and prints the dir. Each flavour has its own dir and lock, so they never overwrite each other; a
# lock keeps concurrent runs from fetching one twice.
set -euo pipefail
CACHE=$(realpath -m "$1")
FLAVOUR=${2:-powerpc64le}
case $FLAVOUR in
  powerpc64le) NAME=kernel-pseries-6.12 ;;
  powerpc64le-64k) NAME=kernel-pseries-6.12-64k ;;
  *) echo "unknown ppc64el kernel flavour $FLAVOUR (powerpc64le or powerpc64le-64k)" >&2; exit 1 ;;
esac
mkdir -p "$CACHE"
exec 9>"$CACHE/$NAME.lock"
flock 9
APT_ARCH=ppc64el
. "$(dirname "$0")/apt.sh"
re="^linux-image-6\\.12\\.[0-9]+\\+[a-z0-9]+-${FLAVOUR}\$"
PKG=$(apt_p apt-cache pkgnames linux-image-6 | grep -E "$re" | sort -V | tail -1 || true)
[ -n "$PKG" ] || { echo "no ppc64el package matches $re" >&2; exit 1; }
# Keyed by the newest package version Debian serves, so a warm cache boots the release a
# new machine would (the answers of sPAPR TCE changed within 6.12.y).
PVER=$(apt_p apt-cache madison "$PKG" | awk -F'|' 'NR==1 {gsub(/ /, "", $2); print $2}')
OUT=$CACHE/$NAME/$PKG-${PVER//[:~]/_}
[ -e "$OUT/vmlinux" ] && [ -e "$OUT/busybox" ] && { echo "$OUT"; exit 0; }
echo "vmtest: downloading $PKG and busybox-static (ppc64el)" >&2
T=$CACHE/tmp-$NAME
rm -rf "$T"; mkdir -p "$T/dl"
(cd "$T/dl" && apt_p apt-get -q download "$PKG" busybox-static >&2)
dpkg-deb -x "$T"/dl/linux-image-*.deb "$T/x"
dpkg-deb -x "$T"/dl/busybox-static_*.deb "$T/bb"
KV=$(ls "$T/x/lib/modules")
depmod -b "$T/x" "$KV"   # the .deb ships no modules.dep
MD=$T/x/lib/modules/$KV
mkdir -p "$T/out/modules"
: > "$T/out/load-order"
for m in vfio_iommu_spapr_tce vfio-pci; do
  line=$(grep -E "/$m\.ko(\.xz|\.zst)?:" "$MD/modules.dep" || true)
  [ -n "$line" ] || continue
  mod=${line%%:*}; deps=${line#*:}
  list=$(for d in $deps; do echo "$d"; done | tac; echo "$mod")
  for f in $list; do
    name=$(basename "$f"); name=${name%.xz}; name=${name%.zst}
    grep -qx "$name" "$T/out/load-order" && continue
    case $f in *.xz) xz -dc "$MD/$f" > "$T/out/modules/$name" ;; *.zst) zstd -qdc "$MD/$f" > "$T/out/modules/$name" ;; *) cp "$MD/$f" "$T/out/modules/$name" ;; esac
    echo "$name" >> "$T/out/load-order"
  done
done
cp "$T/x/boot/vmlinux-$KV" "$T/out/vmlinux"
cp "$T/bb/bin/busybox" "$T/out/busybox"
echo "$KV" > "$T/out/version"
mkdir -p "$(dirname "$OUT")"; rm -rf "$OUT"; mv "$T/out" "$OUT"; rm -rf "$T"
echo "$OUT"
