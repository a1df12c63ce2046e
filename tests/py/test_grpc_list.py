"""ListSessionsV2 and GetSession over gRPC (grpcio, stubs generated from our .proto files)."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone

import grpc
import pytest

from conftest import (
    ACME_ACTIVE,
    ACME_TOTAL,
    GLOBEX_TOTAL,
    RPC_TIMEOUT,
    api_key,
    create_key,
    dur_seconds,
    list_all,
    run_cli,
    ts_key,
)


def list_page(stub, pb, key, **request):
    return stub.ListSessionsV2(pb.sessions.ListSessionsV2Request(**request), metadata=api_key(key),
                               timeout=RPC_TIMEOUT)


def ids(sessions) -> list[str]:
    return [s.id for s in sessions]


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
def test_compressed_calls_are_answered(gatehouse, stub, pb, compression):
    resp = stub.ListSessionsV2(pb.sessions.ListSessionsV2Request(limit=5), metadata=api_key(gatehouse.acme_reader),
                               timeout=RPC_TIMEOUT, compression=compression)
    assert len(resp.sessions) == 5


def test_default_page_is_100_newest_first(gatehouse, stub, pb):
    resp = list_page(stub, pb, gatehouse.acme_reader)
    assert len(resp.sessions) == 100
    assert resp.list_metadata.count == 100
    assert resp.list_metadata.next_cursor != ""
    assert resp.list_metadata.after == resp.list_metadata.next_cursor
    assert resp.list_metadata.before == "", "the first page has no preceding page"
    starts = [ts_key(s.start_time) for s in resp.sessions]
    assert starts == sorted(starts, reverse=True), "default order is start_time descending"
    assert len(set(ids(resp.sessions))) == 100


def test_limit_zero_means_default_page(gatehouse, stub, pb):
    resp = list_page(stub, pb, gatehouse.acme_reader, limit=0)
    assert resp.list_metadata.count == 100
    assert len(resp.sessions) == 100


def test_small_limit(gatehouse, stub, pb):
    resp = list_page(stub, pb, gatehouse.acme_reader, limit=7)
    assert len(resp.sessions) == 7
    assert resp.list_metadata.count == 7


def test_walking_every_page_returns_each_acme_session_once(gatehouse, stub, pb, globex_sessions):
    seen: list[str] = []
    starts = []
    cursor = ""
    pages = 0
    while True:
        resp = list_page(stub, pb, gatehouse.acme_reader, cursor=cursor)
        pages += 1
        assert resp.list_metadata.count == len(resp.sessions)
        assert len(resp.sessions) <= 100
        if pages > 1:
            assert resp.list_metadata.before != "", f"page {pages} should link to its preceding page"
        seen.extend(ids(resp.sessions))
        starts.extend(ts_key(s.start_time) for s in resp.sessions)
        cursor = resp.list_metadata.next_cursor
        assert resp.list_metadata.after == cursor
        if not cursor:
            break
        assert pages < 1000, "pagination does not terminate"
    assert len(seen) == ACME_TOTAL
    assert len(set(seen)) == ACME_TOTAL, "a session was returned twice"
    assert starts == sorted(starts, reverse=True), "the order holds across page boundaries"
    assert pages == -(-ACME_TOTAL // 100)
    assert not set(seen) & set(ids(globex_sessions)), "an acme key saw a globex session"


def test_before_cursor_returns_the_preceding_page(gatehouse, stub, pb):
    first = list_page(stub, pb, gatehouse.acme_reader, limit=50)
    second = list_page(stub, pb, gatehouse.acme_reader, limit=50, cursor=first.list_metadata.next_cursor)
    assert not set(ids(first.sessions)) & set(ids(second.sessions))
    back = list_page(stub, pb, gatehouse.acme_reader, limit=50, cursor=second.list_metadata.before)
    assert ids(back.sessions) == ids(first.sessions)


def test_organizations_are_isolated(acme_sessions, globex_sessions):
    acme_ids = set(ids(acme_sessions))
    globex_ids = set(ids(globex_sessions))
    assert len(acme_ids) == ACME_TOTAL
    assert len(globex_ids) == GLOBEX_TOTAL
    assert not acme_ids & globex_ids


def test_sort_by_start_time_ascending(gatehouse, stub, pb, acme_sessions):
    got = list_all(stub, pb, gatehouse.acme_reader, sort_by="start_time:asc")
    starts = [ts_key(s.start_time) for s in got]
    assert starts == sorted(starts)
    assert set(ids(got)) == set(ids(acme_sessions))


def test_sort_by_duration_descending(gatehouse, stub, pb):
    got = list_all(stub, pb, gatehouse.acme_reader, sort_by="duration:desc", query="session_status:completed")
    durations = [(s.duration.seconds, s.duration.nanos) for s in got]
    assert durations == sorted(durations, reverse=True)


# --- filters: the server's answer must equal what the client computes from the full list -------


def assert_same_sessions(got, expected):
    got_ids, expected_ids = ids(got), ids(expected)
    assert len(got_ids) == len(set(got_ids))
    missing = set(expected_ids) - set(got_ids)
    extra = set(got_ids) - set(expected_ids)
    assert not missing and not extra, f"{len(missing)} missing, {len(extra)} unexpected"


@pytest.mark.parametrize("query", ["technology:postgres", "resource.technology:postgres", "protocol:postgres"])
def test_filter_technology(gatehouse, stub, pb, acme_sessions, query):
    got = list_all(stub, pb, gatehouse.acme_reader, query=query)
    assert got, "the seed has postgres sessions"
    assert all(s.resource.technology == "postgres" for s in got)
    assert_same_sessions(got, [s for s in acme_sessions if s.resource.technology == "postgres"])


def test_filter_technology_set(gatehouse, stub, pb, acme_sessions):
    got = list_all(stub, pb, gatehouse.acme_reader, query="technology:IN [mysql redis]")
    assert_same_sessions(got, [s for s in acme_sessions if s.resource.technology in ("mysql", "redis")])


def test_filter_user_email(gatehouse, stub, pb, acme_sessions):
    email = next(s.user.formal.user.email for s in acme_sessions if s.user.formal.user.email)
    expected = [s for s in acme_sessions if s.user.formal.user.email.lower() == email.lower()]
    got = list_all(stub, pb, gatehouse.acme_reader, query=f"user.email:{email}")
    assert got
    assert all(s.user.formal.user.email == email for s in got)
    assert_same_sessions(got, expected)
    # Text fields compare case-insensitively.
    upper = list_all(stub, pb, gatehouse.acme_reader, query=f"user.email:{email.upper()}")
    assert_same_sessions(upper, expected)


def test_filter_client_ip_cidr(gatehouse, stub, pb, acme_sessions):
    net = ipaddress.ip_network("192.168.10.0/24")

    def inside(s):
        try:
            return ipaddress.ip_address(s.network.client_ip_address) in net
        except ValueError:
            return False

    expected = [s for s in acme_sessions if inside(s)]
    assert expected, "the seed has clients in 192.168.10.0/24"
    got = list_all(stub, pb, gatehouse.acme_reader, query="client_ip:192.168.10.0/24")
    assert all(inside(s) for s in got)
    assert_same_sessions(got, expected)


def test_filter_client_ip_ipv6_cidr(gatehouse, stub, pb, acme_sessions):
    net = ipaddress.ip_network("2001:db8::/32")

    def inside(s):
        try:
            return ipaddress.ip_address(s.network.client_ip_address) in net
        except ValueError:
            return False

    expected = [s for s in acme_sessions if inside(s)]
    assert expected, "the seed has IPv6 clients in 2001:db8::/32"
    got = list_all(stub, pb, gatehouse.acme_reader, query='client_ip:"2001:db8::/32"')
    assert_same_sessions(got, expected)


def test_filter_duration_greater_than(gatehouse, stub, pb, acme_sessions):
    got = list_all(stub, pb, gatehouse.acme_reader, query="duration:>30m")
    assert got
    assert all(dur_seconds(s.duration) > 1800 for s in got)
    # Completed sessions have a fixed duration, so the expectation is exact for them.
    expected = [s for s in acme_sessions if s.session_status == "completed" and dur_seconds(s.duration) > 1800]
    assert_same_sessions([s for s in got if s.session_status == "completed"], expected)


def test_filter_session_status_active(gatehouse, stub, pb, acme_sessions):
    got = list_all(stub, pb, gatehouse.acme_reader, query="session_status:active")
    assert len(got) == ACME_ACTIVE
    assert all(s.session_status == "active" for s in got)
    assert all(not s.HasField("end_time") for s in got), "an active session has no end_time"
    assert_same_sessions(got, [s for s in acme_sessions if s.session_status == "active"])


def test_filter_boolean_combination(gatehouse, stub, pb, acme_sessions):
    got = list_all(stub, pb, gatehouse.acme_reader, query="technology:postgres AND NOT session_status:active")
    expected = [s for s in acme_sessions if s.resource.technology == "postgres" and s.session_status != "active"]
    assert_same_sessions(got, expected)


def test_query_and_pagination_together(gatehouse, stub, pb, acme_sessions):
    expected = {s.id for s in acme_sessions if s.resource.technology == "mysql"}
    seen, cursor = [], ""
    while True:
        resp = list_page(stub, pb, gatehouse.acme_reader, query="technology:mysql", limit=37, cursor=cursor)
        seen.extend(ids(resp.sessions))
        cursor = resp.list_metadata.next_cursor
        if not cursor:
            break
    assert len(seen) == len(set(seen))
    assert set(seen) == expected


# --- time window -------------------------------------------------------------------------------


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_window_returns_overlapping_sessions(gatehouse, stub, pb, acme_sessions):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start, end = now - timedelta(days=3), now - timedelta(days=2, hours=12)
    start_key, end_key = (int(start.timestamp()), 0), (int(end.timestamp()), 0)

    def overlaps(s):
        if ts_key(s.start_time) >= end_key:
            return False
        return not s.HasField("end_time") or ts_key(s.end_time) >= start_key

    expected = [s for s in acme_sessions if overlaps(s)]
    assert expected
    got = list_all(stub, pb, gatehouse.acme_reader, start_timestamp=rfc3339(start), end_timestamp=rfc3339(end))
    assert all(overlaps(s) for s in got)
    assert_same_sessions(got, expected)


def test_window_with_only_a_start_includes_active_sessions(gatehouse, stub, pb, acme_sessions):
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=6)
    start_key = (int(start.timestamp()), 0)
    expected = [s for s in acme_sessions if not s.HasField("end_time") or ts_key(s.end_time) >= start_key]
    got = list_all(stub, pb, gatehouse.acme_reader, start_timestamp=rfc3339(start))
    assert sum(1 for s in got if s.session_status == "active") == ACME_ACTIVE
    assert_same_sessions(got, expected)


def test_window_accepts_rfc3339_offsets(gatehouse, stub, pb):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start, end = now - timedelta(days=5), now - timedelta(days=4)
    utc = list_all(stub, pb, gatehouse.acme_reader, start_timestamp=rfc3339(start), end_timestamp=rfc3339(end))
    plus2 = timezone(timedelta(hours=2))
    offset = list_all(stub, pb, gatehouse.acme_reader,
                      start_timestamp=start.astimezone(plus2).isoformat(),
                      end_timestamp=end.astimezone(plus2).isoformat())
    assert utc
    assert ids(offset) == ids(utc)


def test_pagination_is_stable_while_sessions_arrive(gatehouse, stub, pb):
    """Keyset paging: sessions written mid-walk never cause a repeat or a skip of existing ones."""
    run_cli("seed", "--org", "initech", "--sessions", "400", "--active", "0", "--seed", "5",
            data_dir=gatehouse.data_dir)
    key = create_key(gatehouse.data_dir, "initech", "reader")
    before = set(ids(list_all(stub, pb, key)))
    assert len(before) == 400
    seen, cursor, pages = [], "", 0
    while True:
        resp = list_page(stub, pb, key, limit=50, cursor=cursor)
        seen.extend(ids(resp.sessions))
        pages += 1
        if pages == 3:
            run_cli("seed", "--org", "initech", "--sessions", "300", "--active", "2", "--seed", "6",
                    data_dir=gatehouse.data_dir)
        cursor = resp.list_metadata.next_cursor
        if not cursor:
            break
        assert pages < 100
    assert len(seen) == len(set(seen)), "a session was returned twice"
    assert before <= set(seen), f"{len(before - set(seen))} existing sessions were skipped"
    assert len(list_all(stub, pb, key)) == 702


# --- GetSession -------------------------------------------------------------------------------


def test_get_session_equals_list_entry(gatehouse, stub, pb, acme_sessions):
    completed = [s for s in acme_sessions if s.session_status == "completed"]
    for listed in (completed[0], completed[len(completed) // 2], completed[-1]):
        resp = stub.GetSession(pb.sessions.GetSessionRequest(session_id=listed.id),
                               metadata=api_key(gatehouse.acme_reader), timeout=RPC_TIMEOUT)
        assert resp.session == listed


def test_get_active_session_matches_list_except_elapsed_duration(gatehouse, stub, pb, acme_sessions):
    listed = next(s for s in acme_sessions if s.session_status == "active")
    resp = stub.GetSession(pb.sessions.GetSessionRequest(session_id=listed.id),
                           metadata=api_key(gatehouse.acme_reader), timeout=RPC_TIMEOUT)
    got = resp.session
    assert not got.HasField("end_time")
    assert dur_seconds(got.duration) >= dur_seconds(listed.duration), "elapsed time only grows"
    got.ClearField("duration")
    listed_copy = type(listed)()
    listed_copy.CopyFrom(listed)
    listed_copy.ClearField("duration")
    assert got == listed_copy


def test_sessions_have_populated_fields(acme_sessions):
    for s in acme_sessions[:200]:
        assert s.id
        assert s.session_status in ("active", "completed")
        assert s.HasField("start_time")
        assert s.resource.technology
        assert s.connector.id
        if s.session_status == "completed":
            assert s.HasField("end_time")
            end_minus_start = (s.end_time.seconds - s.start_time.seconds) + (s.end_time.nanos - s.start_time.nanos) / 1e9
            assert abs(end_minus_start - dur_seconds(s.duration)) < 1e-3, "duration is end - start"
