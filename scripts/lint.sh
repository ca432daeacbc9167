#!/usr/bin/env bash
# The linters, all of them, even when an early one fails.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$BRIGADE_ROOT"
export PATH="$BRIGADE_ROOT/.venv/bin:$PATH"

rc=0
run() {
  say "$*"
  "$@" || rc=1
}
run yamllint --strict .
run ansible-lint
run ruff check .
run ruff format --check .
exit "$rc"
