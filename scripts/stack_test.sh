#!/usr/bin/env bash
# The full-stack Molecule scenario (molecule/default): the seven hosts of the
# local environment made fresh, converged with playbooks/site.yml, converged
# again (changed=0 on every host), then tests/stack, tests/drills, tests/backup and
# tests/security end to end, in one verifier session. The scenario
# removes the environment at the end unless KEEP_STACK=1.
#
# It replaces whatever local environment is up: `make up` again afterwards.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$BRIGADE_ROOT"

"$BRIGADE_ROOT/scripts/venv.sh"
"$BRIGADE_ROOT/scripts/engine.sh"
"$BRIGADE_ROOT/scripts/image.sh"
# The security checks' clients on the control node (tests/security): testssl.sh
# against nginx, and a real browser (Debian's chromium, driven by Playwright).
apt_install testssl.sh chromium
export PATH="$BRIGADE_ROOT/.venv/bin:$PATH" PY_COLORS=0 ANSIBLE_NOCOLOR=1
.venv/bin/python scripts/local_secrets.py

args=()
if [ "${KEEP_STACK:-0}" = 1 ]; then
  args+=(--destroy never)
fi
exec molecule test --scenario-name default "${args[@]}"
