// Shared setup of the Connect client suite: the generated client of
// core.v1.SessionsService over each of the four transports, API keys in an
// interceptor, and helpers. Started by run.sh, which passes the server's URL and
// keys in the environment.
import assert from 'node:assert/strict';
import { after } from 'node:test';

import { clone, create, equals } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { validateReadWriteMaxBytes } from '@connectrpc/connect/protocol';
import { createTransport as createConnectProtocolTransport } from '@connectrpc/connect/protocol-connect';
import {
  Http2SessionManager,
  compressionBrotli,
  compressionGzip,
  createConnectTransport,
  createNodeHttpClient,
  createGrpcTransport,
  createGrpcWebTransport,
} from '@connectrpc/connect-node';

import { SessionObjectSchema, SessionsService } from './gen/core/v1/sessions_pb.js';

export { Code, ConnectError, SessionObjectSchema, SessionsService, clone, create, equals };

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the suite with tests/connect/run.sh`);
  return value;
}

export const URL = required('GATEHOUSE_URL');
export const SLOW_URL = process.env.SLOW_URL || '';
export const ADMIN_KEY = required('ADMIN_KEY');
export const READER_KEY = required('READER_KEY');
export const OTHER_READER_KEY = required('OTHER_READER_KEY');
export const OTHER_ADMIN_KEY = required('OTHER_ADMIN_KEY');
export const LIVE_ADMIN_KEY = process.env.LIVE_ADMIN_KEY || '';
export const PROXY_PORT = process.env.PROXY_PORT || '';
export const DEFAULT_TOTAL = Number(required('DEFAULT_COMPLETED')) + Number(required('DEFAULT_ACTIVE'));
export const DEFAULT_ACTIVE = Number(required('DEFAULT_ACTIVE'));
export const OTHER_TOTAL = Number(required('OTHER_COMPLETED')) + Number(required('OTHER_ACTIVE'));

/** Generous deadline of every call that is not about deadlines. */
export const TIMEOUT_MS = 30_000;

/** Sets the API key header (or another header) on every request. */
export function headerInterceptor(headers) {
  return (next) => async (req) => {
    for (const [name, value] of Object.entries(headers)) req.header.set(name, value);
    return next(req);
  };
}

// HTTP/2 connections stay open for reuse: close them all when a test file ends,
// or the process would wait for their idle timeout.
const sessionManagers = [];
function h2(baseUrl) {
  const manager = new Http2SessionManager(baseUrl);
  sessionManagers.push(manager);
  return manager;
}
after(() => {
  for (const m of sessionManagers) m.abort();
});

// Strict JSON: a response field that the public schema does not have fails the call,
// as it would in a strict client of the public schema.
const jsonOptions = { ignoreUnknownFields: false };

/**
 * The four transports. Connect JSON goes over HTTP/1.1 and Connect binary over
 * HTTP/2 cleartext, so that both HTTP versions see the Connect protocol.
 */
export const TRANSPORTS = {
  'connect-json': (baseUrl, opts) => createConnectTransport({
    baseUrl, httpVersion: '1.1', useBinaryFormat: false, jsonOptions, ...opts,
  }),
  'connect-proto': (baseUrl, opts) => createConnectTransport({
    baseUrl, httpVersion: '2', sessionManager: h2(baseUrl), useBinaryFormat: true, ...opts,
  }),
  grpc: (baseUrl, opts) => createGrpcTransport({ baseUrl, sessionManager: h2(baseUrl), ...opts }),
  'grpc-web': (baseUrl, opts) => createGrpcWebTransport({
    baseUrl, httpVersion: '1.1', useBinaryFormat: true, ...opts,
  }),
};
export const TRANSPORT_NAMES = Object.keys(TRANSPORTS);

/**
 * A SessionsService client over `transport`.
 * `key`: sent as `x-api-key`; null sends no key. `headers` adds others;
 * `interceptors` and transport options (`useHttpGet`, `nodeOptions`...) pass through.
 */
export function client(transport, { key = READER_KEY, headers = {}, baseUrl = URL, interceptors = [], ...opts } = {}) {
  const all = { ...(key === null ? {} : { 'x-api-key': key }), ...headers };
  const t = TRANSPORTS[transport](baseUrl, { interceptors: [headerInterceptor(all), ...interceptors], ...opts });
  return createClient(SessionsService, t);
}

/** Runs `fn` and returns the ConnectError it must throw. */
export async function connectError(fn, expectedCode, what = '') {
  let err;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err, `${what} should fail with ${Code[expectedCode]} but succeeded`);
  assert.ok(err instanceof ConnectError, `${what}: not a ConnectError: ${err?.stack || err}`);
  assert.equal(Code[err.code], Code[expectedCode], `${what}: got ${Code[err.code]}: ${err.rawMessage}`);
  return err;
}

/** Asserts a readable message that contains each of `words` (case-insensitive). */
export function assertMessage(err, ...words) {
  const msg = err.rawMessage || '';
  assert.ok(msg.length > 10, `message too short: ${JSON.stringify(msg)}`);
  assert.ok(!/[\u0000-\u001f]/.test(msg), `unreadable message: ${JSON.stringify(msg)}`);
  for (const w of words) assert.ok(msg.toLowerCase().includes(w.toLowerCase()), `${JSON.stringify(w)} not in ${JSON.stringify(msg)}`);
}

/** Every session that matches `request`, in one page of the largest size. */
export async function listAll(c, request = {}) {
  const resp = await c.listSessionsV2({ limit: 100000, ...request }, { timeoutMs: TIMEOUT_MS });
  assert.equal(resp.listMetadata?.count ?? 0, resp.sessions.length);
  assert.equal(resp.listMetadata?.nextCursor ?? '', '', 'a page of 100000 holds every session');
  return resp.sessions;
}

/** Walks ListSessionsV2 page by page; returns the sessions and the pages' metadata. */
export async function walk(c, request = {}, maxPages = 1000) {
  const sessions = [];
  const pages = [];
  let cursor = '';
  for (;;) {
    const resp = await c.listSessionsV2({ ...request, cursor }, { timeoutMs: TIMEOUT_MS });
    const md = resp.listMetadata ?? { after: '', before: '', count: 0, nextCursor: '' };
    assert.equal(md.count, resp.sessions.length, `page ${pages.length + 1}: count is the page's size`);
    assert.equal(md.after, md.nextCursor, `page ${pages.length + 1}: after equals next_cursor`);
    pages.push({ ...md, ids: resp.sessions.map((s) => s.id) });
    sessions.push(...resp.sessions);
    cursor = md.nextCursor;
    if (!cursor) break;
    assert.ok(pages.length < maxPages, 'pagination does not end');
  }
  return { sessions, pages };
}

