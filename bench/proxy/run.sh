#!/usr/bin/env bash
# The proxy benchmark: installs pgbouncer if missing, builds the release
# binary, raises max_connections if needed, then runs run.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
fi
pg_isready -q -h 127.0.0.1 || pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
cargo build --release -q -p gatehouse
python3 bench/proxy/run.py "$@"
