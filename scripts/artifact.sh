#!/usr/bin/env bash
# `make artifact`: build the app artifact once, the way deploy.yml does on the
# control node (app/build.sh run by Debian's python3, the hosts' interpreter),
# so CI can build it in one job and ship that same directory to every
# environment with `make deploy ARTIFACT=DIR`.
#
#   scripts/artifact.sh DIR     # DIR: wheel, wheelhouse, requirements.lock, VERSION,
#                               # BUILD_INFO.json and SHA256SUMS over all of them
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || die "usage: scripts/artifact.sh DIR"
out=$(realpath -m "$1")

# The hosts run Debian 12's /usr/bin/python3; the role refuses an artifact built
# by another Python version (environment markers in the lock may differ).
[ -x /usr/bin/python3 ] || apt_install python3 python3-venv
/usr/bin/python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv

# build.sh runs `python3`: make that Debian's, whatever else is on PATH.
shim=$(mktemp -d)
trap 'rm -rf "$shim"' EXIT
ln -s /usr/bin/python3 "$shim/python3"
PATH="$shim:$PATH" bash "$BRIGADE_ROOT/app/build.sh" "$out"

(cd "$out" && sha256sum --strict --quiet --check SHA256SUMS) || die "$out does not match its SHA256SUMS."
say "artifact in $out ($(wc -l <"$out/SHA256SUMS") files in SHA256SUMS, version $(cat "$out/VERSION"))"
