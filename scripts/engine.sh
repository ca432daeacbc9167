#!/usr/bin/env bash
# Make sure a container engine answers: install Debian's docker.io when it is
# missing and start dockerd when no engine runs. Safe to run any number of times.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

if docker info >/dev/null 2>&1; then
  exit 0
fi

command -v dockerd >/dev/null 2>&1 || apt_install docker.io
apt_install debootstrap

log=/var/log/brigade-dockerd.log
# DOCKER_HOST=unix://PATH makes the daemon listen there: CI's job containers
# already hold the runner's own engine socket at the default path.
listen=()
case "${DOCKER_HOST:-}" in
  unix://*) listen=(-H "$DOCKER_HOST") ;;
esac
if ! pgrep -x dockerd >/dev/null 2>&1; then
  say "starting dockerd (log: $log)"
  # systemd is not PID 1 on every build machine, so start the daemon directly.
  setsid nohup dockerd "${listen[@]}" >"$log" 2>&1 </dev/null &
fi

for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
die "the container engine did not answer within 60 s after starting dockerd (see $log)."
