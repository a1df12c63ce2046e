// The console as a reviewer uses it, in headless Chromium against the real
// control plane that run.sh started (demo sessions, a connector, PostgreSQL).

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';

const URL_BASE = required('GATEHOUSE_URL');
const ADMIN_KEY = required('ADMIN_KEY');
const READER_KEY = required('READER_KEY');
/** A reader key of an organization with no sessions at all. */
const EMPTY_ORG_KEY = required('EMPTY_ORG_KEY');
const PROXY_PORT = required('PROXY_PORT');
/** psql's connection through the connector, to the local PostgreSQL. */
const THROUGH_CONNECTOR = `host=127.0.0.1 port=${PROXY_PORT} user=postgres dbname=postgres sslmode=disable`;
/** The binary under test: its CLI works on the control plane's store (GATEHOUSE_DATA_DIR). */
const GATEHOUSE_BIN = required('GATEHOUSE_BIN');
required('GATEHOUSE_DATA_DIR');
const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;
mkdirSync(ARTIFACTS, { recursive: true });

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run tests/browser/run.sh`);
  return value;
}

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});
after(async () => {
  await browser?.close();
});

/**
 * A fresh tab (its own session storage) with page errors failing the test.
 * `phone`: a touch screen; `clock`: the page's timers under page.clock (time
 * still flows; fastForward jumps it), for waits too long to sit through.
 */
async function open(t, { width = 1280, height = 900, path = '/', phone = false, clock = false } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, acceptDownloads: true, isMobile: phone, hasTouch: phone });
  const page = await context.newPage();
  if (clock) await page.clock.install();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  t.after(async () => {
    await context.close();
    assert.deepEqual(errors, [], 'no script errors');
  });
  await page.goto(URL_BASE + path);
  return page;
}

async function signIn(page, key = ADMIN_KEY) {
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForSelector('#rows tr[data-id]');
  await loaded(page);
}

/** Waits until the console finished the load started by the last action. */
async function loaded(page, previous) {
  await page.waitForFunction((prev) => document.body.dataset.loaded && document.body.dataset.loaded !== prev,
    previous ?? null);
}

const loadMark = (page) => page.evaluate(() => document.body.dataset.loaded);
const refreshMark = (page) => page.evaluate(() => Number(document.body.dataset.refreshes || 0));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/** Waits until `ready()` (checked here, in the test; it may be async) holds. */
async function until(ready, what) {
  for (let i = 0; i < 200; i++) {
    if (await ready()) return;
    await sleep(50);
  }
  throw new Error(`gave up waiting: ${what}`);
}
/** Where `locator` is on the page, once it is there: a chart redrawn as this asks is briefly none. */
async function boxOf(locator) {
  let box = null;
  await until(async () => (box = await locator.boundingBox()) !== null, 'an element on the page');
  return box;
}
const rowIds = (page) => page.$$eval('#rows tr[data-id]', (rows) => rows.map((r) => r.dataset.id));
const column = (page, label) => page.$$eval(`#rows td[data-label="${label}"]`, (cells) => cells.map((c) => c.textContent.trim()));
const param = (page, name) => new URL(page.url()).searchParams.get(name);
const queryBox = (page) => page.getByLabel('Search query').inputValue();
const facetButtons = (page, group) => page.locator(`.facet-group:has(h3:text-is("${group}")) button.facet`);
/** A row's button that opens session `id`: named by the start time it shows, then what it does. */
const sessionButton = (page, id) => page.getByRole('button', { name: new RegExp(`^\\S.*: open session ${id}$`) });
const preset = (page, name) => page.getByRole('group', { name: 'Time range' }).getByRole('button', { name });
/** A live (seeded) session's detail, with the console open on the live sessions. */
const LIVE = `/?q=${encodeURIComponent('session_status:active')}&range=30d`;

/** Waits for the next auto-refresh to finish. */
async function nextRefresh(page) {
  const before = await refreshMark(page);
  await page.waitForFunction((n) => Number(document.body.dataset.refreshes || 0) > n, before, { timeout: 20_000 });
}

async function search(page, query) {
  const mark = await loadMark(page);
  await page.getByLabel('Search query').fill(query);
  await page.getByLabel('Search query').press('Enter');
  await loaded(page, mark);
}

