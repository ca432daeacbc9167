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

# Role scenarios: each has its own containers, network and Molecule state
# (scripts/molecule.sh), so they run side by side, MOLECULE_JOBS at a time
# (default 3), longest first so that the lanes end together. The full-stack
# scenario (stage "stack") runs alone afterwards: its load tests measure latency
# and must not share the two cores with anything else.
role_order=(nginx app prometheus postgresql backup redis alertmanager common grafana)
# Scenarios that run alone all the same: testssl.sh's session-resumption probe
# in the nginx scenario fails to connect when another scenario shares the cores.
solo_roles=(nginx)
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
    # The control-node tests, and the unit tests of the tools the roles ship to
    # hosts (temporary trees and fakes, no container).
    pytest)
      apt_install age &&
        python -m pytest -q tests roles/backup/tests roles/app/tests roles/nginx/tests \
          --ignore=tests/stack --ignore=tests/security --ignore=tests/drills --ignore=tests/backup
      ;;
    app) bash app/test.sh ;;
    rules) rule_tests ;;
    molecule:*) scripts/molecule.sh "${1#molecule:}" test ;;
    stack) scripts/stack_test.sh ;;
    *) echo "unknown stage $1" >&2; return 2 ;;
  esac
}

declare -A took result
failed=0
log_dir="$BRIGADE_ROOT/.cache/test-logs"
jobs=${MOLECULE_JOBS:-3}
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die "MOLECULE_JOBS must be a positive integer, not '$jobs'."

record() { # STAGE STATUS SECONDS
  took[$1]=$3
  if [ "$2" -eq 0 ]; then result[$1]=passed; else result[$1]=FAILED; failed=$((failed + 1)); fi
}

stage_log() { echo "$log_dir/${1//:/-}.log"; }

# run_pool STAGE...: run the stages MOLECULE_JOBS at a time, each into its own
# log; a stage's log is printed whole when it ends, so the output stays
# readable and complete.
run_pool() {
  local queue=("$@") stage pid rc
  local -A running=() started=()
  mkdir -p "$log_dir"
  while [ "${#queue[@]}" -gt 0 ] || [ "${#running[@]}" -gt 0 ]; do
    while [ "${#queue[@]}" -gt 0 ] && [ "${#running[@]}" -lt "$jobs" ]; do
      stage=${queue[0]}
      queue=("${queue[@]:1}")
      say "stage $stage started (log: .cache/test-logs/${stage//:/-}.log)"
      started[$stage]=$(date +%s)
      run_stage "$stage" >"$(stage_log "$stage")" 2>&1 </dev/null &
      running[$!]=$stage
    done
    pid=
    wait -n -p pid "${!running[@]}"
    rc=$?
    [ -n "$pid" ] || continue
    stage=${running[$pid]}
    unset "running[$pid]"
    record "$stage" "$rc" $(($(date +%s) - started[$stage]))
    say "stage $stage ${result[$stage]} after ${took[$stage]}s; its output:"
    cat "$(stage_log "$stage")"
    say "end of stage $stage (${result[$stage]})"
  done
}

run_started=$(date +%s)
pool=()
for stage in "${stages[@]}" ""; do
  # Consecutive role scenarios go to the pool together (except the solo ones).
  if [[ "$stage" == molecule:* && " ${solo_roles[*]} " != *" ${stage#molecule:} "* ]]; then
    pool+=("$stage")
    continue
  fi
  if [ "${#pool[@]}" -gt 0 ]; then
    run_pool "${pool[@]}"
    pool=()
  fi
  [ -n "$stage" ] || break
  say "stage $stage"
  t0=$(date +%s)
  run_stage "$stage"
  record "$stage" $? $(($(date +%s) - t0))
done
wall=$(($(date +%s) - run_started))
# A stage that left no result (the runner itself broke) counts as failed.
for stage in "${stages[@]}"; do
  if [ -z "${result[$stage]:-}" ]; then
    record "$stage" 1 0
    result[$stage]="NOT RUN"
  fi
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
printf '  %-24s %-7s %5ss\n' "sum of stages" "" "$total"
printf '  %-24s %-7s %5ss  (role scenarios %s at a time)\n' "wall clock" "" "$wall" "$jobs"
echo
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
