#!/usr/bin/env bash
# libvirt's own test suite as the matrix: every x86_64 and aarch64 domain of libvirt's
# tests/qemuxmlconfdata that has the command line libvirt generates for it, checked on
# the XML path and on that command line (vmtest/libvirt-suite.py says how and what
# counts as a failure).
#
# The test data is libvirt's, fetched at test time and never copied into this
# repository: the Debian source package's upstream tarball (libvirt 11.3.0, Debian 13's
# release), downloaded with apt-get through a private apt state that has deb-src entries
# (the host's apt state is not touched), and unpacked into the cache. Then the x86_64 and
# aarch64 command lines, stripped of what needs host resources, run in the real QEMU 10.0.2 and
# their memory maps are compared with the model (vmtest/libvirt-suite-qemu.py). Cache:
#   $CACHE/libvirt-src/VERSION/tests/{qemuxmlconfdata,qemucapabilitiesdata}
# CACHE is IOVA_VMTEST_CACHE or ~/.cache/iova-vmtest. Prints the suite's counts; exits
# non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${IOVA_VMTEST_CACHE:-${HOME:-/root}/.cache/iova-vmtest}
mkdir -p "$CACHE"
CACHE=$(realpath "$CACHE")
VERSION=11.3.0
SUITE=trixie
dest=$CACHE/libvirt-src/$VERSION
if [ ! -d "$dest/tests/qemuxmlconfdata" ]; then
  A=$CACHE/apt-src
  mkdir -p "$A/state/lists/partial" "$A/cache/archives/partial" "$A/etc/sources.list.d" "$A/etc/preferences.d"
  touch "$A/status" "$A/etc/sources.list"
  cat > "$A/etc/sources.list.d/src.sources" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt_src() {
    "$@" -o Dir::State="$A/state" -o Dir::State::status="$A/status" -o Dir::Cache="$A/cache" \
      -o Dir::Etc::sourcelist="$A/etc/sources.list" -o Dir::Etc::sourceparts="$A/etc/sources.list.d" \
      -o Dir::Etc::preferencesparts="$A/etc/preferences.d"
  }
  apt_src apt-get -q update >&2
  have=$(apt_src apt-cache showsrc libvirt | awk '/^Version:/ && !v {v = $2} END {print v}')
  case $have in
    "$VERSION"-*) ;;
    *) echo "libvirt-suite: Debian $SUITE's libvirt source is '$have', not $VERSION" >&2; exit 1 ;;
  esac
  dl=$(mktemp -d)
  # apt checks each file it downloads against the hashes of the signed Sources index.
  # The upstream tarball is all that is needed (the mirror may lack the .dsc or the
  # Debian tarball of a superseded revision; their absence fails the command).
  (cd "$dl" && apt_src apt-get -q source --download-only "libvirt=$have" >&2) || true
  tarball=$dl/libvirt_$VERSION.orig.tar.xz
  if [ ! -s "$tarball" ]; then
    echo "libvirt-suite: could not download libvirt_$VERSION.orig.tar.xz (libvirt $have from Debian $SUITE)" >&2
    rm -rf "$dl"; exit 1
  fi
  tmp=$dest.tmp
  rm -rf "$tmp"; mkdir -p "$tmp"
  tar -xJf "$tarball" -C "$tmp" --strip-components=1 \
    "libvirt-$VERSION/tests/qemuxmlconfdata" "libvirt-$VERSION/tests/qemucapabilitiesdata"
  rm -rf "$dl" "$dest"; mv "$tmp" "$dest"
  echo "libvirt-suite: libvirt $VERSION's test data unpacked into $dest" >&2
fi
cargo build -q --locked -p iovactl
rc=0
python3 vmtest/libvirt-suite.py "$dest/tests" "$PWD/target/debug/iovactl" "$PWD/target/libvirt-suite" "$@" || rc=1
# The same command lines, made runnable here, in the real QEMU 10.0.2 (vmtest/qemu-fetch.sh
# unpacks it into the cache): its memory map against the model's, on at least 100 domains.
new=$(vmtest/qemu-fetch.sh 10.0.2)
python3 vmtest/libvirt-suite-qemu.py "$dest/tests" "$PWD/target/debug/iovactl" \
  "$new/bin/qemu-system-x86_64" --min 100 -- \
  --sysfs-root examples/hosts/amd-epyc --device 0000:41:00.0 || rc=1
exit $rc
