#!/usr/bin/env bash
# Create or refresh the control-node virtualenv at .venv from the pinned
# requirements. It is rebuilt only when requirements-control.txt changes.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

venv="$BRIGADE_ROOT/.venv"
req="$BRIGADE_ROOT/requirements-control.txt"
want=$(sha256sum "$req" | cut -d' ' -f1)
stamp="$venv/.brigade-requirements"

if [ -x "$venv/bin/ansible-playbook" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv
if [ ! -x "$venv/bin/pip" ]; then
  say "creating the control-node virtualenv in .venv (about a minute)"
  python3 -m venv "$venv" || die "python3 could not create a virtualenv in $venv."
else
  say "updating .venv to requirements-control.txt"
fi
if ! { "$venv/bin/pip" install -q --upgrade pip && "$venv/bin/pip" install -q -r "$req"; } >/tmp/brigade-pip.log 2>&1; then
  die "pip could not install requirements-control.txt into .venv (see /tmp/brigade-pip.log)."
fi
echo "$want" >"$stamp"
