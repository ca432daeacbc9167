#!/usr/bin/env bash
# `make up`: everything from a fresh Debian 12 machine to the converged local
# stack, then a summary of where to look. Safe to run again: a second run
# converges nothing (changed=0) and prints the same summary.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$BRIGADE_ROOT"
start=$(date +%s)

"$BRIGADE_ROOT/scripts/venv.sh"
"$BRIGADE_ROOT/scripts/engine.sh"
"$BRIGADE_ROOT/scripts/image.sh"
export PATH="$BRIGADE_ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$BRIGADE_ROOT/ansible.cfg"
.venv/bin/python scripts/local_secrets.py

# ansible-playbook through ansible-runner (scripts/brigade_runner.py): the same
# output, and a record of each run with its timings under runs/.
playbook=(.venv/bin/python scripts/brigade_runner.py -i inventories/local --vault-id local@.local/vault-password-local)
say "creating the local hosts (containers reached over SSH)"
"${playbook[@]}" playbooks/local_env.yml >/tmp/brigade-local-env.log 2>&1 ||
  { tail -n 30 /tmp/brigade-local-env.log >&2; die "could not create the local hosts (log: /tmp/brigade-local-env.log)."; }

say "converging playbooks/site.yml"
mkdir -p runs
log="runs/site-$(date +%Y%m%d-%H%M%S).log"
if ! "${playbook[@]}" playbooks/site.yml 2>&1 | tee "$log"; then
  die "site.yml failed (log: $log)."
fi

"$BRIGADE_ROOT/scripts/summary.sh" "$start" "$log"
