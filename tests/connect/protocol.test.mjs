// Protocol features a generated client uses: Connect GET for the methods marked
// NO_SIDE_EFFECTS, compression, deadlines (timeoutMs), and latency per call.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { compressionGzip } from '@connectrpc/connect-node';

import {
  ADMIN_KEY,
  Code,
  SLOW_URL,
  SessionsService,
  TIMEOUT_MS,
  TRANSPORT_NAMES,
  assertMessage,
  client,
  connectError,
  ids,
  listAll,
  recordingConnectClient,
} from './lib.mjs';

let all;
let completed;
before(async () => {
  all = await listAll(client('connect-json'));
  completed = all.find((s) => s.sessionStatus === 'completed');
});

// --- Connect GET ---------------------------------------------------------------------------------

test('the proto marks the read methods NO_SIDE_EFFECTS, and only them', () => {
  const idempotent = SessionsService.methods.filter((m) => m.idempotency === 1).map((m) => m.name).sort();
  assert.deepEqual(idempotent, ['GetSession', 'GetSessionTranscript', 'ListSessionAggregations', 'ListSessionsV2']);
});

for (const transport of ['connect-json', 'connect-proto']) {
  describe(`${transport} with useHttpGet`, () => {
    const binary = transport === 'connect-proto';
    const get = recordingConnectClient({ binary, useHttpGet: true });
    const post = client(transport);
    const last = () => get.requests[get.requests.length - 1];

    test('read methods go as GET and answer as POST does', async () => {
      const request = { query: 'technology:postgres', limit: 20, sortBy: 'duration:desc' };
      const listed = await get.listSessionsV2(request);
      assert.equal(last().method, 'GET');
      assert.match(last().path, /^\/core\.v1\.SessionsService\/ListSessionsV2\?/);
      assert.equal(last().query.get('encoding'), binary ? 'proto' : 'json');
      assert.ok(last().query.get('message'));
      const posted = await post.listSessionsV2(request);
      assert.equal(listed.sessions.length, 20);
      assert.deepEqual(ids(listed.sessions), ids(posted.sessions));

      // The next page, with a cursor, over GET too.
      const next = await get.listSessionsV2({ ...request, cursor: listed.listMetadata.nextCursor });
      assert.equal(last().method, 'GET');
      const nextPosted = await post.listSessionsV2({ ...request, cursor: posted.listMetadata.nextCursor });
      assert.deepEqual(ids(next.sessions), ids(nextPosted.sessions));

      const { session } = await get.getSession({ sessionId: completed.id });
      assert.equal(last().method, 'GET');
      assert.equal(session.id, completed.id);
      assert.equal(session.user?.username, completed.user?.username);

      const agg = await get.listSessionAggregations({ query: 'technology:postgres' });
      assert.equal(last().method, 'GET');
      assert.equal(Number(agg.numHits), all.filter((s) => s.resource?.technology === 'postgres').length);

      const transcript = await get.getSessionTranscript({ sessionId: completed.id });
      assert.equal(last().method, 'GET');
      assert.equal(typeof transcript.transcript, 'string');
    });

    test('errors over GET carry their codes', async () => {
      await connectError(() => get.getSession({ sessionId: 'no-such-session' }), Code.NotFound);
      assert.equal(last().method, 'GET');
      await connectError(() => get.listSessionsV2({ query: 'technology:(' }), Code.InvalidArgument);
      assert.equal(last().method, 'GET');
      const anonymous = recordingConnectClient({ binary, key: null, useHttpGet: true });
      await connectError(() => anonymous.listSessionsV2({}), Code.Unauthenticated);
      assert.equal(anonymous.requests[0].method, 'GET');
    });

    test('a method with side effects still goes as POST', async () => {
      const admin = recordingConnectClient({ binary, key: ADMIN_KEY, useHttpGet: true });
      await connectError(() => admin.createSessionTermination({ sessionId: completed.id, connectorId: completed.connector.id }),
        Code.FailedPrecondition);
      assert.deepEqual(admin.requests.map((r) => [r.method, r.path]),
        [['POST', '/core.v1.SessionsService/CreateSessionTermination']]);
    });
  });
}

