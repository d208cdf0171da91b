# Sourced by vmtest/run: the real QEMU inside the guests, for the `qemu-vfio/` checks
# (crates/iova-vmtest/src/qemu_vfio.rs). Defines
#   qemu_vfio_wanted SERIES:AW:MODE   true when that boot runs the qemu-vfio cases
#   qemu_vfio_cpio                    builds (or reuses) the QEMU archive, prints its path
#
# The archive is an uncompressed newc cpio (the guest kernel unpacks it without
# decompressing under TCG) appended to a boot's initramfs (the kernel accepts
# concatenated archives). It holds:
#   /usr/bin/qemu-system-x86_64, /usr/bin/qemu-system-aarch64      QEMU 7.2 (unpacked by
#                                                                    vmtest/qemu-fetch.sh)
#   /usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so               7.2 loads TCG as a module
#   /opt/qemu-10.0/usr/bin/qemu-system-x86_64                        bookworm-backports' 10.0.2
#                                                                    (vmtest/qemu-fetch.sh)
#   /usr/share/qemu/kvmvapic.bin, /usr/share/seabios/bios-256k.bin  the only firmware a q35
#                                                                    machine opens with
#                                                                    -nodefaults (seen with
#                                                                    strace); the same under
#                                                                    /opt/qemu-10.0/usr/share
#   the shared libraries of all three (their `ldd` closure): the host's at the paths ldd
#   resolves, those of the unpacked trees in /usr/lib/x86_64-linux-gnu
# Cached as target/vmtest-work/qemu-vfio.cpio, rebuilt when a binary or this file changes
# (the key is the size and mtime of every input). No cache entry under IOVA_VMTEST_CACHE
# is added or changed: the unpacked trees are vmtest/qemu-fetch.sh's.
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
  local old new out=$WORK/qemu-vfio.cpio
  old=$("$ROOT/vmtest/qemu-fetch.sh" 7.2) || { echo "qemu-vfio: vmtest/qemu-fetch.sh 7.2 failed" >&2; return 1; }
  new=$("$ROOT/vmtest/qemu-fetch.sh" 10.0.2) || { echo "qemu-vfio: vmtest/qemu-fetch.sh 10.0.2 failed" >&2; return 1; }
  # Guest path = source path in the unpacked trees (the 7.2 tree's /usr; the 10.0.2 tree
  # under /opt/qemu-10.0).
  local -a map=(
    "$old/usr/bin/qemu-system-x86_64=/usr/bin/qemu-system-x86_64"
    "$old/usr/bin/qemu-system-aarch64=/usr/bin/qemu-system-aarch64"
    "$old/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so=/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so"
    "$new/usr/bin/qemu-system-x86_64=/opt/qemu-10.0/usr/bin/qemu-system-x86_64"
    "$old/usr/share/qemu/kvmvapic.bin=/usr/share/qemu/kvmvapic.bin"
    "$old/usr/share/seabios/bios-256k.bin=/usr/share/seabios/bios-256k.bin"
    "$new/usr/share/qemu/kvmvapic.bin=/opt/qemu-10.0/usr/share/qemu/kvmvapic.bin"
    "$new/usr/share/seabios/bios-256k.bin=/opt/qemu-10.0/usr/share/seabios/bios-256k.bin")
  local -a bins=("$old/usr/bin/qemu-system-x86_64" "$old/usr/bin/qemu-system-aarch64"
                 "$old/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so" "$new/usr/bin/qemu-system-x86_64")
  local m f
  for m in "${map[@]}"; do
    [ -e "${m%%=*}" ] || { echo "qemu-vfio: ${m%%=*} is missing" >&2; return 1; }
  done
  local key
  key=$( { for m in "${map[@]}"; do stat -L -c '%n %s %Y' "${m%%=*}"; done; cat "$ROOT/vmtest/qemu-vfio.sh"; } | sha256sum | cut -c1-16)
  if [ -e "$out" ] && [ "$(cat "$out.key" 2>/dev/null)" = "$key" ]; then echo "$out"; return 0; fi
  local d=$WORK/qemu-vfio-root
  rm -rf "$d"
  for m in "${map[@]}"; do mkdir -p "$d$(dirname "${m#*=}")"; cp -L "${m%%=*}" "$d${m#*=}"; done
  # The shared libraries (the ldd closure with each tree's own library folders first):
  # a library of an unpacked tree goes to the guest's /usr/lib/x86_64-linux-gnu, a host
  # library to the path the loader resolved (the loader itself at its absolute path).
  # Where both trees carry one soname, the 10.0.2 tree's (the newer build) is kept.
  local lddout="" t
  for f in "${bins[@]}"; do
    case $f in "$new"/*) t=$new ;; *) t=$old ;; esac
    lddout+=$(LD_LIBRARY_PATH=$t/usr/lib/x86_64-linux-gnu:$t/lib/x86_64-linux-gnu:$t/usr/lib/x86_64-linux-gnu/pulseaudio ldd "$f")$'\n'
  done
  if grep -q 'not found' <<<"$lddout"; then
    echo "qemu-vfio: a QEMU library is missing: $(grep 'not found' <<<"$lddout" | head -3)" >&2; return 1
  fi
  for f in $(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$lddout" | sort -u); do
    case $f in
      "$old"/*|"$new"/*) t=/usr/lib/x86_64-linux-gnu/$(basename "$f") ;;
      *) t=$f ;;
    esac
    case $f in "$old"/*) [ -e "$d$t" ] && continue ;; esac
    mkdir -p "$d$(dirname "$t")"; cp -L "$f" "$d$t"
  done
  (cd "$d" && find . | sort | cpio -o -H newc --quiet) > "$out.tmp" || return 1
  # A following archive must start 4-byte aligned (newc archives already end so; kept
  # explicit because the kernel skips an unaligned one silently).
  truncate -s %4 "$out.tmp"
  mv "$out.tmp" "$out" && echo "$key" > "$out.key"
  rm -rf "$d"
  echo "$out"
}
