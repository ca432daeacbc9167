#!/usr/bin/env bash
# `make test`: every check the project has, in order, with each stage's time at
# the end. Every stage runs even when an earlier one failed, so one run shows
# every problem; the exit status is non-zero when any stage failed.
#
#   scripts/test.sh                 # everything
#   TEST_STAGES="lint pytest" scripts/test.sh   # a subset (stage names below)
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$BRIGADE_ROOT"

"$BRIGADE_ROOT/scripts/venv.sh" || exit 1
export PATH="$BRIGADE_ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$BRIGADE_ROOT/ansible.cfg"
export PY_COLORS=0 ANSIBLE_NOCOLOR=1

# Role scenarios run one after another: common first (every host has it), then
# the rest in the order site.yml applies them.
role_order=(common postgresql redis app nginx prometheus alertmanager grafana)
roles=()
for role in "${role_order[@]}"; do
  [ -d "roles/$role/molecule/default" ] && roles+=("$role")
done
for dir in roles/*/molecule/default; do
  role=$(basename "$(dirname "$(dirname "$dir")")")
  [[ " ${roles[*]} " == *" $role "* ]] || roles+=("$role")
done

stages=(lint pytest rules app)
for role in "${roles[@]}"; do stages+=("molecule:$role"); done
stages+=(stack)
if [ -n "${TEST_STAGES:-}" ]; then
  read -r -a stages <<<"$TEST_STAGES"
fi

# The container engine and the base image, only for the stages that start
# containers (CI runs the other stages in jobs without an engine).
for stage in "${stages[@]}"; do
  case "$stage" in
    molecule:* | stack)
      "$BRIGADE_ROOT/scripts/engine.sh" || exit 1
      "$BRIGADE_ROOT/scripts/image.sh" || exit 1
      break
      ;;
  esac
done

# Alert rules, routes and dashboards: promtool and amtool come from Debian's
# packages (their services are not started on the control node).
rule_tests() {
  apt_install prometheus prometheus-alertmanager || return 1
  promtool test rules roles/prometheus/tests/rules/*.test.yml &&
    python -m pytest -q roles/prometheus/tests roles/alertmanager/tests roles/grafana/tests
}

run_stage() {
  case "$1" in
    lint) scripts/lint.sh ;;
    pytest) python -m pytest -q tests --ignore=tests/stack --ignore=tests/security --ignore=tests/drills --ignore=tests/backup ;;
    app) bash app/test.sh ;;
    rules) rule_tests ;;
    molecule:*) scripts/molecule.sh "${1#molecule:}" test ;;
    stack) scripts/stack_test.sh ;;
    *) echo "unknown stage $1" >&2; return 2 ;;
  esac
}

declare -A took result
failed=0
for stage in "${stages[@]}"; do
  say "stage $stage"
  t0=$(date +%s)
  if run_stage "$stage"; then result[$stage]=passed; else result[$stage]=FAILED; failed=$((failed + 1)); fi
  took[$stage]=$(($(date +%s) - t0))
done

echo
echo "Stage durations:"
total=0
passed=0
for stage in "${stages[@]}"; do
  printf '  %-24s %-7s %5ss\n' "$stage" "${result[$stage]}" "${took[$stage]}"
  total=$((total + took[$stage]))
  [ "${result[$stage]}" = passed ] && passed=$((passed + 1))
done
printf '  %-24s %-7s %5ss\n' total "" "$total"
echo
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
