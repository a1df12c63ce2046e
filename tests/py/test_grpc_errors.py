"""Authentication, authorization, validation and not-found errors over gRPC."""

from __future__ import annotations

import uuid

import grpc
import pytest

from conftest import RPC_TIMEOUT, api_key, create_key, revoke_key


def call_error(fn, request, metadata) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(request, metadata=metadata, timeout=RPC_TIMEOUT)
    return info.value


def list_request(pb, **fields):
    return pb.sessions.ListSessionsV2Request(**fields)


# --- authentication --------------------------------------------------------------------------


def test_no_key_is_unauthenticated(stub, pb):
    err = call_error(stub.ListSessionsV2, list_request(pb), metadata=None)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert err.details()


@pytest.mark.parametrize("bad_key", [
    "gh_AAAAAAAAAA_" + "B" * 43,  # well-formed, unknown
    "not-a-key",
    "gh_",
])
def test_wrong_key_is_unauthenticated(stub, pb, bad_key):
    err = call_error(stub.ListSessionsV2, list_request(pb), metadata=api_key(bad_key))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert bad_key not in (err.details() or ""), "error messages never echo the key"


def test_tampered_secret_is_unauthenticated(gatehouse, stub, pb):
    key = gatehouse.acme_reader
    last = "A" if key[-1] != "A" else "B"
    err = call_error(stub.ListSessionsV2, list_request(pb), metadata=api_key(key[:-1] + last))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_revoked_key_is_unauthenticated_at_once(gatehouse, stub, pb):
    key = create_key(gatehouse.data_dir, "acme", "reader")
    ok = stub.ListSessionsV2(list_request(pb, limit=1), metadata=api_key(key), timeout=RPC_TIMEOUT)
    assert len(ok.sessions) == 1
    revoke_key(gatehouse.data_dir, "acme", key)
    err = call_error(stub.ListSessionsV2, list_request(pb, limit=1), metadata=api_key(key))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert key not in (err.details() or "")


def test_bearer_authorization_header(gatehouse, stub, pb):
    resp = stub.ListSessionsV2(list_request(pb, limit=3),
                               metadata=[("authorization", f"Bearer {gatehouse.acme_reader}")],
                               timeout=RPC_TIMEOUT)
    assert len(resp.sessions) == 3


def test_bearer_with_wrong_key_is_unauthenticated(stub, pb):
    err = call_error(stub.ListSessionsV2, list_request(pb),
                     metadata=[("authorization", "Bearer gh_AAAAAAAAAA_" + "C" * 43)])
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


# --- authorization ---------------------------------------------------------------------------


def active_session(acme_sessions):
    return next(s for s in acme_sessions if s.session_status == "active")


def test_reader_cannot_terminate(gatehouse, stub, pb, acme_sessions):
    s = active_session(acme_sessions)
    req = pb.sessions.CreateSessionTerminationRequest(session_id=s.id, connector_id=s.connector.id)
    err = call_error(stub.CreateSessionTermination, req, metadata=api_key(gatehouse.acme_reader))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.details()


def test_reader_cannot_cancel(gatehouse, stub, pb, acme_sessions):
    s = active_session(acme_sessions)
    req = pb.sessions.CancelSessionRequest(session_id=s.id, connector_id=s.connector.id)
    err = call_error(stub.CancelSession, req, metadata=api_key(gatehouse.acme_reader))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_termination_without_key_is_unauthenticated(stub, pb, acme_sessions):
    s = active_session(acme_sessions)
    req = pb.sessions.CreateSessionTerminationRequest(session_id=s.id, connector_id=s.connector.id)
    err = call_error(stub.CreateSessionTermination, req, metadata=None)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


# --- not found -------------------------------------------------------------------------------


def test_unknown_session_is_not_found(gatehouse, stub, pb):
    req = pb.sessions.GetSessionRequest(session_id=str(uuid.uuid4()))
    err = call_error(stub.GetSession, req, metadata=api_key(gatehouse.acme_reader))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_other_orgs_session_is_not_found(gatehouse, stub, pb, acme_sessions):
    req = pb.sessions.GetSessionRequest(session_id=acme_sessions[0].id)
    err = call_error(stub.GetSession, req, metadata=api_key(gatehouse.globex_reader))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    # The same id is visible to its own organization.
    ok = stub.GetSession(req, metadata=api_key(gatehouse.acme_reader), timeout=RPC_TIMEOUT)
    assert ok.session.id == acme_sessions[0].id


def test_empty_session_id_is_invalid(gatehouse, stub, pb):
    err = call_error(stub.GetSession, pb.sessions.GetSessionRequest(session_id=""),
                     metadata=api_key(gatehouse.acme_reader))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- invalid arguments -----------------------------------------------------------------------


def assert_invalid(err: grpc.RpcError, *words: str):
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{err.code()}: {err.details()}"
    details = err.details() or ""
    assert len(details) > 10 and details.isprintable(), f"unreadable message {details!r}"
    for word in words:
        assert word.lower() in details.lower(), f"{word!r} not in {details!r}"


