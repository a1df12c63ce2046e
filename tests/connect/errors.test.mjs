// Errors as a generated client sees them, on every transport: the Connect code
// that sessions-api.md names, and a message that says what to fix.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, describe, test } from 'node:test';

import {
  ADMIN_KEY,
  Code,
  OTHER_ADMIN_KEY,
  OTHER_READER_KEY,
  OTHER_TOTAL,
  READER_KEY,
  TIMEOUT_MS,
  TRANSPORT_NAMES,
  assertMessage,
  client,
  connectError,
  ids,
  listAll,
  recordingConnectClient,
} from './lib.mjs';

let all; // every session of the default org
let active; // one active session of the default org
let completed; // one completed session of the default org
before(async () => {
  all = await listAll(client('connect-json'));
  active = all.find((s) => s.sessionStatus === 'active');
  completed = all.find((s) => s.sessionStatus === 'completed');
  assert.ok(active && completed);
});

const BAD_KEYS = [
  ['well-formed but unknown', `gh_AAAAAAAAAA_${'B'.repeat(43)}`],
  ['malformed', 'not-a-key'],
  ['a real key with its secret changed', `${READER_KEY.slice(0, -1)}${READER_KEY.endsWith('A') ? 'B' : 'A'}`],
];

const BAD_QUERIES = [
  // query, words the message must hold
  ['technology:(postgres', ['position']],
  ['start_time:[2024-01-01T00:00:00Z TO', ['position']],
  ['"unterminated', ['position']],
  ['duration:abc', ['duration']],
  ['client_ip:not-an-ip', ['client_ip']],
  ['start_time:>yesterday-ish', ['start_time']],
  ['technolgy:postgres', ['technolgy', 'technology']],
  ['sesion_status:active', ['sesion_status', 'session_status']],
];

