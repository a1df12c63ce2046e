#!/usr/bin/env bash
# Instructions the proxy runs per pgbench transaction, counted by valgrind's callgrind:
# the connector against pgbouncer, on the same transactions. Unlike time, the count is the
# same from run to run whatever else the machine does, so a change to the relay's hot path
# can be judged in a minute. User space only: system calls cost the same for both (6 per
# select-only transaction, strace -c).
#
# Usage: bench/proxy/instructions.sh [TRANSACTIONS]   (default 5000; pgbench -S, 1 client,
# simple and prepared protocol)
set -euo pipefail
cd "$(dirname "$0")/../.."
TXNS=${1:-5000}
command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
fi
pg_isready -q -h 127.0.0.1 || pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
cargo build --release -q -p gatehouse
GH=$PWD/target/release/gatehouse
export PGSSLMODE=disable RUST_LOG=warn
WORK=$(mktemp -d /tmp/gh-instructions-XXXXXX)
chmod 777 "$WORK"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (echo > /dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; echo "nothing on port $1" >&2; exit 1; }

psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS gh_instructions" 2>/dev/null
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE gh_instructions"
pgbench -h 127.0.0.1 -U postgres -i -q -s 1 gh_instructions >/dev/null 2>&1

API=$(free_port); PROXY=$(free_port); ADMIN=$(free_port); BOUNCER=$(free_port)
"$GH" serve --listen 127.0.0.1:"$API" --data-dir "$WORK/cp" >/dev/null 2>&1 & PIDS+=($!)
wait_port "$API"
RESOURCE=$("$GH" resources create --org bench --name db --host 127.0.0.1 --port 5432 --data-dir "$WORK/cp" 2>/dev/null)
KEY=$("$GH" connectors create --org bench --name edge --data-dir "$WORK/cp" 2>/dev/null)
cat > "$WORK/connector.toml" <<TOML
admin_listen = "127.0.0.1:$ADMIN"
state_dir = "$WORK/connector"
[control_plane]
url = "http://127.0.0.1:$API"
key = "$KEY"
[[listeners]]
listen = "127.0.0.1:$PROXY"
resource = "$RESOURCE"
TOML
mkdir -p "$WORK/pgb"
echo '"postgres" ""' > "$WORK/pgb/users.txt"
cat > "$WORK/pgb/pgbouncer.ini" <<INI
[databases]
gh_instructions = host=127.0.0.1 port=5432 dbname=gh_instructions
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER
auth_type = trust
auth_file = $WORK/pgb/users.txt
pool_mode = session
unix_socket_dir =
logfile = $WORK/pgb/pgbouncer.log
INI
chown -R postgres "$WORK/pgb"

# Instructions per transaction of the process on PORT, started by the rest of the arguments
# under callgrind: a run of 200 transactions is subtracted from one of 200 + TXNS, so that
# startup and the first connection cancel out.
measure() {
    local port=$1 mode=$2 out=$3; shift 3
    local totals=()
    for n in 200 $((200 + TXNS)); do
        rm -f "$out"
        "$@" & local pid=$!
        wait_port "$port"
        pgbench -h 127.0.0.1 -p "$port" -U postgres -n -S -M "$mode" -c1 -j1 -t "$n" gh_instructions >/dev/null
        # valgrind itself, which may run under runuser: it writes its counts as the proxy exits.
        pkill -INT -f "callgrind-out-file=$out" || true
        wait "$pid" 2>/dev/null || true
        totals+=("$(sed -n 's/^summary: //p' "$out")")
    done
    echo $(( (totals[1] - totals[0]) / TXNS ))
}

printf '%-10s %12s %12s %8s\n' protocol gatehouse pgbouncer ratio
for mode in simple prepared; do
    gh=$(measure "$PROXY" "$mode" "$WORK/gh.out" valgrind --tool=callgrind --callgrind-out-file="$WORK/gh.out" "$GH" connector --config "$WORK/connector.toml" 2>/dev/null)
    pgb=$(measure "$BOUNCER" "$mode" "$WORK/pgb/pgb.out" runuser -u postgres -- valgrind --tool=callgrind --callgrind-out-file="$WORK/pgb/pgb.out" /usr/sbin/pgbouncer "$WORK/pgb/pgbouncer.ini" 2>/dev/null)
    printf '%-10s %12s %12s %8s\n' "$mode" "$gh" "$pgb" "$(python3 -c "print(f'{$gh/$pgb:.2f}')")"
done
