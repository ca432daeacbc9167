#!/usr/bin/env bash
# `make audit`: pip-audit of the app's locked runtime requirements
# (app/requirements.lock, what ships to the hosts), then scripts/audit.py
# decides: only high-severity (CVSS >= 7 or GitHub's HIGH/CRITICAL) or
# known-exploited (CISA KEV) findings fail, unless .pip-audit-allowlist names
# them with a reason and a date. It needs PyPI's JSON API, OSV and CISA's KEV
# feed, so CI runs it; `make test` does not.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$BRIGADE_ROOT"

pip_audit_version=2.10.1
venv=.cache/pip-audit
if [ "$(cat "$venv/.version" 2>/dev/null)" != "$pip_audit_version" ]; then
  say "installing pip-audit $pip_audit_version into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 could not create a virtualenv in $venv."
  "$venv/bin/pip" install -q "pip-audit==$pip_audit_version" >/tmp/brigade-pip-audit.log 2>&1 ||
    die "pip could not install pip-audit $pip_audit_version (see /tmp/brigade-pip-audit.log)."
  echo "$pip_audit_version" >"$venv/.version"
fi

report=$(mktemp)
trap 'rm -f "$report"' EXIT
say "pip-audit app/requirements.lock"
# Exit status 1 only means "vulnerabilities found": audit.py judges the report.
rc=0
"$venv/bin/pip-audit" --requirement app/requirements.lock --require-hashes --disable-pip \
  --format json --aliases on --desc off --progress-spinner off --output "$report" || rc=$?
if [ "$rc" -gt 1 ] || [ ! -s "$report" ]; then
  die "pip-audit failed (exit status $rc) before writing its report."
fi
.venv/bin/python scripts/audit.py --allowlist .pip-audit-allowlist "$report"