async function api(method, body, key = ADMIN_KEY, service = 'core.v1.SessionsService') {
  const response = await fetch(`${URL_BASE}/${service}/${method}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', 'X-API-KEY': key }, body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

/** What the control plane says of `key`: its organization, role, prefix and name. */
const callerKey = (key) => api('GetCallerKey', {}, key, 'gatehouse.keys.v1.KeysService');

/** How many sessions walking ListSessionsV2 returns for a query and window. */
async function walkCount(request) {
  let total = 0;
  let cursor = '';
  for (;;) {
    const { body } = await api('ListSessionsV2', { ...request, limit: 1000, ...(cursor ? { cursor } : {}) });
    total += (body.sessions || []).length;
    cursor = body.listMetadata?.nextCursor || '';
    if (!cursor) return total;
  }
}

function seconds(text) {
  const unit = { d: 86400, h: 3600, m: 60, s: 1 };
  return [...text.matchAll(/(\d+)([dhms])/g)].reduce((sum, [, n, u]) => sum + Number(n) * unit[u], 0);
}

test('the console is served with a strict security policy', async () => {
  const response = await fetch(`${URL_BASE}/`);
  assert.equal(response.status, 200);
  const csp = response.headers.get('content-security-policy');
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
  assert.equal((await fetch(`${URL_BASE}/console/nope.js`)).status, 404);
});

test('sign in: a wrong key is refused, a right one shows the sessions', async (t) => {
  const page = await open(t);
  await page.getByLabel('API key').fill('gh_wrong_key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await assert.doesNotReject(page.waitForSelector('#signin-error:has-text("not accepted")'));
  assert.equal(await page.isVisible('#console'), false);
  // The README's placeholder pasted as is: a character no header can carry.
  await page.getByLabel('API key').fill('gh_…');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await assert.doesNotReject(page.waitForSelector('#signin-error:has-text("other characters")'));
  // A space inside: a format problem, said before anything is sent, not a refusal.
  const sent = [];
  page.on('request', (request) => { if (request.url().includes('/core.v1.')) sent.push(request.url()); });
  await page.getByLabel('API key').fill('gh_abc def');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await assert.doesNotReject(page.waitForSelector('#signin-error:has-text("it was not sent")'));
  assert.doesNotMatch(await page.textContent('#signin-error'), /not accepted/);
  assert.match(await page.textContent('#signin-error'), /spaces/);
  assert.deepEqual(sent, []);
  // Spaces fill the required field: said so, nothing sent.
  await page.getByLabel('API key').fill('   ');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await assert.doesNotReject(page.waitForSelector('#signin-error:has-text("only spaces")'));

  await signIn(page);
  assert.equal((await rowIds(page)).length, 50);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('gatehouse.apiKey')), ADMIN_KEY);
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'the key never goes to local storage');
  const clipped = await page.$eval('.table-wrap', (wrap) => wrap.scrollWidth - wrap.clientWidth);
  assert.ok(clipped <= 0, `every column fits at 1280 px: ${clipped}px too wide`);
  await page.screenshot({ path: `${ARTIFACTS}sessions-1280.png`, fullPage: true });
});

/** The value of a counter of /metrics, `labels` as it writes them; 0 while it has none. */
async function counter(name, labels) {
  const text = await (await fetch(`${URL_BASE}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

test('the top bar names the organization and the key; nothing is asked of CreateSessionTermination', async (t) => {
  const calls = (service, method, code) => counter('gatehouse_api_calls_total', `service="${service}",method="${method}",code="${code}"`);
  const refused = () => calls('core.v1.SessionsService', 'CreateSessionTermination', 'invalid_argument');
  const asked = () => calls('gatehouse.keys.v1.KeysService', 'GetCallerKey', 'ok');
  const [refusedBefore, askedBefore] = [await refused(), await asked()];
  const page = await open(t);
  const terminations = terminationCalls(page);
  const caller = page.locator('#caller');
  assert.equal(await caller.isVisible(), false);
  await signIn(page, ADMIN_KEY);
  await caller.waitFor();
  const admin = (await callerKey(ADMIN_KEY)).body;
  assert.equal(await caller.textContent(), `default · admin key ${admin.prefix}`);
  assert.equal(await caller.getAttribute('title'), `Signed in to default with the admin API key "browser-admin" (gh_${admin.prefix}_…)`);
  assert.ok(!(await caller.textContent()).includes(ADMIN_KEY.split('_')[2]), 'never the secret');
  await page.screenshot({ path: `${ARTIFACTS}caller-1280.png` });
  // A page load asks again, and shows it again.
  const answered = page.waitForResponse((response) => response.url().endsWith('/GetCallerKey'));
  await page.reload();
  await loaded(page);
  assert.equal((await answered).status(), 200);
  await caller.waitFor();
  assert.deepEqual(terminations, [], 'no termination sent, not even to ask what the key may do');
  assert.equal(await refused(), refusedBefore, 'no invalid_argument of CreateSessionTermination in /metrics');
  assert.ok(await asked() >= askedBefore + 3, 'GetCallerKey is counted: at sign-in, at the page load, and ours');

  // Signed out, it is gone; another key shows its own.
  await page.getByRole('button', { name: 'Sign out' }).click();
  assert.equal(await page.locator('#caller').textContent(), '');
  await signIn(page, READER_KEY);
  await caller.waitFor();
  assert.equal(await caller.textContent(), `default · reader key ${(await callerKey(READER_KEY)).body.prefix}`);
});

test('an organization with no session at all says how to get some; a query that matches none does not', async (t) => {
  const page = await open(t);
  await page.getByLabel('API key').fill(EMPTY_ORG_KEY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForSelector('#rows td.empty');
  await loaded(page);
  assert.equal(await page.textContent('#rows td.empty'),
    'No sessions yet: connect through a connector (gatehouse connector) or run gatehouse seed.');
  await page.locator('#caller').waitFor();
  assert.match(await page.textContent('#caller'), /^vacant · reader key /);
  await page.screenshot({ path: `${ARTIFACTS}empty-org-1280.png` });
  await page.getByRole('button', { name: 'Sign out' }).click();

  await signIn(page);
  await search(page, 'user:"nobody-at-all"');
  assert.equal(await page.textContent('#rows td.empty'), 'No sessions match this query and window.');
});

/** Serves ListSessionsV2 with its sessions replaced by `edit(sessions)`. */
async function editSessionList(page, edit) {
  await page.route('**/core.v1.SessionsService/ListSessionsV2', async (route) => {
    const response = await route.fetch();
    const json = await response.json();
    json.sessions = edit(json.sessions || []);
    await route.fulfill({ response, json });
  });
}

/** Serves ListSessionsV2 with `edit` applied to every session of each answer. */
async function editSessions(page, edit) {
  await page.route('**/core.v1.SessionsService/ListSessionsV2', async (route) => {
    const response = await route.fetch();
    const json = await response.json();
    (json.sessions || []).forEach(edit);
    await route.fulfill({ response, json });
  });
}

test('a long native role is clipped like the other free-text columns', async (t) => {
  const page = await open(t);
  const role = `role_${'x'.repeat(60)}`;
  await editSessions(page, (s) => { s.user = { ...s.user, native: { ...s.user?.native, username: role } }; });
  await signIn(page);
  const clipped = await page.$eval('.table-wrap', (wrap) => wrap.scrollWidth - wrap.clientWidth);
  assert.ok(clipped <= 0, `every column still fits at 1280 px: ${clipped}px too wide`);
  const cell = page.locator('#rows td[data-label="Native role"]').first();
  assert.equal(await cell.getAttribute('title'), role, 'the full role is the tooltip');
  assert.ok((await boxOf(cell)).width < 200);
  const connector = await page.locator('#rows td[data-label="Connector"]').first().boundingBox();
  assert.ok(connector.x + connector.width <= 1280, 'Connector stays on screen');
});

test('a query narrows the table and survives a reload', async (t) => {
  const page = await open(t, { path: '/?range=30d' });
  await signIn(page);
  const all = await rowIds(page);
  await search(page, 'technology:postgres');
  const techs = await column(page, 'Resource');
  assert.ok(techs.length > 0);
  assert.ok(techs.every((r) => r.endsWith('postgres')), techs.join(' | '));
  assert.notDeepEqual(await rowIds(page), all);
  assert.equal(param(page, 'q'), 'technology:postgres');

  const ids = await rowIds(page);
  await page.reload();
  await page.waitForSelector('#rows tr[data-id]');
  await loaded(page);
  assert.equal(await page.getByLabel('Search query').inputValue(), 'technology:postgres');
  assert.deepEqual(await rowIds(page), ids);
});

test('searching or choosing the same window again adds no Back step', async (t) => {
  const page = await open(t);
  await signIn(page);
  const steps = () => page.evaluate(() => window.history.length);
  await search(page, 'technology:postgres');
  const after = await steps();
  await search(page, 'technology:postgres');
  assert.equal(await steps(), after, 'the same search');
  let mark = await loadMark(page);
  await preset(page, '7d').click();
  await loaded(page, mark);
  mark = await loadMark(page);
  await preset(page, '7d').click();
  await loaded(page, mark);
  assert.equal(await steps(), after + 1, 'one step for 7d, none for 7d again');
});

test('a bad query shows the server\'s invalid_argument message under the bar', async (t) => {
  const page = await open(t);
  await signIn(page);
  await search(page, 'duration:abc');
  const message = await page.textContent('#query-error');
  assert.match(message, /duration/);
  assert.equal(await page.getAttribute('#query', 'aria-invalid'), 'true');
  assert.equal((await rowIds(page)).length, 0);

  await search(page, 'no_such_field:1');
  assert.match(await page.textContent('#query-error'), /no_such_field/);
  await search(page, '');
  assert.equal(await page.textContent('#query-error'), '');
  assert.equal((await rowIds(page)).length, 50);
});

test('pages forward and back through the API cursors, and a page survives a reload', async (t) => {
  const page = await open(t, { path: '/?range=30d' });
  await signIn(page);
  const first = await rowIds(page);
  assert.equal(await page.isDisabled('#prev'), true);

  let mark = await loadMark(page);
  await page.getByRole('button', { name: 'Next →' }).click();
  await loaded(page, mark);
  const second = await rowIds(page);
  assert.equal(second.length, 50);
  assert.ok(second.every((id) => !first.includes(id)), 'page 2 has new sessions only');
  assert.ok(param(page, 'cursor'));
  assert.match(await page.textContent('#page-label'), /Page 2 · sessions 51–100/);

  mark = await loadMark(page);
  await page.getByRole('button', { name: 'Next →' }).click();
  await loaded(page, mark);
  const third = await rowIds(page);
  assert.ok(third.every((id) => !second.includes(id)));

  await page.reload();
  await page.waitForSelector('#rows tr[data-id]');
  assert.deepEqual(await rowIds(page), third, 'the cursor in the URL brings the same page back');

  mark = await loadMark(page);
  await page.getByRole('button', { name: '← Previous' }).click();
  await loaded(page, mark);
  assert.deepEqual(await rowIds(page), second);
  mark = await loadMark(page);
  await page.getByRole('button', { name: '← Previous' }).click();
  await loaded(page, mark);
  assert.deepEqual(await rowIds(page), first);
  assert.equal(param(page, 'cursor'), null);
});

test('a later page counts and exports what its pages walk: sessions up to the pinned now', async (t) => {
  const page = await open(t, { path: '/?range=7d' });
  await signIn(page);
  const counted = [];
  const listed = [];
  page.on('request', (request) => {
    if (request.url().endsWith('/ListSessionAggregations')) counted.push(request.postDataJSON());
    // The export's pages, not the table's refreshes.
    if (request.url().endsWith('/ListSessionsV2') && request.postDataJSON().limit === 1000) listed.push(request.postDataJSON());
  });
  const mark = await loadMark(page);
  await page.getByRole('button', { name: 'Next →' }).click();
  await loaded(page, mark);
  const at = param(page, 'at');
  assert.ok(at);
  assert.ok(counted.length > 0);
  for (const body of counted) assert.equal(body.endTimestamp, at, 'the count ends where the pages do');
  const start = new Date(Date.parse(at) - 7 * 86400e3).toISOString();
  const walked = await walkCount({ startTimestamp: start, endTimestamp: at });
  const total = Number((await page.textContent('#page-label')).replace(/.* of /, '').replace(/\D/g, ''));
  assert.ok(Math.abs(total - walked) <= 3, `${total} vs ${walked}`);
  // Found by a review: the export ran to the present, with sessions these pages never list.
  listed.length = 0;
  await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export' }).click()]);
  assert.ok(listed.length > 0);
  for (const body of listed) assert.equal(body.endTimestamp, at, 'the export ends where the pages do');
});

test('Next while an auto-refresh is loading goes to page 2', async (t) => {
  const page = await open(t);
  await signIn(page);
  const first = await rowIds(page);
  // The next refresh's listing (page 1: no cursor) is held, so that Next is clicked while it runs.
  let refreshing;
  const started = new Promise((resolve) => { refreshing = resolve; });
  await page.route('**/core.v1.SessionsService/ListSessionsV2', async (route) => {
    if (route.request().postDataJSON().cursor) {
      await route.continue();
      return;
    }
    refreshing();
    await sleep(3000);
    await route.continue().catch(() => {}); // the page aborted it meanwhile
  });
  await started;
  const mark = await loadMark(page);
  await page.getByRole('button', { name: 'Next →' }).click();
  await loaded(page, mark);
  assert.match(await page.textContent('#page-label'), /^Page 2 · sessions 51–100/);
  assert.ok(param(page, 'cursor'), 'still paged');
  const second = await rowIds(page);
  assert.ok(second.length > 0 && second.every((id) => !first.includes(id)), 'page 2 has new sessions only');
  assert.equal(await page.textContent('#range-error'), '');
  await page.unrouteAll({ behavior: 'ignoreErrors' });
});

test('sorting by duration orders the rows', async (t) => {
  const page = await open(t, { path: '/?range=7d' });
  await signIn(page);
  const mark = await loadMark(page);
  await page.getByLabel('Sort').selectOption('duration:desc');
  await loaded(page, mark);
  assert.equal(param(page, 'sort'), 'duration:desc');
  const durations = (await column(page, 'Duration')).map(seconds);
  assert.ok(durations.length > 1);
  for (let i = 1; i < durations.length; i++) assert.ok(durations[i - 1] >= durations[i], durations.join(','));
});

test('presets change the window', async (t) => {
  const page = await open(t);
  await signIn(page);
  const mark = await loadMark(page);
  await page.getByRole('group', { name: 'Time range' }).getByRole('button', { name: '15m' }).click();
  await loaded(page, mark);
  assert.equal(param(page, 'range'), '15m');
  assert.equal(await page.getAttribute('button[data-range="15m"]', 'aria-pressed'), 'true');
  const windowStart = Date.now() - 16 * 60e3;
  const starts = await page.$$eval('#rows tr[data-id]', (rows) => rows.map((r) => r.querySelector('time').getAttribute('datetime')));
  const durations = (await column(page, 'Duration')).map(seconds);
  assert.ok(starts.length > 0);
  // Overlapping the last 15 minutes: ended (start + duration, rounded down to a minute at most) since then.
  starts.forEach((start, i) => assert.ok(Date.parse(start) + (durations[i] + 60) * 1e3 >= windowStart, `${start} ${durations[i]}s`));
  const mark24 = await loadMark(page);
  const few = starts.length;
  await page.getByRole('button', { name: '24h' }).click();
  await loaded(page, mark24);
  assert.ok((await rowIds(page)).length >= few);
  assert.equal(param(page, 'range'), null, '24h is the default and leaves the URL');
});

test('a bad time, window or sort in the URL falls back to the default and says so', async (t) => {
  const page = await open(t);
  await signIn(page);
  const links = [
    ['?range=custom&from=2026-12-03T10%3A0', 'in the last 24h', /from=2026-12-03T10:0 is not a date and time/],
    ['?range=custom&from=2026-12-03T10%3A00%3A00Z&to=2026-12-02T10%3A00%3A00Z', 'in the last 24h', /ends before it starts/],
    ['?range=custom&from=May%205', 'in the last 24h', /not a date and time/],
    ['?range=7d&at=yesterday&cursor=abc&page=3', 'in the last 7d', /at=yesterday is not a date and time/],
    ['?range=3y&at=2026-12-01T00%3A00%3A00Z&cursor=abc&page=2', 'in the last 24h', /range=3y is not a window/],
    ['?sort=name%3Adesc&cursor=abc&page=2', 'in the last 24h', /sort=name:desc is not a sort order/],
  ];
  // A paged link opened later shows the window it was paged in, not the last 24h.
  const twoDaysAgo = new Date(Date.now() - 2 * 86400e3).toISOString();
  await page.goto(`${URL_BASE}/?at=${encodeURIComponent(twoDaysAgo)}`);
  await loaded(page);
  assert.match(await page.textContent('#window-label'), /^in the 24h before /);
  for (const [search, label, problem] of links) {
    await page.goto(`${URL_BASE}/${search}`);
    await page.waitForSelector('#rows tr[data-id]');
    await loaded(page);
    assert.match(await page.textContent('#range-error'), problem, search);
    assert.equal(await page.textContent('#window-label'), label, search);
    assert.equal((await rowIds(page)).length, 50, search);
    for (const name of ['from', 'to', 'at', 'cursor']) assert.equal(param(page, name), null, `${search}: the URL holds what is shown`);
  }
  // The next choice of window clears the message.
  const mark = await loadMark(page);
  await page.getByRole('group', { name: 'Time range' }).getByRole('button', { name: '24h' }).click();
  await loaded(page, mark);
  assert.equal(await page.textContent('#range-error'), '');
});

test('a reversed custom range is refused beside its fields, not under the query', async (t) => {
  const page = await open(t);
  await signIn(page);
  await page.getByRole('button', { name: 'Custom' }).click();
  assert.equal(await page.getAttribute('button[data-range="24h"]', 'aria-pressed'), 'false', 'the old preset is no longer highlighted');
  assert.equal(await page.getAttribute('button[data-range="custom"]', 'aria-pressed'), 'true');
  await page.getByLabel('From', { exact: true }).fill('2026-03-02T10:00:00');
  await page.getByLabel('To', { exact: true }).fill('2026-03-02T09:00:00');
  await page.getByRole('button', { name: 'Apply' }).click();
  assert.match(await page.textContent('#range-error'), /start before its end/);
  assert.equal(await page.getAttribute('#custom-from', 'aria-invalid'), 'true');
  assert.equal(await page.getAttribute('#custom-to', 'aria-invalid'), 'true');
  assert.equal(await page.textContent('#query-error'), '');
  assert.notEqual(await page.getAttribute('#query', 'aria-invalid'), 'true');
  assert.equal(param(page, 'range'), null, 'nothing applied');

  // From emptied: the console says so in place of the old message (not the browser's bubble beside it).
  await page.getByLabel('From', { exact: true }).fill('');
  await page.getByRole('button', { name: 'Apply' }).click();
  assert.match(await page.textContent('#range-error'), /needs a start: a date and time/);
  assert.equal(await page.getAttribute('#custom-from', 'aria-invalid'), 'true');
  assert.equal(await page.getAttribute('#custom-to', 'aria-invalid'), 'false');
  assert.equal(param(page, 'range'), null, 'nothing applied');
});

test('the histogram and facets come from ListSessionAggregations', async (t) => {
  const page = await open(t, { path: '/?range=7d' });
  await signIn(page);
  const bars = await page.$$eval('#histogram svg g[data-count]', (groups) => groups.map((g) => Number(g.dataset.count)));
  assert.ok(bars.length >= 20, `bars: ${bars.length}`);
  const total = bars.reduce((a, b) => a + b, 0);
  assert.ok(total > 0);
  assert.ok(await page.locator('#histogram .legend li').count() >= 2, 'stacked by technology');
  const hits = Number((await page.textContent('#hits')).replace(/\D/g, ''));
  assert.ok(hits > 0);
  assert.match(await page.textContent('#page-label'), new RegExp(`of ${hits.toLocaleString()}`));
  for (const name of ['Users', 'Resources', 'Technologies', 'Connectors', 'Client IPs']) {
    assert.ok(await page.locator(`.facet-group:has(h3:text-is("${name}")) button.facet`).count() > 0, name);
  }
  await page.screenshot({ path: `${ARTIFACTS}histogram-facets-1280.png` });
});

test('clicking a facet adds it to the query', async (t) => {
  const page = await open(t, { path: '/?range=30d' });
  await signIn(page);
  const facet = page.locator('.facet-group:has(h3:text-is("Users")) button.facet').first();
  const email = await facet.getAttribute('data-value');
  const count = Number((await facet.locator('.facet-count').textContent()).replace(/\D/g, ''));
  const mark = await loadMark(page);
  await facet.click();
  await loaded(page, mark);
  assert.equal(await page.getByLabel('Search query').inputValue(), `user.email:"${email}"`);
  const users = await column(page, 'User');
  assert.ok(users.length > 0 && users.every((u) => u === email), users.join(','));
  assert.equal(Number((await page.textContent('#hits')).replace(/\D/g, '')), count, 'the facet count is the new total');

  const tech = page.locator('.facet-group:has(h3:text-is("Technologies")) button.facet').first();
  const technology = await tech.getAttribute('data-value');
  const again = await loadMark(page);
  await tech.click();
  await loaded(page, again);
  assert.equal(await page.getByLabel('Search query').inputValue(), `user.email:"${email}" AND technology:"${technology}"`);
  assert.ok((await column(page, 'Resource')).every((r) => r.endsWith(technology)));
});

test('a facet click ANDs onto an OR query and builds on the text in the box', async (t) => {
  const page = await open(t, { path: '/?range=30d' });
  await signIn(page);
  await search(page, 'technology:"postgres" OR technology:"mysql"');
  const postgres = facetButtons(page, 'Technologies').and(page.locator('[data-value="postgres"]'));
  let mark = await loadMark(page);
  await postgres.click();
  await loaded(page, mark);
  const both = '(technology:"postgres" OR technology:"mysql") AND technology:"postgres"';
  assert.equal(await queryBox(page), both);
  assert.ok((await column(page, 'Resource')).every((r) => r.endsWith('postgres')));
  // Required at the top level now: not added twice.
  mark = await loadMark(page);
  await postgres.click();
  await loaded(page, mark);
  assert.equal(await queryBox(page), both);

  // Typed but not submitted: the facet adds to it rather than to the query last run.
  await page.getByLabel('Search query').fill('technology:"mysql"');
  const resource = facetButtons(page, 'Resources').first();
  const name = await resource.getAttribute('data-value');
  mark = await loadMark(page);
  await resource.click();
  await loaded(page, mark);
  assert.equal(await queryBox(page), `technology:"mysql" AND resource.name:"${name}"`);

  const added = await page.evaluate(async () => {
    const { addTerm } = await import('/console/view.js');
    return [
      'technology:"postgres"',
      'user.email:"a@example.com" AND technology:"postgres"',
      'user.email:"a@example.com" technology:"postgres"',
      'NOT technology:"postgres"',
      'resource.name:"a OR b"',
      '(technology:"postgres" OR technology:"mysql") AND session_status:active',
      'resource.name:"x technology:\\"postgres\\""',
    ].map((query) => addTerm(query, 'technology', 'postgres'));
  });
  assert.deepEqual(added, [
    'technology:"postgres"',
    'user.email:"a@example.com" AND technology:"postgres"',
    'user.email:"a@example.com" technology:"postgres"',
    'NOT technology:"postgres" AND technology:"postgres"',
    'resource.name:"a OR b" AND technology:"postgres"',
    '(technology:"postgres" OR technology:"mysql") AND session_status:active AND technology:"postgres"',
    'resource.name:"x technology:\\"postgres\\"" AND technology:"postgres"',
  ]);
});

test('the Users facet counts every user, under the name the table shows', async (t) => {
  const page = await open(t, { path: '/?range=30d' });
  await signIn(page);
  const email = await facetButtons(page, 'Users').and(page.locator('[data-field="user.email"]')).first().getAttribute('data-value');
  // A person (with an email) and the machines (without): each is counted.
  const query = `user.type:machine OR user.email:"${email}"`;
  await search(page, query);
  const labels = await facetButtons(page, 'Users').locator('.facet-key').allTextContents();
  assert.ok(labels.includes(email), labels.join(' | '));
  const machine = facetButtons(page, 'Users').and(page.locator('[data-field="user.username"]')).first();
  const label = await machine.locator('.facet-key').textContent();
  const username = await machine.getAttribute('data-value');
  assert.ok(label && !label.startsWith('idp:'), `${label}: the name the table shows`);
  const count = Number((await machine.locator('.facet-count').textContent()).replace(/\D/g, ''));
  const mark = await loadMark(page);
  await machine.click();
  await loaded(page, mark);
  assert.equal(await queryBox(page), `(${query}) AND user.username:"${username}"`);
  const users = await column(page, 'User');
  assert.ok(users.length > 0 && users.every((u) => u === label), users.join(','));
  assert.equal(Number((await page.textContent('#hits')).replace(/\D/g, '')), count, 'the facet count is the new total');

  const names = await page.evaluate(async () => {
    const { userOfUsername } = await import('/console/facets.js');
    return ['idp:formal:human:a@example.com', 'idp:formal:human:a@example.com@analyst', 'idp:formal:machine:etl',
      'idp:formal:machine:etl@loader', 'postgres'].map(userOfUsername);
  });
  assert.deepEqual(names, ['a@example.com', 'a@example.com', 'etl', 'etl', 'postgres']);
});

test('Escape during a drag across the histogram cancels it', async (t) => {
  const page = await open(t, { path: '/?range=7d' });
  await signIn(page);
  const box = await boxOf(page.locator('#histogram svg'));
  await page.mouse.move(box.x + box.width * 0.2, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.4, box.y + box.height / 2, { steps: 8 });
  await page.keyboard.press('Escape');
  await page.mouse.up();
  // A drag's window would be in the URL at once; give it time to show all the same.
  await page.waitForTimeout(300);
  assert.equal(param(page, 'range'), '7d', 'the window is as it was');
  assert.equal(await page.locator('#histogram .selection').getAttribute('visibility'), 'hidden');
});

test('dragging across the histogram narrows the window', async (t) => {
  const page = await open(t, { path: '/?range=7d' });
  await signIn(page);
  const box = await boxOf(page.locator('#histogram svg'));
  const mark = await loadMark(page);
  await page.mouse.move(box.x + box.width * 0.2, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.4, box.y + box.height / 2, { steps: 8 });
  await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2, { steps: 8 });
  await page.mouse.up();
  await loaded(page, mark);
  assert.equal(param(page, 'range'), 'custom');
  const from = Date.parse(param(page, 'from'));
  const to = Date.parse(param(page, 'to'));
  const span = to - from;
  assert.ok(span > 7 * 86400e3 * 0.3 && span < 7 * 86400e3 * 0.5, `about 40% of 7 days: ${span / 3600e3} h`);
  assert.ok(Math.abs(from - (Date.now() - 7 * 86400e3 * 0.8)) < 12 * 3600e3, 'starts about 20% in');
  assert.equal(await page.isVisible('#custom-range'), true);
  const starts = await page.$$eval('#rows time', (times) => times.map((x) => Date.parse(x.getAttribute('datetime'))));
  assert.ok(starts.length > 0 && starts.every((s) => s < to), 'sessions overlap the new window');
  const bars = await page.$$eval('#histogram svg g[data-start]', (groups) => groups.map((g) => Date.parse(g.dataset.start)));
  assert.ok(bars[0] >= from - 3600e3 && bars[bars.length - 1] < to, 'the histogram shows the new window');
});

test('a custom window with an end only leaves the bars to the control plane', async (t) => {
  const to = new Date().toISOString();
  const page = await open(t, { path: `/?range=custom&to=${encodeURIComponent(to)}` });
  const asked = [];
  page.on('request', (request) => {
    if (request.url().endsWith('/ListSessionAggregations') && request.postDataJSON().mode === 'histogram') asked.push(request.postDataJSON());
  });
  await signIn(page);
  // It reaches back to the first session, which only the control plane knows: not a 30-day guess.
  assert.ok(asked.length > 0);
  assert.ok(asked.every((body) => !body.histogramInterval && !body.startTimestamp), JSON.stringify(asked));
  assert.ok(await page.locator('#histogram svg g[data-count]').count() > 0);
});

test('a custom window of millennia still draws its bars and counts', async (t) => {
  const page = await open(t, { path: '/?range=custom&from=0001-01-01T00%3A00%3A00Z&to=9999-12-31T00%3A00%3A00Z' });
  await signIn(page);
  await page.waitForFunction(() => document.getElementById('hits').textContent.includes('matching'));
  assert.ok(await page.locator('#histogram svg g[data-count]').count() > 0);
  assert.match(await page.textContent('#page-label'), / of /);
});

test('the table works and says so when aggregations fail', async (t) => {
  const page = await open(t);
  await page.route('**/core.v1.SessionsService/ListSessionAggregations', (route) =>
    route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ code: 'unavailable', message: 'try later' }) }));
  await signIn(page);
  assert.match(await page.textContent('#aggregations-note'), /unavailable.*still works/);
  assert.equal((await rowIds(page)).length, 50);
  assert.equal(await page.locator('#histogram svg').count(), 0);
});

