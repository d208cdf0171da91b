# Sourced by vmtest/kernel.sh and vmtest/build-kernel.sh: a private apt state under
# $CACHE/apt (the host's apt state and dpkg architecture list stay untouched), built from
# the host's own Debian sources plus the backports suite, and Debian unstable pinned so
# that only the `linux-source-*` packages come from it (vmtest/build-kernel.sh builds the
# newest kernel from there; vmtest/kernel.sh's `sid` series names the version of the
# prebuilt kernel packages it downloads; nothing else may be taken from unstable). Defines `apt_p TOOL ARGS...`
# (apt-get / apt-cache on the private state) and refreshes the indexes when they are
# missing or more than a week old (the state lives in the long-lived shared cache, and
# Debian drops superseded kernel packages from its mirrors).
# APT_ARCH=ppc64el (optional) makes a separate state for a foreign architecture
# ($CACHE/apt-ppc64el) whose indexes and downloads are that architecture's only.
A=$CACHE/apt${APT_ARCH:+-$APT_ARCH}
apt_p() {
  local tool=$1; shift
  $tool -o Dir::State="$A/state" -o Dir::State::status="$A/status" -o Dir::Cache="$A/cache" \
    -o Dir::Etc::sourcelist="$A/etc/sources.list" -o Dir::Etc::sourceparts="$A/etc/sources.list.d" \
    -o Dir::Etc::preferencesparts="$A/etc/preferences.d" \
    ${APT_ARCH:+-o APT::Architecture=$APT_ARCH -o APT::Architectures::=$APT_ARCH} "$@"
}
if [ ! -e "$A/updated" ] || [ -n "$(find "$A/updated" -mtime +7 2>/dev/null)" ]; then
  mkdir -p "$A/state/lists/partial" "$A/cache/archives/partial" "$A/etc/sources.list.d" "$A/etc/preferences.d"
  touch "$A/status" "$A/etc/sources.list"
  if [ -e /etc/apt/sources.list.d/debian.sources ]; then
    sed -E '/^Suites:/ s/\b(bookworm)-updates\b/&  \1-backports/' /etc/apt/sources.list.d/debian.sources \
      > "$A/etc/sources.list.d/debian.sources"
  fi
  if [ -s /etc/apt/sources.list ]; then
    { cat /etc/apt/sources.list
      sed -nE 's/^(deb +[^ ]+ +)bookworm( .*)$/\1bookworm-backports\2/p' /etc/apt/sources.list; } > "$A/etc/sources.list"
  fi
  # A foreign-architecture state needs only the main and backports indexes: a mirror
  # still syncing one of the others (seen with bookworm-security/ppc64el) is a warning.
  apt_p apt-get -q update >&2 || { [ -n "${APT_ARCH:-}" ] && echo "apt.sh: some $APT_ARCH indexes failed; using the others" >&2; }
  touch "$A/updated"
fi
# Debian unstable, for the newest linux-source only: every other package from it is pinned
# below -1 (never a candidate), linux-source-* above the stable suites. Added to an
# existing state too (a separate file, so a state made before it gains it on the next run).
if [ ! -e "$A/etc/sources.list.d/unstable.sources" ]; then
  mkdir -p "$A/etc/sources.list.d" "$A/etc/preferences.d"
  cat > "$A/etc/preferences.d/unstable.pref" <<'PREF'
Package: *
Pin: release n=sid
Pin-Priority: -10

Package: linux-source linux-source-*
Pin: release n=sid
Pin-Priority: 600
PREF
  cat > "$A/etc/sources.list.d/unstable.sources" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Architectures: amd64
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt_p apt-get -q update >&2
  touch "$A/updated"
fi
