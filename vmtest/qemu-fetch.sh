#!/usr/bin/env bash
# Makes one QEMU release available without installing anything on the host, and prints
# the folder that holds it:
#   vmtest/qemu-fetch.sh 7.2      Debian bookworm's QEMU 7.2
#   vmtest/qemu-fetch.sh 10.0.2   bookworm-backports' QEMU 10.0.2
# Both are fetched the same way: `apt-get download` through the project's private apt
# state (vmtest/apt.sh; the host's apt and dpkg state stay untouched) and unpacked with
# `dpkg-deb -x` into $CACHE/qemu/<release>-<Debian version of qemu-system-x86>/, kept
# between runs and keyed by that version (a new Debian update is a new folder).
# No system-wide QEMU is ever installed: the image ships qemu-utils 10.0.2 from
# backports, which Breaks bookworm's qemu-system-common 7.2, so `apt-get install` of
# QEMU 7.2 fails on a new machine.
#
# The folder holds:
#   usr/...                 the packages' files: qemu-system-x86, -arm, -ppc, -common,
#                           -data, -gui (and -modules-opengl for 10.0.2; without it 10.0.2
#                           loads a host 7.2's modules whenever QEMU's defaults are on),
#                           the firmware the matrix and the guests open (seabios,
#                           ipxe-qemu, ovmf: usr/share/OVMF/OVMF_CODE_4M.fd), and every
#                           shared library the binaries and modules need that the host
#                           lacks or has at too old a version (from the same suites)
#   bin/qemu-system-x86_64, bin/qemu-system-aarch64, bin/qemu-system-ppc64
#                           relocatable wrappers: they set QEMU_MODULE_DIR and
#                           LD_LIBRARY_PATH to the folder's own and pass -L for its
#                           firmware, so `DIR/bin/qemu-system-x86_64 ARGS` runs this release
#   debs.txt                the packages and versions unpacked (printed by the tests)
# A binary or module with a library that cannot be found is an error (exit 1), never a
# QEMU that fails later. Progress goes to stderr; stdout is the folder alone.
set -euo pipefail
RELEASE=${1:?usage: vmtest/qemu-fetch.sh 7.2|10.0.2}
CACHE=${IOVA_VMTEST_CACHE:-${HOME:-/root}/.cache/iova-vmtest}
mkdir -p "$CACHE/qemu"
CACHE=$(realpath "$CACHE")
# shellcheck source=vmtest/apt.sh
. "$(dirname "$0")/apt.sh"

# The versions a release takes, as patterns over Debian version strings; the newest
# matching version outside unstable is taken.
case $RELEASE in
  7.2) qemu_re='^1:7[.]2[+]' seabios_re='^1[.]16[.]2-' extra=() ;;
  10.0.2) qemu_re='^1:10[.]0[.]2[+]' seabios_re='^1[.]16[.]3-' extra=(qemu-system-modules-opengl) ;;
  *) echo "qemu-fetch: unknown QEMU release '$RELEASE' (7.2 or 10.0.2)" >&2; exit 2 ;;
esac
qemu_pkgs=(qemu-system-x86 qemu-system-arm qemu-system-ppc qemu-system-common qemu-system-data qemu-system-gui "${extra[@]}")