for (const transport of TRANSPORT_NAMES) {
  describe(transport, () => {
    const reader = client(transport);
    const admin = client(transport, { key: ADMIN_KEY });

    // --- authentication --------------------------------------------------------------------

    test('no API key: unauthenticated, saying how to send one', async () => {
      const c = client(transport, { key: null });
      const err = await connectError(() => c.listSessionsV2({ limit: 1 }), Code.Unauthenticated, 'ListSessionsV2');
      assertMessage(err, 'key');
      await connectError(() => c.getSession({ sessionId: active.id }), Code.Unauthenticated, 'GetSession');
      await connectError(() => c.getSessionTranscript({ sessionId: active.id }), Code.Unauthenticated, 'GetSessionTranscript');
      await connectError(() => c.listSessionAggregations({}), Code.Unauthenticated, 'ListSessionAggregations');
      await connectError(() => c.createSessionTermination({ sessionId: active.id, connectorId: active.connector.id }),
        Code.Unauthenticated, 'CreateSessionTermination');
    });

    test('a wrong API key: unauthenticated, and the key is not echoed', async () => {
      for (const [what, key] of BAD_KEYS) {
        const c = client(transport, { key });
        const err = await connectError(() => c.listSessionsV2({ limit: 1 }), Code.Unauthenticated, what);
        assert.ok(!err.rawMessage.includes(key), `${what}: the message echoes the key: ${err.rawMessage}`);
        assert.ok(!err.rawMessage.includes(key.slice(-20)), `${what}: the message echoes part of the key`);
      }
    });

    test('the key as Authorization: Bearer works, a wrong one does not', async () => {
      const ok = client(transport, { key: null, headers: { authorization: `Bearer ${READER_KEY}` } });
      assert.equal((await ok.listSessionsV2({ limit: 3 })).sessions.length, 3);
      const bad = client(transport, { key: null, headers: { authorization: `Bearer gh_AAAAAAAAAA_${'C'.repeat(43)}` } });
      await connectError(() => bad.listSessionsV2({ limit: 3 }), Code.Unauthenticated);
    });

    // --- authorization ---------------------------------------------------------------------

    test('a reader key cannot terminate: permission_denied, and the session still runs', async () => {
      const request = { sessionId: active.id, connectorId: active.connector.id };
      const err = await connectError(() => reader.createSessionTermination(request), Code.PermissionDenied, 'CreateSessionTermination');
      assertMessage(err, 'admin');
      await connectError(() => reader.cancelSession(request), Code.PermissionDenied, 'CancelSession');
      const { session } = await reader.getSession({ sessionId: active.id });
      assert.equal(session.sessionStatus, 'active');
    });

    // --- not found -------------------------------------------------------------------------

    test('an unknown session id: not_found, on every method that takes one', async () => {
      const sessionId = randomUUID();
      const err = await connectError(() => reader.getSession({ sessionId }), Code.NotFound, 'GetSession');
      assertMessage(err, sessionId);
      await connectError(() => reader.getSessionTranscript({ sessionId }), Code.NotFound, 'GetSessionTranscript');
      await connectError(() => admin.createSessionTermination({ sessionId, connectorId: active.connector.id }),
        Code.NotFound, 'CreateSessionTermination');
      await connectError(() => admin.cancelSession({ sessionId, connectorId: active.connector.id }), Code.NotFound, 'CancelSession');
    });

    test('an empty session id: invalid_argument', async () => {
      const err = await connectError(() => reader.getSession({ sessionId: '' }), Code.InvalidArgument, 'GetSession');
      assertMessage(err, 'session_id');
      await connectError(() => admin.createSessionTermination({ sessionId: '', connectorId: active.connector.id }),
        Code.InvalidArgument, 'CreateSessionTermination without session_id');
      await connectError(() => admin.createSessionTermination({ sessionId: active.id, connectorId: '' }),
        Code.InvalidArgument, 'CreateSessionTermination without connector_id');
    });

    // --- failed precondition ---------------------------------------------------------------

    test('terminating a completed session: failed_precondition', async () => {
      const request = { sessionId: completed.id, connectorId: completed.connector.id };
      const err = await connectError(() => admin.createSessionTermination(request), Code.FailedPrecondition, 'CreateSessionTermination');
      assertMessage(err, completed.id);
      await connectError(() => admin.cancelSession(request), Code.FailedPrecondition, 'CancelSession');
      const { session } = await reader.getSession({ sessionId: completed.id });
      assert.equal(session.sessionStatus, 'completed');
    });

    // --- invalid arguments -----------------------------------------------------------------

    test('a malformed query: invalid_argument naming the position or the field', async () => {
      for (const [query, words] of BAD_QUERIES) {
        const err = await connectError(() => reader.listSessionsV2({ query }), Code.InvalidArgument, query);
        assertMessage(err, ...words);
      }
    });

    test('a query over the bounds (4 KiB, 256 clauses): invalid_argument', async () => {
      const long = Array.from({ length: 1000 }, (_, i) => `user:u${i}`).join(' OR ');
      await connectError(() => reader.listSessionsV2({ query: long }), Code.InvalidArgument, '> 4 KiB');
      const many = Array.from({ length: 300 }, (_, i) => `u${i}`).join(' OR ');
      assert.ok(many.length < 4096);
      await connectError(() => reader.listSessionsV2({ query: many }), Code.InvalidArgument, '> 256 clauses');
    });

    test('limit out of range: invalid_argument naming limit', async () => {
      for (const limit of [-1, 100001, 2 ** 31 - 1]) {
        const err = await connectError(() => reader.listSessionsV2({ limit }), Code.InvalidArgument, `limit ${limit}`);
        assertMessage(err, 'limit');
      }
      const max = await reader.listSessionsV2({ limit: 100000 }, { timeoutMs: TIMEOUT_MS });
      assert.equal(max.sessions.length, all.length, 'limit 100000 is accepted');
    });

    test('a bad cursor: invalid_argument naming the cursor', async () => {
      const first = await reader.listSessionsV2({ limit: 10 });
      const cursor = first.listMetadata.nextCursor;
      const mid = Math.floor(cursor.length / 2);
      const tampered = cursor.slice(0, mid) + (cursor[mid] === 'A' ? 'B' : 'A') + cursor.slice(mid + 1);
      for (const [what, request] of [
        ['garbage', { cursor: 'garbage' }],
        ['not base64', { cursor: '!!!not base64!!!' }],
        ['tampered', { cursor: tampered }],
        ['truncated', { cursor: cursor.slice(0, -4) }],
        ['with another query', { cursor, query: 'technology:mysql' }],
        ['with another sort', { cursor, sortBy: 'start_time:asc' }],
        ['with another window', { cursor, startTimestamp: '2020-01-01T00:00:00Z' }],
      ]) {
        const err = await connectError(() => reader.listSessionsV2({ limit: 10, ...request }), Code.InvalidArgument, what);
        assertMessage(err, 'cursor');
      }
      // The untouched cursor still works.
      const second = await reader.listSessionsV2({ limit: 10, cursor });
      assert.equal(second.sessions.length, 10);
      assert.ok(!second.sessions.some((s) => ids(first.sessions).includes(s.id)));
    });

    test('a cursor of another organization: invalid_argument', async () => {
      const other = client(transport, { key: OTHER_READER_KEY });
      const cursor = (await other.listSessionsV2({ limit: 10 })).listMetadata.nextCursor;
      assert.ok(cursor);
      const err = await connectError(() => reader.listSessionsV2({ limit: 10, cursor }), Code.InvalidArgument);
      assertMessage(err, 'cursor');
    });

    test('a bad time window or sort: invalid_argument', async () => {
      for (const [what, request, word] of [
        ['start not RFC 3339', { startTimestamp: 'yesterday' }, 'start_timestamp'],
        ['month 13', { endTimestamp: '2024-13-01T00:00:00Z' }, 'end_timestamp'],
        ['start after end', { startTimestamp: '2024-02-01T00:00:00Z', endTimestamp: '2024-01-01T00:00:00Z' }, ''],
        ['unknown sort field', { sortBy: 'risk_level' }, 'risk_level'],
        ['unknown sort direction', { sortBy: 'start_time:sideways' }, ''],
      ]) {
        const err = await connectError(() => reader.listSessionsV2(request), Code.InvalidArgument, what);
        assertMessage(err, ...(word ? [word] : []));
      }
    });

    // --- organizations ---------------------------------------------------------------------

    test('a key of another organization sees none of the default organization', async () => {
      const other = client(transport, { key: OTHER_READER_KEY });
      const theirs = await listAll(other);
      assert.equal(theirs.length, OTHER_TOTAL);
      const mine = new Set(ids(all));
      assert.ok(!theirs.some((s) => mine.has(s.id)), 'another organization listed a default session');
      for (const s of [active, completed]) {
        await connectError(() => other.getSession({ sessionId: s.id }), Code.NotFound, `GetSession ${s.sessionStatus}`);
        await connectError(() => other.getSessionTranscript({ sessionId: s.id }), Code.NotFound, 'GetSessionTranscript');
        assert.equal((await other.listSessionsV2({ query: `id:${s.id}` })).sessions.length, 0, 'found by id query');
      }
      const agg = await other.listSessionAggregations({});
      assert.equal(Number(agg.numHits), OTHER_TOTAL, 'aggregations count only the own organization');
      // The same ids are visible to their own organization.
      assert.equal((await reader.getSession({ sessionId: active.id })).session.id, active.id);
    });

    test('an admin of another organization cannot terminate a default session: not_found', async () => {
      const otherAdmin = client(transport, { key: OTHER_ADMIN_KEY });
      const request = { sessionId: active.id, connectorId: active.connector.id };
      await connectError(() => otherAdmin.createSessionTermination(request), Code.NotFound, 'CreateSessionTermination');
      await connectError(() => otherAdmin.cancelSession(request), Code.NotFound, 'CancelSession');
      assert.equal((await reader.getSession({ sessionId: active.id })).session.sessionStatus, 'active');
    });
  });
}

