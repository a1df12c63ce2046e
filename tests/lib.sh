# Shared by the black-box suites' run.sh scripts (tests/connect, tests/browser): sourced,
# not run. A script sets `work` to its temporary directory and adds what it starts to `pids`.

# Sourced before the runner changes directory: a relative GATEHOUSE_BIN means relative to
# where the runner was started.
if [ -n "${GATEHOUSE_BIN:-}" ]; then GATEHOUSE_BIN="$(realpath "$GATEHOUSE_BIN")"; fi

say() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Starts the machine's PostgreSQL if it is installed and down, and waits for it; succeeds
# when it answers on 127.0.0.1:5432.
start_postgres() {
    if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
        say "starting PostgreSQL"
        as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
        for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
    fi
    pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null
}

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

wait_port() {
    for _ in $(seq 150); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    echo "nothing listens on port $1" >&2
    return 1
}

# Every process whose pid is added to `pids` is stopped, and `work` removed, on exit.
pids=()
work=""
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "$work" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
