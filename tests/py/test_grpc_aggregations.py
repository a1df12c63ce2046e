"""ListSessionAggregations over gRPC: counts agree with walking ListSessionsV2."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import grpc
import pytest

from conftest import ACME_TOTAL, RPC_TIMEOUT, api_key, list_all


def aggregate(stub, pb, key, **request):
    return stub.ListSessionAggregations(pb.sessions.ListSessionAggregationsRequest(**request),
                                        metadata=api_key(key), timeout=RPC_TIMEOUT)


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def top10(values) -> list[tuple[str, int]]:
    counts = Counter(v for v in values if v)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]


@pytest.mark.parametrize("query", ["", "session_status:active", "technology:postgres OR group:dba"])
def test_hits_and_facets_match_a_walk(gatehouse, stub, pb, query):
    walked = list_all(stub, pb, gatehouse.acme_reader, query=query)
    resp = aggregate(stub, pb, gatehouse.acme_reader, query=query)
    assert resp.num_hits == len(walked)
    assert sum(b.count for b in resp.aggregations.logs_over_time) == len(walked)
    assert [(b.key, b.count) for b in resp.aggregations.session_types] == top10(
        s.resource.technology for s in walked)
    assert [(b.key, b.count) for b in resp.aggregations.user_emails] == top10(
        s.user.formal.user.email for s in walked)


def test_unfiltered_hits_are_the_whole_org(gatehouse, stub, pb):
    assert aggregate(stub, pb, gatehouse.acme_reader).num_hits == ACME_TOTAL


def test_window_histogram_has_every_bucket(gatehouse, stub, pb):
    # Buckets are aligned to multiples of the interval since the epoch: 00, 06, 12 and 18 UTC.
    now = datetime.now(timezone.utc)
    end = now.replace(hour=now.hour - now.hour % 6, minute=0, second=0, microsecond=0) + timedelta(hours=6)
    start = end - timedelta(days=2)
    resp = aggregate(stub, pb, gatehouse.acme_reader, start_timestamp=rfc3339(start), end_timestamp=rfc3339(end),
                     histogram_interval="6h", histogram_group_by_fields=["technology"])
    buckets = resp.aggregations.logs_over_time
    assert len(buckets) == 8
    assert [b.datetime for b in buckets] == [rfc3339(start + timedelta(hours=6 * i)) for i in range(8)]
    for b in buckets:
        assert sum(g.count for g in b.buckets) == b.count
    walked = list_all(stub, pb, gatehouse.acme_reader, start_timestamp=rfc3339(start), end_timestamp=rfc3339(end))
    assert resp.num_hits == len(walked)


@pytest.mark.parametrize("request_fields", [
    {"histogram_interval": "often"},
    {"histogram_group_by_fields": ["technology", "user.email", "group", "resource.name"]},
    {"histogram_group_by_fields": ["start_time"]},
    {"query": "duration:>"},
])
def test_invalid_requests(gatehouse, stub, pb, request_fields):
    with pytest.raises(grpc.RpcError) as err:
        aggregate(stub, pb, gatehouse.acme_reader, **request_fields)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details()
