"""The Connect protocol (and gRPC-Web) over plain HTTP with `requests`, shaped like the public docs' curl."""

from __future__ import annotations

import base64
import gzip
import json
import re
import struct

import grpc
import pytest
import requests
from google.protobuf import json_format

from conftest import ACME_ACTIVE, RPC_TIMEOUT, SERVICE, api_key

TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?Z$")
DURATION_RE = re.compile(r"^\d+(\.\d{3}|\.\d{6}|\.\d{9})?s$")


def url(gatehouse, method: str) -> str:
    return f"{gatehouse.url}/{SERVICE}/{method}"


def post_json(gatehouse, method: str, body, key: str | None, headers: dict | None = None) -> requests.Response:
    h = {"Content-Type": "application/json"}
    if key is not None:
        h["X-API-KEY"] = key
    h.update(headers or {})
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(url(gatehouse, method), headers=h, data=data, timeout=RPC_TIMEOUT)


def all_keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in all_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in all_keys(v)}
    return set()


def assert_connect_error(resp: requests.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, f"{resp.status_code}: {resp.text[:500]}"
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert body["code"] == code
    assert isinstance(body.get("message"), str) and body["message"].strip(), body
    return body


# --- JSON shape ------------------------------------------------------------------------------


def test_public_docs_curl_shape(gatehouse):
    resp = post_json(gatehouse, "ListSessionsV2", {"limit": 5}, gatehouse.acme_reader)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"sessions", "listMetadata"}
    assert len(body["sessions"]) == 5
    assert body["listMetadata"]["count"] == 5
    assert body["listMetadata"]["nextCursor"]
    for s in body["sessions"]:
        assert TIMESTAMP_RE.match(s["startTime"]), s["startTime"]
        assert DURATION_RE.match(s["duration"]), s["duration"]
        assert s["sessionStatus"] in ("active", "completed")
        assert s["resource"]["technology"]
        assert s["network"]["clientIpAddress"]
        if s["sessionStatus"] == "completed":
            assert TIMESTAMP_RE.match(s["endTime"]), s["endTime"]
    keys = all_keys(body)
    assert not [k for k in keys if "_" in k], "JSON names are camelCase"
    assert "startTime" in keys and "sessionStatus" in keys and "clientIpAddress" in keys


def test_json_parses_strictly_against_the_schema(gatehouse, pb):
    """A strict client of the schema (unknown fields rejected) can read the response."""
    resp = post_json(gatehouse, "ListSessionsV2", {"limit": 50}, gatehouse.acme_reader)
    assert resp.status_code == 200, resp.text
    msg = json_format.Parse(resp.text, pb.sessions.ListSessionsV2Response(), ignore_unknown_fields=False)
    assert len(msg.sessions) == 50


def test_json_equals_grpc_canonical_json(gatehouse, stub, pb, acme_sessions):
    """The Connect JSON of a session is the proto3 JSON mapping of the gRPC message."""
    listed = next(s for s in acme_sessions if s.session_status == "completed")
    resp = post_json(gatehouse, "GetSession", {"sessionId": listed.id}, gatehouse.acme_reader)
    assert resp.status_code == 200, resp.text
    expected = json_format.MessageToDict(pb.sessions.GetSessionResponse(session=listed))
    assert resp.json() == expected


def test_active_session_omits_end_time(gatehouse):
    resp = post_json(gatehouse, "ListSessionsV2", {"query": "session_status:active"}, gatehouse.acme_reader)
    assert resp.status_code == 200, resp.text
    sessions = resp.json()["sessions"]
    assert len(sessions) == ACME_ACTIVE
    for s in sessions:
        assert "endTime" not in s, "empty fields are omitted"
        assert DURATION_RE.match(s["duration"])


def test_snake_case_input_is_accepted(gatehouse):
    body = {"limit": 4, "sort_by": "start_time:asc", "start_timestamp": "2000-01-01T00:00:00Z"}
    resp = post_json(gatehouse, "ListSessionsV2", body, gatehouse.acme_reader)
    assert resp.status_code == 200, resp.text
    starts = [s["startTime"] for s in resp.json()["sessions"]]
    assert len(starts) == 4
    camel = post_json(gatehouse, "ListSessionsV2",
                      {"limit": 4, "sortBy": "start_time:asc", "startTimestamp": "2000-01-01T00:00:00Z"},
                      gatehouse.acme_reader)
    assert [s["startTime"] for s in camel.json()["sessions"]] == starts


