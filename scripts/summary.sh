#!/usr/bin/env bash
# Print where to look after `make up`: each URL and whether it answers, where the
# credentials are, how long the run took, its recap and its ten slowest tasks.
#   scripts/summary.sh START_EPOCH [PLAYBOOK_LOG]
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
start=${1:-$(date +%s)}
log=${2:-}

probe() {
  local code
  code=$(curl -ks -o /dev/null -m 3 -w '%{http_code}' "$1")
  if [ "$code" = 000 ]; then echo "not serving yet"; else echo "answers $code"; fi
}

elapsed=$(($(date +%s) - start))
echo
echo "Brigade local environment is up ($((elapsed / 60)) min $((elapsed % 60)) s)."
echo
printf '  %-34s %s\n' "Front end and API (nginx, TLS)" "https://localhost:8443/  [$(probe https://localhost:8443/)]"
printf '  %-34s %s\n' "HTTP (redirects to HTTPS)" "http://localhost:8080/   [$(probe http://localhost:8080/)]"
printf '  %-34s %s\n' "Prometheus" "http://localhost:9090/   [$(probe http://localhost:9090/-/ready)]"
printf '  %-34s %s\n' "Alertmanager" "http://localhost:9093/   [$(probe http://localhost:9093/-/ready)]"
grafana="[$(probe http://localhost:3000/api/health)]"
if [ -n "$log" ] && grep -q 'Grafana SKIPPED' "$log" 2>/dev/null; then
  grafana="[skipped: its APT repository is unreachable from the hosts; see the run log]"
fi
printf '  %-34s %s\n' "Grafana" "http://localhost:3000/   $grafana"
echo
echo "  Hosts:        ssh -i .local/ssh/id_ed25519 brigade@<address>   (addresses in inventories/local/hosts.yml)"
echo "  API login:    user admin, password vault_app_admin_password (staff board: https://localhost:8443/staff.html)"
echo "  Credentials:  .venv/bin/ansible-vault view --vault-id local@.local/vault-password-local \\"
echo "                  inventories/local/group_vars/all/vault.yml"
if [ -n "$log" ] && [ -f "$log" ]; then
  echo "  Run log:      $log"
  echo
  echo "  Recap:"
  sed -n '/^PLAY RECAP/,/^$/p' "$log" | sed '1d;s/^/    /' | sed '/^ *$/d'
  # The run's record (scripts/brigade_runner.py names it on the log's last line).
  record=$(sed -n 's/^Run record: //p' "$log" | tail -n 1)
  if [ -n "$record" ] && [ -f "$(cd "$BRIGADE_ROOT" && realpath -e -- "$record" 2>/dev/null)" ]; then
    echo
    echo "  Ten slowest tasks (every task, per host: $record):"
    (cd "$BRIGADE_ROOT" && .venv/bin/python scripts/brigade_runner.py --slowest "$record") | sed 's/^/  /'
  fi
fi
