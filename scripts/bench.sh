#!/usr/bin/env bash
# `make bench`: performance figures, medians over several runs, printed as a
# table. Needs the local environment (brought up here when it is not).
#   BENCH_RUNS=5 make bench
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$BRIGADE_ROOT"
command -v wrk >/dev/null 2>&1 || apt_install wrk
docker container inspect brigade-lb1 >/dev/null 2>&1 || scripts/up.sh
export PATH="$BRIGADE_ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$BRIGADE_ROOT/ansible.cfg"
exec python scripts/bench.py
