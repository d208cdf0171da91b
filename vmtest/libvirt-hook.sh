#!/usr/bin/env bash
# `iovactl libvirt-hook` under a real libvirtd. libvirtd is the one system package the
# suite installs (Debian's libvirt-daemon-system, libvirt-clients and
# libvirt-daemon-driver-qemu, without recommends, when missing): apt's plan is checked
# first and refused if it would remove or downgrade anything the host has, and the
# packages it installs are printed. The QEMU libvirt probes is Debian's 7.2, unpacked by
# vmtest/qemu-fetch.sh (never installed: the image's qemu-utils 10.0.2 conflicts with it)
# and copied for the run to a folder libvirt's unprivileged QEMU user can read (the cache
# lives in root's home), removed at the end.
# The hook goes in as /etc/libvirt/hooks/qemu (pointed at the examples/hosts/intel-vtd-39
# fixture, whose device 0000:03:00.0 sits behind a 39-bit VT-d unit); libvirtd is
# (re)started so that it sees the hook; two TCG domains with that <hostdev> are defined
# and `virsh start`ed:
#   - 600 GiB of RAM: the hook must refuse, and virsh's error must carry its message;
#   - 1 GiB: the hook must pass; the start may then fail for other reasons (there is no
#     such PCI device here), which the test tells apart by the absence of the message.
# Restores the previous hook and stops the libvirtd it started. Prints
# `libvirt-hook: N passed, M failed`.
#
#   vmtest/libvirt-hook.sh --package
# tests the Debian package instead, as an admin would use it: builds it
# (scripts/package), installs it with `dpkg -i` (its hook lands in
# /etc/libvirt/hooks/qemu.d/iovactl), points the installed hook at the same fixture
# through the package's /etc/default/iovactl, restarts libvirtd and starts the same two
# domains; then checks that `man iovactl-check` renders, that the bash completion
# registers, and that `dpkg --purge` leaves none of the package's files behind.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
mode=repo
case ${1:-} in
  --package) mode=package ;;
  '') ;;
  *) echo "usage: vmtest/libvirt-hook.sh [--package]" >&2; exit 2 ;;
esac
# shellcheck source=vmtest/apt-install.sh
. vmtest/apt-install.sh
if ! command -v libvirtd >/dev/null || ! command -v virsh >/dev/null; then
  apt_install_checked libvirt-hook libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu
fi
echo "libvirt-hook: libvirtd $(libvirtd --version | awk '{print $NF}') ($(dpkg-query -W -f='${Version}' libvirt-daemon 2>/dev/null || echo 'not from a package'))" >&2
q72=$(vmtest/qemu-fetch.sh 7.2)
qdir=/var/lib/iova-vmtest-libvirt/qemu-7.2
rm -rf "$qdir"; mkdir -p "$(dirname "$qdir")"; chmod 755 "$(dirname "$qdir")"
cp -al "$q72" "$qdir" 2>/dev/null || cp -a "$q72" "$qdir"
chmod -R a+rX "$qdir"
emulator=$qdir/bin/qemu-system-x86_64
echo "libvirt-hook: the domains' emulator is $emulator ($("$emulator" --version | head -1))" >&2
repo=$PWD
hookdir=/etc/libvirt/hooks
mkdir -p "$hookdir"
saved=
deb=
if [ $mode = repo ]; then
  cargo build -q --locked -p iovactl
  if [ -e "$hookdir/qemu" ]; then saved=$(mktemp); cp -p "$hookdir/qemu" "$saved"; fi
  cat > "$hookdir/qemu" <<HOOK
#!/bin/sh
exec $repo/target/debug/iovactl libvirt-hook --sysfs-root $repo/examples/hosts/intel-vtd-39 "\$@"
HOOK
  chmod +x "$hookdir/qemu"
else
  if dpkg-query -W -f='${db:Status-Abbrev}' iovactl 2>/dev/null | grep '^ii' >/dev/null; then
    echo "libvirt-hook: the iovactl package is already installed here; refusing to replace it" >&2
    exit 1
  fi
  deb=$(scripts/package)
  echo "libvirt-hook: installing $deb" >&2
  dpkg -i "$deb" >&2
  # The installed hook's settings: the same fixture host as the repository hook.
  echo "IOVACTL_HOOK_ARGS=\"--sysfs-root $repo/examples/hosts/intel-vtd-39\"" > /etc/default/iovactl
  [ -x "$hookdir/qemu.d/iovactl" ] || { echo "libvirt-hook: FAIL the package installed no $hookdir/qemu.d/iovactl"; exit 1; }
fi

