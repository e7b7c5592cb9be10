#!/usr/bin/env bash
# Installs the Debian packages the tests and the native demo use: Prometheus + promtool,
# Alertmanager + amtool, wrk, and the PostgreSQL and Redis servers the database/cache instrumentation tests start
# on 127.0.0.1 themselves (tests/instrumentation/integrations/conftest.py). Does nothing when they are already there; says what to do when not root.
set -euo pipefail
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v wrk >/dev/null || need+=(wrk)
command -v node >/dev/null || need+=(nodejs npm)
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
[ ${#need[@]} -eq 0 ] && exit 0
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "obsbox: missing ${need[*]}; install them (Debian: sudo apt-get install ${need[*]}) — tests that need them will say so." >&2
  exit 0
fi
echo "obsbox: installing ${need[*]} from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged daemons on install; the tests and the native runtime run their own.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter postgresql redis-server; do
  (systemctl stop "$svc" || service "$svc" stop) >/dev/null 2>&1 || true
done
