#!/usr/bin/env bash
# Black-box tests of the sessions API with the official Connect clients for
# JavaScript (connect-es: @connectrpc/connect, @connectrpc/connect-node,
# @bufbuild/protobuf v2), with code generated from our own .proto files by
# protoc-gen-es through the buf CLI, as a user's generated SDK would be.
# Every call is made over the four transports where it makes sense: Connect JSON,
# Connect binary, gRPC (HTTP/2 cleartext) and gRPC-web.
#
#   bash tests/connect/run.sh [node --test args, e.g. --test-name-pattern=paging]
#
# GATEHOUSE_BIN: the binary to test (default: builds target/debug/gatehouse).
# When PostgreSQL answers on 127.0.0.1:5432 (started here if it is installed), a
# connector fronts it so that transcripts and terminations of real sessions are
# tested too; without it those tests are skipped and say why.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"

say "npm ci (connect-es, protobuf-es, buf)"
npm ci --no-audit --no-fund --loglevel=error

say "generating the client from crates/proto/proto (buf generate)"
npx --no-install buf generate

bin="${GATEHOUSE_BIN:-}"
if [ -z "$bin" ]; then
    say "building gatehouse"
    (cd "$root" && cargo build -p gatehouse)
    bin="$root/target/debug/gatehouse"
fi

work="$(mktemp -d)"

data="$work/cp"
store() { RUST_LOG=warn "$bin" "$@" --data-dir "$data"; }
key() { store keys create --org "$1" --role "$2" --name "$3" 2>/dev/null; }

say "seeding sessions: org default (3000 completed, 12 active), org other (50 completed, 2 active)"
store seed --org default --sessions 3000 --active 12 --days 30 >/dev/null
store seed --org other --sessions 50 --active 2 --days 30 --seed 7 >/dev/null
export ADMIN_KEY READER_KEY OTHER_READER_KEY OTHER_ADMIN_KEY
ADMIN_KEY="$(key default admin connect-admin)"
READER_KEY="$(key default reader connect-reader)"
OTHER_READER_KEY="$(key other reader connect-other-reader)"
OTHER_ADMIN_KEY="$(key other admin connect-other-admin)"
export DEFAULT_COMPLETED=3000 DEFAULT_ACTIVE=12 OTHER_COMPLETED=50 OTHER_ACTIVE=2

# A live session needs a connector in front of a real PostgreSQL. Its sessions go
# to an organization of their own, so that the seeded counts above stay exact.
live=0
if command -v psql >/dev/null && start_postgres; then
    live=1
    export LIVE_ADMIN_KEY PROXY_PORT
    LIVE_ADMIN_KEY="$(key live admin connect-live-admin)"
    resource="$(store resources create --org live --name connect-pg --host 127.0.0.1 --port 5432 2>/dev/null)"
    connector_key="$(store connectors create --org live --name connect-edge 2>/dev/null | grep -o 'ghc_[A-Za-z0-9_-]*' | head -n 1)"
    PROXY_PORT="$(free_port)"
fi

api_port="$(free_port)"
slow_port="$(free_port)"
export GATEHOUSE_URL="http://127.0.0.1:$api_port"
# A second server on the same store whose statements time out at once: how a
# store timeout reaches each client (deadline_exceeded).
export SLOW_URL="http://127.0.0.1:$slow_port"

say "starting the control plane on :$api_port (and one with a 1 ms statement timeout on :$slow_port)"
RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$api_port" --data-dir "$data" --connector-lease 10s >"$work/serve.log" 2>&1 &
pids+=($!)
RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$slow_port" --data-dir "$data" --db-statement-timeout 1ms >"$work/slow.log" 2>&1 &
pids+=($!)
wait_port "$api_port"
wait_port "$slow_port"

if [ "$live" = 1 ]; then
    cat >"$work/connector.toml" <<TOML
admin_listen = "127.0.0.1:$(free_port)"
state_dir = "$work/connector-state"

[control_plane]
url = "$GATEHOUSE_URL"
key = "$connector_key"

[[listeners]]
listen = "127.0.0.1:$PROXY_PORT"
resource = "$resource"
TOML
    say "starting a connector on :$PROXY_PORT in front of PostgreSQL"
    RUST_LOG=warn "$bin" connector --config "$work/connector.toml" >"$work/connector.log" 2>&1 &
    pids+=($!)
    wait_port "$PROXY_PORT"
else
    say "no PostgreSQL on 127.0.0.1:5432: the tests of live sessions are skipped"
fi

say "Connect client tests (node --test)"
status=0
node --test --test-concurrency=1 "$@" ./*.test.mjs || status=$?
if [ "$status" != 0 ]; then
    echo "--- control plane log"; tail -n 40 "$work/serve.log"
    echo "--- slow control plane log"; tail -n 20 "$work/slow.log"
    [ "$live" = 1 ] && { echo "--- connector log"; tail -n 40 "$work/connector.log"; }
fi
exit "$status"
