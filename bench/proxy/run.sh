#!/usr/bin/env bash
# The proxy benchmark: installs pgbouncer if missing, starts PostgreSQL if it is down,
# builds the release binaries (gatehouse, and the bare relay for --floor), then runs
# run.py. Idle connections are measured 80 at a time, within PostgreSQL's default
# max_connections of 100.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
fi
pg_isready -q -h 127.0.0.1 || pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
cargo build --release -q -p gatehouse
cargo build --release -q -p gatehouse-bare-relay
python3 bench/proxy/run.py "$@"