def test_snake_case_session_id_is_accepted(gatehouse, acme_sessions):
    resp = post_json(gatehouse, "GetSession", {"session_id": acme_sessions[0].id}, gatehouse.acme_reader)
    assert resp.status_code == 200, resp.text
    assert resp.json()["session"]["id"] == acme_sessions[0].id


@pytest.mark.parametrize("body", [{"limit": 5, "bogus": 1}, {"pageSize": 5}, {"filter": "x"}])
def test_unknown_json_field_is_invalid_argument(gatehouse, body):
    resp = post_json(gatehouse, "ListSessionsV2", body, gatehouse.acme_reader)
    assert_connect_error(resp, 400, "invalid_argument")


def test_malformed_json_is_invalid_argument(gatehouse):
    resp = post_json(gatehouse, "ListSessionsV2", '{"limit": ', gatehouse.acme_reader)
    assert_connect_error(resp, 400, "invalid_argument")


# --- error codes over HTTP -------------------------------------------------------------------


def test_missing_key_is_401(gatehouse):
    assert_connect_error(post_json(gatehouse, "ListSessionsV2", {}, None), 401, "unauthenticated")


def test_wrong_key_is_401_without_echo(gatehouse):
    bad = "gh_ZZZZZZZZZZ_" + "Q" * 43
    body = assert_connect_error(post_json(gatehouse, "ListSessionsV2", {}, bad), 401, "unauthenticated")
    assert bad not in json.dumps(body)


def test_bearer_header_works(gatehouse):
    resp = post_json(gatehouse, "ListSessionsV2", {"limit": 2}, None,
                     headers={"Authorization": f"Bearer {gatehouse.acme_reader}"})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["sessions"]) == 2


def test_reader_terminate_is_403(gatehouse, acme_sessions):
    s = next(s for s in acme_sessions if s.session_status == "active")
    resp = post_json(gatehouse, "CreateSessionTermination", {"sessionId": s.id, "connectorId": s.connector.id},
                     gatehouse.acme_reader)
    assert_connect_error(resp, 403, "permission_denied")


def test_unknown_session_is_404(gatehouse):
    resp = post_json(gatehouse, "GetSession", {"sessionId": "00000000-0000-0000-0000-000000000000"},
                     gatehouse.acme_reader)
    assert_connect_error(resp, 404, "not_found")


def test_other_orgs_session_is_404(gatehouse, acme_sessions):
    resp = post_json(gatehouse, "GetSession", {"sessionId": acme_sessions[0].id}, gatehouse.globex_reader)
    assert_connect_error(resp, 404, "not_found")


def test_bad_query_is_400(gatehouse):
    resp = post_json(gatehouse, "ListSessionsV2", {"query": "technology:(postgres"}, gatehouse.acme_reader)
    assert_connect_error(resp, 400, "invalid_argument")


# --- Connect GET -----------------------------------------------------------------------------


def test_connect_get_json(gatehouse):
    message = json.dumps({"limit": 3, "query": "technology:postgres"})
    resp = requests.get(url(gatehouse, "ListSessionsV2"), params={"encoding": "json", "message": message},
                        headers={"X-API-KEY": gatehouse.acme_reader}, timeout=RPC_TIMEOUT)
    assert resp.status_code == 200, resp.text
    sessions = resp.json()["sessions"]
    assert len(sessions) == 3
    assert all(s["resource"]["technology"] == "postgres" for s in sessions)
    posted = post_json(gatehouse, "ListSessionsV2", {"limit": 3, "query": "technology:postgres"},
                       gatehouse.acme_reader)
    assert [s["id"] for s in sessions] == [s["id"] for s in posted.json()["sessions"]]


def test_connect_get_session(gatehouse, acme_sessions):
    message = json.dumps({"sessionId": acme_sessions[1].id})
    resp = requests.get(url(gatehouse, "GetSession"), params={"encoding": "json", "message": message},
                        headers={"X-API-KEY": gatehouse.acme_reader}, timeout=RPC_TIMEOUT)
    assert resp.status_code == 200, resp.text
    assert resp.json()["session"]["id"] == acme_sessions[1].id


def test_connect_get_proto_base64(gatehouse, pb):
    raw = pb.sessions.ListSessionsV2Request(limit=2).SerializeToString()
    message = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    resp = requests.get(url(gatehouse, "ListSessionsV2"),
                        params={"encoding": "proto", "base64": "1", "message": message},
                        headers={"X-API-KEY": gatehouse.acme_reader}, timeout=RPC_TIMEOUT)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/proto")
    msg = pb.sessions.ListSessionsV2Response.FromString(resp.content)
    assert len(msg.sessions) == 2 and msg.list_metadata.count == 2


