#!/usr/bin/env bash
# The guest-layout model against the real QEMU, on two releases: Debian bookworm's QEMU
# 7.2 (installed with apt when missing) and bookworm-backports' QEMU 10.0.2 (unpacked
# into the cache by vmtest/qemu-fetch.sh). vmtest/qemu-matrix.py starts every command
# line of the matrix paused, reads QEMU's flat memory map over QMP and compares the
# sections VFIO maps with `iovactl check --json -- <the same argv>`.
# Prints `qemu-matrix: N passed, M failed`; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
command -v python3 >/dev/null || apt-get install -y -q python3 >&2
new=$(vmtest/qemu-fetch.sh)
cargo build -q --locked -p iovactl
iovactl=$PWD/target/debug/iovactl
"$iovactl" --version >/dev/null
exec python3 vmtest/qemu-matrix.py "$iovactl" \
  --sysfs-root examples/hosts/amd-epyc --device 0000:41:00.0 -- \
  "7.2=/usr/bin/qemu-system-x86_64" \
  "10.0=$new/usr/bin/qemu-system-x86_64,QEMU_MODULE_DIR=$new/usr/lib/x86_64-linux-gnu/qemu,L=$new/usr/share/qemu"
