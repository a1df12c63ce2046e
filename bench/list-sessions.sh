#!/usr/bin/env bash
# ListSessionsV2 at scale: seeds SESSIONS sessions once, then times the API
# over HTTP against the raw store in the same process, measures ingestion
# from 8 simulated connectors, and prints the query plans.
#   bench/list-sessions.sh [SESSIONS] [BENCH ARGS...]        SQLite (kept in target/bench/)
#   bench/list-sessions.sh --pg [SESSIONS] [BENCH ARGS...]   PostgreSQL, database gh_bench_SESSIONS
# SESSIONS defaults to 1000000. The PostgreSQL mode reaches the server through
# GATEHOUSE_BENCH_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres)
# and keeps the seeded database for later runs; drop it to reseed.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=sqlite
if [ "${1:-}" = "--pg" ]; then
    mode=pg
    shift
fi
sessions=${1:-1000000}
cargo build --release -q -p gatehouse -p gatehouse-bench
if [ "$mode" = sqlite ]; then
    dir=target/bench/sqlite-$sessions
    if [ ! -f "$dir/seeded" ]; then
        rm -rf "$dir"
        # sqlx flags some 5,000-session batches as slow statements: expected here.
        RUST_LOG=warn,sqlx::query=error target/release/gatehouse seed --data-dir "$dir" --sessions "$sessions" --active 50
        touch "$dir/seeded"
    fi
    exec target/release/gatehouse-bench --data-dir "$dir" "${@:2}"
fi

admin=${GATEHOUSE_BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db=gh_bench_$sessions
url=${admin%/*}/$db
psql_admin() { psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$admin" -c "$1"; }
# The database's comment marks a finished seed, so an interrupted one starts over.
if [ "$(psql_admin "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '$db'")" != seeded ]; then
    psql_admin "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    psql_admin "CREATE DATABASE $db"
    # sqlx flags each 5,000-session batch as a slow statement: expected here.
    RUST_LOG=warn,sqlx::query=error target/release/gatehouse seed --database-url "$url" --sessions "$sessions" --active 50
    echo "vacuum analyze (statistics and visibility maps for the planner)..." >&2
    psql -X -q -d "$url" -c "VACUUM (ANALYZE)"
    psql_admin "COMMENT ON DATABASE $db IS 'seeded'"
fi
echo "table sizes:" >&2
psql -X -q -d "$url" -c "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) AS total, reltuples::bigint AS rows \
    FROM pg_class WHERE relname IN ('sessions', 'statements', 'session_values') ORDER BY relname" >&2
exec target/release/gatehouse-bench --database-url "$url" "${@:2}"
