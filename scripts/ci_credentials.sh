#!/usr/bin/env bash
# `make ci-credentials`: the deploy jobs' credentials, from the CI's environment
# secrets to files only this user can read, and the settings that point
# ansible-playbook at them.
#
# Reads (all required, none is ever printed):
#   BRIGADE_VAULT_PASSWORD     the environment's ansible-vault password
#   BRIGADE_SSH_PRIVATE_KEY    the deploy key of the `brigade` admin user (OpenSSH format)
#   BRIGADE_SSH_KNOWN_HOSTS    the hosts' SSH host keys (ssh-keyscan output, checked by you)
# Writes, into BRIGADE_CREDENTIALS_DIR (default: $RUNNER_TEMP/brigade-credentials,
# which the runner empties after every job), each file mode 0600 in a 0700 folder:
#   vault-password  ssh-key  known_hosts
# and, when GITHUB_ENV is set (GitHub Actions), appends for the later steps:
#   VAULT_PASSWORD_FILE, ANSIBLE_PRIVATE_KEY_FILE, ANSIBLE_SSH_COMMON_ARGS
# Host keys are always checked: an empty BRIGADE_SSH_KNOWN_HOSTS is refused.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

missing=()
for name in BRIGADE_VAULT_PASSWORD BRIGADE_SSH_PRIVATE_KEY BRIGADE_SSH_KNOWN_HOSTS; do
  [ -n "${!name:-}" ] || missing+=("$name")
done
[ "${#missing[@]}" -eq 0 ] || die "${missing[*]} empty or unset: add the secret(s) to this GitHub environment (see README, CI/CD and scheduling)."

if [ -n "${BRIGADE_CREDENTIALS_DIR:-}" ]; then
  dir=$BRIGADE_CREDENTIALS_DIR
elif [ -n "${RUNNER_TEMP:-}" ]; then
  dir=$RUNNER_TEMP/brigade-credentials
else
  die "set BRIGADE_CREDENTIALS_DIR (or RUNNER_TEMP) to the folder for the credential files."
fi

umask 077
mkdir -p "$dir"
chmod 0700 "$dir"
dir=$(cd "$dir" && pwd)

# printf, not echo: nothing is interpreted; the key needs its final newline.
printf '%s\n' "${BRIGADE_VAULT_PASSWORD%$'\n'}" >"$dir/vault-password"
printf '%s\n' "${BRIGADE_SSH_PRIVATE_KEY%$'\n'}" >"$dir/ssh-key"
printf '%s\n' "${BRIGADE_SSH_KNOWN_HOSTS%$'\n'}" >"$dir/known_hosts"
chmod 0600 "$dir/vault-password" "$dir/ssh-key" "$dir/known_hosts"

if [ -n "${GITHUB_ENV:-}" ]; then
  {
    printf 'VAULT_PASSWORD_FILE=%s\n' "$dir/vault-password"
    printf 'ANSIBLE_PRIVATE_KEY_FILE=%s\n' "$dir/ssh-key"
    printf 'ANSIBLE_SSH_COMMON_ARGS=-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes\n' "$dir/known_hosts"
  } >>"$GITHUB_ENV"
fi
say "credentials written to $dir (vault-password, ssh-key, known_hosts; mode 0600)"