test('an unreachable control plane keeps what is shown and says that it retries', async (t) => {
  const page = await open(t);
  await signIn(page);
  const ids = await rowIds(page);
  const facets = await page.locator('button.facet').count();
  // Nothing listens any more.
  await page.route('**/core.v1.SessionsService/**', (route) => route.abort('connectionrefused'));
  await nextRefresh(page);
  assert.deepEqual(await rowIds(page), ids, 'the rows stay');
  assert.equal(await page.locator('#histogram svg').count(), 1, 'the histogram stays');
  assert.equal(await page.locator('button.facet').count(), facets, 'the facets stay');
  const notTheQuery = async () => {
    assert.equal(await page.textContent('#query-error'), '');
    assert.notEqual(await page.getAttribute('#query', 'aria-invalid'), 'true');
    assert.doesNotMatch(await page.textContent('#aggregations-note'), /still works/);
  };
  await notTheQuery();
  assert.match(await page.textContent('#connection-note'), /cannot be reached.*Retrying/s);

  // A search meanwhile cannot be shown, but is not the query's fault either.
  await search(page, 'technology:postgres');
  assert.match(await page.textContent('#connection-note'), /could not be loaded.*cannot be reached.*Retrying/s);
  assert.doesNotMatch(await page.textContent('#rows'), /fix the query/);
  await notTheQuery();

  // Back: the next retry shows the search's answers, and the note goes.
  await page.unrouteAll({ behavior: 'ignoreErrors' });
  await page.waitForFunction(() => document.getElementById('connection-note').textContent === '', null, { timeout: 20_000 });
  const resources = await column(page, 'Resource');
  assert.ok(resources.length > 0 && resources.every((r) => r.endsWith('postgres')), resources.join(' | '));
  assert.ok(await page.locator('button.facet').count() > 0);
});

/** Longer than a call's bound (api.js, CALL_TIMEOUT_MS). */
const PAST_TIMEOUT = '00:21';

test('a control plane that stops answering is said so, and refreshes go on', async (t) => {
  const page = await open(t, { path: LIVE, clock: true });
  await signIn(page);
  const ids = await rowIds(page);
  await sessionButton(page, ids[0]).click();
  await page.waitForSelector('#detail .summary');
  // The moment of the last answer, which the stale notice names (or a second or two before).
  const answered = await page.evaluate(async () => {
    const { formatTime } = await import('/console/format.js');
    const now = Date.now();
    return [0, 1000, 2000].map((ago) => formatTime(new Date(now - ago).toISOString()));
  });
  // Stopped (SIGSTOP) or black-holed: calls are neither answered nor refused.
  let hung = true;
  const held = [];
  await page.route(/Service\//, (route) => (hung ? held.push(route) : route.continue()));
  await page.clock.fastForward(5000);
  await until(() => held.length > 0, 'a refresh that hangs');
  await page.clock.fastForward(PAST_TIMEOUT);
  await page.waitForFunction(() => /did not answer/.test(document.getElementById('connection-note').textContent));
  assert.match(await page.textContent('#connection-note'), /^Not up to date \(unavailable\): .*Showing the last answers\. Retrying/);
  assert.deepEqual(await rowIds(page), ids, 'the rows stay');
  await page.waitForSelector('#detail .stale:visible');
  const stale = await page.textContent('#detail .stale');
  // Not when the call was given up, 26 s later (found by a review).
  assert.ok(answered.some((at) => stale.startsWith(`Not up to date: no answer since ${at} (`)), `${stale} | ${answered[0]}`);

  // A search meanwhile ends too, rather than staying "loading…".
  const mark = await loadMark(page);
  await page.getByLabel('Search query').fill('technology:postgres');
  await page.getByLabel('Search query').press('Enter');
  await page.clock.fastForward(PAST_TIMEOUT);
  await loaded(page, mark);
  assert.match(await page.textContent('#connection-note'), /could not be loaded \(unavailable\).*did not answer.*Retrying/s);
  assert.doesNotMatch(await page.textContent('#window-label'), /loading/);

  // Answering again: the next refresh lands.
  hung = false;
  for (const route of held) route.continue().catch(() => {}); // aborted by the page meanwhile
  await page.clock.fastForward(5000);
  await page.waitForFunction(() => document.getElementById('connection-note').textContent === '');
  const resources = await column(page, 'Resource');
  assert.ok(resources.length > 0 && resources.every((r) => r.endsWith('postgres')), resources.join(' | '));
  await page.unrouteAll({ behavior: 'ignoreErrors' });
});

test('a session opens in the detail panel with every field, and Escape closes it', async (t) => {
  const page = await open(t);
  await signIn(page);
  const id = (await rowIds(page))[3];
  await sessionButton(page, id).click();
  await page.waitForSelector('#detail dl.fields dt');
  assert.match(await page.textContent('#detail-title'), new RegExp(id));
  assert.equal(param(page, 'session'), id);
  const { body } = await api('GetSession', { sessionId: id });
  const names = await page.$$eval('#detail dl.fields dt', (dts) => dts.map((d) => d.textContent));
  for (const name of ['id', 'startTime', 'sessionStatus', 'network.clientIpAddress', 'user.formal.user.email',
    'user.native.username', 'resource.name', 'resource.technology', 'connector.name']) {
    assert.ok(names.includes(name), `${name} in ${names}`);
  }
  assert.ok(names.includes('user.formal.user.groups') === Boolean(body.session.user.formal?.user?.groups));
  assert.equal(await page.evaluate(() => document.activeElement.id), 'detail-title', 'focus moves to the panel');
  await page.screenshot({ path: `${ARTIFACTS}detail-1280.png` });

  await page.keyboard.press('Escape');
  assert.equal(await page.isVisible('#detail'), false);
  // Closing goes back in history (opening pushed an entry): the URL follows at once, not synchronously.
  await page.waitForFunction(() => !new URL(window.location.href).searchParams.has('session'));
  assert.equal(await page.evaluate(() => document.activeElement.dataset.id), id, 'focus returns to the row');

  // The open session is part of the URL too.
  await page.goto(`${URL_BASE}/?session=${id}`);
  await page.waitForSelector('#detail dl.fields dt');
  assert.match(await page.textContent('#detail-title'), new RegExp(id));
});

/** True when `selector` is what is under its own centre: nothing (the detail panel) lies over it. */
const reachable = (page, selector) => page.$eval(selector, (node) => {
  const box = node.getBoundingClientRect();
  return node.contains(document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2));
});

