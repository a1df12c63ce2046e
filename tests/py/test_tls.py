"""The control plane over HTTPS (`serve --tls-cert --tls-key`), certificate from a private CA:
grpcio over a secure channel (which needs HTTP/2 by ALPN), Connect JSON with requests, and
clients that do not trust the CA refused."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import grpc
import pytest
import requests

from conftest import RPC_TIMEOUT, _wait_healthy, api_key, create_key, free_port, gatehouse_bin, run_cli

SESSIONS = 40


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A seeded store served over TLS; yields (url, CA file, admin key)."""
    work: Path = tmp_path_factory.mktemp("tls")
    ca_key, ca, key, csr, cert = (work / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
            "-days", "2", "-subj", "/CN=Test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    ext = work / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(cert), "-days", "2", "-extfile", str(ext))

    data = work / "data"
    run_cli("seed", "--org", "acme", "--sessions", str(SESSIONS), "--active", "0", data_dir=data)
    admin = create_key(data, "acme", "admin")
    port = free_port()
    log = work / "serve.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [str(gatehouse_bin()), "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}",
             "--tls-cert", str(cert), "--tls-key", str(key)],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        url = f"https://localhost:{port}"
        _wait_healthy(proc, url, log, verify=str(ca))
        yield url, ca, admin
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_grpc_over_tls(tls_server, pb):
    url, ca, admin = tls_server
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    with grpc.secure_channel(url.removeprefix("https://"), credentials) as channel:
        stub = pb.grpc.SessionsServiceStub(channel)
        response = stub.ListSessionsV2(pb.sessions.ListSessionsV2Request(limit=1000), metadata=api_key(admin),
                                       timeout=RPC_TIMEOUT)
    assert len(response.sessions) == SESSIONS


def test_connect_json_over_tls(tls_server):
    url, ca, admin = tls_server
    response = requests.post(f"{url}/core.v1.SessionsService/ListSessionsV2", json={"limit": 5},
                             headers={"X-API-KEY": admin}, verify=str(ca), timeout=RPC_TIMEOUT)
    assert response.status_code == 200, response.text
    assert len(response.json()["sessions"]) == 5


def test_clients_that_do_not_trust_the_ca_are_refused(tls_server, pb):
    url, _, admin = tls_server
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{url}/health", timeout=RPC_TIMEOUT)
    with grpc.secure_channel(url.removeprefix("https://"), grpc.ssl_channel_credentials()) as channel:
        stub = pb.grpc.SessionsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.ListSessionsV2(pb.sessions.ListSessionsV2Request(), metadata=api_key(admin), timeout=RPC_TIMEOUT)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
