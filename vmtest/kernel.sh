#!/bin/bash
# Fetch a Debian kernel into the vmtest cache (never installed on the host).
#   vmtest/kernel.sh SERIES CACHE      SERIES = 6.1 | 6.12 | sid
# sid is Debian unstable's newest prebuilt amd64 kernel (7.x when written): unlike the
# kernel vmtest/build-kernel-current.sh builds (iommufd's compat container), it has the
# real type1 container, so the type1 rules of 6.18 and later run on a real kernel.
# Leaves CACHE/kernel-SERIES/PACKAGE-VERSION/{kernel,config,version,modules/*.ko,load-order,wanted}
# and prints the dir (keyed by the newest package version Debian serves). `wanted` records the module list below: an entry fetched with another list
# (an older version of this script) is fetched again.
# CACHE is shared by every work tree (see vmtest/run); a lock on CACHE/kernel-SERIES.lock
# keeps two concurrent runs from fetching the same series at once.
# Package indexes come from the private apt state of vmtest/apt.sh (the host's apt state
# stays untouched), with the backports suite (the 6.12 kernel lives there).
set -euo pipefail
SERIES=$1; CACHE=$(realpath -m "$2")
# virtio-iommu: the top-of-space boots (vmtest/run, IOMMU `virtio`); absent from 6.1.
WANTED="vfio_iommu_type1 vfio-pci iommufd virtio-iommu"
mkdir -p "$CACHE"
exec 9>"$CACHE/kernel-$SERIES.lock"
flock 9
. "$(dirname "$0")/apt.sh"
case $SERIES in
  6.1) re='^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' ;;
  6.12) re='^linux-image-6\.12\.[0-9]+\+[a-z0-9]+-amd64-unsigned$' ;;
  sid) re='^linux-image-[0-9]+\.[0-9]+\.[0-9]+\+deb[0-9]+-amd64$' ;;
  *) echo "unknown kernel series $SERIES" >&2; exit 2 ;;
esac
PKG=$(apt_p apt-cache pkgnames linux-image- | grep -E "$re" | sort -V | tail -1 || true)
[ -n "$PKG" ] || { echo "no package matches $re" >&2; exit 1; }
# The newest package Debian serves (the private indexes are at most a week old) keys the
# entry: a warm cache boots the same release a new machine would, never an older one
# that stayed behind.
PVER=$(apt_p apt-cache madison "$PKG" | awk -F'|' 'NR==1 {gsub(/ /, "", $2); print $2}')
OUT=$CACHE/kernel-$SERIES/$PKG-${PVER//[:~]/_}
fresh() { [ -e "$OUT/kernel" ] && [ "$(cat "$OUT/wanted" 2>/dev/null)" = "$WANTED" ]; }
fresh && { echo "$OUT"; exit 0; }
T=$CACHE/tmp-$SERIES
rm -rf "$T"; mkdir -p "$T/dl"
if [ "$SERIES" = sid ]; then
  # unstable is pinned below every other suite (vmtest/apt.sh), so name the version;
  # its image package is empty and depends on base (config), binary (vmlinuz) and
  # modules packages of the same name and version.
  VER=$(apt_p apt-cache madison "$PKG" | awk -F'|' 'NR==1 {gsub(/ /, "", $2); print $2}')
  [ -n "$VER" ] || { echo "no version of $PKG in the archive" >&2; exit 1; }
  rel=${PKG#linux-image-}
  echo "vmtest: downloading $PKG $VER (base, binary, modules)" >&2
  (cd "$T/dl" && apt_p apt-get -q download "linux-base-$rel=$VER" "linux-binary-$rel=$VER" "linux-modules-$rel=$VER" >&2)
else
  echo "vmtest: downloading $PKG" >&2
  (cd "$T/dl" && apt_p apt-get -q download "$PKG" >&2)
fi
for d in "$T"/dl/*.deb; do dpkg-deb -x "$d" "$T/x"; done
# Older packages install under /lib/modules and /boot; the newer ones under /usr/lib/modules/KV.
ML=$T/x/lib/modules; [ -d "$ML" ] || ML=$T/x/usr/lib/modules
KV=$(ls "$ML")
MD=$ML/$KV
depmod -b "${ML%/lib/modules}" "$KV"   # the .deb ships no modules.dep
mkdir -p "$T/out/modules"
# Wanted modules (absent ones are built in). Deps come from modules.dep, which lists a
# module's dependencies so that loading them from last to first works.
: > "$T/out/load-order"
for m in $WANTED; do
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
if [ -e "$T/x/boot/config-$KV" ]; then cfg=$T/x/boot/config-$KV vmlinuz=$T/x/boot/vmlinuz-$KV
else cfg=$MD/config vmlinuz=$MD/vmlinuz; fi
cp "$cfg" "$T/out/config"
echo "$KV" > "$T/out/version"
echo "$WANTED" > "$T/out/wanted"
# The uncompressed ELF boots through QEMU's PVH entry (no in-guest decompression under
# TCG, ~2 s saved); kernels not compressed with xz boot as the bzImage.
cp "$vmlinuz" "$T/out/kernel"
python3 -c 'import lzma,sys; d=open(sys.argv[1],"rb").read(); i=d.find(b"\xfd7zXZ\x00"); i>=0 or sys.exit(1); open(sys.argv[2],"wb").write(lzma.LZMADecompressor().decompress(d[i:]))' \
  "$vmlinuz" "$T/out/vmlinux" && mv "$T/out/vmlinux" "$T/out/kernel" || rm -f "$T/out/vmlinux"
mkdir -p "$(dirname "$OUT")"; rm -rf "$OUT"; mv "$T/out" "$OUT"; rm -rf "$T"
echo "$OUT"