/** Timestamp or Duration as BigInt nanoseconds. */
export function nanos(t) {
  return t ? t.seconds * 1_000_000_000n + BigInt(t.nanos) : undefined;
}

export function ms(t) {
  return Number(nanos(t) / 1_000_000n);
}

export function ids(sessions) {
  return sessions.map((s) => s.id);
}

/** Asserts the same set of sessions, each once. */
export function assertSameSessions(got, expected, what = '') {
  const g = ids(got);
  assert.equal(new Set(g).size, g.length, `${what}: a session appears twice`);
  const e = new Set(ids(expected));
  const missing = [...e].filter((id) => !g.includes(id));
  const extra = g.filter((id) => !e.has(id));
  assert.deepEqual({ missing: missing.length, extra: extra.length }, { missing: 0, extra: 0 },
    `${what}: missing ${missing.slice(0, 3)} unexpected ${extra.slice(0, 3)}`);
}

export function sleep(msec) {
  return new Promise((resolve) => setTimeout(resolve, msec));
}

/**
 * A client of the Connect protocol (JSON, or binary with `binary`; GET for the read
 * methods with `useHttpGet`) whose HTTP client records the method, path and
 * response status of every request in `requests`. This is connect-es' own
 * createConnectTransport with a wrapped HTTP client.
 */
export function recordingConnectClient({ binary = false, key = READER_KEY, useHttpGet = false } = {}) {
  const requests = [];
  const nodeClient = createNodeHttpClient({ httpVersion: '1.1' });
  const httpClient = async (req) => {
    const url = new globalThis.URL(req.url);
    const record = { method: req.method, path: url.pathname + url.search, query: url.searchParams, status: 0 };
    requests.push(record);
    const res = await nodeClient(req);
    record.status = res.status;
    return res;
  };
  const transport = createConnectProtocolTransport({
    baseUrl: URL,
    httpClient,
    useBinaryFormat: binary,
    useHttpGet,
    jsonOptions,
    interceptors: [headerInterceptor(key === null ? {} : { 'x-api-key': key })],
    acceptCompression: [compressionGzip, compressionBrotli],
    sendCompression: null,
    ...validateReadWriteMaxBytes(undefined, undefined, undefined),
  });
  return Object.assign(createClient(SessionsService, transport), { requests });
}

/** True when `message` or a message inside it holds fields that the schema lacks. */
export function hasUnknownFields(message) {
  if (message === null || typeof message !== 'object') return false;
  if (Array.isArray(message)) return message.some(hasUnknownFields);
  if (message.$unknown?.length) return true;
  return Object.entries(message).some(([k, v]) => k !== '$unknown' && typeof v === 'object' && hasUnknownFields(v));
}
