"""The search language (shared/spec/query-language.md) over gRPC.

Each case pairs a query with a predicate over SessionObject; the server's answer must be exactly
the acme sessions the predicate selects from the full, unfiltered list.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timedelta, timezone

import pytest

from conftest import dur_seconds, list_all, ts_key


def ip_in(address: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network)
    except ValueError:
        return False


def ts(text: str) -> tuple[int, int]:
    dt = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return (int(dt.timestamp()), 0)


def completed(s) -> bool:
    return s.session_status == "completed"


def fmt(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


# Window bounds relative to now, at whole seconds, inside the seeded 30 days.
_NOW = datetime.now(timezone.utc).replace(microsecond=0)
T1, T2 = fmt(_NOW - timedelta(days=10)), fmt(_NOW - timedelta(days=9))

BARE_FIELDS = (
    lambda s: s.id,
    lambda s: s.user.username,
    lambda s: s.user.formal.user.email,
    lambda s: s.user.formal.user.name,
    lambda s: s.user.native.username,
    lambda s: s.resource.name,
    lambda s: s.connector.name,
    lambda s: s.network.client_ip_address,
)

CASES = {
    "status:active": lambda s: s.session_status == "active",
    "sessionStatus:active": lambda s: s.session_status == "active",
    "-session_status:active": completed,
    "NOT session_status:active": completed,
    "end_time:*": lambda s: s.HasField("end_time"),
    "NOT end_time:*": lambda s: not s.HasField("end_time"),
    "group:dba": lambda s: "dba" in s.user.formal.user.groups,
    "user.formal.user.groups:security": lambda s: "security" in s.user.formal.user.groups,
    "technology:postgres group:dba": lambda s: s.resource.technology == "postgres" and "dba" in s.user.formal.user.groups,
    "+technology:postgres +group:dba": lambda s: s.resource.technology == "postgres" and "dba" in s.user.formal.user.groups,
    "technology:postgres OR technology:mysql": lambda s: s.resource.technology in ("postgres", "mysql"),
    "technology:redis OR technology:postgres AND group:dba":
        lambda s: s.resource.technology == "redis" or (s.resource.technology == "postgres"
                                                      and "dba" in s.user.formal.user.groups),
    # Juxtaposition is AND, and binds tighter than OR, on either side of it.
    "technology:redis OR technology:postgres group:dba":
        lambda s: s.resource.technology == "redis" or (s.resource.technology == "postgres"
                                                      and "dba" in s.user.formal.user.groups),
    "technology:postgres group:dba OR technology:redis":
        lambda s: s.resource.technology == "redis" or (s.resource.technology == "postgres"
                                                      and "dba" in s.user.formal.user.groups),
    "technology:redis OR +technology:postgres": lambda s: s.resource.technology == "postgres",
    "(technology:redis OR technology:postgres) AND group:dba":
        lambda s: s.resource.technology in ("redis", "postgres") and "dba" in s.user.formal.user.groups,
    "technology:IN [postgres snowflake]": lambda s: s.resource.technology in ("postgres", "snowflake"),
    "sidecar.technology:ssh": lambda s: s.sidecar.technology == "ssh",
    "resource.type:datastore": lambda s: s.resource.type == "datastore",
    "client_ip:10.8.0.0/16": lambda s: ip_in(s.network.client_ip_address, "10.8.0.0/16"),
    "network.client_ip_address:192.168.10.0/24": lambda s: ip_in(s.network.client_ip_address, "192.168.10.0/24"),
    "NOT client_ip:10.0.0.0/8": lambda s: not ip_in(s.network.client_ip_address, "10.0.0.0/8"),
    # Active sessions' durations grow while the suite runs; keep them out of exact comparisons.
    "duration:[1m TO 10m] AND status:completed": lambda s: completed(s) and 60 <= dur_seconds(s.duration) <= 600,
    "duration:{1m TO 10m} AND status:completed": lambda s: completed(s) and 60 < dur_seconds(s.duration) < 600,
    "duration:<=90s AND status:completed": lambda s: completed(s) and dur_seconds(s.duration) <= 90,
    "duration:>2h AND status:completed": lambda s: completed(s) and dur_seconds(s.duration) > 7200,
    "native_user:postgres": lambda s: s.user.native.username.lower() == "postgres",
    # T1 and T2 stand for the timestamps above (kept symbolic so that test ids are stable).
    "start_time:[T1 TO T2}": lambda s: ts(T1) <= ts_key(s.start_time) < ts(T2),
    "start_time:[T1 TO *]": lambda s: ts(T1) <= ts_key(s.start_time),
    "time:<T1": lambda s: ts_key(s.start_time) < ts(T1),
    "end_time:<T2": lambda s: s.HasField("end_time") and ts_key(s.end_time) < ts(T2),
}


@pytest.mark.parametrize("label", list(CASES))
def test_query_matches_client_side_predicate(gatehouse, stub, pb, acme_sessions, label):
    predicate = CASES[label]
    # In one pass: a timestamp such as 2026-11-13T20:38:37Z holds "T2" itself.
    query = re.sub(r"T[12]\b", lambda m: {"T1": T1, "T2": T2}[m.group()], label)
    expected = {s.id for s in acme_sessions if predicate(s)}
    got = list_all(stub, pb, gatehouse.acme_reader, query=query)
    got_ids = [s.id for s in got]
    assert len(got_ids) == len(set(got_ids))
    missing, extra = expected - set(got_ids), set(got_ids) - expected
    assert not missing and not extra, (
        f"{query!r}: {len(got_ids)} returned, {len(expected)} expected; "
        f"{len(missing)} missing (e.g. {sorted(missing)[:3]}), {len(extra)} unexpected (e.g. {sorted(extra)[:3]})"
    )


def some(acme_sessions, field):
    values = [field(s) for s in acme_sessions if field(s)]
    assert values
    return values[len(values) // 3]


def assert_query(gatehouse, stub, pb, acme_sessions, query, predicate):
    expected = {s.id for s in acme_sessions if predicate(s)}
    assert expected, f"{query!r} should match something in the seed"
    got = {s.id for s in list_all(stub, pb, gatehouse.acme_reader, query=query)}
    assert got == expected, f"{query!r}: {len(got - expected)} unexpected, {len(expected - got)} missing"


def test_prefix_on_email(gatehouse, stub, pb, acme_sessions):
    email = some(acme_sessions, lambda s: s.user.formal.user.email)
    prefix = email[:4]
    assert_query(gatehouse, stub, pb, acme_sessions, f"user.email:{prefix}*",
                 lambda s: s.user.formal.user.email.lower().startswith(prefix.lower()))


def test_phrase_on_resource_name(gatehouse, stub, pb, acme_sessions):
    name = some(acme_sessions, lambda s: s.resource.name)
    assert_query(gatehouse, stub, pb, acme_sessions, f'resource.name:"{name}"',
                 lambda s: s.resource.name.lower() == name.lower())


def test_alias_resource_equals_resource_name(gatehouse, stub, pb, acme_sessions):
    name = some(acme_sessions, lambda s: s.resource.name)
    assert_query(gatehouse, stub, pb, acme_sessions, f'resource:"{name.upper()}"',
                 lambda s: s.resource.name.lower() == name.lower())


def test_keyword_user_id(gatehouse, stub, pb, acme_sessions):
    user_id = some(acme_sessions, lambda s: s.user.formal.user.id)
    assert_query(gatehouse, stub, pb, acme_sessions, f"user.id:{user_id}",
                 lambda s: s.user.formal.user.id == user_id)


def test_session_id_field(gatehouse, stub, pb, acme_sessions):
    sid = acme_sessions[17].id
    assert_query(gatehouse, stub, pb, acme_sessions, f'id:"{sid}"', lambda s: s.id == sid)
    assert_query(gatehouse, stub, pb, acme_sessions, f'session_id:"{sid}"', lambda s: s.id == sid)


def test_connector_id(gatehouse, stub, pb, acme_sessions):
    cid = some(acme_sessions, lambda s: s.connector.id)
    assert_query(gatehouse, stub, pb, acme_sessions, f"connector.id:{cid}", lambda s: s.connector.id == cid)


def test_server_ip_exact(gatehouse, stub, pb, acme_sessions):
    ip = some(acme_sessions, lambda s: s.network.server_ip_address)
    assert_query(gatehouse, stub, pb, acme_sessions, f'server_ip:"{ip}"',
                 lambda s: s.network.server_ip_address == ip)


def test_camel_case_dotted_field(gatehouse, stub, pb, acme_sessions):
    ip = some(acme_sessions, lambda s: s.network.client_ip_address if "." in s.network.client_ip_address else "")
    assert_query(gatehouse, stub, pb, acme_sessions, f'network.clientIpAddress:"{ip}"',
                 lambda s: s.network.client_ip_address == ip)


def test_bare_term_searches_text_fields(gatehouse, stub, pb, acme_sessions):
    last_name = some(acme_sessions, lambda s: s.user.formal.user.name).split()[-1]
    needle = last_name.lower()
    assert_query(gatehouse, stub, pb, acme_sessions, last_name,
                 lambda s: any(needle in f(s).lower() for f in BARE_FIELDS))


def test_bare_term_is_case_insensitive(gatehouse, stub, pb, acme_sessions):
    last_name = some(acme_sessions, lambda s: s.user.formal.user.name).split()[-1]
    lower = {s.id for s in list_all(stub, pb, gatehouse.acme_reader, query=last_name.lower())}
    upper = {s.id for s in list_all(stub, pb, gatehouse.acme_reader, query=last_name.upper())}
    assert lower and lower == upper


def test_relative_time(gatehouse, stub, pb, acme_sessions):
    before = datetime.now(timezone.utc)
    got = {s.id for s in list_all(stub, pb, gatehouse.acme_reader, query="start_time:>=now-7d")}
    after = datetime.now(timezone.utc)
    # Sessions within a few seconds of the moving boundary may fall either way.
    surely_in = (int((after - timedelta(days=7)).timestamp()) + 5, 0)
    surely_out = (int((before - timedelta(days=7)).timestamp()) - 5, 0)
    must = {s.id for s in acme_sessions if ts_key(s.start_time) >= surely_in}
    may = {s.id for s in acme_sessions if ts_key(s.start_time) >= surely_out}
    assert must, "the seed has sessions in the last week"
    assert must <= got <= may


def test_negated_group_matches_sessions_without_it(gatehouse, stub, pb, acme_sessions):
    assert_query(gatehouse, stub, pb, acme_sessions, "NOT group:dba",
                 lambda s: "dba" not in s.user.formal.user.groups)


def test_query_values_are_not_sql(gatehouse, stub, pb, acme_sessions):
    """A value full of SQL syntax is data: it matches nothing and breaks nothing."""
    got = list_all(stub, pb, gatehouse.acme_reader, query="""user.email:"x' OR '1'='1" """)
    assert got == []
    got = list_all(stub, pb, gatehouse.acme_reader, query='resource.name:"%"')
    assert got == []


def test_like_wildcards_in_a_prefix_are_literal(gatehouse, stub, pb, acme_sessions):
    email = some(acme_sessions, lambda s: s.user.formal.user.email)
    for prefix in (email[0] + "_", email[0] + "%"):
        got = {s.id for s in list_all(stub, pb, gatehouse.acme_reader, query=f"user.email:{prefix}*")}
        expected = {s.id for s in acme_sessions if s.user.formal.user.email.lower().startswith(prefix)}
        assert got == expected, f"prefix {prefix!r} matched {len(got)} sessions"
