# Sourced by the vmtest scripts that need a Debian package on the host (libvirtd,
# node_exporter, ansible-core): `apt_install_checked WHO PACKAGE...` installs them
# without recommends, after apt's plan is checked: it refuses (exit 1) when the plan would
# remove any package the host has, and prints what it installs ("NAME (upgraded from
# [OLD])" for a package the host has at another version), prefixed with WHO.
apt_install_checked() {
  local who=$1; shift
  local plan
  plan=$(apt-get install -s -q --no-install-recommends "$@" 2>&1) \
    || { apt-get update -q >&2; plan=$(apt-get install -s -q --no-install-recommends "$@" 2>&1); } \
    || { echo "$who: apt cannot install $*:" >&2; echo "$plan" >&2; exit 1; }
  if grep -q '^Remv ' <<<"$plan"; then
    echo "$who: refusing: installing $* would remove packages:" >&2; grep '^Remv ' <<<"$plan" >&2; exit 1
  fi
  # "Inst NAME [OLD] (NEW ...)" upgrades a package the host has; "Inst NAME (NEW ...)" adds one.
  echo "$who: installing (apt, no recommends): $(grep '^Inst ' <<<"$plan" \
    | awk '{ if ($3 ~ /^\[/) printf "%s (upgraded from %s) ", $2, $3; else printf "%s ", $2 }')" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2
}
