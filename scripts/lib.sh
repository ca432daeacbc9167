# Shared helpers for the scripts in this folder. Source it; do not run it.
# shellcheck shell=bash

BRIGADE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BRIGADE_ROOT

# One clear sentence on stderr, then exit non-zero.
die() {
  printf 'brigade: %s\n' "$*" >&2
  exit 1
}

say() {
  printf '==> %s\n' "$*"
}

# apt_install PKG...: install Debian packages that are not installed yet.
apt_install() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "packages ${missing[*]} are missing and installing them needs root."
  say "installing Debian packages: ${missing[*]}"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/tmp/brigade-apt.log 2>&1; then
    die "could not install ${missing[*]} with apt-get (see /tmp/brigade-apt.log)."
  fi
}