/** The top region's controls: the key and sign-out, export, search and window. */
const TOP_CONTROLS = ['#live', '#export-format', '#export', '#signout', '#query', '#search button[type="submit"]',
  ...['15m', '1h', '24h', '7d', '30d', 'custom'].map((range) => `button[data-range="${range}"]`), '#sort'];

test('at desktop width the top bar and the table stay usable with a session open', async (t) => {
  const page = await open(t, { width: 1440, height: 900 });
  await signIn(page);
  const ids = await rowIds(page);
  await sessionButton(page, ids[0]).click();
  await page.waitForSelector('#detail dl.fields dt');
  await page.screenshot({ path: `${ARTIFACTS}detail-1440.png` });
  for (const selector of ['#live', '#export', '#signout', '#query', `#rows button[data-id="${ids[1]}"]`]) {
    assert.equal(await reachable(page, selector), true, `${selector} is not under the panel`);
  }
  await page.getByLabel('Auto-refresh').click({ timeout: 5000 });
  assert.equal(await page.isChecked('#live'), false);
  // Another session opens from the table beside the panel.
  await sessionButton(page, ids[1]).click({ timeout: 5000 });
  await page.waitForFunction((id) => document.getElementById('detail-title').textContent.includes(id), ids[1]);
});

test('between phone and desktop widths the top bar stays visible and usable with a session open', async (t) => {
  for (const width of [641, 800, 1024, 1199]) {
    const page = await open(t, { width, height: 800 });
    await signIn(page);
    const [id, other] = await rowIds(page);
    await sessionButton(page, id).click();
    await page.waitForSelector('#detail dl.fields dt');
    await page.screenshot({ path: `${ARTIFACTS}detail-${width}.png` });
    // The panel lies over the page below the controls, not over them.
    for (const selector of [...TOP_CONTROLS, '#detail-close']) {
      assert.equal(await reachable(page, selector), true, `${width} px: ${selector} is not under the panel`);
    }
    const controls = await boxOf(page.locator('.controls'));
    const panel = await boxOf(page.locator('#detail'));
    assert.ok(panel.y >= controls.y + controls.height - 1, `${width} px: the panel (top ${panel.y}) starts below the controls`);
    assert.ok(panel.y + panel.height <= 801, `${width} px: the panel reaches the bottom of the window`);

    // Scrolled down the table, the controls stay in the window and in reach.
    await page.locator(`#rows tr[data-id]`).nth(30).scrollIntoViewIfNeeded();
    assert.ok(await page.evaluate(() => window.scrollY > 100), `${width} px: the page scrolled`);
    for (const selector of TOP_CONTROLS) {
      assert.equal(await reachable(page, selector), true, `${width} px, scrolled: ${selector} is in reach`);
    }
    // And they work, with the session still open beside them.
    await page.getByLabel('Auto-refresh').click({ timeout: 5000 });
    assert.equal(await page.isChecked('#live'), false);
    let mark = await loadMark(page);
    await preset(page, '7d').click({ timeout: 5000 });
    await loaded(page, mark);
    assert.equal(param(page, 'range'), '7d');
    mark = await loadMark(page);
    await page.getByLabel('Search query').fill(`id:${other}`, { timeout: 5000 });
    await page.getByRole('button', { name: 'Search', exact: true }).click({ timeout: 5000 });
    await loaded(page, mark);
    assert.deepEqual(await rowIds(page), [other]);
    assert.match(await page.textContent('#detail-title'), new RegExp(id), 'the session stays open');
    await page.getByRole('button', { name: 'Sign out' }).click({ timeout: 5000 });
    assert.equal(await page.isVisible('#signin'), true);
  }
});

test('Back closes the session detail and Forward opens it again', async (t) => {
  const page = await open(t);
  await signIn(page);
  const id = (await rowIds(page))[2];
  await sessionButton(page, id).click();
  await page.waitForSelector('#detail dl.fields dt');
  assert.equal(param(page, 'session'), id);

  await page.goBack();
  await page.waitForFunction(() => document.getElementById('detail').hidden);
  assert.equal(param(page, 'session'), null);
  assert.equal(await page.isVisible('#console'), true, 'still in the console');
  assert.equal((await rowIds(page)).length, 50);

  await page.goForward();
  await page.waitForSelector('#detail dl.fields dt');
  assert.match(await page.textContent('#detail-title'), new RegExp(id));

  // Closing it goes back as well, so the entry that opened it is still ahead.
  await page.getByRole('button', { name: 'Close the session detail' }).click();
  await page.waitForFunction(() => !new URL(window.location.href).searchParams.has('session'));
  assert.equal(await page.isVisible('#detail'), false);
  await page.goForward();
  await page.waitForSelector('#detail dl.fields dt');
  assert.equal(param(page, 'session'), id);
});

test('Escape in the search box closes the session and keeps the typed query', async (t) => {
  const page = await open(t);
  await signIn(page);
  await sessionButton(page, (await rowIds(page))[0]).click();
  await page.waitForSelector('#detail dl.fields dt');
  await page.getByLabel('Search query').fill('technology:mysql');
  await page.getByLabel('Search query').press('Escape');
  await page.waitForFunction(() => document.getElementById('detail').hidden);
  assert.equal(await queryBox(page), 'technology:mysql', 'not cleared');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'query', 'focus stays in the box');
  // With no session open, Escape is the box's own again.
  await page.getByLabel('Search query').press('Escape');
  assert.equal(await queryBox(page), '');
});

test('auto-refresh keeps the scroll position and the open detail', async (t) => {
  const page = await open(t, { height: 700 });
  await signIn(page);
  const id = (await rowIds(page))[30];
  await sessionButton(page, id).click();
  await page.waitForSelector('#detail dl.fields dt');
  await page.evaluate(() => window.scrollTo(0, 900));
  const y = await page.evaluate(() => window.scrollY);
  assert.ok(y > 500);
  const before = Number(await page.evaluate(() => document.body.dataset.refreshes || 0));
  await page.waitForFunction((n) => Number(document.body.dataset.refreshes || 0) >= n + 2, before, { timeout: 20_000 });
  assert.equal(await page.evaluate(() => window.scrollY), y);
  assert.equal(await page.isVisible('#detail'), true);
  assert.match(await page.textContent('#detail-title'), new RegExp(id));
  assert.equal(await page.locator(`#rows tr.selected[data-id="${id}"]`).count(), 1);
  // A plain table's row is not selectable: the open one is the current one.
  assert.equal(await page.locator(`#rows tr[aria-current="true"]`).getAttribute('data-id'), id);
  assert.equal(await page.locator('#rows tr[aria-selected]').count(), 0);
});

test('auto-refresh gives keyboard focus back to the same facet', async (t) => {
  const page = await open(t);
  await signIn(page);
  const facet = page.locator('.facet-group:has(h3:text-is("Resources")) button.facet').nth(1);
  const value = await facet.getAttribute('data-value');
  await facet.focus();
  const before = await refreshMark(page);
  await page.waitForFunction((n) => Number(document.body.dataset.refreshes || 0) > n, before, { timeout: 20_000 });
  assert.equal(await page.evaluate(() => document.activeElement.dataset.value), value);
});

test('a refresh waits while the pointer is on the table, so a click opens the session seen there', async (t) => {
  const page = await open(t);
  let reversed = false;
  await editSessionList(page, (sessions) => (reversed ? sessions.reverse() : sessions));
  await signIn(page);
  const ids = await rowIds(page);
  const target = await page.locator('#rows tr[data-id] button').nth(2).boundingBox();
  const point = [target.x + 5, target.y + target.height / 2];
  await page.mouse.move(...point);
  // The next refresh would put other sessions under the pointer.
  reversed = true;
  await nextRefresh(page);
  assert.deepEqual(await rowIds(page), ids, 'the rows under the pointer stay');
  assert.equal(await page.isVisible('#rows-held'), true, 'and say that they wait');
  await page.mouse.click(...point);
  await page.waitForSelector('#detail dl.fields dt');
  assert.equal(param(page, 'session'), ids[2], 'the session that was under the pointer');
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !new URL(window.location.href).searchParams.has('session'));

  // Pointer gone: the refresh shows.
  await page.mouse.move(5, 5);
  await page.waitForFunction((first) => document.querySelector('#rows tr[data-id]').dataset.id !== first, ids[0]);
  assert.equal(await page.isVisible('#rows-held'), false);
  await page.unrouteAll({ behavior: 'ignoreErrors' });
});

/** The numbers the page shows of the sessions: matching, in the page label, the histogram's bars and a facet. */
const shownCounts = (page) => page.evaluate(() => {
  const number = (text) => Number(text.replace(/\D/g, ''));
  return {
    hits: number(document.getElementById('hits').textContent),
    ofPage: number(document.getElementById('page-label').textContent.split(' of ')[1] || ''),
    bars: [...document.querySelectorAll('#histogram svg g[data-count]')].reduce((sum, bar) => sum + Number(bar.dataset.count), 0),
    facet: number(document.querySelector('button.facet[data-field="resource.name"][data-value="browser-pg"] .facet-count').textContent),
  };
});

test('while the pointer is on the table the counts wait with the rows, and both move on when it leaves', async (t) => {
  // The connector's resource, whose sessions only the tests make: the counts move by theirs alone.
  const query = 'resource.name:"browser-pg"';
  await shortSessions(2);
  await waitForSession(query);
  const page = await open(t, { path: `/?q=${encodeURIComponent(query)}` });
  await signIn(page);
  const ids = await rowIds(page);
  const counts = await shownCounts(page);
  assert.ok(counts.hits >= 2);
  assert.deepEqual(counts, { hits: counts.hits, ofPage: counts.hits, bars: counts.hits, facet: counts.hits }, 'the numbers agree');
  await page.locator('#rows tr[data-id]').nth(1).hover();

  const since = new Date().toISOString();
  await shortSessions(3);
  await until(async () => (await api('ListSessionsV2', { query, startTimestamp: since })).body.sessions?.length === 3,
    'the new sessions are recorded');
  // The first may have asked before they were.
  await nextRefresh(page);
  await nextRefresh(page);
  assert.deepEqual(await rowIds(page), ids, 'the rows under the pointer stay');
  assert.deepEqual(await shownCounts(page), counts, 'and so do the counts around them');
  assert.equal(await page.textContent('#rows-held'), 'Newer sessions and counts wait until the pointer leaves the table');
  await page.screenshot({ path: `${ARTIFACTS}held-1280.png` });

  await page.mouse.move(5, 5);
  await page.waitForFunction((first) => document.querySelector('#rows tr[data-id]').dataset.id !== first, ids[0]);
  const hits = counts.hits + 3;
  assert.deepEqual(await shownCounts(page), { hits, ofPage: hits, bars: hits, facet: hits }, 'all move on together');
  assert.equal(await page.isVisible('#rows-held'), false);
});

