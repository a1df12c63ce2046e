"""Fixtures for the black-box suite: a real `gatehouse serve` over a seeded store,
gRPC stubs generated from the repository's .proto files at test time, and helpers.

Nothing here imports project code: the server is driven through its CLI and spoken
to over the wire, with an independent client (grpcio, requests).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.resources
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
import requests

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent.parent
PROTO_ROOT = REPO_ROOT / "crates" / "proto" / "proto"
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "gatehouse"

SERVICE = "core.v1.SessionsService"

# What the session fixture seeds. Tests derive expectations from these numbers.
ACME_COMPLETED = 3000
ACME_ACTIVE = 25
GLOBEX_COMPLETED = 200
GLOBEX_ACTIVE = 4
ACME_TOTAL = ACME_COMPLETED + ACME_ACTIVE
GLOBEX_TOTAL = GLOBEX_COMPLETED + GLOBEX_ACTIVE

# Deadline for a single RPC or HTTP request.
RPC_TIMEOUT = 30

# The server is local: never send test traffic through a proxy from the environment
# (both requests and grpcio honour no_proxy).
for _var in ("no_proxy", "NO_PROXY"):
    os.environ[_var] = ",".join(filter(None, [os.environ.get(_var), "127.0.0.1", "localhost"]))


def gatehouse_bin() -> Path:
    return Path(os.environ.get("GATEHOUSE_BIN", str(DEFAULT_BIN)))


def run_cli(*args: str, data_dir: Path) -> str:
    """Runs a gatehouse subcommand and returns its stdout, failing loudly."""
    cmd = [str(gatehouse_bin()), *args, "--data-dir", str(data_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited with {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc.stdout


def create_key(data_dir: Path, org: str, role: str) -> str:
    out = run_cli("keys", "create", "--org", org, "--role", role, data_dir=data_dir)
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, f"`keys create` should print exactly the key, got {out!r}"
    return lines[0]


def key_prefix(key: str) -> str:
    """The part between `gh_` and the second `_`."""
    assert key.startswith("gh_"), key
    return key[len("gh_"):].split("_", 1)[0]


def revoke_key(data_dir: Path, org: str, key: str) -> None:
    run_cli("keys", "revoke", key_prefix(key), "--org", org, data_dir=data_dir)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass(frozen=True)
class Gatehouse:
    data_dir: Path
    port: int
    acme_admin: str
    acme_reader: str
    globex_reader: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def _wait_healthy(proc: subprocess.Popen, url: str, log: Path, deadline_s: float = 60, verify=True) -> None:
    deadline = time.monotonic() + deadline_s
    last_error = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gatehouse serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            r = requests.get(f"{url}/health", timeout=2, verify=verify)
            if r.status_code == 200 and r.text.strip() == "ok":
                return
            last_error = f"HTTP {r.status_code}: {r.text!r}"
        except requests.RequestException as e:  # not listening yet
            last_error = repr(e)
        time.sleep(0.05)
    raise AssertionError(f"gatehouse serve not healthy after {deadline_s}s ({last_error}):\n{log.read_text()}")


@pytest.fixture(scope="session")
def gatehouse(tmp_path_factory) -> Gatehouse:
    binary = gatehouse_bin()
    assert binary.is_file(), f"gatehouse binary not found at {binary}; build it or set GATEHOUSE_BIN"
    data_dir = tmp_path_factory.mktemp("gatehouse-data")

    run_cli("seed", "--org", "acme", "--sessions", str(ACME_COMPLETED), "--active", str(ACME_ACTIVE),
            "--seed", "11", data_dir=data_dir)
    run_cli("seed", "--org", "globex", "--sessions", str(GLOBEX_COMPLETED), "--active", str(GLOBEX_ACTIVE),
            "--seed", "23", data_dir=data_dir)
    acme_admin = create_key(data_dir, "acme", "admin")
    acme_reader = create_key(data_dir, "acme", "reader")
    globex_reader = create_key(data_dir, "globex", "reader")

    port = free_port()
    log = data_dir / "serve.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [str(binary), "serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}"],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        server = Gatehouse(data_dir, port, acme_admin, acme_reader, globex_reader)
        _wait_healthy(proc, server.url, log)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError(f"gatehouse serve ignored SIGTERM for 20s:\n{log.read_text()}")
            assert proc.returncode == 0, f"gatehouse serve exited with {proc.returncode} on SIGTERM:\n{log.read_text()}"


# --- generated stubs -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pb(tmp_path_factory) -> SimpleNamespace:
    """Compiles the repository's .proto files with grpc_tools.protoc and imports them."""
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("stubs")
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    assert "core/v1/sessions.proto" in protos, protos
    rc = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ])
    assert rc == 0, f"protoc failed with {rc}"
    sys.path.insert(0, str(out))
    try:
        sessions_pb2 = importlib.import_module("core.v1.sessions_pb2")
        sessions_pb2_grpc = importlib.import_module("core.v1.sessions_pb2_grpc")
        list_metadata_pb2 = importlib.import_module("core.v1.list_metadata_pb2")
    finally:
        sys.path.remove(str(out))
    return SimpleNamespace(sessions=sessions_pb2, grpc=sessions_pb2_grpc, list_metadata=list_metadata_pb2)


# --- gRPC helpers ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def channel(gatehouse):
    ch = grpc.insecure_channel(gatehouse.target, options=[("grpc.enable_http_proxy", 0)])
    grpc.channel_ready_future(ch).result(timeout=RPC_TIMEOUT)
    yield ch
    ch.close()


@pytest.fixture(scope="session")
def stub(channel, pb):
    return pb.grpc.SessionsServiceStub(channel)


def api_key(key: str) -> list[tuple[str, str]]:
    return [("x-api-key", key)]


def list_all(stub, pb, key: str, **request) -> list:
    """Every session matching `request`, in one call with the largest page."""
    resp = stub.ListSessionsV2(pb.sessions.ListSessionsV2Request(limit=100000, **request),
                               metadata=api_key(key), timeout=RPC_TIMEOUT)
    assert resp.list_metadata.count == len(resp.sessions)
    assert resp.list_metadata.next_cursor == "", "a page of 100000 should hold everything"
    return list(resp.sessions)


@pytest.fixture(scope="session")
def acme_sessions(gatehouse, stub, pb) -> list:
    """Ground truth for filter tests: all acme sessions, fetched once."""
    sessions = list_all(stub, pb, gatehouse.acme_reader)
    assert len(sessions) == ACME_TOTAL
    return sessions


@pytest.fixture(scope="session")
def globex_sessions(gatehouse, stub, pb) -> list:
    sessions = list_all(stub, pb, gatehouse.globex_reader)
    assert len(sessions) == GLOBEX_TOTAL
    return sessions


def ts_key(ts) -> tuple[int, int]:
    return (ts.seconds, ts.nanos)


def dur_seconds(d) -> float:
    return d.seconds + d.nanos / 1e9