@pytest.mark.parametrize("query", [
    "technology:(postgres",
    "start_time:[2024-01-01T00:00:00Z TO",
    "duration:abc",
    "client_ip:not-an-ip",
    "start_time:>yesterday-ish",
])
def test_bad_query_is_invalid_argument(gatehouse, stub, pb, query):
    err = call_error(stub.ListSessionsV2, list_request(pb, query=query), metadata=api_key(gatehouse.acme_reader))
    assert_invalid(err)


def test_unknown_field_suggests_closest_names(gatehouse, stub, pb):
    err = call_error(stub.ListSessionsV2, list_request(pb, query="technolgy:postgres"),
                     metadata=api_key(gatehouse.acme_reader))
    assert_invalid(err, "technolgy", "technology")


def test_wrong_value_type_names_the_field(gatehouse, stub, pb):
    err = call_error(stub.ListSessionsV2, list_request(pb, query="duration:abc"),
                     metadata=api_key(gatehouse.acme_reader))
    assert_invalid(err, "duration")


def test_oversized_query_is_invalid_argument(gatehouse, stub, pb):
    query = " OR ".join(f"user:u{i}" for i in range(1000))  # > 4 KiB and > 256 clauses
    err = call_error(stub.ListSessionsV2, list_request(pb, query=query), metadata=api_key(gatehouse.acme_reader))
    assert_invalid(err)


def test_too_many_clauses_is_invalid_argument(gatehouse, stub, pb):
    query = " OR ".join(f"u{i}" for i in range(300))  # under 4 KiB, over 256 clauses
    assert len(query) < 4096
    err = call_error(stub.ListSessionsV2, list_request(pb, query=query), metadata=api_key(gatehouse.acme_reader))
    assert_invalid(err)


@pytest.mark.parametrize("limit", [-1, 100001, 2**31 - 1])
def test_limit_out_of_range_is_invalid_argument(gatehouse, stub, pb, limit):
    err = call_error(stub.ListSessionsV2, list_request(pb, limit=limit), metadata=api_key(gatehouse.acme_reader))
    assert_invalid(err, "limit")


def test_limit_at_upper_bound_is_accepted(gatehouse, stub, pb):
    resp = stub.ListSessionsV2(list_request(pb, limit=100000), metadata=api_key(gatehouse.acme_reader),
                               timeout=RPC_TIMEOUT)
    assert resp.list_metadata.count == len(resp.sessions) > 100


@pytest.mark.parametrize("cursor", ["garbage", "AAAA", "!!!not base64!!!"])
def test_garbage_cursor_is_invalid_argument(gatehouse, stub, pb, cursor):
    err = call_error(stub.ListSessionsV2, list_request(pb, cursor=cursor), metadata=api_key(gatehouse.acme_reader))
    assert_invalid(err, "cursor")


def first_cursor(stub, pb, key, **fields) -> str:
    resp = stub.ListSessionsV2(list_request(pb, limit=10, **fields), metadata=api_key(key), timeout=RPC_TIMEOUT)
    assert resp.list_metadata.next_cursor
    return resp.list_metadata.next_cursor


def test_tampered_cursor_is_invalid_argument(gatehouse, stub, pb):
    cursor = first_cursor(stub, pb, gatehouse.acme_reader)
    mid = len(cursor) // 2
    tampered = cursor[:mid] + ("A" if cursor[mid] != "A" else "B") + cursor[mid + 1:]
    err = call_error(stub.ListSessionsV2, list_request(pb, limit=10, cursor=tampered),
                     metadata=api_key(gatehouse.acme_reader))
    assert_invalid(err, "cursor")


@pytest.mark.parametrize("changed", [
    {"query": "technology:mysql"},
    {"sort_by": "start_time:asc"},
    {"start_timestamp": "2020-01-01T00:00:00Z"},
])
def test_cursor_is_bound_to_its_query_sort_and_window(gatehouse, stub, pb, changed):
    cursor = first_cursor(stub, pb, gatehouse.acme_reader)
    err = call_error(stub.ListSessionsV2, list_request(pb, limit=10, cursor=cursor, **changed),
                     metadata=api_key(gatehouse.acme_reader))
    assert_invalid(err, "cursor")


def test_cursor_from_another_organization_is_invalid_argument(gatehouse, stub, pb):
    cursor = first_cursor(stub, pb, gatehouse.globex_reader)
    err = call_error(stub.ListSessionsV2, list_request(pb, limit=10, cursor=cursor),
                     metadata=api_key(gatehouse.acme_reader))
    assert_invalid(err, "cursor")


@pytest.mark.parametrize("window", [
    {"start_timestamp": "yesterday"},
    {"end_timestamp": "2024-13-01T00:00:00Z"},
    {"start_timestamp": "2024-02-01T00:00:00Z", "end_timestamp": "2024-01-01T00:00:00Z"},
])
def test_bad_window_is_invalid_argument(gatehouse, stub, pb, window):
    err = call_error(stub.ListSessionsV2, list_request(pb, **window), metadata=api_key(gatehouse.acme_reader))
    assert_invalid(err)


@pytest.mark.parametrize("sort_by", ["risk_level", "start_time:sideways"])
def test_bad_sort_is_invalid_argument(gatehouse, stub, pb, sort_by):
    err = call_error(stub.ListSessionsV2, list_request(pb, sort_by=sort_by), metadata=api_key(gatehouse.acme_reader))
    assert_invalid(err)