def test_a_json_message_that_is_not_an_object_is_invalid(gatehouse, acme_sessions):
    # serde would take an array field by field: ["<id>"] as a GetSessionRequest.
    key = gatehouse.acme_reader
    array = json.dumps([acme_sessions[0].id])
    assert_connect_error(post_json(gatehouse, "GetSession", array, key), 400, "invalid_argument")
    assert_connect_error(post_json(gatehouse, "ListSessionsV2", "[1, \"status:active\"]", key), 400, "invalid_argument")
    chunked = requests.post(url(gatehouse, "GetSession"), data=iter([array.encode()]), timeout=RPC_TIMEOUT,
                            headers={"Content-Type": "application/json", "X-API-KEY": key})
    assert_connect_error(chunked, 400, "invalid_argument")
    for params in ({"encoding": "json", "message": array},
                   {"encoding": "json", "base64": "1", "message": base64.urlsafe_b64encode(array.encode()).decode()}):
        resp = requests.get(url(gatehouse, "GetSession"), params=params, headers={"X-API-KEY": key},
                            timeout=RPC_TIMEOUT)
        assert_connect_error(resp, 400, "invalid_argument")
    # Gzipped, in a body or a GET's message.
    zipped = requests.post(url(gatehouse, "GetSession"), data=gzip.compress(b"  " + array.encode()), timeout=RPC_TIMEOUT,
                           headers={"Content-Type": "application/json", "Content-Encoding": "gzip", "X-API-KEY": key})
    assert_connect_error(zipped, 400, "invalid_argument")
    params = {"encoding": "json", "compression": "gzip", "base64": "1",
              "message": base64.urlsafe_b64encode(gzip.compress(array.encode())).decode()}
    resp = requests.get(url(gatehouse, "GetSession"), params=params, headers={"X-API-KEY": key}, timeout=RPC_TIMEOUT)
    assert_connect_error(resp, 400, "invalid_argument")
    # Objects still pass, chunked or gzipped or neither.
    body = json.dumps({"sessionId": acme_sessions[0].id}).encode()
    chunked = requests.post(url(gatehouse, "GetSession"), data=iter([body]), timeout=RPC_TIMEOUT,
                            headers={"Content-Type": "application/json", "X-API-KEY": key})
    assert chunked.status_code == 200, chunked.text
    zipped = requests.post(url(gatehouse, "GetSession"), data=gzip.compress(body), timeout=RPC_TIMEOUT,
                           headers={"Content-Type": "application/json", "Content-Encoding": "gzip", "X-API-KEY": key})
    assert zipped.status_code == 200, zipped.text
    assert zipped.json()["session"]["id"] == acme_sessions[0].id


def test_connect_get_without_key_is_401(gatehouse):
    resp = requests.get(url(gatehouse, "ListSessionsV2"), params={"encoding": "json", "message": "{}"},
                        timeout=RPC_TIMEOUT)
    assert_connect_error(resp, 401, "unauthenticated")


def test_connect_get_refused_for_side_effects(gatehouse, acme_sessions):
    s = next(s for s in acme_sessions if s.session_status == "active")
    message = json.dumps({"sessionId": s.id, "connectorId": s.connector.id})
    resp = requests.get(url(gatehouse, "CreateSessionTermination"), params={"encoding": "json", "message": message},
                        headers={"X-API-KEY": gatehouse.acme_admin}, timeout=RPC_TIMEOUT)
    assert resp.status_code == 405, resp.text
    # Nothing happened: the session is still active.
    still = post_json(gatehouse, "GetSession", {"sessionId": s.id}, gatehouse.acme_reader)
    assert still.json()["session"]["sessionStatus"] == "active"


# --- binary Connect, compression, size limits ------------------------------------------------


def test_connect_binary_proto(gatehouse, pb):
    raw = pb.sessions.ListSessionsV2Request(limit=6, query="session_status:completed").SerializeToString()
    resp = requests.post(url(gatehouse, "ListSessionsV2"), data=raw,
                         headers={"Content-Type": "application/proto", "X-API-KEY": gatehouse.acme_reader},
                         timeout=RPC_TIMEOUT)
    assert resp.status_code == 200, resp.text
    msg = pb.sessions.ListSessionsV2Response.FromString(resp.content)
    assert len(msg.sessions) == 6
    assert all(s.session_status == "completed" for s in msg.sessions)