test('on a slow control plane one load runs at a time and the last action wins', async (t) => {
  const page = await open(t);
  await signIn(page);
  // From now on every answer takes longer than the 5 s between refreshes.
  const SLOW = 7000;
  await page.route('**/core.v1.SessionsService/**', async (route) => {
    await sleep(SLOW);
    await route.continue().catch(() => {}); // the page aborted it meanwhile
  });
  let running = 0;
  let most = 0;
  let lists = 0;
  const isList = (request) => request.url().endsWith('/ListSessionsV2');
  page.on('request', (request) => {
    if (!isList(request)) return;
    lists += 1;
    running += 1;
    most = Math.max(most, running);
  });
  const ended = (request) => { if (isList(request)) running -= 1; };
  page.on('requestfinished', ended);
  page.on('requestfailed', ended);

  // Refreshes alone (nothing aborts them): the next one waits for the last to land.
  const refreshes = await refreshMark(page);
  await page.waitForFunction((n) => Number(document.body.dataset.refreshes || 0) >= n + 2, refreshes, { timeout: 45_000 });
  assert.equal(most, 1, 'never two listings at once');
  assert.ok(lists <= 3, `${lists} listings for two refreshes`);

  // A window is chosen, then another before the first answers: the second one lands.
  const mark = await loadMark(page);
  const preset = (name) => page.getByRole('group', { name: 'Time range' }).getByRole('button', { name });
  await preset('30d').click();
  assert.match(await page.textContent('#window-label'), /loading/, 'the label does not describe the rows still shown');
  await sleep(1000);
  await preset('7d').click();
  await loaded(page, mark);
  assert.equal(await page.textContent('#window-label'), 'in the last 7d');
  const start = new Date(Date.now() - 7 * 86400e3).toISOString();
  const expected = await walkCount({ startTimestamp: start });
  const hits = () => page.textContent('#hits').then((text) => Number(text.replace(/\D/g, '')));
  assert.ok(Math.abs(await hits() - expected) <= 3, `${await hits()} vs ${expected}`);
  assert.match(await page.textContent('#page-label'), new RegExp(`of ${(await hits()).toLocaleString()}`));
  // The 30d answer, had it not been dropped, would have landed by now.
  await sleep(SLOW);
  assert.equal(await page.textContent('#window-label'), 'in the last 7d');
  assert.ok(Math.abs(await hits() - expected) <= 3);
  await page.unrouteAll({ behavior: 'ignoreErrors' });
});

