#!/usr/bin/env bash
# Regenerate the hash-locked dependency files from pyproject.toml:
#   requirements.lock      runtime dependencies (what ships to hosts)
#   requirements-dev.lock  runtime + test/lint tools, constrained to the runtime pins
# pip-tools runs from a throwaway virtualenv so it never leaks into the app's.
set -euo pipefail
cd "$(dirname "$0")/.."

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Resolve with the Python the hosts run (Debian 12: 3.11.2), so markers such as
# python_full_version < "3.11.3" pull in what the hosts need.
"${PYTHON:-/usr/bin/python3}" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --disable-pip-version-check "pip-tools>=7.4"

compile=("$tmp/venv/bin/pip-compile" --quiet --generate-hashes --strip-extras --allow-unsafe
         --no-emit-index-url --no-emit-find-links --no-emit-trusted-host)
CUSTOM_COMPILE_COMMAND="scripts/lock.sh" "${compile[@]}" --output-file requirements.lock pyproject.toml
CUSTOM_COMPILE_COMMAND="scripts/lock.sh" "${compile[@]}" --extra test --constraint requirements.lock \
  --output-file requirements-dev.lock pyproject.toml
echo "wrote requirements.lock and requirements-dev.lock"