def test_connect_binary_skips_unknown_fields(gatehouse, pb):
    raw = pb.sessions.ListSessionsV2Request(limit=2).SerializeToString()
    unknown = bytes([0xB8, 0x06, 0x01])  # field 103, varint 1: not in the schema
    resp = requests.post(url(gatehouse, "ListSessionsV2"), data=raw + unknown,
                         headers={"Content-Type": "application/proto", "X-API-KEY": gatehouse.acme_reader},
                         timeout=RPC_TIMEOUT)
    assert resp.status_code == 200, resp.text
    assert len(pb.sessions.ListSessionsV2Response.FromString(resp.content).sessions) == 2


def test_gzip_request_body(gatehouse):
    body = gzip.compress(json.dumps({"limit": 4, "query": "session_status:active"}).encode())
    resp = requests.post(url(gatehouse, "ListSessionsV2"), data=body, timeout=RPC_TIMEOUT,
                         headers={"Content-Type": "application/json", "Content-Encoding": "gzip",
                                  "X-API-KEY": gatehouse.acme_reader})
    assert resp.status_code == 200, resp.text
    sessions = resp.json()["sessions"]  # requests undoes a gzip response encoding
    assert len(sessions) == 4
    assert all(s["sessionStatus"] == "active" for s in sessions)


def test_gzip_response_when_accepted(gatehouse):
    resp = requests.post(url(gatehouse, "ListSessionsV2"), data=json.dumps({"limit": 100}), timeout=RPC_TIMEOUT,
                         headers={"Content-Type": "application/json", "Accept-Encoding": "gzip",
                                  "X-API-KEY": gatehouse.acme_reader}, stream=True)
    assert resp.status_code == 200
    assert resp.headers.get("Content-Encoding") == "gzip"
    body = json.loads(gzip.decompress(resp.raw.read(decode_content=False)))
    assert len(body["sessions"]) == 100


def assert_refused_as_too_large(resp: requests.Response):
    assert 400 <= resp.status_code < 500, f"{resp.status_code}: {resp.text[:300]}"
    body = resp.json()
    assert body["code"] in ("resource_exhausted", "invalid_argument", "out_of_range"), body
    assert body["message"].strip()


def test_body_over_4_mib_is_refused(gatehouse):
    big = json.dumps({"query": "a" * (5 * 1024 * 1024)})
    resp = post_json(gatehouse, "ListSessionsV2", big, gatehouse.acme_reader)
    assert_refused_as_too_large(resp)
    assert requests.get(f"{gatehouse.url}/health", timeout=RPC_TIMEOUT).text.strip() == "ok"


def test_gzip_bomb_over_4_mib_is_refused(gatehouse):
    bomb = gzip.compress(json.dumps({"query": "a" * (5 * 1024 * 1024)}).encode())
    assert len(bomb) < 64 * 1024
    resp = requests.post(url(gatehouse, "ListSessionsV2"), data=bomb, timeout=RPC_TIMEOUT,
                         headers={"Content-Type": "application/json", "Content-Encoding": "gzip",
                                  "X-API-KEY": gatehouse.acme_reader})
    assert_refused_as_too_large(resp)


def test_grpc_message_over_4_mib_is_refused(gatehouse, stub, pb):
    with pytest.raises(grpc.RpcError) as info:
        stub.ListSessionsV2(pb.sessions.ListSessionsV2Request(query="a" * (5 * 1024 * 1024)),
                            metadata=api_key(gatehouse.acme_reader), timeout=RPC_TIMEOUT)
    assert info.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)


# --- gRPC-Web --------------------------------------------------------------------------------


def grpc_web_frames(payload: bytes) -> list[tuple[int, bytes]]:
    frames, i = [], 0
    while i < len(payload):
        flag, length = struct.unpack(">BI", payload[i:i + 5])
        frames.append((flag, payload[i + 5:i + 5 + length]))
        i += 5 + length
    return frames


