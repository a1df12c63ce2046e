// ListSessionAggregations (shared/spec/aggregations.md) through the generated
// client: hits and facets agree with what ListSessionsV2 returns.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import {
  Code,
  DEFAULT_TOTAL,
  TIMEOUT_MS,
  TRANSPORT_NAMES,
  assertMessage,
  client,
  connectError,
  listAll,
  ms,
} from './lib.mjs';

let all;
before(async () => {
  all = await listAll(client('connect-json'));
});

/** The top 10 keys by count, ties by key, as [key, count]. */
function top10(values) {
  const m = new Map();
  for (const v of values) if (v) m.set(v, (m.get(v) || 0) + 1);
  return [...m.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 10);
}
const pairs = (buckets) => buckets.map((b) => [b.key, b.count]);
const HOUR = 3600_000;

const FACETS = {
  sessionTypes: (s) => s.resource?.technology,
  resourceTechnologies: (s) => s.resource?.technology,
  resourceNames: (s) => s.resource?.name,
  resourceIds: (s) => s.resource?.id,
  resourceTypes: (s) => s.resource?.type,
  connectorNames: (s) => s.connector?.name,
  connectorIds: (s) => s.connector?.id,
  sessionClientIpAddresses: (s) => s.network?.clientIpAddress,
  sessionServerIpAddresses: (s) => s.network?.serverIpAddress,
  userEmails: (s) => s.user?.formal?.user?.email,
  userIds: (s) => s.user?.formal?.user?.id,
  userUsernames: (s) => s.user?.username,
  userTypes: (s) => s.user?.type,
  endUserEmails: (s) => s.user?.formal?.endUser?.email,
  endUserNames: (s) => s.user?.formal?.endUser?.name,
};

for (const transport of TRANSPORT_NAMES) {
  test(`${transport}: num_hits and facets agree with ListSessionsV2`, async () => {
    const c = client(transport);
    const topGroup = top10(all.flatMap((s) => s.user?.formal?.user?.groups || []))[0][0];
    for (const query of ['', 'session_status:active', `technology:postgres OR group:${topGroup}`]) {
      const walked = await listAll(c, { query });
      const { aggregations: a, numHits } = await c.listSessionAggregations({ query }, { timeoutMs: TIMEOUT_MS });
      assert.equal(typeof numHits, 'bigint', 'num_hits is an int64');
      assert.equal(Number(numHits), walked.length, `num_hits of ${JSON.stringify(query)}`);
      assert.equal(a.logsOverTime.reduce((n, b) => n + b.count, 0), walked.length, `histogram total of ${JSON.stringify(query)}`);
      for (const [field, value] of Object.entries(FACETS)) {
        assert.deepEqual(pairs(a[field]), top10(walked.map(value)), `${field} of ${JSON.stringify(query)}`);
      }
      assert.equal(pairs(a.sessionIds).length, Math.min(10, walked.length), 'session_ids holds the top 10');
      for (const empty of ['triggeredPolicyIds', 'triggeredPolicyNames', 'triggeredPolicyStatuses', 'triggeredPolicyTypes',
        'spaceNames', 'spaceIds']) {
        assert.deepEqual(a[empty], [], `${empty} is empty`);
      }
    }
  });
}

test('the unfiltered count is the whole organization', async () => {
  const { numHits } = await client('grpc').listSessionAggregations({});
  assert.equal(numHits, BigInt(DEFAULT_TOTAL));
});

test('a window with an interval: every bucket present, split by the group-by fields', async () => {
  // Buckets of 6 h, aligned on 00, 06, 12 and 18 UTC; a two-day window inside the seeded 30 days.
  const end = Math.floor(Date.now() / (6 * HOUR)) * 6 * HOUR - 2 * 24 * HOUR;
  const start = end - 2 * 24 * HOUR;
  const window = { startTimestamp: new Date(start).toISOString(), endTimestamp: new Date(end).toISOString() };
  for (const transport of TRANSPORT_NAMES) {
    const c = client(transport);
    const { aggregations: a, numHits } = await c.listSessionAggregations({
      ...window, histogramInterval: '6h', histogramGroupByFields: ['technology', 'user.type'],
    });
    const walked = await listAll(c, window);
    assert.equal(Number(numHits), walked.length, `${transport}: num_hits equals the window's sessions`);
    const buckets = a.logsOverTime;
    assert.deepEqual(buckets.map((b) => Date.parse(b.datetime)),
      Array.from({ length: 8 }, (_, i) => start + i * 6 * HOUR), `${transport}: one bucket per 6 h, empty ones too`);
    assert.ok(buckets.every((b) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(b.datetime)), 'RFC 3339 UTC datetimes');
    for (const b of buckets) {
      assert.equal(b.buckets.reduce((n, g) => n + g.count, 0), b.count, `${b.datetime}: technology buckets add up`);
      for (const g of b.buckets) {
        assert.equal(g.buckets.reduce((n, u) => n + u.count, 0), g.count, `${b.datetime}/${g.key}: user.type buckets add up`);
        assert.ok(g.buckets.every((u) => ['human', 'machine'].includes(u.key)), 'the second level is user.type');
      }
      const techs = new Set(all.map((s) => s.resource?.technology));
      assert.ok(b.buckets.every((g) => techs.has(g.key)), 'the first level is technology');
    }
    // Sessions that started inside the window are counted in the bucket of their start.
    for (const b of buckets.slice(1)) {
      const from = Date.parse(b.datetime);
      const started = walked.filter((s) => ms(s.startTime) >= from && ms(s.startTime) < from + 6 * HOUR).length;
      assert.equal(b.count, started, `${transport}: bucket ${b.datetime}`);
    }
  }
});

test('without an interval the histogram has about 100 buckets at most', async () => {
  for (const request of [{}, { startTimestamp: new Date(Date.now() - 3 * HOUR).toISOString() }]) {
    const { aggregations: a } = await client('connect-proto').listSessionAggregations(request);
    assert.ok(a.logsOverTime.length >= 1 && a.logsOverTime.length <= 110, `${a.logsOverTime.length} buckets`);
    const starts = a.logsOverTime.map((b) => Date.parse(b.datetime));
    const step = starts[1] - starts[0];
    assert.ok(starts.every((t, i) => i === 0 || t - starts[i - 1] === step), 'buckets are evenly spaced');
  }
});

test('invalid aggregation requests: invalid_argument', async () => {
  for (const transport of TRANSPORT_NAMES) {
    const c = client(transport);
    for (const [what, request, word] of [
      ['interval that is no duration', { histogramInterval: 'often' }, 'histogram_interval'],
      ['4 group-by fields', { histogramGroupByFields: ['technology', 'user.email', 'group', 'resource.name'] }, ''],
      ['unknown group-by field', { histogramGroupByFields: ['nope'] }, 'nope'],
      ['bad query', { query: 'duration:>' }, ''],
      ['bad window', { startTimestamp: 'yesterday' }, 'start_timestamp'],
    ]) {
      const err = await connectError(() => c.listSessionAggregations(request), Code.InvalidArgument, `${transport}: ${what}`);
      assertMessage(err, ...(word ? [word] : []));
    }
  }
});