test('export writes every session of the query and window, as JSONL and as CSV', async (t) => {
  const page = await open(t, { path: `/?range=30d&q=${encodeURIComponent('technology:postgres')}` });
  await signIn(page);
  const expected = await walkCount({ query: 'technology:postgres', startTimestamp: new Date(Date.now() - 30 * 86400e3).toISOString() });
  assert.ok(expected > 1000, `more than one export page: ${expected}`);

  const [jsonl] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export' }).click()]);
  assert.match(jsonl.suggestedFilename(), /\.jsonl$/);
  const lines = readFileSync(await jsonl.path(), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  // A session may start between the two walks: allow a handful.
  assert.ok(Math.abs(lines.length - expected) <= 3, `${lines.length} vs ${expected}`);
  assert.equal(new Set(lines.map((s) => s.id)).size, lines.length, 'each session once');
  assert.ok(lines.every((s) => s.resource.technology === 'postgres'));
  assert.match(await page.textContent('#export-status'), /Exported [\d,.\s]+ sessions/);

  await page.getByLabel('Export format').selectOption('csv');
  const [csv] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export' }).click()]);
  const bytes = readFileSync(await csv.path());
  assert.deepEqual([...bytes.subarray(0, 3)], [0xef, 0xbb, 0xbf], 'a byte order mark: Excel reads UTF-8 with it');
  const text = bytes.subarray(3).toString('utf8');
  assert.ok(!text.includes('\r'), 'lines end with LF, as the CLI writes them');
  const rows = text.trim().split('\n');
  assert.equal(rows[0].split(',')[0], 'id');
  assert.ok(rows[0].includes('resource_technology'));
  assert.ok(Math.abs(rows.length - 1 - expected) <= 3, `${rows.length - 1} vs ${expected}`);
});

test('an export kept waiting says so after a call\'s 20 s, and goes on when answered', async (t) => {
  const page = await open(t, { path: `/?range=30d&q=${encodeURIComponent('technology:postgres')}`, clock: true });
  await signIn(page);
  let hung = true;
  const held = [];
  await page.route('**/core.v1.SessionsService/ListSessionsV2', (route) => {
    const exportPage = JSON.parse(route.request().postData() || '{}').limit === 1000;
    return hung && exportPage ? held.push(route) : route.continue();
  });
  await page.getByRole('button', { name: 'Export' }).click();
  await until(() => held.length > 0, 'an export page that hangs');
  await page.clock.fastForward(PAST_TIMEOUT);
  await page.waitForFunction(() => /still waiting/.test(document.getElementById('export-status').textContent));
  assert.match(await page.textContent('#export-status'), /has not answered for 20 s, still waiting/);

  hung = false;
  const [download] = await Promise.all([page.waitForEvent('download'), ...held.map((route) => route.continue())]);
  assert.match(download.suggestedFilename(), /\.jsonl$/);
  assert.match(await page.textContent('#export-status'), /^Exported [\d,.\s]+ sessions/);
  await page.unrouteAll({ behavior: 'ignoreErrors' });
});

test('CSV export neutralises cells a spreadsheet would run as formulas', async (t) => {
  const page = await open(t);
  const cells = { role: '=HYPERLINK("http://evil.example","x")', resource: '+cmd|\' /C calc\'!A0', ip: '@SUM(1+1)', user: '-2+3' };
  await editSessions(page, (s) => {
    s.user = { ...s.user, username: cells.user, native: { username: cells.role } };
    s.resource = { ...s.resource, name: cells.resource };
    s.network = { ...s.network, clientIpAddress: cells.ip };
  });
  await signIn(page);
  await page.getByLabel('Export format').selectOption('csv');
  const [csv] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export' }).click()]);
  const text = readFileSync(await csv.path(), 'utf8');
  assert.ok(!text.includes('\r'), 'LF line endings, as the CLI');
  const [head, first] = text.split('\n');
  const at = (name) => head.split(',').indexOf(name);
  // Quoted fields hold commas here: split the first row with a CSV-aware pattern.
  const fields = [...first.matchAll(/("(?:[^"]|"")*"|[^,]*)(,|$)/g)].map((m) => m[1]).slice(0, head.split(',').length);
  assert.equal(fields[at('native_username')], '"\'=HYPERLINK(""http://evil.example"",""x"")"');
  assert.equal(fields[at('resource_name')], "'+cmd|' /C calc'!A0");
  assert.equal(fields[at('client_ip')], "'@SUM(1+1)");
  assert.equal(fields[at('username')], "'-2+3");

  const unit = await page.evaluate(async () => {
    const { csvField } = await import('/console/export.js');
    return ['=1', '+1', '-1', '@a', '\tx', '\rx', 'plain', 'a,b', ''].map(csvField);
  });
  assert.deepEqual(unit, ["'=1", "'+1", "'-1", "'@a", "'\tx", '"\'\rx"', 'plain', '"a,b"', '']);
});

/** A psql session through the connector, kept open until `end()`. */
function psqlSession(marker) {
  const child = spawn('psql', ['-X', '-q', THROUGH_CONNECTOR], { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  child.stdin.write(`select '${marker}' as marker;\n`);
  const exited = new Promise((resolve) => child.on('exit', resolve));
  return { child, exited, output: () => output, end: () => { child.stdin.end(); return exited; } };
}

/** `count` sessions through the connector, one after another: psql's \connect opens each anew. */
async function shortSessions(count) {
  const psql = spawn('psql', ['-X', '-q', THROUGH_CONNECTOR], { stdio: ['pipe', 'ignore', 'inherit'] });
  psql.stdin.end('\\connect\n'.repeat(count - 1));
  assert.equal(await new Promise((resolve) => psql.on('exit', resolve)), 0, 'psql connected each time');
}

/** A statement as ListSessionStatements answers it, completed unless `fields` say otherwise. */
function statementAt(seq, text, fields = {}) {
  return { seq: String(seq), startTime: '2026-03-02T10:00:00Z', duration: '0s', text, status: 'completed', ...fields };
}

async function waitForSession(query) {
  for (let i = 0; i < 100; i++) {
    const { body } = await api('ListSessionsV2', { query, limit: 5 });
    if (body.sessions?.length) return body.sessions[0];
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no session for ${query}`);
}

test('an admin terminates a live psql session and sees it complete', async (t) => {
  const psql = psqlSession('browser-terminate');
  t.after(() => { psql.child.kill(); });
  const live = await waitForSession('resource.name:"browser-pg" AND session_status:active');
  await new Promise((resolve) => setTimeout(resolve, 500));

  const page = await open(t, { path: `/?q=${encodeURIComponent('resource.name:"browser-pg" AND session_status:active')}` });
  await signIn(page);
  await sessionButton(page, live.id).click();
  await page.waitForSelector('#detail .statements code');
  const statements = await page.$$eval('#detail .statements code', (codes) => codes.map((c) => c.textContent));
  assert.ok(statements.some((s) => s.includes('browser-terminate')), statements.join('\n'));
  assert.ok(await page.$eval('#detail .statements time', (time) => Date.parse(time.getAttribute('datetime')) > 0));
  await page.screenshot({ path: `${ARTIFACTS}detail-live-1280.png` });

  await page.getByRole('button', { name: 'Terminate session' }).click();
  const dialog = page.getByRole('dialog', { name: 'Terminate this session?' });
  await dialog.waitFor();
  await page.screenshot({ path: `${ARTIFACTS}terminate-confirm-1280.png` });
  await dialog.getByRole('button', { name: 'Terminate' }).click();
  await page.waitForSelector('#terminate-result:has-text("Session terminated: completed at")', { timeout: 20_000 });
  await page.screenshot({ path: `${ARTIFACTS}terminated-1280.png` });
  assert.equal(await page.locator('#detail .status').first().textContent(), 'completed');
  assert.equal(await page.locator('#terminate').count(), 0, 'no Terminate button on a completed session');

  const { body } = await api('GetSession', { sessionId: live.id });
  assert.equal(body.session.sessionStatus, 'completed');
  psql.child.stdin.write('select 1;\n');
  await psql.end();
  assert.match(psql.output(), /terminat|57P01|connection/i, psql.output());
});

test('a statement keeps its line breaks in the detail', async (t) => {
  const marker = 'browser-multiline';
  const statement = `select 1 as first,\n  '${marker}' as marker,\n  'a\\b' as backslash`;
  const psql = spawn('psql', ['-X', '-q', THROUGH_CONNECTOR, '-c', statement]);
  await new Promise((resolve) => psql.on('exit', resolve));
  let id = '';
  for (let i = 0; i < 100 && !id; i++) {
    const { body } = await api('ListSessionsV2', { query: 'resource.name:"browser-pg"', limit: 5 });
    for (const s of body.sessions || []) {
      if ((await api('GetSessionTranscript', { sessionId: s.id })).body.transcript?.includes(marker)) id = s.id;
    }
    if (!id) await sleep(100);
  }
  assert.ok(id, 'the session was recorded');

  const page = await open(t, { path: `/?session=${id}` });
  await signIn(page);
  await page.waitForSelector('#detail .statements code');
  const shown = await page.$$eval('#detail .statements code', (codes) => codes.map((c) => c.textContent));
  assert.ok(shown.includes(statement), JSON.stringify(shown));
  await page.screenshot({ path: `${ARTIFACTS}detail-multiline-1280.png` });

  // With what it did, from ListSessionStatements.
  const outcome = await page.locator('#detail .statements li', { hasText: marker }).locator('.outcome').textContent();
  assert.match(outcome, /^\d+\.\d{3} ms · 1 row · \d+ bytes$/, outcome);

  // Recorded values (a user name too) show their control characters and bidirectional
  // overrides written out, as the transcript writes them: shown, not acted on.
  const printed = await page.evaluate(async () => {
    const { printable, el } = await import('/console/format.js');
    return [printable('ad\u202emin\u001b[2J\tok\n'), el('span', { text: 'a\u2066b' }).textContent, el('b', {}, 'x\u0085').textContent];
  });
  assert.deepEqual(printed, ['ad\\u{202e}min\\x1b[2J\tok\n', 'a\\u{2066}b', 'x\\u{85}']);
});

test('a session\'s duration reads as the CLI\'s table writes it, a short one in milliseconds', async (t) => {
  const page = await open(t);
  const shown = await page.evaluate(async () => {
    const { formatDuration } = await import('/console/format.js');
    return ['0.094s', '0s', '2.3s', '59.99s', '60s', '3725s', '90061s'].map(formatDuration);
  });
  // A review found a 94 ms session shown as 0s.
  assert.deepEqual(shown, ['94ms', '0ms', '2.3s', '59.9s', '1m 00s', '1h 02m', '1d 01h']);
});

test('bidirectional controls in recorded values and links are shown escaped', async (t) => {
  const bidi = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
  const page = await open(t, { path: LIVE });
  // A live session whose user and connector names were chosen to read as others.
  await page.route('**/core.v1.SessionsService/GetSession', async (route) => {
    const response = await route.fetch();
    const json = await response.json();
    json.session.user = { ...json.session.user, formal: { user: { email: 'ad\u202emoc.elpmaxe@nim' } } };
    json.session.connector = { ...json.session.connector, name: 'edge\u202e1' };
    await route.fulfill({ response, json });
  });
  await signIn(page);
  await sessionButton(page, (await rowIds(page))[0]).click();
  await page.getByRole('button', { name: 'Terminate session' }).click();
  const confirm = await page.textContent('#confirm-text');
  assert.doesNotMatch(confirm, bidi);
  assert.match(confirm, /ad\\u\{202e\}moc\.elpmaxe@nim .*connector edge\\u\{202e\}1\./);
  await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();

  // A link's bad parameters are quoted escaped.
  for (const [search, problem] of [['?range=%E2%80%AEevil', /range=\\u\{202e\}evil is not a window/],
    ['?range=custom&from=%E2%80%AE2026', /from=\\u\{202e\}2026 is not a date and time/]]) {
    await page.goto(`${URL_BASE}/${search}`);
    await loaded(page);
    const said = await page.textContent('#range-error');
    assert.doesNotMatch(said, bidi);
    assert.match(said, problem);
  }
});

test('a facet value with a bidirectional control is shown escaped in the box, and still matches', async (t) => {
  const page = await open(t);
  const name = 'ev\u202eil-db';
  await page.route('**/core.v1.SessionsService/ListSessionAggregations', async (route) => {
    const response = await route.fetch();
    const json = await response.json();
    // Also once the query matches no session (no list at all then).
    if (route.request().postDataJSON().mode === 'facets') (json.aggregations.resourceNames ||= []).unshift({ key: name, count: 999 });
    await route.fulfill({ response, json });
  });
  const asked = [];
  page.on('request', (request) => {
    if (request.url().endsWith('/ListSessionsV2')) asked.push(request.postDataJSON().query);
  });
  await signIn(page);
  let mark = await loadMark(page);
  await facetButtons(page, 'Resources').filter({ hasText: 'ev\\u{202e}il-db' }).click();
  await loaded(page, mark);
  const query = `resource.name:"${name}"`;
  assert.equal(await queryBox(page), 'resource.name:"ev\\u{202e}il-db"', 'visible, not acted on');
  assert.equal(param(page, 'q'), query, 'the value itself is searched');
  assert.equal(asked.at(-1), query);
  // Submitted again as shown, it is the same query.
  mark = await loadMark(page);
  await page.getByLabel('Search query').press('Enter');
  await loaded(page, mark);
  assert.equal(param(page, 'q'), query);
  assert.equal(asked.at(-1), query);

  const read = await page.evaluate(async () => {
    const { printable, unprintable } = await import('/console/format.js');
    return ['a\u202eb\u001b', 'user:"a\\\\u{202e}"', 'x\\u{41}', 'x\\u{110000}'].map((text) => unprintable(printable(text)));
  });
  assert.deepEqual(read, ['a\u202eb\u001b', 'user:"a\\\\u{202e}"', 'x\\u{41}', 'x\\u{110000}']);
});

/** The bodies of the page's CreateSessionTermination calls, as they are sent. */
function terminationCalls(page) {
  const bodies = [];
  page.on('request', (request) => {
    if (request.url().endsWith('/core.v1.SessionsService/CreateSessionTermination')) bodies.push(request.postData());
  });
  return bodies;
}

/** Hands the console's question of what the key may do (GetCallerKey) to `handle`. */
async function routeRoleQuestion(page, handle) {
  await page.route('**/gatehouse.keys.v1.KeysService/GetCallerKey', handle);
}

test('a reader key is never offered Terminate; an admin key signed in next in the tab is', async (t) => {
  // Asked directly, the question says which role each key has.
  assert.equal((await callerKey(READER_KEY)).body.role, 'reader');
  assert.equal((await callerKey(ADMIN_KEY)).body.role, 'admin');

  const page = await open(t, { path: LIVE });
  const calls = terminationCalls(page);
  await signIn(page, READER_KEY);
  const [id, other] = await rowIds(page);
  await sessionButton(page, id).click();
  // Off from the first live session opened, saying why.
  await page.waitForSelector('#terminate-refused');
  const button = page.getByRole('button', { name: 'Terminate session' });
  assert.equal(await button.isDisabled(), true);
  assert.equal(await button.getAttribute('title'), 'Needs an admin key');
  assert.match(await button.getAttribute('aria-describedby'), /terminate-refused/);
  assert.match(await page.locator('#terminate-refused').textContent(), /admin key/);
  await page.screenshot({ path: `${ARTIFACTS}detail-reader-1280.png` });
  await page.locator('#detail-close').click();
  await sessionButton(page, other).click();
  await page.waitForSelector('#terminate-refused');
  assert.equal(await button.isDisabled(), true);
  assert.deepEqual(calls, [], 'no termination sent, not even to ask');

  // Another key in the same tab is asked about in turn.
  await page.getByRole('button', { name: 'Sign out' }).click();
  const answered = page.waitForResponse((response) => response.url().endsWith('/GetCallerKey'));
  await signIn(page, ADMIN_KEY);
  assert.equal((await (await answered).json()).role, 'admin');
  const [first] = await rowIds(page);
  await sessionButton(page, first).click();
  await page.waitForSelector('#detail .summary');
  assert.equal(await button.isDisabled(), false);
  assert.equal(await button.getAttribute('title'), null);
  assert.equal(await page.locator('#terminate-refused').count(), 0);
  assert.deepEqual(calls, []);
});

test('a session open before the key is known to be a reader\'s has Terminate turned off when it is', async (t) => {
  const page = await open(t, { path: LIVE });
  await signIn(page, READER_KEY);
  const [id] = await rowIds(page);
  // Reloaded with the session in the URL: the question is asked again, and answered late.
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  await routeRoleQuestion(page, async (route) => {
    await held;
    await route.continue();
  });
  await page.goto(`${URL_BASE}${LIVE}&session=${id}`);
  await page.waitForSelector('#detail .summary');
  const button = page.getByRole('button', { name: 'Terminate session' });
  assert.equal(await button.isDisabled(), false, 'not known yet: offered');
  release();
  await page.waitForSelector('#terminate-refused');
  assert.equal(await button.isDisabled(), true);
  assert.equal(await button.getAttribute('title'), 'Needs an admin key');
  await page.unrouteAll({ behavior: 'ignoreErrors' });
});

test('when what the key may do cannot be asked, Terminate is offered; a reader then sees permission_denied, then no longer', async (t) => {
  const page = await open(t, { path: LIVE });
  await routeRoleQuestion(page, (route) => route.abort('connectionfailed'));
  // An admin is not locked out by the failed question.
  await signIn(page, ADMIN_KEY);
  const [id, other] = await rowIds(page);
  await sessionButton(page, id).click();
  await page.waitForSelector('#detail .summary');
  assert.equal(await page.getByRole('button', { name: 'Terminate session' }).isDisabled(), false);
  assert.equal(await page.locator('#terminate-refused').count(), 0);
  await page.getByRole('button', { name: 'Sign out' }).click();

  await signIn(page, READER_KEY);
  await sessionButton(page, id).click();
  await page.getByRole('button', { name: 'Terminate session' }).click();
  // Cancel first: nothing is sent.
  await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
  assert.equal(await page.locator('#terminate-result').count(), 0);
  await page.getByRole('button', { name: 'Terminate session' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Terminate' }).click();
  await page.waitForSelector('#terminate-result:has-text("permission_denied")');
  const { body } = await api('GetSession', { sessionId: id });
  assert.equal(body.session.sessionStatus, 'active', 'the session still runs');
  assert.equal(await page.getByRole('button', { name: 'Terminate session' }).isDisabled(), true);

  // Another live session: the key is known to be a reader's, so Terminate is off and says why.
  await page.locator('#detail-close').click();
  await sessionButton(page, other).click();
  await page.waitForSelector('#terminate-refused');
  const button = page.getByRole('button', { name: 'Terminate session' });
  assert.equal(await button.isDisabled(), true);
  assert.match(await button.getAttribute('aria-describedby'), /terminate-refused/);
  assert.match(await page.locator('#terminate-refused').textContent(), /admin key/);
  await page.unrouteAll({ behavior: 'ignoreErrors' });
});

test('while a termination is being sent the statements stay and Terminate is off', async (t) => {
  const page = await open(t, { path: LIVE });
  await page.route('**/gatehouse.sessions.v1.StatementsService/ListSessionStatements', (route) =>
    route.fulfill({ contentType: 'application/json', body: JSON.stringify({ statements: [statementAt(1, 'select 42')] }) }));
  let answer;
  const answered = new Promise((resolve) => { answer = resolve; });
  // The connector is slow to take it, then refuses: the seeded session is not really ended.
  await page.route('**/core.v1.SessionsService/CreateSessionTermination', async (route) => {
    await answered;
    await route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ code: 'unavailable', message: 'connector busy' }) });
  });
  await signIn(page);
  await sessionButton(page, (await rowIds(page))[0]).click();
  await page.waitForSelector('#detail .statements code');
  const statements = () => page.$$eval('#detail .statements li', (items) => items.map((li) => li.querySelector('code')?.textContent ?? li.textContent));
  await page.getByRole('button', { name: 'Terminate session' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Terminate' }).click();
  await page.waitForSelector('#terminate-result:has-text("Sending the termination")');
  assert.deepEqual(await statements(), ['select 42'], 'the statements stay');
  assert.equal(await page.getByRole('button', { name: 'Terminate session' }).isDisabled(), true, 'not sent twice');
  answer();
  await page.waitForSelector('#terminate-result:has-text("Termination failed (unavailable)")');
  assert.equal(await page.getByRole('button', { name: 'Terminate session' }).isDisabled(), false, 'offered again');
  assert.deepEqual(await statements(), ['select 42']);
});

test('a termination left unanswered says that its outcome is not known', async (t) => {
  const page = await open(t, { path: LIVE, clock: true });
  // Sent, and no answer ever comes back.
  await page.route('**/core.v1.SessionsService/CreateSessionTermination', () => {});
  await signIn(page);
  await sessionButton(page, (await rowIds(page))[0]).click();
  await page.waitForSelector('#detail .summary');
  await page.getByRole('button', { name: 'Terminate session' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Terminate' }).click();
  await page.waitForSelector('#terminate-result:has-text("Sending the termination")');
  await page.clock.fastForward(PAST_TIMEOUT);
  await page.waitForSelector('#terminate-result:has-text("Not known whether the termination took effect")');
  assert.match(await page.textContent('#terminate-result'), /did not answer.*Check this session/);
  assert.doesNotMatch(await page.textContent('#terminate-result'), /failed/);
  assert.equal(await page.getByRole('button', { name: 'Terminate session' }).isDisabled(), false, 'offered again');
  await page.unrouteAll({ behavior: 'ignoreErrors' });
});

test('a live session with thousands of statements is not redrawn at every refresh', async (t) => {
  const page = await open(t, { path: LIVE });
  let answers = 0;
  // Each answer holds one statement more, as a live session's does, and its last is running
  // until the next answer completes it.
  await page.route('**/gatehouse.sessions.v1.StatementsService/ListSessionStatements', (route) => {
    answers += 1;
    const statements = Array.from({ length: 3000 + answers }, (_, i) => statementAt(i + 1, `select ${i}`));
    statements.at(-1).status = 'running';
    return route.fulfill({ contentType: 'application/json', body: JSON.stringify({ statements }) });
  });
  await signIn(page);
  await sessionButton(page, (await rowIds(page))[0]).click();
  await page.waitForFunction(() => document.querySelectorAll('#detail .statements li').length > 3000);
  await page.evaluate(() => { window.firstStatement = document.querySelector('#detail .statements li'); });
  await nextRefresh(page);
  assert.ok(answers >= 2, 'the statements were loaded again');
  assert.equal(await page.evaluate(() => window.firstStatement.isConnected), true, 'the statements shown stay');
  const codes = await page.$$eval('#detail .statements code', (items) => items.map((code) => code.textContent));
  assert.equal(codes.length, 3000 + answers, 'the new one is appended');
  assert.deepEqual(codes.slice(-2), [`select ${3000 + answers - 2}`, `select ${3000 + answers - 1}`]);
  const classes = await page.$$eval('#detail .statements li', (items) => items.slice(-2).map((li) => li.className));
  assert.deepEqual(classes, ['completed', 'running'], 'the one that was running is shown completed');
});

const STATEMENTS_SERVICE = 'gatehouse.sessions.v1.StatementsService';

/** How many statements the panel reads and draws at a time, as detail.js says. */
const statementsPage = (page) => page.evaluate(async () => (await import('/console/detail.js')).STATEMENTS_PAGE);

/** A live psql session through the connector that ran `select '<marker>'`, and its id. */
async function liveSession(t, marker) {
  const psql = psqlSession(marker);
  // Its answers are not read: thousands of them would only fill memory.
  psql.child.stdin.write('\\o /dev/null\n');
  t.after(() => psql.child.kill());
  for (let i = 0; i < 100; i++) {
    const { body } = await api('ListSessionsV2', { query: 'resource.name:"browser-pg" AND session_status:active', limit: 20 });
    for (const { id } of body.sessions || []) {
      if (!(await api('GetSessionTranscript', { sessionId: id })).body.transcript?.includes(marker)) continue;
      // Ended at once, even blocked, and completed before the next test looks for live sessions.
      t.after(async () => {
        await psql.exited;
        for (let j = 0; j < 100 && (await api('GetSession', { sessionId: id })).body.session.sessionStatus !== 'completed'; j++) await sleep(100);
      });
      return { psql, id };
    }
    await sleep(100);
  }
  throw new Error(`no live session ran ${marker}`);
}

/** Every statement of a session, as the API lists them. */
async function recordedStatements(id) {
  const { body } = await api('ListSessionStatements', { sessionId: id }, ADMIN_KEY, STATEMENTS_SERVICE);
  return body.statements || [];
}

/** The statements of a session once it has recorded `count`, `ready` holding for them if given. */
async function recorded(id, count, ready = () => true) {
  for (let i = 0; i < 600; i++) {
    const statements = await recordedStatements(id);
    if (statements.length >= count && ready(statements)) return statements;
    await sleep(100);
  }
  throw new Error(`session ${id} did not record ${count} statements`);
}

const shownStatements = (page) => page.$$eval('#detail .statements li', (items) => items.map((li) => li.querySelector('code').textContent));
const statementsTitle = (page) => page.textContent('#detail h3 >> nth=0');
/** The answers to the page's ListSessionStatements calls, with what each asked. */
function statementsCalls(page) {
  const calls = [];
  page.on('response', async (response) => {
    if (!response.url().endsWith(`/${STATEMENTS_SERVICE}/ListSessionStatements`)) return;
    calls.push({ asked: response.request().postDataJSON(), answer: await response.json() });
  });
  return calls;
}

test('a session of 10,000 statements opens on its first page; "Show more" adds the next, in order', async (t) => {
  const { psql, id } = await liveSession(t, 'browser-many');
  const lines = Array.from({ length: 10_000 }, (_, i) => `select ${i + 1};`);
  psql.child.stdin.write(`${lines.join('\n')}\n`);
  const all = await recorded(id, lines.length + 1);
  assert.deepEqual(all.slice(1).map((st) => st.text), lines);

  const page = await open(t, { path: `/?session=${id}` });
  const size = await statementsPage(page);
  assert.ok(all.length > 2 * size, `pages of ${size}: the session spans more than two`);
  const calls = statementsCalls(page);
  await signIn(page);
  await page.waitForSelector('#detail .statements code');
  assert.equal(await page.locator('#detail .statements li').count(), size, 'its first page, drawn');
  assert.deepEqual(await shownStatements(page), all.slice(0, size).map((st) => st.text));
  await until(() => calls.length === 1, 'the answer is in');
  assert.deepEqual(calls.map((c) => [c.asked.pageSize, c.asked.pageToken]), [[size, '']], 'one page asked for');
  const at = (n) => n.toLocaleString('en-US');
  assert.equal(await statementsTitle(page), `Statements (${at(size)} shown of at least ${at(size + 1)})`);
  await page.screenshot({ path: `${ARTIFACTS}detail-many-statements-1280.png` });
  await page.getByRole('button', { name: 'Show more statements' }).scrollIntoViewIfNeeded();
  await page.screenshot({ path: `${ARTIFACTS}detail-show-more-1280.png` });

  for (const pages of [2, 3]) {
    await page.getByRole('button', { name: 'Show more statements' }).click();
    await page.waitForFunction((n) => document.querySelectorAll('#detail .statements li').length >= n, pages * size);
    assert.deepEqual(await shownStatements(page), all.slice(0, pages * size).map((st) => st.text), 'no gap, no statement twice');
    assert.equal(await statementsTitle(page), `Statements (${at(pages * size)} shown of at least ${at(pages * size + 1)})`);
    assert.equal(await page.evaluate(() => [...document.querySelectorAll('#detail .statements li')].indexOf(document.activeElement)),
      (pages - 1) * size, 'focus on the first statement added');
  }
  await until(() => calls.length === 3, 'the answers are in');
  assert.equal(calls[1].asked.pageToken, calls[0].answer.nextPageToken, 'each page read on from the one before');
  assert.equal(calls[2].asked.pageToken, calls[1].answer.nextPageToken);
});

test('a live session read to its end gets its new statements from its last page, and a running one completed', async (t) => {
  // Another connection, straight to the database, holds a lock until the test lets it go
  // (or ends: this is killed first, so that the session waiting for it can end).
  const holder = spawn('psql', ['-X', '-q', 'host=127.0.0.1 port=5432 user=postgres dbname=postgres sslmode=disable'], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(() => holder.kill());
  let held = '';
  holder.stdout.on('data', (d) => { held += d; });
  holder.stdin.write('select pg_advisory_lock(424242);\n');
  const { psql, id } = await liveSession(t, 'browser-growing');
  const page = await open(t, { path: `/?session=${id}` });
  const size = await statementsPage(page);
  const lines = Array.from({ length: size + 30 }, (_, i) => `select ${i + 1};`);
  psql.child.stdin.write(`${lines.join('\n')}\n`);
  await recorded(id, lines.length + 1);
  const calls = statementsCalls(page);
  await signIn(page);
  await page.waitForSelector('#detail .statements code');
  await page.getByRole('button', { name: 'Show more statements' }).click();
  await page.waitForFunction((n) => document.querySelectorAll('#detail .statements li').length === n, lines.length + 1);
  assert.equal(await page.getByRole('button', { name: 'Show more statements' }).isVisible(), false, 'nothing more to show');
  assert.equal(await statementsTitle(page), `Statements (${lines.length + 1})`);
  await page.evaluate(() => { window.firstStatement = document.querySelector('#detail .statements li'); });
  await until(() => calls.length >= 2, 'the answers are in');
  const read = calls.length;

  // A statement that runs until another connection lets it go: the console sees it running.
  await until(() => held.includes('(1 row)'), 'the lock is held');
  const waiting = 'select pg_advisory_lock(424242);';
  psql.child.stdin.write(`select 'new 1';\nselect 'new 2';\n${waiting}\n`);
  await recorded(id, lines.length + 4, (statements) => statements.at(-1).status === 'running');
  await page.waitForSelector(`#detail .statements li.running:has(code:text-is("${waiting}"))`, { timeout: 20_000 });
  let all = await recordedStatements(id);
  assert.deepEqual(await shownStatements(page), all.map((st) => st.text), 'the new ones added, in order');

  holder.stdin.write('select pg_advisory_unlock(424242);\n');
  psql.child.stdin.write("select 'new 3';\n");
  all = await recorded(id, lines.length + 5);
  await page.waitForFunction((n) => document.querySelectorAll('#detail .statements li').length === n, all.length, { timeout: 20_000 });
  assert.deepEqual(await shownStatements(page), all.map((st) => st.text), 'the completed one in its place, once');
  const last = await page.$$eval('#detail .statements li', (items) => items.slice(-2).map((li) => li.className));
  assert.deepEqual(last, ['completed', 'completed']);
  assert.equal(await page.evaluate(() => window.firstStatement.isConnected), true, 'the statements shown stay');
  assert.equal(await statementsTitle(page), `Statements (${all.length})`);

  const refreshes = calls.slice(read);
  assert.ok(refreshes.length >= 2, 'refreshed');
  const lastToken = calls[read - 1].asked.pageToken;
  assert.ok(lastToken, 'the last page read has a token');
  for (const { asked, answer } of refreshes) {
    assert.deepEqual([asked.pageSize, asked.pageToken], [size, lastToken], 'read from the last page on, not from the first');
    assert.ok(answer.statements.length <= size);
  }
});

test('each statement says what it did: its time, rows sent and changed, bytes, its error, whether it runs', async (t) => {
  const page = await open(t, { path: LIVE });
  const statements = [
    statementAt(1, 'select 1', { rows: '1', bytesSent: '64', duration: '0.001500s' }),
    statementAt(2, 'select 1/0', { bytesSent: '90', sqlstate: '22012' }),
    statementAt(3, 'delete from t', { rowsChanged: '5000', bytesSent: '17', duration: '0.25s' }),
    statementAt(4, 'select pg_sleep(60)', { status: 'running', duration: '75s' }),
  ];
  await page.route('**/gatehouse.sessions.v1.StatementsService/ListSessionStatements', (route) =>
    route.fulfill({ contentType: 'application/json', body: JSON.stringify({ statements }) }));
  await signIn(page);
  await sessionButton(page, (await rowIds(page))[0]).click();
  await page.waitForSelector('#detail .statements .outcome');
  const shown = await page.$$eval('#detail .statements li', (items) => items.map((li) => [li.className, li.querySelector('.outcome').textContent]));
  assert.deepEqual(shown, [
    ['completed', '1.500 ms · 1 row · 64 bytes'],
    ['failed', '0.000 ms · 0 rows · 90 bytes · error 22012'],
    ['completed', '250.000 ms · 0 rows · 5000 rows changed · 17 bytes'],
    ['running', '1m 15s · 0 rows · 0 bytes · running'],
  ]);
  await page.screenshot({ path: `${ARTIFACTS}detail-statements-1280.png` });
});

test('a long statement is cut, with a button that shows all of it; the list says how many there are', async (t) => {
  const page = await open(t, { path: LIVE });
  const long = `select '${'x'.repeat(5000)}'`;
  const tall = Array.from({ length: 100 }, (_, i) => `select ${i}`).join('\n');
  const statements = [
    statementAt(1, long, { duration: '20.5s' }),
    statementAt(2, tall),
    statementAt(3, 'select 1'),
  ];
  await page.route('**/gatehouse.sessions.v1.StatementsService/ListSessionStatements', (route) =>
    route.fulfill({ contentType: 'application/json', body: JSON.stringify({ statements }) }));
  await signIn(page);
  await sessionButton(page, (await rowIds(page))[0]).click();
  await page.waitForSelector('#detail .statements code');
  const codes = () => page.$$eval('#detail .statements code', (items) => items.map((code) => code.textContent));
  const [first, second, third] = await codes();
  assert.equal(first.length, 2001, 'its first 2,000 characters and an ellipsis');
  assert.equal(second.split('\n').length, 25, 'its first 25 lines');
  assert.equal(third, 'select 1');
  assert.equal(await page.textContent('#detail h3 >> nth=0'), 'Statements (3)');
  const outcome = await page.textContent('#detail .statements li:first-child .outcome');
  assert.ok(outcome.startsWith('20.500 s'), outcome);
  await page.getByRole('button', { name: 'Show all 5,009 characters' }).click();
  assert.equal((await codes())[0], long);
  assert.equal(await page.getByRole('button', { name: /^Show all/ }).count(), 1, 'the other one stays cut');
});

test('an open session whose refresh fails says it is not up to date, and since when', async (t) => {
  const page = await open(t, { path: LIVE });
  await signIn(page);
  await sessionButton(page, (await rowIds(page))[0]).click();
  await page.waitForSelector('#detail .summary');
  assert.equal(await page.isVisible('#detail .stale'), false);
  let down = true;
  await page.route('**/core.v1.SessionsService/GetSession', (route) => (down
    ? route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ code: 'unavailable', message: 'down' }) })
    : route.continue()));
  await nextRefresh(page);
  await page.waitForSelector('#detail .stale:visible');
  assert.match(await page.textContent('#detail .stale'), /^Not up to date: no answer since .* \(unavailable\)\. This is the session as last seen/);
  assert.equal(await page.isVisible('#detail .summary'), true, 'what was shown stays');
  down = false;
  await page.waitForSelector('#detail .stale', { state: 'hidden', timeout: 20_000 });
});

