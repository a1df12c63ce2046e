#!/usr/bin/env bash
# End-to-end tests of the web console in a real headless Chromium (Debian's
# package, driven by playwright-core), against a real control plane with demo
# sessions, a connector in front of the local PostgreSQL, and psql.
#
# GATEHOUSE_BIN: the binary to test (default: builds target/debug/gatehouse).
# Screenshots go to tests/browser/artifacts/.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"

if [ ! -x /usr/bin/chromium ]; then
    say "installing chromium (Debian package)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# playwright-core drives the system browser; it must never fetch one of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
say "npm ci (playwright-core)"
npm ci --no-audit --no-fund --loglevel=error

bin="${GATEHOUSE_BIN:-}"
if [ -z "$bin" ]; then
    say "building gatehouse"
    (cd "$root" && cargo build -p gatehouse)
    bin="$root/target/debug/gatehouse"
fi

# The termination test needs a real session through a connector.
start_postgres || { echo "PostgreSQL is not answering on 127.0.0.1:5432" >&2; exit 1; }

work="$(mktemp -d)"

data="$work/cp"
store() { RUST_LOG=warn "$bin" "$@" --data-dir "$data"; }
say "seeding demo sessions"
store seed --org default --sessions 3000 --active 12 --days 30 >/dev/null
admin_key="$(store keys create --org default --role admin --name browser-admin 2>/dev/null)"
reader_key="$(store keys create --org default --role reader --name browser-reader 2>/dev/null)"
empty_org_key="$(store keys create --org vacant --role reader --name browser-vacant 2>/dev/null)"
resource="$(store resources create --org default --name browser-pg --host 127.0.0.1 --port 5432 2>/dev/null)"
connector_key="$(store connectors create --org default --name browser-edge 2>/dev/null | grep -o 'ghc_[A-Za-z0-9_-]*' | head -n 1)"

api_port="$(free_port)"
proxy_port="$(free_port)"
cat >"$work/connector.toml" <<TOML
admin_listen = "127.0.0.1:$(free_port)"
state_dir = "$work/connector-state"

[control_plane]
url = "http://127.0.0.1:$api_port"
key = "$connector_key"

[[listeners]]
listen = "127.0.0.1:$proxy_port"
resource = "$resource"
TOML

say "starting the control plane on :$api_port and a connector on :$proxy_port"
RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$api_port" --data-dir "$data" --connector-lease 10s >"$work/serve.log" 2>&1 &
pids+=($!)
wait_port "$api_port"
RUST_LOG=warn "$bin" connector --config "$work/connector.toml" >"$work/connector.log" 2>&1 &
pids+=($!)
wait_port "$proxy_port"

mkdir -p artifacts
say "browser tests (node --test, headless Chromium)"
status=0
GATEHOUSE_URL="http://127.0.0.1:$api_port" ADMIN_KEY="$admin_key" READER_KEY="$reader_key" \
    EMPTY_ORG_KEY="$empty_org_key" PROXY_PORT="$proxy_port" GATEHOUSE_BIN="$bin" GATEHOUSE_DATA_DIR="$data" \
    node --test --test-concurrency=1 console.test.mjs || status=$?
if [ "$status" != 0 ]; then
    echo "--- control plane log"; tail -n 40 "$work/serve.log"
    echo "--- connector log"; tail -n 40 "$work/connector.log"
fi
exit "$status"
