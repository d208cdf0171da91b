#!/usr/bin/env bash
# The guest-layout model against the real QEMU, on two releases: Debian bookworm's QEMU
# 7.2 and bookworm-backports' QEMU 10.0.2, both unpacked into the cache by
# vmtest/qemu-fetch.sh (nothing is installed on the host). vmtest/qemu-matrix.py starts
# every command line of the matrix paused, reads QEMU's flat memory map over QMP and
# compares the sections VFIO maps with `iovactl check --json -- <the same argv>`.
# Prints `qemu-matrix: N passed, M failed`; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
command -v python3 >/dev/null || apt-get install -y -q python3 >&2
old=$(vmtest/qemu-fetch.sh 7.2)
new=$(vmtest/qemu-fetch.sh 10.0.2)
echo "qemu-matrix: QEMU 7.2 from $old, QEMU 10.0.2 from $new" >&2
cargo build -q --locked -p iovactl
iovactl=$PWD/target/debug/iovactl
"$iovactl" --version >/dev/null
IOVA_OVMF_DIR=$old/usr/share/OVMF exec python3 vmtest/qemu-matrix.py "$iovactl" \
  --sysfs-root examples/hosts/amd-epyc --device 0000:41:00.0 -- \
  "7.2=$old/bin/qemu-system-x86_64" \
  "10.0=$new/bin/qemu-system-x86_64"
