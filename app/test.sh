#!/usr/bin/env bash
# Lint and test the Brigade API against real PostgreSQL and Redis.
#
# Works on a fresh Debian 12 machine: installs what is missing (postgresql,
# redis-server, python3-venv), builds app/.venv from the hash-locked
# requirements-dev.lock, then runs ruff, mypy and pytest. Re-runs are quick: the
# virtualenv is rebuilt only when the lock file or pyproject.toml change.
# Extra arguments are passed to pytest (e.g. bash app/test.sh -k orders -x).
set -euo pipefail

APP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$APP_DIR"
VENV="$APP_DIR/.venv"

log() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# -- system packages -----------------------------------------------------------
missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ "$(id -u)" -eq 0 ] && ! command -v runuser >/dev/null; then missing+=(util-linux); fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing system packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# -- virtualenv ----------------------------------------------------------------
stamp_file="$VENV/.brigade-stamp"
want_stamp="$(cat requirements-dev.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp_file" 2>/dev/null)" != "$want_stamp" ]; then
  log "creating $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --require-hashes \
    -r requirements-dev.lock
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -e .
  echo "$want_stamp" >"$stamp_file"
else
  log "reusing $VENV"
fi

# -- lint ----------------------------------------------------------------------
log "ruff check"
"$VENV/bin/ruff" check src tests scripts
log "ruff format --check"
"$VENV/bin/ruff" format --check src tests scripts
log "mypy"
"$VENV/bin/mypy"
# The scripts reuse tests/servers.py; same strict settings.
MYPYPATH=tests "$VENV/bin/mypy" scripts

# -- tests ---------------------------------------------------------------------
log "pytest"
exec "$VENV/bin/pytest" "$@"