test('a session that could not be shown for want of an answer is shown once the control plane answers', async (t) => {
  const page = await open(t);
  await signIn(page);
  let down = true;
  await page.route('**/core.v1.SessionsService/GetSession', (route) => (down ? route.abort('connectionrefused') : route.continue()));
  await sessionButton(page, (await rowIds(page))[0]).click();
  await page.waitForFunction(() => /cannot be shown/.test(document.getElementById('detail').textContent));
  // A retry that fails alike leaves the alert as it is: a screen reader says it once.
  await page.$eval('#detail [role=alert]', (alert) => { alert.dataset.first = 'yes'; });
  await nextRefresh(page);
  assert.equal(await page.locator('#detail [role=alert][data-first=yes]').count(), 1);
  // Found by a review: the panel kept saying so until the row was clicked again.
  down = false;
  await page.waitForSelector('#detail .summary', { timeout: 20_000 });
});

test('the page has one main landmark and one h1, signed in or not', async (t) => {
  const page = await open(t);
  await page.getByLabel('API key').waitFor();
  for (const signedIn of [false, true]) {
    if (signedIn) await signIn(page);
    else assert.equal(await page.getByRole('heading', { level: 1, name: 'Gatehouse', exact: true }).count(), 1);
    const snapshot = await page.locator('body').ariaSnapshot();
    assert.equal(snapshot.match(/^\s*- main\b/gm)?.length, 1, snapshot);
    assert.equal(snapshot.match(/^\s*- heading .*\[level=1\]/gm)?.length, 1, snapshot);
  }
  assert.equal(await page.getByRole('heading', { level: 1, name: 'Gatehouse Sessions', exact: true }).count(), 1);
  assert.equal(await page.getByRole('main').getByRole('table').count(), 1, 'the sessions are the main content');
});

