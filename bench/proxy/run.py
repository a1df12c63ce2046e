#!/usr/bin/env python3
"""pgbench against PostgreSQL directly, through the Gatehouse connector, and
through pgbouncer (session mode) as the reference proxy, in one run.

Targets are interleaved within each round and the order is reversed every
round, because throughput on a shared 2-core machine drifts by ~10%.
Prints per target and workload: median TPS, mean latency, ratio to direct
(median of per-round ratios), added microseconds per transaction, the proxy
process's CPU microseconds per transaction (from /proc), for Gatehouse also
the control plane's CPU per transaction spent storing what was recorded, and
RSS per idle client connection.

With --floor, two bare relays join the targets (crates/bare-relay):
they copy bytes and do nothing else, one on tokio like the connector, one on io_uring.
What they cost over direct is what one more hop costs on this machine, whatever the
proxy does.

Usage: bench/proxy/run.sh [--rounds 3] [--seconds 15] [--scale 10] [--floor]
"""

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GATEHOUSE = os.path.join(ROOT, "target", "release", "gatehouse")
BARE_RELAY = os.path.join(ROOT, "target", "release", "bare-relay")
CLK_TCK = os.sysconf("SC_CLK_TCK")

WORKLOADS = [
    ("select-only, 1 client", ["-S", "-c1", "-j1"]),
    ("select-only, 8 clients", ["-S", "-c8", "-j2"]),
    ("select-only prepared, 8", ["-S", "-M", "prepared", "-c8", "-j2"]),
    ("TPC-B-like, 8 clients", ["-c8", "-j2"]),
    ("connect per txn, 8", ["-C", "-S", "-c8", "-j2"]),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on port {port}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pgbench(port, args, seconds):
    env = dict(os.environ, PGSSLMODE="disable")
    cmd = ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-n", "-T", str(seconds)] + args + ["bench"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"pgbench failed on port {port}: {out.stderr.strip()}")
    tps = float(re.search(r"tps = ([\d.]+) \((?:without initial connection time|including reconnection times)\)", out.stdout).group(1))
    latency = float(re.search(r"latency average = ([\d.]+) ms", out.stdout).group(1))
    txns = int(re.search(r"number of transactions actually processed: (\d+)", out.stdout).group(1))
    return tps, latency, txns


async def idle_connections(port, count):
    """Opens `count` authenticated, idle connections (trust auth, no TLS)."""
    conns = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        params = b"user\0postgres\0database\0bench\0\0"
        writer.write(struct.pack("!ii", 8 + len(params), 196608) + params)
        await writer.drain()
        while True:
            tag = await reader.readexactly(1)
            (length,) = struct.unpack("!i", await reader.readexactly(4))
            await reader.readexactly(length - 4)
            if tag == b"Z":
                break
            if tag == b"E":
                sys.exit(f"idle connection refused on port {port}")
        conns.append(writer)
    return conns


def rss_per_idle_connection(pid, port, count=80, step=20):
    """What an idle connection holds: the growth of RSS as `count` connections open, `step` at
    a time and all kept open, from the first `step` to the last (the first step pays for what
    any connection needs once: the allocator's first pages, report buffers). Measured once, on
    a process that has not had more connections before: after connections close, the memory
    they held stays in the allocator, and the next ones take it without RSS growing (stop 50
    read 0.0 KiB for both proxies that way)."""
    async def measure():
        conns, rss = [], []
        for _ in range(count // step):
            conns += await idle_connections(port, step)
            # Past the 5 s after which the connector hands memory freed since back to the
            # system (a login's, which an idle connection no longer holds).
            await asyncio.sleep(6)
            rss.append(rss_kib(pid))
        for w in conns:
            w.close()
        return (rss[-1] - rss[0]) * 1024 / (count - step)
    return asyncio.run(measure())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="0: idle connections' memory only")
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--floor", action="store_true", help="also bench two bare relays: the cost of one more hop")
    args = ap.parse_args()

    for tool in ["pgbench", "psql", "pgbouncer"]:
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"{tool} is missing: bench/proxy/run.sh installs it")
    work = tempfile.mkdtemp(prefix="gh-proxy-bench-")
    procs = []
    try:
        env = dict(os.environ, PGSSLMODE="disable", RUST_LOG="warn")
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", "DROP DATABASE IF EXISTS bench"], check=True, env=env)
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", "CREATE DATABASE bench"], check=True, env=env)
        subprocess.run(["pgbench", "-h", "127.0.0.1", "-U", "postgres", "-i", "-q", "-s", str(args.scale), "bench"],
                       check=True, env=env, capture_output=True)

        # Control plane, resource, connector.
        data = os.path.join(work, "cp")
        api_port = free_port()
        control_plane = subprocess.Popen([GATEHOUSE, "serve", "--listen", f"127.0.0.1:{api_port}", "--data-dir", data], env=env)
        procs.append(control_plane)
        wait_port(api_port)
        gh = lambda *a: subprocess.run([GATEHOUSE, *a, "--data-dir", data], env=env, check=True, capture_output=True, text=True).stdout.strip()
        resource = gh("resources", "create", "--org", "bench", "--name", "bench-db", "--host", "127.0.0.1", "--port", "5432")
        key = gh("connectors", "create", "--org", "bench", "--name", "bench-connector")
        proxy_port, admin_port = free_port(), free_port()
        config = os.path.join(work, "connector.toml")
        with open(config, "w") as f:
            f.write(f'admin_listen = "127.0.0.1:{admin_port}"\nstate_dir = "{work}/connector"\n\n'
                    f'[control_plane]\nurl = "http://127.0.0.1:{api_port}"\nkey = "{key}"\n\n'
                    f'[[listeners]]\nlisten = "127.0.0.1:{proxy_port}"\nresource = "{resource}"\n')
        connector = subprocess.Popen([GATEHOUSE, "connector", "--config", config], env=env)
        procs.append(connector)
        wait_port(proxy_port)

        # pgbouncer, session mode, trust.
        bouncer_port = free_port()
        with open(os.path.join(work, "users.txt"), "w") as f:
            f.write('"postgres" ""\n')
        ini = os.path.join(work, "pgbouncer.ini")
        with open(ini, "w") as f:
            f.write(f"[databases]\nbench = host=127.0.0.1 port=5432 dbname=bench\n\n[pgbouncer]\n"
                    f"listen_addr = 127.0.0.1\nlisten_port = {bouncer_port}\nauth_type = trust\n"
                    f"auth_file = {work}/users.txt\npool_mode = session\nmax_client_conn = 500\n"
                    f"default_pool_size = 100\nunix_socket_dir =\nlogfile = {work}/pgbouncer.log\n"
                    f"log_connections = 0\nlog_disconnections = 0\n")
        bouncer_bin = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        # pgbouncer refuses to run as root without -u.
        user = ["-u", "postgres"] if os.geteuid() == 0 else []
        if user:
            subprocess.run(["chown", "-R", "postgres", work], check=True)
        bouncer = subprocess.Popen([bouncer_bin, *user, ini], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(bouncer)
        wait_port(bouncer_port)

        targets = [("direct", 5432, None), ("gatehouse", proxy_port, connector.pid), ("pgbouncer", bouncer_port, bouncer.pid)]
        if args.floor:
            for io in ["tokio", "uring"]:
                port = free_port()
                relay = subprocess.Popen([BARE_RELAY, "--listen", f"127.0.0.1:{port}", "--upstream", "127.0.0.1:5432", "--io", io])
                procs.append(relay)
                wait_port(port)
                targets.append((f"bare/{io}", port, relay.pid))
        # Idle connections are measured first, on processes that have had none: see
        # rss_per_idle_connection. The proxies only; the bare relays keep nothing per
        # connection but their two sockets.
        idle_rss = []
        for target, port, pid in [t for t in targets if t[0] in ("gatehouse", "pgbouncer")]:
            per_connection = rss_per_idle_connection(pid, port) / 1024
            idle_rss.append(f"RSS per idle client connection, {target}: {per_connection:.1f} KiB "
                            f"(from 20 to 80 connections open, before the load)")
        results = {}  # (workload, target) -> list of (tps, latency, cpu_us_per_txn, control_plane_cpu_us_per_txn)
        if args.rounds == 0:
            print(*idle_rss, sep="\n")
            return
        print(f"pgbench -T {args.seconds}, {args.rounds} rounds, scale {args.scale}; PGSSLMODE=disable", flush=True)
        for round_no in range(args.rounds):
            order = targets if round_no % 2 == 0 else list(reversed(targets))
            for name, wargs in WORKLOADS:
                for target, port, pid in order:
                    cpu0 = cpu_seconds(pid) if pid else 0
                    cp0 = cpu_seconds(control_plane.pid)
                    tps, latency, txns = pgbench(port, wargs, args.seconds)
                    cpu = (cpu_seconds(pid) - cpu0) * 1e6 / max(txns, 1) if pid else None
                    # Recording costs the control plane too: count it for the connector's runs.
                    cp = (cpu_seconds(control_plane.pid) - cp0) * 1e6 / max(txns, 1) if target == "gatehouse" else None
                    results.setdefault((name, target), []).append((tps, latency, cpu, cp))
                    print(f"  round {round_no + 1} {name:<26} {target:<10} {tps:>9.0f} tps", flush=True)

        print()
        header = (f"{'workload':<26} {'target':<10} {'TPS':>9} {'lat ms':>8} {'vs direct':>9} {'+us/txn':>8} "
                  f"{'CPU us/txn':>10} {'+ingest us':>10}")
        print(header)
        print("-" * len(header))
        for name, _ in WORKLOADS:
            direct = results[(name, "direct")]
            for target, _, _ in targets:
                runs = results[(name, target)]
                tps = statistics.median(r[0] for r in runs)
                lat = statistics.mean(r[1] for r in runs)
                ratio = statistics.median(r[0] / d[0] for r, d in zip(runs, direct))
                added = (lat - statistics.mean(d[1] for d in direct)) * 1000
                cpus = [r[2] for r in runs if r[2] is not None]
                cpu = f"{statistics.median(cpus):>10.1f}" if cpus else f"{'-':>10}"
                cps = [r[3] for r in runs if r[3] is not None]
                cp = f"{statistics.median(cps):>10.1f}" if cps else f"{'-':>10}"
                print(f"{name:<26} {target:<10} {tps:>9.0f} {lat:>8.3f} {ratio:>9.2f} {added:>8.1f} {cpu} {cp}")
        print()
        print(*idle_rss, sep="\n")
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics") as r:
            stmts = [l for l in r.read().decode().splitlines() if l.startswith("gatehouse_connector_statements_total")]
        print("connector", *stmts)
    finally:
        # One at a time, last started first: the connector flushes its reports and says
        # goodbye while the control plane still answers.
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
