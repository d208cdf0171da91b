#!/usr/bin/env bash
# Makes both QEMU releases of the matrix available, printing nothing but errors:
#   - Debian bookworm's QEMU 7.2 (qemu-system-x86, qemu-system-arm, ovmf) installed with
#     apt when missing;
#   - bookworm-backports' QEMU 10.0.2 fetched with `apt-get download` through the
#     project's private apt state (vmtest/apt.sh) and unpacked with `dpkg-deb -x` into
#     $CACHE/qemu-$QEMU_NEW (kept between runs, keyed by version). The system QEMU stays
#     as it is; the unpacked one runs with QEMU_MODULE_DIR and -L pointing into the cache.
set -euo pipefail
CACHE=${IOVA_VMTEST_CACHE:-$HOME/.cache/iova-vmtest}
QEMU_NEW=${IOVA_QEMU_NEW:-10.0.2}
mkdir -p "$CACHE"
export DEBIAN_FRONTEND=noninteractive
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
[ -e /usr/share/OVMF/OVMF_CODE_4M.fd ] || need+=(ovmf)
if [ ${#need[@]} -gt 0 ]; then
  apt-get install -y -q "${need[@]}" >&2 || { apt-get update -q >&2 && apt-get install -y -q "${need[@]}" >&2; }
fi
dest=$CACHE/qemu-$QEMU_NEW
if [ ! -e "$dest/.complete" ]; then
  # shellcheck source=vmtest/apt.sh
  . "$(dirname "$0")/apt.sh"
  pkgs=(qemu-system-x86 qemu-system-arm qemu-system-common qemu-system-data qemu-system-gui qemu-system-modules-opengl)
  ver=$(apt_p apt-cache madison qemu-system-x86 | awk -v v="$QEMU_NEW" '$3 ~ ("^1:" v "[+~-]") {print $3; exit}')
  if [ -z "$ver" ]; then
    apt_p apt-get -q update >&2
    ver=$(apt_p apt-cache madison qemu-system-x86 | awk -v v="$QEMU_NEW" '$3 ~ ("^1:" v "[+~-]") {print $3; exit}')
  fi
  [ -n "$ver" ] || { echo "qemu-fetch: QEMU $QEMU_NEW is not in bookworm-backports" >&2; exit 1; }
  dl=$CACHE/qemu-$QEMU_NEW.debs
  mkdir -p "$dl"
  (cd "$dl" && apt_p apt-get -q download "${pkgs[@]/%/=$ver}" >&2)
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  for d in "$dl"/*.deb; do dpkg-deb -x "$d" "$dest.tmp"; done
  rm -rf "$dest" && mv "$dest.tmp" "$dest" && touch "$dest/.complete"
fi
echo "$dest"