stop_libvirtd() {
  if [ -s /run/libvirtd.pid ]; then
    local pid; pid=$(cat /run/libvirtd.pid)
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
}
was_running=no
[ -s /run/libvirtd.pid ] && kill -0 "$(cat /run/libvirtd.pid)" 2>/dev/null && was_running=yes
cleanup() {
  rm -rf /var/lib/iova-vmtest-libvirt
  virsh -q -c qemu:///system undefine iova-hook-big >/dev/null 2>&1 || true
  virsh -q -c qemu:///system undefine iova-hook-small >/dev/null 2>&1 || true
  virsh -q -c qemu:///system destroy iova-pid >/dev/null 2>&1 || true
  virsh -q -c qemu:///system undefine iova-pid >/dev/null 2>&1 || true
  if [ $mode = repo ]; then
    if [ -n "$saved" ]; then mv "$saved" "$hookdir/qemu"; else rm -f "$hookdir/qemu"; fi
  elif dpkg-query -W iovactl >/dev/null 2>&1; then
    dpkg --purge iovactl >/dev/null 2>&1 || true
  fi
  stop_libvirtd
  # A libvirtd that ran before comes back (now without the test hook).
  if [ "$was_running" = yes ]; then libvirtd -d; fi
}
trap cleanup EXIT
# libvirtd looks for hooks when it starts.
stop_libvirtd
pgrep -x virtlogd >/dev/null || virtlogd -d
libvirtd -d
for _ in $(seq 100); do virsh -q -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.1; done
# A run that was killed before its cleanup leaves its domains defined: start without them.
virsh -q -c qemu:///system undefine iova-hook-big >/dev/null 2>&1 || true
virsh -q -c qemu:///system undefine iova-hook-small >/dev/null 2>&1 || true

domain() { # NAME MEMORY_GIB
  cat <<XML
<domain type='qemu'>
  <name>$1</name>
  <memory unit='GiB'>$2</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <cpu mode='custom'><model>Skylake-Client</model><maxphysaddr mode='emulate' bits='46'/></cpu>
  <devices>
    <emulator>$emulator</emulator>
    <hostdev mode='subsystem' type='pci' managed='no'>
      <source><address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/></source>
    </hostdev>
  </devices>
</domain>
XML
}
passed=0 failed=0
tmp=$(mktemp -d)
for spec in "iova-hook-big 600 refuse" "iova-hook-small 1 pass"; do
  set -- $spec
  domain "$1" "$2" > "$tmp/$1.xml"
  virsh -q -c qemu:///system define "$tmp/$1.xml" >/dev/null
  if out=$(virsh -c qemu:///system start "$1" 2>&1); then
    started=yes; virsh -q -c qemu:///system destroy "$1" >/dev/null 2>&1 || true
  else
    started=no
  fi
  case "$3" in
    refuse)
      # In package mode the refusal must come from the installed hook: libvirt names the
      # script it ran (/etc/libvirt/hooks/qemu.d/iovactl).
      by_hook=yes
      [ $mode = package ] && ! grep -q "$hookdir/qemu.d/iovactl" <<<"$out" && by_hook=no
      if [ $started = no ] && [ $by_hook = yes ] && grep -qE "iovactl: domain $1 (\(.*\) )?cannot work" <<<"$out" && grep -q "ram-above-4g" <<<"$out"; then
        echo "libvirt-hook: PASS $1 refused by the hook: $(grep -o 'iovactl: domain.*' <<<"$out" | head -c 160)..."
        passed=$((passed + 1))
      else
        echo "libvirt-hook: FAIL $1 (started=$started): $out"; failed=$((failed + 1))
      fi ;;
    pass)
      if grep -q "iovactl" <<<"$out"; then
        echo "libvirt-hook: FAIL $1 refused by the hook: $out"; failed=$((failed + 1))
      else
        echo "libvirt-hook: PASS $1 passed the hook (then started=$started: $(tr '\n' ' ' <<<"$out" | head -c 120))"
        passed=$((passed + 1))
      fi ;;
  esac
  virsh -q -c qemu:///system undefine "$1" >/dev/null 2>&1 || true
done
# `check --pid` of a VM the real libvirtd started: libvirt writes every -device and
# -object as JSON and runs QEMU as its own user. A domain without a host device (this
# machine has none to give) starts under TCG; iovactl reads its command line from
# /proc, asks its binary for the release, and must answer with the same layout as the
# domain XML gives (`--libvirt`), checked against the fixture host with `--device`.
if [ $mode = repo ]; then
  name=iova-pid
  cat > "$tmp/$name.xml" <<XML
<domain type='qemu'>
  <name>$name</name>
  <memory unit='KiB'>219100</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices><emulator>$emulator</emulator><graphics type='vnc' port='-1' listen='127.0.0.1'/></devices>
