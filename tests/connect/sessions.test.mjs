// GetSession and ListSessionsV2 through the generated client, on every transport:
// fields, the query language, sorting, time windows and cursor paging.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import {
  DEFAULT_ACTIVE,
  DEFAULT_TOTAL,
  TIMEOUT_MS,
  TRANSPORT_NAMES,
  SessionObjectSchema,
  assertSameSessions,
  client,
  clone,
  equals,
  hasUnknownFields,
  ids,
  listAll,
  ms,
  nanos,
  walk,
} from './lib.mjs';

/** Ground truth: every session of the default org, fetched once with Connect JSON. */
let all;
before(async () => {
  all = await listAll(client('connect-json'));
});

const lower = (s) => (s || '').toLowerCase();
const email = (s) => s.user?.formal?.user?.email || '';
const countBy = (values) => {
  const m = new Map();
  for (const v of values) if (v) m.set(v, (m.get(v) || 0) + 1);
  return [...m.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
};
const rfc3339 = (msec) => new Date(msec).toISOString();

test('the seeded organization is listed whole, each session once', () => {
  assert.equal(all.length, DEFAULT_TOTAL);
  assert.equal(new Set(ids(all)).size, DEFAULT_TOTAL);
  const active = all.filter((s) => s.sessionStatus === 'active');
  assert.ok(active.length > 0 && active.length <= DEFAULT_ACTIVE, `${active.length} active sessions`);
  assert.ok(all.every((s) => ['active', 'completed'].includes(s.sessionStatus)));
});

test('messages are filled in as the contract says', () => {
  const now = Date.now();
  for (const s of all) {
    assert.ok(s.id && s.startTime && s.duration, `${s.id}: id, start_time and duration are set`);
    if (s.sessionStatus === 'completed') {
      assert.ok(s.endTime, `${s.id}: a completed session has end_time`);
      assert.equal(nanos(s.duration), nanos(s.endTime) - nanos(s.startTime), `${s.id}: duration is end - start`);
    } else {
      assert.equal(s.endTime, undefined, `${s.id}: end_time is absent while active`);
      // Elapsed up to the response: this client's clock is the server's.
      const elapsed = now - ms(s.startTime);
      assert.ok(Math.abs(elapsed - ms(s.duration)) < 60_000, `${s.id}: active duration ${ms(s.duration)} ms, elapsed ${elapsed} ms`);
    }
    assert.ok(['aws', 'datastore', 'instance'].includes(s.resource?.type), `${s.id}: resource.type ${s.resource?.type}`);
  }
});

for (const transport of TRANSPORT_NAMES) {
  describe(transport, () => {
    const c = client(transport);

    test('GetSession returns what the listing showed', async () => {
      const completed = all.filter((s) => s.sessionStatus === 'completed');
      const picks = [completed[0], completed[completed.length - 1], completed[Math.floor(completed.length / 2)],
        completed.find((s) => s.user?.formal?.endUser), completed.find((s) => s.parentSessionId)].filter(Boolean);
      for (const listed of picks) {
        const { session } = await c.getSession({ sessionId: listed.id }, { timeoutMs: TIMEOUT_MS });
        assert.ok(equals(SessionObjectSchema, session, listed), `${listed.id} differs from the listing`);
      }
    });

    test('GetSession of an active session: same fields, duration up to the response', async () => {
      const listed = all.find((s) => s.sessionStatus === 'active');
      const { session } = await c.getSession({ sessionId: listed.id }, { timeoutMs: TIMEOUT_MS });
      assert.equal(session.sessionStatus, 'active');
      assert.equal(session.endTime, undefined);
      assert.ok(nanos(session.duration) >= nanos(listed.duration), 'the elapsed time does not go backwards');
      const same = (s) => {
        const copy = clone(SessionObjectSchema, s);
        copy.duration = undefined;
        return copy;
      };
      assert.ok(equals(SessionObjectSchema, same(session), same(listed)));
    });

    test('default page: 100 newest first, metadata links the next page only', async () => {
      const resp = await c.listSessionsV2({}, { timeoutMs: TIMEOUT_MS });
      assert.equal(resp.sessions.length, 100);
      assert.equal(resp.listMetadata.count, 100);
      assert.ok(resp.listMetadata.nextCursor);
      assert.equal(resp.listMetadata.after, resp.listMetadata.nextCursor);
      assert.equal(resp.listMetadata.before, '', 'the first page has no preceding page');
      assert.deepEqual(ids(resp.sessions), ids(all).slice(0, 100), 'the default sort is start_time descending');
      // The messages of the public schema, and nothing more (JSON is parsed strictly in lib.mjs).
      assert.equal(hasUnknownFields(resp), false, 'the response holds fields the schema does not have');
    });

    test('limit 0 is the default page, a small limit is honoured', async () => {
      assert.equal((await c.listSessionsV2({ limit: 0 })).sessions.length, 100);
      const seven = await c.listSessionsV2({ limit: 7 });
      assert.equal(seven.sessions.length, 7);
      assert.equal(seven.listMetadata.count, 7);
    });

    test('paging page by page returns every session once, in order (query + sort)', async () => {
      const request = { query: 'NOT technology:mysql', sortBy: 'end_time:asc', limit: 97 };
      const expected = await listAll(c, { query: request.query, sortBy: request.sortBy });
      assert.ok(expected.length > 1000, 'the query matches most sessions');
      const aggregated = await c.listSessionAggregations({ query: request.query });
      assert.equal(Number(aggregated.numHits), expected.length, 'num_hits counts the same sessions');

      const { sessions, pages } = await walk(c, request);
      assert.equal(pages.length, Math.ceil(expected.length / 97));
      assert.equal(new Set(ids(sessions)).size, sessions.length, 'no session twice');
      assert.equal(sessions.length, expected.length, 'no session missing');
      assert.deepEqual(ids(sessions), ids(expected), 'pages concatenate to the single-page order');
      assert.equal(pages[0].before, '');
      for (const [i, p] of pages.entries()) {
        if (i > 0) assert.ok(p.before, `page ${i + 1} links to its preceding page`);
        assert.equal(p.count, i < pages.length - 1 ? 97 : expected.length - 97 * (pages.length - 1));
      }
      // `before` of a page fetches exactly the page before it.
      for (const i of [1, Math.floor(pages.length / 2), pages.length - 1]) {
        const back = await c.listSessionsV2({ ...request, cursor: pages[i].before });
        assert.deepEqual(ids(back.sessions), pages[i - 1].ids, `before of page ${i + 1}`);
      }
    });
  });
}

test('paging the whole organization with the default page (gRPC-web)', async () => {
  const { sessions, pages } = await walk(client('grpc-web'), {});
  assert.equal(pages.length, Math.ceil(DEFAULT_TOTAL / 100));
  assert.equal(sessions.length, DEFAULT_TOTAL);
  assert.equal(new Set(ids(sessions)).size, DEFAULT_TOTAL);
  assertSameSessions(sessions, all);
});

// --- sorting -------------------------------------------------------------------------------------

/** Asserts `sessions` ordered by `key` in `dir`, ties by id in one direction throughout. */
function assertSorted(sessions, key, dir) {
  let tieDir = 0;
  for (let i = 1; i < sessions.length; i++) {
    const [a, b] = [key(sessions[i - 1]), key(sessions[i])];
    const [ia, ib] = [sessions[i - 1].id, sessions[i].id];
    if (a === b) {
      assert.notEqual(ia, ib);
      const d = ia < ib ? 1 : -1;
      tieDir ||= d;
      assert.equal(d, tieDir, `ties on ${a} break on id, always in the same direction (at ${i})`);
    } else {
      assert.equal(dir === 'asc' ? a < b : a > b, true, `out of order at ${i}: ${a} then ${b}`);
    }
  }
}

const SORTS = [
  { sortBy: '', key: (s) => nanos(s.startTime), dir: 'desc' },
  { sortBy: 'start_time', key: (s) => nanos(s.startTime), dir: 'desc' },
  { sortBy: 'start_time:asc', key: (s) => nanos(s.startTime), dir: 'asc' },
  { sortBy: 'end_time:desc', key: (s) => nanos(s.endTime), dir: 'desc', query: 'status:completed' },
  { sortBy: 'end_time:asc', key: (s) => nanos(s.endTime), dir: 'asc', query: 'status:completed' },
  { sortBy: 'duration:asc', key: (s) => nanos(s.duration), dir: 'asc', query: 'status:completed' },
  { sortBy: 'duration:desc', key: (s) => nanos(s.duration), dir: 'desc', query: 'status:completed' },
];

for (const { sortBy, key, dir, query = '' } of SORTS) {
  test(`sort_by ${JSON.stringify(sortBy)} ${query}`, async () => {
    const c = client('connect-json');
    const got = await listAll(c, { sortBy, query });
    assertSameSessions(got, all.filter((s) => !query || s.sessionStatus === 'completed'));
    assertSorted(got, key, dir);
    // The same order when paged with a small page.
    const { sessions } = await walk(c, { sortBy, query, limit: 1000 });
    assert.deepEqual(ids(sessions), ids(got));
  });
}

test('sorting by end_time has ties, and paging through them keeps every session once', async () => {
  const c = client('grpc-web');
  const got = await listAll(c, { sortBy: 'end_time:desc', query: 'status:completed' });
  // The largest group of sessions that ended at the same instant, with its neighbours.
  const groups = countBy(got.map((s) => String(nanos(s.endTime))));
  assert.ok(groups[0][1] > 1, 'the seed has sessions that end at the same time (else this test checks nothing)');
  const end = Number(BigInt(groups[0][0]) / 1_000_000n);
  const query = `status:completed AND end_time:[${rfc3339(Math.floor(end / 1000) * 1000 - 600_000)} TO ${rfc3339(Math.ceil(end / 1000) * 1000 + 600_000)}]`;
  for (const sortBy of ['end_time:desc', 'end_time:asc']) {
    const expected = await listAll(c, { sortBy, query });
    assert.ok(expected.length >= groups[0][1]);
    const { sessions } = await walk(c, { sortBy, query, limit: 2 });
    assert.deepEqual(ids(sessions), ids(expected), `${sortBy}: pages of 2 through ${groups[0][1]} tied sessions`);
  }
});

// --- the query language --------------------------------------------------------------------------

function queries() {
  const topEmail = countBy(all.map(email))[0][0];
  const topResource = countBy(all.map((s) => s.resource?.name))[0][0];
  const topConnector = countBy(all.map((s) => s.connector?.name))[0][0];
  const topGroup = countBy(all.flatMap((s) => s.user?.formal?.user?.groups || []))[0][0];
  const prefix = topEmail.slice(0, 3);
  const completed = all.filter((s) => s.sessionStatus === 'completed').map((s) => ms(s.startTime)).sort((a, b) => a - b);
  const from = Math.floor(completed[Math.floor(completed.length * 0.25)] / 1000) * 1000 + 500;
  const to = Math.floor(completed[Math.floor(completed.length * 0.5)] / 1000) * 1000 + 500;
  const userName = all.find((s) => s.user?.formal?.user?.name?.includes(' '))?.user.formal.user.name;
  const tech = (s) => s.resource?.technology;
  const bare = topEmail.split(/[.@]/)[0];
  const bareFields = (s) => [s.id, s.user?.username, email(s), s.user?.formal?.user?.name, s.user?.native?.username,
    s.resource?.name, s.connector?.name, s.network?.clientIpAddress];
  return [
    [bare, (s) => bareFields(s).some((v) => lower(v).includes(lower(bare)))],
    ['technology:postgres AND NOT status:active', (s) => tech(s) === 'postgres' && s.sessionStatus !== 'active'],
    ['protocol:postgres', (s) => tech(s) === 'postgres'],
    ['technology:IN [mysql mongodb]', (s) => ['mysql', 'mongodb'].includes(tech(s))],
    [`user.email:${topEmail.toUpperCase()}`, (s) => lower(email(s)) === lower(topEmail)],
    [`email:${prefix}*`, (s) => lower(email(s)).startsWith(lower(prefix))],
    [`resource.name:"${topResource}"`, (s) => lower(s.resource?.name) === lower(topResource)],
    [`connector:"${topConnector}" AND -technology:postgres`, (s) => s.connector?.name === topConnector && tech(s) !== 'postgres'],
    [`group:${topGroup}`, (s) => (s.user?.formal?.user?.groups || []).includes(topGroup)],
    [`user.name:"${userName}"`, (s) => lower(s.user?.formal?.user?.name) === lower(userName)],
    ['client_ip:10.0.0.0/8', (s) => /^10\./.test(s.network?.clientIpAddress || '')],
    ['duration:>30m AND status:completed', (s) => s.sessionStatus === 'completed' && nanos(s.duration) > 1800n * 10n ** 9n],
    ['end_time:*', (s) => s.endTime !== undefined],
    ['sessionStatus:active', (s) => s.sessionStatus === 'active'],
    ['-session_status:completed', (s) => s.sessionStatus !== 'completed'],
    [`start_time:[${rfc3339(from)} TO ${rfc3339(to)}}`, (s) => ms(s.startTime) >= from && ms(s.startTime) < to],
    ['technology:mysql OR technology:postgres AND status:active',
      (s) => tech(s) === 'mysql' || (tech(s) === 'postgres' && s.sessionStatus === 'active')],
    ['(technology:mysql OR technology:postgres) status:active',
      (s) => ['mysql', 'postgres'].includes(tech(s)) && s.sessionStatus === 'active'],
  ];
}

for (const transport of TRANSPORT_NAMES) {
  test(`${transport}: queries of the search language select what they say`, async () => {
    const c = client(transport);
    for (const [query, predicate] of queries()) {
      const expected = all.filter(predicate);
      const got = await listAll(c, { query });
      assert.ok(got.length > 0 || expected.length === 0);
      assertSameSessions(got, expected, query);
    }
  });
}

test('a relative time bound (start_time:>=now-7d)', async () => {
  const got = await listAll(client('connect-json'), { query: 'start_time:>=now-7d' });
  const bound = Date.now() - 7 * 86400_000;
  // Sessions within a few seconds of the moving bound may fall either way.
  const far = (s) => Math.abs(ms(s.startTime) - bound) > 10_000;
  assertSameSessions(got.filter(far), all.filter((s) => far(s) && ms(s.startTime) >= bound));
  assert.ok(got.length > 0 && got.length < all.length);
});

// --- time windows --------------------------------------------------------------------------------

test('start_timestamp/end_timestamp select the sessions that overlap the window', async () => {
  const starts = all.map((s) => ms(s.startTime)).sort((a, b) => a - b);
  const from = Math.floor(starts[Math.floor(starts.length * 0.4)] / 1000) * 1000 + 250;
  const to = from + 86400_000;
  const overlaps = (s) => ms(s.startTime) < to && (s.endTime === undefined || ms(s.endTime) >= from);
  const expected = all.filter(overlaps);
  for (const transport of TRANSPORT_NAMES) {
    const c = client(transport);
    const got = await listAll(c, { startTimestamp: rfc3339(from), endTimestamp: rfc3339(to) });
    assertSameSessions(got, expected, transport);
  }
  // One bound only.
  const c = client('grpc-web');
  assertSameSessions(await listAll(c, { startTimestamp: rfc3339(from) }),
    all.filter((s) => s.endTime === undefined || ms(s.endTime) >= from), 'start only');
  assertSameSessions(await listAll(c, { endTimestamp: rfc3339(to) }), all.filter((s) => ms(s.startTime) < to), 'end only');
});
