// CreateSessionTermination, CancelSession and GetSessionTranscript through the
// generated client: seeded sessions of the default org, and (when run.sh could
// start a connector in front of PostgreSQL) real psql sessions of the org "live".
// This file ends seeded active sessions: it runs last (files run in name order).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { before, describe, test } from 'node:test';

import {
  ADMIN_KEY,
  Code,
  LIVE_ADMIN_KEY,
  PROXY_PORT,
  TRANSPORT_NAMES,
  assertMessage,
  client,
  connectError,
  listAll,
  ms,
  nanos,
  sleep,
} from './lib.mjs';

let all;
before(async () => {
  all = await listAll(client('connect-json'));
});

const actives = () => all.filter((s) => s.sessionStatus === 'active');

describe('terminating seeded sessions', () => {
  // Two active sessions per transport: one for each method name.
  const METHODS = ['createSessionTermination', 'cancelSession'];

  for (const [t, transport] of TRANSPORT_NAMES.entries()) {
    for (const [m, method] of METHODS.entries()) {
      test(`${transport}: an admin ends an active session with ${method}`, async () => {
        const target = actives()[t * METHODS.length + m];
        assert.ok(target, 'the seed has enough active sessions');
        const admin = client(transport, { key: ADMIN_KEY });
        const sent = Date.now();
        const { sessionShutdown } = await admin[method]({ sessionId: target.id, connectorId: target.connector.id });
        assert.equal(sessionShutdown.sessionId, target.id);
        assert.equal(sessionShutdown.connectorId, target.connector.id);
        assert.ok(sessionShutdown.createdAt, 'created_at is set');
        assert.ok(Math.abs(ms(sessionShutdown.createdAt) - sent) < 60_000, 'created_at is now');

        const { session } = await client(transport).getSession({ sessionId: target.id });
        assert.equal(session.sessionStatus, 'completed');
        assert.ok(session.endTime, 'a completed session has end_time');
        assert.equal(nanos(session.duration), nanos(session.endTime) - nanos(session.startTime));

        // Once is enough: the second time it has completed.
        const again = await connectError(() => admin[method]({ sessionId: target.id, connectorId: target.connector.id }),
          Code.FailedPrecondition, 'second termination');
        assertMessage(again, 'completed');
      });
    }
  }

  test('the connector id must be the session\'s own: invalid_argument', async () => {
    const target = actives()[TRANSPORT_NAMES.length * METHODS.length];
    assert.ok(target);
    const other = all.find((s) => s.connector.id !== target.connector.id).connector.id;
    const admin = client('grpc', { key: ADMIN_KEY });
    const e = await connectError(() => admin.createSessionTermination({ sessionId: target.id, connectorId: other }),
      Code.InvalidArgument);
    assertMessage(e, 'connector');
    assert.equal((await client('grpc').getSession({ sessionId: target.id })).session.sessionStatus, 'active');
  });

  test('ended sessions are counted as completed everywhere', async () => {
    const ended = TRANSPORT_NAMES.length * METHODS.length;
    const c = client('connect-json');
    const nowActive = await listAll(c, { query: 'session_status:active' });
    assert.equal(nowActive.length, actives().length - ended);
    const { aggregations } = await c.listSessionAggregations({ query: 'session_status:active' });
    assert.equal(aggregations.logsOverTime.reduce((n, b) => n + b.count, 0), actives().length - ended);
  });
});

describe('transcripts of seeded sessions', () => {
  for (const transport of TRANSPORT_NAMES) {
    test(`${transport}: a session without statements has an empty transcript`, async () => {
      const c = client(transport);
      for (const s of [all.find((x) => x.sessionStatus === 'completed'), all[all.length - 1]]) {
        const { transcript } = await c.getSessionTranscript({ sessionId: s.id });
        assert.equal(transcript, '', 'the seed records no statements');
      }
    });
  }
});

// --- live sessions through a connector -----------------------------------------------------------

const live = !!(PROXY_PORT && LIVE_ADMIN_KEY);
const skip = !live && 'no connector in front of PostgreSQL (see run.sh)';
const DSN = `host=127.0.0.1 port=${PROXY_PORT} user=postgres dbname=postgres sslmode=disable connect_timeout=5`;

async function waitForSession(c, predicate, what) {
  for (let i = 0; i < 100; i++) {
    const sessions = await listAll(c, { query: 'resource.name:"connect-pg"' });
    const found = sessions.find(predicate);
    if (found) return found;
    await sleep(100);
  }
  throw new Error(`no session ${what}`);
}

describe('live sessions', { skip }, () => {
  test('the transcript holds the statements, on every transport', async () => {
    const marker = `connect-es-${process.pid}`;
    const psql = spawn('psql', ['-X', '-q', '-c', `select '${marker}' as marker`, '-c', 'select 2 as two', DSN]);
    let output = '';
    psql.stdout.on('data', (d) => { output += d; });
    psql.stderr.on('data', (d) => { output += d; });
    assert.equal(await new Promise((resolve) => psql.on('exit', resolve)), 0, output);

    const admin = client('connect-json', { key: LIVE_ADMIN_KEY });
    let found;
    for (let i = 0; i < 100 && !found; i++) {
      for (const s of await listAll(admin, { query: 'resource.name:"connect-pg"' })) {
        if ((await admin.getSessionTranscript({ sessionId: s.id })).transcript.includes(marker)) found = s;
      }
      if (!found) await sleep(100);
    }
    assert.ok(found, 'the session and its statements were recorded');
    for (const transport of TRANSPORT_NAMES) {
      const { transcript } = await client(transport, { key: LIVE_ADMIN_KEY }).getSessionTranscript({ sessionId: found.id });
      assert.ok(transcript.includes(`select '${marker}' as marker`), `${transport}: ${JSON.stringify(transcript)}`);
      assert.ok(transcript.indexOf(marker) < transcript.indexOf('select 2 as two'), 'statements in the order they ran');
    }
    // Another organization does not see it.
    await connectError(() => client('grpc').getSessionTranscript({ sessionId: found.id }), Code.NotFound);
  });

  test('an admin terminates a live psql session over gRPC; the client is cut off', async () => {
    const marker = `connect-live-${process.pid}`;
    const psql = spawn('psql', ['-X', '-q', DSN], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    psql.stdout.on('data', (d) => { output += d; });
    psql.stderr.on('data', (d) => { output += d; });
    const exited = new Promise((resolve) => psql.on('exit', resolve));
    try {
      psql.stdin.write(`select '${marker}' as marker;\n`);
      const admin = client('grpc', { key: LIVE_ADMIN_KEY });
      const session = await waitForSession(admin, (s) => s.sessionStatus === 'active', 'active');
      const { sessionShutdown } = await admin.createSessionTermination({ sessionId: session.id, connectorId: session.connector.id });
      assert.equal(sessionShutdown.sessionId, session.id);
      // The connector ends it: it shows as completed, and psql is told.
      let status = '';
      for (let i = 0; i < 200 && status !== 'completed'; i++) {
        status = (await admin.getSession({ sessionId: session.id })).session.sessionStatus;
        if (status !== 'completed') await sleep(100);
      }
      assert.equal(status, 'completed');
      psql.stdin.write('select 1;\n');
      psql.stdin.end();
      let timer;
      await Promise.race([exited, new Promise((resolve) => { timer = setTimeout(resolve, 10_000); })]);
      clearTimeout(timer);
      assert.match(output, /terminat|57P01|connection/i, output);
      await connectError(() => admin.createSessionTermination({ sessionId: session.id, connectorId: session.connector.id }),
        Code.FailedPrecondition);
    } finally {
      psql.kill();
    }
  });
});