// --- compression ---------------------------------------------------------------------------------

for (const transport of TRANSPORT_NAMES) {
  test(`${transport}: a gzip-compressed request gets the same answer`, async () => {
    // A query well over the compression threshold; it still matches what a short one does.
    const padding = Array.from({ length: 80 }, (_, i) => `NOT id:padding-${i}`).join(' AND ');
    const query = `technology:postgres AND ${padding}`;
    assert.ok(query.length > 1500);
    const gz = client(transport, { sendCompression: compressionGzip, compressMinBytes: 0 });
    const got = await listAll(gz, { query });
    assert.deepEqual(ids(got), ids(all.filter((s) => s.resource?.technology === 'postgres')));
  });
}

// --- deadlines -----------------------------------------------------------------------------------

const COSTLY = Array.from({ length: 50 }, (_, i) => `x${i}*`).join(' OR ');

/** Records the deadline header that the transport sends. */
function recordHeaders(seen) {
  return (next) => async (req) => {
    seen.push(Object.fromEntries(['connect-timeout-ms', 'grpc-timeout'].map((h) => [h, req.header.get(h)])));
    return next(req);
  };
}

// Runs before any other call to SLOW_URL, whose server run.sh has just started.
test('the store timeout stops the first query of a fresh server too', { skip: !SLOW_URL && 'SLOW_URL not set' }, async () => {
  const c = client('grpc-web', { baseUrl: SLOW_URL });
  const err = await connectError(() => c.listSessionsV2({ query: COSTLY, limit: 100 }, { timeoutMs: TIMEOUT_MS }),
    Code.DeadlineExceeded, 'the first costly query (a statement timeout of 1 ms)');
  assertMessage(err, 'statement timeout', 'narrow its time window');
});

for (const transport of TRANSPORT_NAMES) {
  describe(`${transport} deadlines`, () => {
    const isConnect = transport.startsWith('connect');

    test('a call within its timeoutMs succeeds and sends the deadline', async () => {
      const seen = [];
      const c = client(transport, { interceptors: [recordHeaders(seen)] });
      const resp = await c.listSessionsV2({ limit: 5 }, { timeoutMs: 10_000 });
      assert.equal(resp.sessions.length, 5);
      const sent = seen[0][isConnect ? 'connect-timeout-ms' : 'grpc-timeout'];
      assert.ok(sent, 'the deadline header is sent');
    });

    test('timeoutMs shorter than the call: deadline_exceeded', async () => {
      const c = client(transport);
      await connectError(() => c.listSessionsV2({ query: COSTLY, limit: 100000 }, { timeoutMs: 1 }), Code.DeadlineExceeded);
      // The client is fine afterwards.
      assert.equal((await c.listSessionsV2({ limit: 1 }, { timeoutMs: TIMEOUT_MS })).sessions.length, 1);
    });

    test('the server honours the deadline header by itself', async () => {
      // Only the header, no timer in the client: the server must stop the call. 25 ms:
      // the request has long arrived by then, and the query alone takes ~90 ms.
      const header = isConnect ? { 'connect-timeout-ms': '25' } : { 'grpc-timeout': '25m' };
      const c = client(transport, { headers: header });
      const started = performance.now();
      await connectError(() => c.listSessionAggregations({ query: COSTLY }), Code.DeadlineExceeded);
      assert.ok(performance.now() - started < 5_000);
    });

    test('a statement past the store timeout: deadline_exceeded that says what to do', { skip: !SLOW_URL && 'SLOW_URL not set' }, async () => {
      const c = client(transport, { baseUrl: SLOW_URL });
      const err = await connectError(() => c.listSessionsV2({ query: COSTLY, limit: 100 }, { timeoutMs: TIMEOUT_MS }),
        Code.DeadlineExceeded);
      assertMessage(err, 'statement timeout', 'narrow its time window');
      // Cheap calls still work there.
      await connectError(() => c.getSession({ sessionId: 'no-such-session' }, { timeoutMs: TIMEOUT_MS }), Code.NotFound);
    });
  });
}
