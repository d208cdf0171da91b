# Sourced by vmtest/run: boot_pseries KERNEL MODE boots the pseries (sPAPR TCE) guest
# once and counts its checks (pass/fail/ROOT/CACHE/LOGS/WORK/TIMEOUT/SEED from run).
#
# Tools: qemu-system-ppc64 of QEMU 7.2 (unpacked into the cache by vmtest/qemu-fetch.sh,
# as vmtest/run's $QEMU72), the powerpc64le Rust target, and Debian's
# gcc-powerpc64le-linux-gnu as its linker (installed when missing); a FAIL (never a silent
# skip) when any of them cannot be had.
PPC_TARGET=powerpc64le-unknown-linux-gnu

pseries_tools() {
  local need=()
  command -v powerpc64le-linux-gnu-gcc >/dev/null || need+=(gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross)
  if [ ${#need[@]} -gt 0 ]; then
    echo "vmtest: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${need[@]}" >&2 || { apt-get update -q >&2 && apt-get install -y -q "${need[@]}" >&2; } \
      || { fail pseries/setup "cannot install ${need[*]}"; return 1; }
  fi
  if ! rustup target list --installed 2>/dev/null | grep -x "$PPC_TARGET" >/dev/null; then
    echo "vmtest: adding the Rust target $PPC_TARGET" >&2
    rustup target add "$PPC_TARGET" >&2 || {
      fail pseries/rust-target "the Rust target $PPC_TARGET is not installed and 'rustup target add' failed: the sPAPR checks cannot run"
      return 1; }
  fi
}

boot_pseries() {  # $1 kernel (6.12 or 6.12-64k), $2 mode (spapr)
  local series=$1 mode=$2 tag="$2-pseries-$1" flavour
  # Debian's two ppc64el kernel flavours: 4 KiB pages (powerpc64le) and 64 KiB pages
  # (powerpc64le-64k, CONFIG_PPC_64K_PAGES), the page size QEMU's TCE-table level
  # guess (hw/vfio/spapr.c) and sPAPR memory registration depend on.
  case $series in
    6.12) flavour=powerpc64le ;;
    6.12-64k) flavour=powerpc64le-64k ;;
    *) fail "$tag/kernel" "only the 6.12 ppc64el kernels (6.12, 6.12-64k) do VFIO on pseries"; return ;;
  esac
  pseries_tools || return
  echo "vmtest: building iova-vmtest and iovactl for $PPC_TARGET" >&2
  if ! (cd "$ROOT" && CARGO_TARGET_POWERPC64LE_UNKNOWN_LINUX_GNU_LINKER=powerpc64le-linux-gnu-gcc \
        CARGO_TARGET_POWERPC64LE_UNKNOWN_LINUX_GNU_RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build -q --release -p iova-vmtest -p iovactl --target "$PPC_TARGET" --target-dir "$ROOT/target/vmtest-ppc" >&2); then
    fail "$tag/build" "cross build of iova-vmtest / iovactl for $PPC_TARGET failed"; return
  fi
  local bin=$ROOT/target/vmtest-ppc/$PPC_TARGET/release/iova-vmtest kdir
  local t_k0 t_k1 t_g0; t_k0=$(date +%s)
  kdir=$("$ROOT/vmtest/pseries-kernel.sh" "$CACHE" "$flavour") || { fail "$tag/kernel" "cannot fetch the ppc64el $series kernel ($flavour)"; return; }
  t_k1=$(date +%s)
  local ird=$WORK/initramfs-pseries-$series-$mode
  rm -rf "$ird"; mkdir -p "$ird"/{bin,lib/modules,proc,sys,dev,tmp}
  cp "$kdir/busybox" "$ird/bin/busybox"
  cp "$ROOT/vmtest/init" "$ird/init"; chmod +x "$ird/init"
  cp "$bin" "$ird/iova-vmtest"
  cp "$ROOT/target/vmtest-ppc/$PPC_TARGET/release/iovactl" "$ird/iovactl"
  cp "$kdir/load-order" "$ird/lib/modules/"
  for m in $(cat "$kdir/load-order"); do cp "$kdir/modules/$m" "$ird/lib/modules/"; done
  (cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) > "$ird.cpio.gz"
  local log=$LOGS/$tag.log
  echo "vmtest: booting $tag (kernel $(cat "$kdir/version"))" >&2
  t_g0=$(date +%s)
  timeout "$TIMEOUT" "$QEMU72/bin/qemu-system-ppc64" -M pseries,x-vof=on -cpu power9 -m 2G -smp 1 \
    -nodefaults -no-user-config -display none -serial stdio -monitor none -no-reboot \
    -kernel "$kdir/vmlinux" -initrd "$ird.cpio.gz" \
    -append "console=hvc0 quiet loglevel=4 vmtest.mode=$mode vmtest.tag=$tag vmtest.seed=$SEED" \
    -device edu,dma_mask=0xffffffffffffffff </dev/null > "$log" 2>&1
  local rc=$?
  echo "vmtest: time $tag: kernel $((t_k1 - t_k0)) s (fetched when not cached), guest $(( $(date +%s) - t_g0 )) s"
  # The host profile `iovactl inspect --save-profile` wrote in the guest, printed on
  # the console (the source of examples/hosts/pseries-qemu-64k.json).
  if tr -d '\r' < "$log" | grep '^vmtest-profile: ' >/dev/null; then
    tr -d '\r' < "$log" | sed -n 's/^vmtest-profile: //p' > "$LOGS/$tag.host-profile.json"
    echo "vmtest: $tag host profile saved to $LOGS/$tag.host-profile.json" >&2
  fi
  # The release the guest booted (its `uname -r`): every expectation inside was taken for it.
  local booted
  booted=$(tr -d '\r' < "$log" | sed -n '/^vmtest-guest: kernel .*modelled as/{s/^vmtest-guest: kernel //p;q}')
  if [ -n "$booted" ]; then echo "vmtest: $tag booted kernel $booted"
  else fail "$tag/kernel-release" "the guest named no kernel release (log: $log)"; fi
  tr -d '\r' < "$log" | grep -E '^vmtest: (PASS|FAIL) ' | while IFS= read -r l; do echo "$l"; done
  tr -d '\r' < "$log" | grep -E '^vmtest-guest: differential ' | sed 's/^vmtest-guest: /vmtest: /'
  PASS=$((PASS + $(tr -d '\r' < "$log" | grep -cE '^vmtest: PASS ')))
  FAIL=$((FAIL + $(tr -d '\r' < "$log" | grep -cE '^vmtest: FAIL ')))
  if [ $rc = 124 ]; then fail "$tag/guest" "timed out after ${TIMEOUT}s (log: $log)"
  elif ! tr -d '\r' < "$log" | grep "^vmtest-guest: done $tag" >/dev/null; then fail "$tag/guest" "did not finish (exit $rc, log: $log)"
  else pass "$tag/guest-finished"; fi
}