test('buttons whose name says more than their text begin with that text (label in name)', async (t) => {
  const page = await open(t);
  await signIn(page);
  await page.waitForSelector('button.facet');
  const buttons = await page.locator('#rows button, button.facet').all();
  assert.ok(buttons.length > 50, 'the rows and the facet counts');
  const escaped = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  for (const button of buttons) {
    const text = (await button.innerText()).replace(/\s+/g, ' ').trim();
    assert.ok(text, 'a button shows some text');
    const named = button.and(page.getByRole('button', { name: new RegExp(`^${escaped(text)}`) }));
    assert.equal(await named.count(), 1, `named from "${text}": ${await button.getAttribute('aria-label')}`);
  }
  // What the name adds stays: where a row leads, what a facet does.
  const [id] = await rowIds(page);
  assert.equal(await sessionButton(page, id).count(), 1);
  const facet = page.locator('button.facet').first();
  assert.match(await facet.getAttribute('aria-label'), /^.+ [\d,]+ sessions?\. Add [\w.]+:".*" to the query$/);
});

test('facet counts have a contrast of 4.5:1 at least on whatever they sit on', async (t) => {
  const page = await open(t);
  await signIn(page);
  await page.waitForSelector('button.facet');
  const ratios = await page.$$eval('button.facet', (buttons) => {
    const rgba = (color) => {
      const [r, g, b, a = 1] = color.match(/[\d.]+/g).map(Number);
      return { rgb: [r, g, b], a };
    };
    // WCAG 2 relative luminance and contrast ratio.
    const luminance = (rgb) => {
      const [r, g, b] = rgb.map((v) => (v / 255 <= 0.03928 ? v / 255 / 12.92 : ((v / 255 + 0.055) / 1.055) ** 2.4));
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const contrast = (a, b) => {
      const [light, dark] = [luminance(a), luminance(b)].sort((x, y) => y - x);
      return (light + 0.05) / (dark + 0.05);
    };
    /** The color an element's box is painted on: its own background, else the nearest ancestor's. */
    const backgroundOf = (node) => {
      for (; node; node = node.parentElement) {
        const { rgb, a } = rgba(getComputedStyle(node).backgroundColor);
        if (a === 1) return rgb;
      }
      return [255, 255, 255];
    };
    return buttons.flatMap((button) => {
      const count = button.querySelector('.facet-count');
      const { rgb: color, a } = rgba(getComputedStyle(count).color);
      const text = count.getBoundingClientRect();
      const meter = button.querySelector('.meter').getBoundingClientRect();
      // The count sits on the meter as far as it reaches, on the list's background past it.
      const under = [];
      if (meter.right > text.left) under.push(['meter', backgroundOf(button.querySelector('.meter'))]);
      if (meter.right < text.right) under.push(['list', backgroundOf(button)]);
      return under.map(([on, background]) => ({ count: count.textContent, on, opaque: a === 1, ratio: contrast(color, background) }));
    });
  });
  assert.deepEqual(new Set(ratios.map((r) => r.on)), new Set(['meter', 'list']), 'counts on the meter and past it');
  for (const { count, opaque, ratio } of ratios) {
    assert.ok(opaque, `${count}: an opaque color`);
    assert.ok(ratio >= 4.5, `${count}: ${ratio.toFixed(2)}:1`);
  }
});

test('keyboard: slash focuses the query, Tab reaches the rows and Enter opens one', async (t) => {
  const page = await open(t);
  await signIn(page);
  await page.locator('body').click({ position: { x: 5, y: 400 } });
  await page.keyboard.press('/');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'query');
  await page.locator('#rows button').first().focus();
  await page.keyboard.press('Enter');
  await page.waitForSelector('#detail dl.fields dt');
  assert.equal(await page.isVisible('#detail'), true);
});

test('the skip link leads to the rows, and closing a session opened from there returns to its row', async (t) => {
  const page = await open(t);
  await signIn(page);
  await page.locator('.skip').focus();
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'sessions-table');
  assert.equal(new URL(page.url()).hash, '', 'the URL holds the view only');
  await page.keyboard.press('Tab');
  const id = await page.evaluate(() => document.activeElement.dataset.id);
  assert.equal(id, (await rowIds(page))[0]);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#detail dl.fields dt');
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !new URL(window.location.href).searchParams.has('session'));
  assert.equal(new URL(page.url()).hash, '');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.id), id, 'focus is back on the row');
});

test('at 390 px wide the views stay readable', async (t) => {
  const page = await open(t, { width: 390, height: 844, path: '/?range=7d' });
  await signIn(page);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no sideways scrolling: ${overflow}px`);
  await page.screenshot({ path: `${ARTIFACTS}sessions-390.png`, fullPage: false });
  await page.locator('#rows tr[data-id]').nth(4).scrollIntoViewIfNeeded();
  await page.screenshot({ path: `${ARTIFACTS}table-390.png` });
  const id = (await rowIds(page))[0];
  await sessionButton(page, id).click();
  await page.waitForSelector('#detail dl.fields dt');
  const panel = await boxOf(page.locator('#detail'));
  assert.ok(panel.width <= 390);
  await page.screenshot({ path: `${ARTIFACTS}detail-390.png` });
});

/** A finger moving from (x0, y0) to (x1, y1) on a touch screen. */
async function swipe(page, x0, y0, x1, y1) {
  const cdp = await page.context().newCDPSession(page);
  const at = (i) => [{ x: x0 + ((x1 - x0) * i) / 10, y: y0 + ((y1 - y0) * i) / 10 }];
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: at(0) });
  for (let i = 1; i <= 10; i++) await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: at(i) });
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  await cdp.detach();
}

test('on a phone a vertical swipe over the histogram scrolls; a tap picks a bar, a sideways drag a span', async (t) => {
  const page = await open(t, { width: 390, height: 844, path: '/?range=7d', phone: true });
  await signIn(page);
  const chart = page.locator('#histogram svg');
  let box = await boxOf(chart);
  const mark = await loadMark(page);
  await swipe(page, box.x + box.width / 2, box.y + box.height / 2, box.x + box.width / 2 + 1, box.y + box.height / 2 - 150);
  await page.waitForFunction(() => window.scrollY > 50);
  // A mouse pressed and moved up only picks nothing either.
  box = await boxOf(chart);
  await page.mouse.move(box.x + box.width / 2, box.y + box.height - 30);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width / 2 + 2, box.y + 20, { steps: 5 });
  await page.mouse.up();
  assert.equal(param(page, 'range'), '7d', 'the window stays');
  assert.equal(await loadMark(page), mark, 'nothing loaded');

  await page.evaluate(() => window.scrollTo(0, 0));
  box = await boxOf(chart);
  let next = await loadMark(page);
  await page.touchscreen.tap(box.x + box.width / 2, box.y + box.height / 2);
  await loaded(page, next);
  assert.equal(param(page, 'range'), 'custom');
  const bar = Date.parse(param(page, 'to')) - Date.parse(param(page, 'from'));
  assert.ok(bar <= 3 * 3600e3, `one bar: ${bar / 60e3} minutes`);

  next = await loadMark(page);
  await preset(page, '7d').click();
  await loaded(page, next);
  box = await boxOf(chart);
  next = await loadMark(page);
  await swipe(page, box.x + box.width * 0.2, box.y + box.height / 2, box.x + box.width * 0.6, box.y + box.height / 2);
  await loaded(page, next);
  const span = Date.parse(param(page, 'to')) - Date.parse(param(page, 'from'));
  assert.ok(span > 7 * 86400e3 * 0.3 && span < 7 * 86400e3 * 0.5, `about 40% of 7 days: ${span / 3600e3} h`);
});

test('on a phone the open session is modal: the page behind is inert and Tab stays in the panel', async (t) => {
  const page = await open(t, { width: 390, height: 844, phone: true });
  await signIn(page);
  const id = (await rowIds(page))[1];
  await sessionButton(page, id).click();
  await page.waitForSelector('#detail dl.fields dt');
  assert.equal(await page.evaluate(() => document.getElementById('console').inert), true);
  for (let i = 0; i < 6; i++) {
    await page.keyboard.press('Tab');
    const where = await page.evaluate(() => (document.activeElement.closest('#detail') ? 'detail'
      : document.activeElement === document.body ? 'body' : document.activeElement.outerHTML.slice(0, 80)));
    assert.ok(where === 'detail' || where === 'body', `Tab ${i + 1} reached ${where}`);
  }
  await page.keyboard.press('Escape');
  assert.equal(await page.evaluate(() => document.getElementById('console').inert), false);
  assert.equal(await page.evaluate(() => document.activeElement.dataset.id), id, 'focus returns to the row');
});

test('sign out forgets the key, not the view', async (t) => {
  const page = await open(t);
  await signIn(page);
  await sessionButton(page, (await rowIds(page))[1]).click();
  await page.waitForSelector('#detail .summary');
  const view = page.url();
  await page.getByRole('button', { name: 'Sign out' }).click();
  assert.equal(await page.isVisible('#signin'), true);
  assert.equal(await page.isVisible('#detail'), false);
  assert.equal(page.url(), view, 'the open session stays in the URL, for the next sign-in');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('gatehouse.apiKey')), null);
  assert.equal(await page.locator('#rows tr').count(), 0, 'no sessions left on the page');
  await page.reload();
  await page.waitForSelector('#signin-key');
  assert.equal(await page.isVisible('#console'), false);
  await page.screenshot({ path: `${ARTIFACTS}signin-1280.png` });
});

test('Back after signing out stays on the sign-in page and calls nothing', async (t) => {
  const page = await open(t);
  await signIn(page);
  const mark = await loadMark(page);
  await preset(page, '7d').click();
  await loaded(page, mark);
  await page.getByRole('button', { name: 'Sign out' }).click();
  const calls = [];
  page.on('request', (request) => { if (/\/(core|gatehouse)\./.test(new URL(request.url()).pathname)) calls.push(request.url()); });
  await page.goBack();
  await page.waitForFunction(() => !new URL(window.location.href).searchParams.has('range'));
  await sleep(500);
  assert.deepEqual(calls, [], 'no call without a key');
  assert.equal(await page.isVisible('#signin'), true);
  assert.equal(await page.textContent('#signin-error'), '');
  // Signed in again, the console shows the view the URL holds now.
  await signIn(page);
  assert.equal(await page.getAttribute('button[data-range="24h"]', 'aria-pressed'), 'true');
});

/** Runs the gatehouse CLI on the control plane's store; resolves to what it prints on stdout. */
async function gatehouse(...args) {
  const { stdout } = await promisify(execFile)(GATEHOUSE_BIN, args, { env: { ...process.env, RUST_LOG: 'warn' } });
  return stdout.trim();
}

test('a key refused while a session is open signs out, and the next sign-in is back in the same view', async (t) => {
  const key = await gatehouse('keys', 'create', '--org', 'default', '--role', 'reader', '--name', 'browser-revoked');
  const { prefix } = (await callerKey(key)).body;
  // A live session, then a page of 50 more: newest first, it leads page 2, which it keeps refreshing.
  const since = new Date().toISOString();
  const { id } = await liveSession(t, 'browser-refused-key');
  const query = 'resource.name:"browser-pg"';
  await shortSessions(50);
  const recorded = async () => (await api('ListSessionsV2', { query, startTimestamp: since, limit: 100 })).body.sessions || [];
  await until(async () => (await recorded()).length === 51, 'the short sessions are recorded');
  assert.equal((await recorded())[50].id, id);

  const page = await open(t, { path: `/?q=${encodeURIComponent(query)}&range=1h` });
  await signIn(page, key);
  const mark = await loadMark(page);
  await page.getByRole('button', { name: 'Next →' }).click();
  await loaded(page, mark);
  await sessionButton(page, id).click();
  await page.waitForSelector('#detail .summary');
  assert.equal(param(page, 'page'), '2');
  assert.equal(param(page, 'session'), id);
  const view = page.url();

  await gatehouse('keys', 'revoke', prefix, '--org', 'default');
  await page.waitForSelector('#signin', { timeout: 20_000 });
  assert.match(await page.textContent('#signin-error'), /^Signed out: the API key was refused/);
  assert.equal(page.url(), view, 'the URL keeps the whole view');

  const signedOut = await loadMark(page);
  await signIn(page, READER_KEY);
  await loaded(page, signedOut);
  await page.waitForSelector('#detail .summary');
  assert.equal(page.url(), view);
  assert.match(await page.textContent('#detail-title'), new RegExp(id), 'the same session open');
  assert.equal(await page.locator(`#rows tr.selected[data-id="${id}"]`).count(), 1, 'on the same page');
  assert.match(await page.textContent('#page-label'), /^Page 2 · sessions 51–/);
  assert.equal(await queryBox(page), query);
  assert.equal(await preset(page, '1h').getAttribute('aria-pressed'), 'true');
});
