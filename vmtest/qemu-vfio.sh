# Sourced by vmtest/run: the real QEMU inside the guests, for the `qemu-vfio/` checks
# (crates/iova-vmtest/src/qemu_vfio.rs). Defines
#   qemu_vfio_wanted SERIES:AW:MODE   true when that boot runs the qemu-vfio cases
#   qemu_vfio_cpio                    builds (or reuses) the QEMU archive, prints its path
#
# The archive is an uncompressed newc cpio (the guest kernel unpacks it without
# decompressing under TCG) appended to a boot's initramfs (the kernel accepts
# concatenated archives). It holds:
#   /usr/bin/qemu-system-x86_64, /usr/bin/qemu-system-aarch64      the host's QEMU (7.2)
#   /usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so               7.2 loads TCG as a module
#   /opt/qemu-10.0/usr/bin/qemu-system-x86_64                        bookworm-backports' 10.0.2
#                                                                    (vmtest/qemu-fetch.sh)
#   /usr/share/qemu/kvmvapic.bin, /usr/share/seabios/bios-256k.bin  the only firmware a q35
#                                                                    machine opens with
#                                                                    -nodefaults (seen with
#                                                                    strace); the same under
#                                                                    /opt/qemu-10.0/usr/share
#   the shared libraries of all three (their `ldd` closure) at the paths ldd resolves
# Cached as target/vmtest-work/qemu-vfio.cpio, rebuilt when a binary or this file changes
# (the key is the size and mtime of every input). No cache entry under IOVA_VMTEST_CACHE
# is added or changed: the 10.0.2 unpack is vmtest/qemu-fetch.sh's.
#
# env: VMTEST_QEMU_VFIO_BOOTS (default "6.1:39:type1 6.1:48:type1 build:39:iommufd"; "" for none)
#      VMTEST_QEMU_VFIO_MEM    (the guest RAM of those boots; default 1536M)
#      VMTEST_QEMU_VFIO_MUTATE=1 (the guest replaces check's prediction of the dimm-at-2^39
#                               case by "starts": that check must FAIL; proves the comparison)
#      VMTEST_QEMU_VFIO_TIMEOUT (seconds added to VMTEST_TIMEOUT for those boots; default 600)
QEMU_VFIO_BOOTS=${VMTEST_QEMU_VFIO_BOOTS-"6.1:39:type1 6.1:48:type1 build:39:iommufd"}
QEMU_VFIO_MEM=${VMTEST_QEMU_VFIO_MEM:-1536M}
QEMU_VFIO_TIMEOUT=${VMTEST_QEMU_VFIO_TIMEOUT:-600}   # added to VMTEST_TIMEOUT for those boots

qemu_vfio_wanted() {
  local b
  for b in $QEMU_VFIO_BOOTS; do [ "$b" = "$1" ] && return 0; done
  return 1
}

qemu_vfio_cpio() {
  local new out=$WORK/qemu-vfio.cpio
  new=$("$ROOT/vmtest/qemu-fetch.sh") || { echo "qemu-vfio: vmtest/qemu-fetch.sh failed" >&2; return 1; }
  local -a bins=(/usr/bin/qemu-system-x86_64 /usr/bin/qemu-system-aarch64
                 /usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so "$new/usr/bin/qemu-system-x86_64")
  local -a fw=(/usr/share/qemu/kvmvapic.bin /usr/share/seabios/bios-256k.bin "$new/usr/share/qemu/kvmvapic.bin")
  local f
  for f in "${bins[@]}" "${fw[@]}"; do
    [ -e "$f" ] || { echo "qemu-vfio: $f is missing" >&2; return 1; }
  done
  local key
  key=$( { stat -L -c '%n %s %Y' "${bins[@]}" "${fw[@]}"; cat "$ROOT/vmtest/qemu-vfio.sh"; } | sha256sum | cut -c1-16)
  if [ -e "$out" ] && [ "$(cat "$out.key" 2>/dev/null)" = "$key" ]; then echo "$out"; return 0; fi
  local d=$WORK/qemu-vfio-root
  rm -rf "$d"; mkdir -p "$d/usr/bin" "$d/usr/lib/x86_64-linux-gnu/qemu" "$d/usr/share/qemu" "$d/usr/share/seabios" \
    "$d/opt/qemu-10.0/usr/bin" "$d/opt/qemu-10.0/usr/share/qemu" "$d/opt/qemu-10.0/usr/share/seabios"
  cp /usr/bin/qemu-system-x86_64 /usr/bin/qemu-system-aarch64 "$d/usr/bin/"
  cp /usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so "$d/usr/lib/x86_64-linux-gnu/qemu/"
  cp "$new/usr/bin/qemu-system-x86_64" "$d/opt/qemu-10.0/usr/bin/"
  cp /usr/share/qemu/kvmvapic.bin "$d/usr/share/qemu/"
  cp /usr/share/seabios/bios-256k.bin "$d/usr/share/seabios/"
  cp "$new/usr/share/qemu/kvmvapic.bin" "$d/opt/qemu-10.0/usr/share/qemu/"
  cp /usr/share/seabios/bios-256k.bin "$d/opt/qemu-10.0/usr/share/seabios/"
  # The shared libraries, at the paths the dynamic loader resolves (the loader itself
  # at its absolute /lib64 path).
  local libs
  libs=$(for f in "${bins[@]}"; do ldd "$f"; done | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
  if for f in "${bins[@]}"; do ldd "$f"; done | grep -q 'not found'; then
    echo "qemu-vfio: a QEMU library is missing on this machine" >&2; return 1
  fi
  for f in $libs; do mkdir -p "$d$(dirname "$f")"; cp -L "$f" "$d$f"; done
  (cd "$d" && find . | sort | cpio -o -H newc --quiet) > "$out.tmp" || return 1
  # A following archive must start 4-byte aligned (newc archives already end so; kept
  # explicit because the kernel skips an unaligned one silently).
  truncate -s %4 "$out.tmp"
  mv "$out.tmp" "$out" && echo "$key" > "$out.key"
  rm -rf "$d"
  echo "$out"
}