# pick PKG REGEX: the newest version of PKG outside unstable that matches REGEX.
pick() {
  apt_p apt-cache madison "$1" | awk -F'|' -v re="$2" '$3 !~ / sid\// {gsub(/ /, "", $2); if ($2 ~ re) print $2}' \
    | sort -V | tail -1
}
ver=$(pick qemu-system-x86 "$qemu_re")
if [ -z "$ver" ]; then apt_p apt-get -q update >&2; ver=$(pick qemu-system-x86 "$qemu_re"); fi
[ -n "$ver" ] || { echo "qemu-fetch: no QEMU $RELEASE (qemu-system-x86 $qemu_re) in the Debian suites" >&2; exit 1; }
dest=$CACHE/qemu/$RELEASE-${ver//[:~]/_}

libpath() {  # DIR: the library folders of an unpacked tree (libpulse keeps its common part apart)
  echo "$1/usr/lib/x86_64-linux-gnu:$1/lib/x86_64-linux-gnu:$1/usr/lib/x86_64-linux-gnu/pulseaudio"
}
write_wrappers() {  # DIR: relocatable launchers under DIR/bin
  local d=$1 b
  mkdir -p "$d/bin"
  for b in qemu-system-x86_64 qemu-system-aarch64 qemu-system-ppc64; do
    cat > "$d/bin/$b.tmp" <<WRAP
#!/bin/sh
# QEMU $RELEASE ($ver) unpacked by vmtest/qemu-fetch.sh: its own modules, libraries and firmware.
d=\$(dirname "\$(dirname "\$(readlink -f "\$0")")")
QEMU_MODULE_DIR=\$d/usr/lib/x86_64-linux-gnu/qemu
LD_LIBRARY_PATH=\$d/usr/lib/x86_64-linux-gnu:\$d/lib/x86_64-linux-gnu:\$d/usr/lib/x86_64-linux-gnu/pulseaudio\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export QEMU_MODULE_DIR LD_LIBRARY_PATH
exec "\$d/usr/bin/$b" -L "\$d/usr/share/qemu" -L "\$d/usr/share/seabios" -L "\$d/usr/lib/ipxe/qemu" "\$@"
WRAP
    chmod 755 "$d/bin/$b.tmp"; mv "$d/bin/$b.tmp" "$d/bin/$b"
  done
}

if [ -e "$dest/.complete" ]; then write_wrappers "$dest"; echo "$dest"; exit 0; fi
exec 9>"$CACHE/qemu/$RELEASE.lock"
flock 9
if [ -e "$dest/.complete" ]; then write_wrappers "$dest"; echo "$dest"; exit 0; fi

echo "qemu-fetch: fetching QEMU $RELEASE ($ver) into $dest" >&2
T=$dest.tmp
rm -rf "$T"; mkdir -p "$T/dl" "$T/root"
want=()
for p in "${qemu_pkgs[@]}"; do
  v=$(pick "$p" "$qemu_re")
  [ -n "$v" ] || { echo "qemu-fetch: no $p $qemu_re" >&2; exit 1; }
  want+=("$p=$v")
done
for spec in "seabios $seabios_re" "ipxe-qemu ^1[.]0[.]0" "ovmf ^2022[.]11-"; do
  set -- $spec
  v=$(pick "$1" "$2"); [ -n "$v" ] || { echo "qemu-fetch: no $1 $2" >&2; exit 1; }
  want+=("$1=$v")
done
(cd "$T/dl" && apt_p apt-get -q download "${want[@]}" >&2)

# The library closure: every lib* dependency of what was downloaded that the host does
# not have at a version satisfying it, downloaded too (the newest version outside
# unstable that satisfies it), until nothing is missing.
satisfied() {  # NAME OP VER (OP/VER may be empty): true when the host or the download has it
  local name=$1 op=$2 v=$3 inst
  if [ -e "$T/have.$name" ]; then return 0; fi
  inst=$(dpkg-query -W -f='${db:Status-Abbrev}|${Version}' "$name" 2>/dev/null || true)
  if [ "${inst%%|*}" = "ii " ]; then
    [ -z "$op" ] || dpkg --compare-versions "${inst#*|}" "$op" "$v"
    return
  fi
  # A virtual package an installed one provides (libgcc1 by libgcc-s1), with its version.
  local pv
  while read -r pv; do
    [ -z "$op" ] || { [ -n "$pv" ] && dpkg --compare-versions "$pv" "$op" "$v"; } && return 0
  done < <(awk -v n="$name" '$1 == n {print $2}' "$T/provides")
  return 1
}
# What the host's installed packages provide: "name version" a line.
dpkg-query -W -f='${db:Status-Abbrev}|${Provides}\n' 2>/dev/null | sed -n 's/^ii *|//p' | tr ',' '\n' \
  | sed -E 's/^ +//; s/:any//; s/ \(= ([^)]+)\)/ \1/' | grep . > "$T/provides" || true
deps_of() {  # DEB...: one dependency a line, its alternatives as "name|op|version" joined by ";"
  local d
  for d in "$@"; do dpkg-deb -f "$d" Depends Pre-Depends; done | tr '\n' ',' | tr ',' '\n' \
    | sed -E 's/^[A-Za-z-]+: //; s/^ +//; s/ +$//; s/:any//g; s/ *[|] */;/g; s/ \(([<>=]+) ([^)]+)\)/|\1|\2/g' \
    | awk -F';' 'NF { out = ""; for (i = 1; i <= NF; i++) { f = $i; if (index(f, "|") == 0) f = f "||"; out = out (i > 1 ? ";" : "") f }; print out }' \
    | sort -u
}
batch=("$T"/dl/*.deb)
while [ ${#batch[@]} -gt 0 ]; do
  for deb in "${batch[@]}"; do touch "$T/have.$(dpkg-deb -f "$deb" Package)"; done
  need=()
  while IFS= read -r alts; do
    case $alts in lib*) ;; *) continue ;; esac
    ok=0
    IFS=';' read -ra alt <<<"$alts"
    for one in "${alt[@]}"; do
      IFS='|' read -r name op v <<<"$one"
      satisfied "$name" "$op" "$v" && { ok=1; break; }
    done
    [ $ok = 1 ] || need+=("$alts")
  done < <(deps_of "${batch[@]}")
  [ ${#need[@]} -gt 0 ] || break
  # One madison for the round: "name version" a line, outside unstable.
  apt_p apt-cache madison $(printf '%s\n' "${need[@]}" | tr ';' '\n' | cut -d'|' -f1 | sort -u) 2>/dev/null \
    | awk -F'|' '$3 !~ / sid\// {gsub(/ /, "", $1); gsub(/ /, "", $2); print $1, $2}' > "$T/madison"
  get=()
  for alts in "${need[@]}"; do
    IFS=';' read -ra alt <<<"$alts"
    chosen=""
    for one in "${alt[@]}"; do
      IFS='|' read -r name op v <<<"$one"
      [ -e "$T/have.$name" ] && { chosen=have; break; }
      for c in $(awk -v n="$name" '$1 == n {print $2}' "$T/madison" | sort -Vr); do
        if [ -z "$op" ] || dpkg --compare-versions "$c" "$op" "$v"; then chosen=$name=$c; break; fi
      done
      [ -n "$chosen" ] && break
    done
    [ -n "$chosen" ] || { echo "qemu-fetch: no version of ${alts//;/ or } in the Debian suites" >&2; exit 1; }
    [ "$chosen" = have ] && continue
    name=${chosen%%=*}
    echo "qemu-fetch: library $chosen (the host has $(dpkg-query -W -f='${Version}' "$name" 2>/dev/null || echo none))" >&2
    get+=("$chosen"); touch "$T/have.$name"
  done
  [ ${#get[@]} -gt 0 ] || break
  mkdir -p "$T/round"; rm -f "$T"/round/*.deb
  (cd "$T/round" && apt_p apt-get -q download "${get[@]}" >&2)
  batch=("$T"/round/*.deb)
  mv "$T"/round/*.deb "$T/dl/"
  batch=("${batch[@]/#$T\/round\//$T/dl/}")
done
for deb in "$T"/dl/*.deb; do
  dpkg-deb -x "$deb" "$T/root"
  printf '%s=%s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" >> "$T/root/debs.txt"
done
# Every binary and module must find all of its libraries (in the folder or on the host).
missing=$(find "$T/root/usr/bin" "$T/root/usr/lib/x86_64-linux-gnu/qemu" -type f \( -name 'qemu-system-*' -o -name '*.so' \) -print0 \
  | LD_LIBRARY_PATH=$(libpath "$T/root") xargs -0 -n1 sh -c 'ldd "$0" 2>/dev/null | sed -n "s|^\t\(.*\) => not found|$0: \1|p"' || true)
if [ -n "$missing" ]; then
  echo "qemu-fetch: QEMU $RELEASE would lack libraries:" >&2; echo "$missing" >&2; exit 1
fi
rm -rf "$dest"; mv "$T/root" "$dest"; rm -rf "$T"
write_wrappers "$dest"
touch "$dest/.complete"
echo "$dest"
