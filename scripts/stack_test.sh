#!/usr/bin/env bash
# The local environment, end to end over SSH: bring it up with `make up` (or
# reuse the one that is up), converge again and require changed=0 on every
# host, run site.yml in --check --diff mode, then the checks in tests/stack/.
# An environment this script created is removed at the end unless KEEP_STACK=1.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$BRIGADE_ROOT"
export PATH="$BRIGADE_ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$BRIGADE_ROOT/ansible.cfg"

created=0
if ! docker container inspect brigade-lb1 >/dev/null 2>&1; then
  created=1
fi
cleanup() {
  if [ "$created" = 1 ] && [ "${KEEP_STACK:-0}" != 1 ]; then
    say "removing the local environment this test created"
    make --no-print-directory down >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

rc=0
scripts/up.sh || exit 1

playbook=(ansible-playbook -i inventories/local --vault-id local@.local/vault-password-local)
say "second converge (at -vvv, to search its output for secrets): every host must report changed=0"
"${playbook[@]}" -vvv playbooks/site.yml >/tmp/brigade-reconverge.log 2>&1 || rc=1
recap=$(sed -n '/^PLAY RECAP/,/^$/p' /tmp/brigade-reconverge.log)
echo "$recap"
if echo "$recap" | grep -E 'changed=[1-9]|failed=[1-9]|unreachable=[1-9]' >/dev/null; then
  echo "the second converge was not a no-op (log: /tmp/brigade-reconverge.log)" >&2
  rc=1
fi

say "check mode on the configured hosts: --check --diff reports no change"
"${playbook[@]}" playbooks/site.yml --check --diff >/tmp/brigade-check.log 2>&1 || rc=1
recap=$(sed -n '/^PLAY RECAP/,/^$/p' /tmp/brigade-check.log)
echo "$recap"
if echo "$recap" | grep -E 'changed=[1-9]|failed=[1-9]|unreachable=[1-9]' >/dev/null; then
  echo "check mode found differences or failed (log: /tmp/brigade-check.log)" >&2
  rc=1
fi

say "checks over real connections (tests/stack)"
BRIGADE_OUTPUT_LOGS=/tmp/brigade-reconverge.log:/tmp/brigade-check.log python -m pytest -q tests/stack || rc=1
exit "$rc"
