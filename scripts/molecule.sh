#!/usr/bin/env bash
# Run one role's Molecule scenario (`molecule test` unless told otherwise).
#   scripts/molecule.sh ROLE [molecule command and args]
# The container is named brigade-ROLE, so scenarios of different roles can run
# side by side without clashing.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

role=${1:?usage: scripts/molecule.sh ROLE [COMMAND ...]}
shift
[ -d "$BRIGADE_ROOT/roles/$role/molecule" ] || die "role '$role' has no Molecule scenario under roles/$role/molecule."
[ "$#" -gt 0 ] || set -- test

export PATH="$BRIGADE_ROOT/.venv/bin:$PATH"
export BRIGADE_MOLECULE_HOST="brigade-$role"
export PY_COLORS=0 ANSIBLE_NOCOLOR=1
cd "$BRIGADE_ROOT/roles/$role"
exec molecule "$@"
