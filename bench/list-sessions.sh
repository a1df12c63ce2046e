#!/usr/bin/env bash
# ListSessionsV2 at scale on SQLite: seeds SESSIONS sessions once (kept in
# target/bench/), then times the API over HTTP against the raw store in the
# same process, and prints the query plans.
#   bench/list-sessions.sh [SESSIONS]      (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
sessions=${1:-1000000}
dir=target/bench/sqlite-$sessions
cargo build --release -q -p gatehouse -p gatehouse-bench
if [ ! -f "$dir/seeded" ]; then
    rm -rf "$dir"
    target/release/gatehouse seed --data-dir "$dir" --sessions "$sessions" --active 50
    touch "$dir/seeded"
fi
target/release/gatehouse-bench --data-dir "$dir" "${@:2}"