// --- the Connect code-to-HTTP mapping ------------------------------------------------------------

for (const binary of [false, true]) {
  test(`Connect ${binary ? 'binary' : 'JSON'}: each error comes with the HTTP status of its code`, async () => {
    const sessionId = randomUUID();
    const cases = [
      ['unauthenticated', 401, Code.Unauthenticated, recordingConnectClient({ binary, key: null }), (c) => c.listSessionsV2({})],
      ['permission_denied', 403, Code.PermissionDenied, recordingConnectClient({ binary }),
        (c) => c.createSessionTermination({ sessionId: active.id, connectorId: active.connector.id })],
      ['not_found', 404, Code.NotFound, recordingConnectClient({ binary }), (c) => c.getSession({ sessionId })],
      ['invalid_argument', 400, Code.InvalidArgument, recordingConnectClient({ binary }), (c) => c.listSessionsV2({ query: 'a:(' })],
      ['failed_precondition', 400, Code.FailedPrecondition, recordingConnectClient({ binary, key: ADMIN_KEY }),
        (c) => c.cancelSession({ sessionId: completed.id, connectorId: completed.connector.id })],
    ];
    for (const [what, status, code, c, call] of cases) {
      await connectError(() => call(c), code, what);
      assert.equal(c.requests.at(-1).status, status, `${what} is HTTP ${status}`);
    }
    const ok = recordingConnectClient({ binary });
    await ok.getSession({ sessionId: active.id });
    assert.equal(ok.requests.at(-1).status, 200);
  });
}