</domain>
XML
  virsh -q -c qemu:///system undefine $name >/dev/null 2>&1 || true
  virsh -q -c qemu:///system define "$tmp/$name.xml" >/dev/null
  if out=$(virsh -c qemu:///system start $name 2>&1); then
    pid=$(cat /run/libvirt/qemu/$name.pid 2>/dev/null || true)
    host=(--sysfs-root "$repo/examples/hosts/intel-vtd-39" --device 03:00.0)
    if by_pid=$(target/debug/iovactl check --json --memlock unlimited --pid "$pid" "${host[@]}" 2>&1) &&
       by_xml=$(target/debug/iovactl check --json --memlock unlimited --libvirt "$tmp/$name.xml" --qemu-version 7.2 "${host[@]}" 2>&1); then
      same=$(python3 -c 'import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print("yes" if a["layout"]==b["layout"] and a["ok"] and b["ok"] else "no")' "$by_pid" "$by_xml" 2>&1)
      # libvirt rounds 219100 KiB up to 1 MiB: QEMU gets 214 MiB, RAM below 4G ends at 0xd5fffff.
      ram=$(python3 -c 'import json,sys; print([s["last"] for s in json.loads(sys.argv[1])["layout"] if s["name"]=="ram-below-4g"])' "$by_pid" 2>&1)
      if [ "$same" = yes ] && [ "$ram" = "['0xd5fffff']" ]; then
        echo "libvirt-hook: PASS pid/check-of-a-libvirt-vm-answers (pid $pid; same layout as --libvirt; ram-below-4g ends at 0xd5fffff)"
        passed=$((passed + 1))
      else
        echo "libvirt-hook: FAIL pid/check-of-a-libvirt-vm-answers: same=$same ram=$ram; argv: $(tr '\0' ' ' < /proc/$pid/cmdline | head -c 600)"
        failed=$((failed + 1))
      fi
    else
      echo "libvirt-hook: FAIL pid/check-of-a-libvirt-vm-answers: --pid: $(head -c 400 <<<"$by_pid") --libvirt: $(head -c 400 <<<"${by_xml:-}")"
      failed=$((failed + 1))
    fi
    virsh -q -c qemu:///system destroy $name >/dev/null 2>&1 || true
  else
    echo "libvirt-hook: FAIL pid/check-of-a-libvirt-vm-answers: the domain did not start: $out"
    failed=$((failed + 1))
  fi
  virsh -q -c qemu:///system undefine $name >/dev/null 2>&1 || true
fi
rm -rf "$tmp"
if [ $mode = package ]; then
  check() { # NAME COMMAND...: one PASS/FAIL line
    local name=$1; shift
    if out=$("$@" 2>&1); then echo "libvirt-hook: PASS package/$name"; passed=$((passed + 1))
    else echo "libvirt-hook: FAIL package/$name: $(tail -c 300 <<<"$out")"; failed=$((failed + 1)); fi
  }
  check man-iovactl-check-renders sh -c 'MANWIDTH=80 man iovactl-check | grep -q "iovactl check"'
  check man-page-for-every-command sh -c 'for c in $(iovactl man nosuch 2>&1 | sed -n "s/.*the commands are //p" | tr -d ,); do
      [ -e /usr/share/man/man1/iovactl-$c.1.gz ] || { echo "no page for $c"; exit 1; }; done'
  check bash-completion-registers bash -c '. /usr/share/bash-completion/completions/iovactl && complete -p iovactl'
  check installed-binary-is-this-build sh -c "[ \"\$(iovactl --version)\" = \"\$($repo/target/release/iovactl --version)\" ]"
  files=$(dpkg -L iovactl)
  dpkg --purge iovactl >/dev/null
  left=""
  for f in $files; do
    [ -d "$f" ] && continue   # shared folders (/usr/share/man, ...) stay
    [ -e "$f" ] && left="$left $f"
  done
  [ -d "$hookdir/qemu.d" ] && [ -z "$(ls -A "$hookdir/qemu.d")" ] && left="$left $hookdir/qemu.d(empty)"
  if [ -z "$left" ] && ! dpkg-query -W iovactl >/dev/null 2>&1; then
    echo "libvirt-hook: PASS package/purge-leaves-nothing ($(wc -w <<<"$files") paths checked)"; passed=$((passed + 1))
  else
    echo "libvirt-hook: FAIL package/purge-leaves-nothing:$left"; failed=$((failed + 1))
  fi
fi
echo "libvirt-hook: $passed passed, $failed failed"
[ "$failed" = 0 ]