def test_grpc_web_list_sessions(gatehouse, pb):
    raw = pb.sessions.ListSessionsV2Request(limit=3).SerializeToString()
    resp = requests.post(url(gatehouse, "ListSessionsV2"), data=struct.pack(">BI", 0, len(raw)) + raw,
                         headers={"Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1",
                                  "X-API-KEY": gatehouse.acme_reader}, timeout=RPC_TIMEOUT)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/grpc-web")
    frames = grpc_web_frames(resp.content)
    data = [body for flag, body in frames if flag == 0]
    trailers = [body for flag, body in frames if flag & 0x80]
    assert len(data) == 1 and len(trailers) == 1
    assert b"grpc-status:0" in trailers[0].replace(b" ", b"").lower()
    msg = pb.sessions.ListSessionsV2Response.FromString(data[0])
    assert len(msg.sessions) == 3


def b64_chunks(text: bytes) -> bytes:
    """grpc-web-text bodies may be several padded base64 chunks one after another."""
    out, start = b"", 0
    for i in range(0, len(text), 4):
        if b"=" in text[i:i + 4]:
            out += base64.b64decode(text[start:i + 4])
            start = i + 4
    return out + base64.b64decode(text[start:])


def test_grpc_web_text_list_sessions(gatehouse, pb):
    """The grpc-web JavaScript client's default mode: the same frames, base64-encoded both ways."""
    raw = pb.sessions.ListSessionsV2Request(limit=3).SerializeToString()
    resp = requests.post(url(gatehouse, "ListSessionsV2"),
                         data=base64.b64encode(struct.pack(">BI", 0, len(raw)) + raw),
                         headers={"Content-Type": "application/grpc-web-text", "Accept": "application/grpc-web-text",
                                  "X-Grpc-Web": "1", "X-API-KEY": gatehouse.acme_reader}, timeout=RPC_TIMEOUT)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/grpc-web-text")
    frames = grpc_web_frames(b64_chunks(resp.content))
    data = [body for flag, body in frames if flag == 0]
    trailers = [body for flag, body in frames if flag & 0x80]
    assert len(data) == 1 and len(trailers) == 1
    assert b"grpc-status:0" in trailers[0].replace(b" ", b"").lower()
    assert len(pb.sessions.ListSessionsV2Response.FromString(data[0]).sessions) == 3

    bad = requests.post(url(gatehouse, "ListSessionsV2"), data=b"not base64!",
                        headers={"Content-Type": "application/grpc-web-text", "X-API-KEY": gatehouse.acme_reader},
                        timeout=RPC_TIMEOUT)
    # A gRPC error, as grpc-web clients read one: HTTP 200, the status in the headers.
    assert bad.status_code == 200
    assert bad.headers["grpc-status"] == "3"


def test_grpc_web_without_key_is_unauthenticated(gatehouse, pb):
    raw = pb.sessions.ListSessionsV2Request(limit=3).SerializeToString()
    resp = requests.post(url(gatehouse, "ListSessionsV2"), data=struct.pack(">BI", 0, len(raw)) + raw,
                         headers={"Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1"},
                         timeout=RPC_TIMEOUT)
    status = resp.headers.get("grpc-status")
    if status is None:  # trailers-only responses may carry the status in the body
        trailer = b"".join(body for flag, body in grpc_web_frames(resp.content) if flag & 0x80)
        status = re.search(rb"grpc-status:\s*(\d+)", trailer).group(1).decode()
    assert status == "16"  # UNAUTHENTICATED


def test_a_query_past_the_statement_timeout_is_deadline_exceeded(gatehouse, tmp_path):
    """A costly query is stopped by the store's timeout and says what to do; the server
    carries on. A second `serve` on the same store, with a 1 ms timeout."""
    import subprocess

    from conftest import _wait_healthy, free_port, gatehouse_bin

    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(gatehouse_bin()), "serve", "--data-dir", str(gatehouse.data_dir), "--listen", f"127.0.0.1:{port}",
             "--db-statement-timeout", "1ms"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(proc, base, log)
        costly = " OR ".join(f"x{i}*" for i in range(50))
        resp = requests.post(
            f"{base}/{SERVICE}/ListSessionsV2",
            json={"query": costly, "limit": 100}, headers={"X-API-KEY": gatehouse.acme_reader}, timeout=RPC_TIMEOUT,
        )
        body = assert_connect_error(resp, 504, "deadline_exceeded")
        assert "statement timeout" in body["message"] and "narrow its time window" in body["message"], body
        # Cheap requests still work.
        resp = requests.post(
            f"{base}/{SERVICE}/GetSession", json={"sessionId": "nope"},
            headers={"X-API-KEY": gatehouse.acme_reader}, timeout=RPC_TIMEOUT,
        )
        assert_connect_error(resp, 404, "not_found")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
