// The console: wires the view (in the URL) to the API and the page's parts.

import { apiKey, call } from './api.js';
import { Detail } from './detail.js';
import { download, exportSessions } from './export.js';
import { renderFacets } from './facets.js';
import { el, formatCount, formatShortTime } from './format.js';
import { Histogram } from './histogram.js';
import { markSelected, renderTable } from './table.js';
import { PAGE_SIZE, SORTS, addTerm, histogramInterval, listRequest, readView, viewSearch, windowOf } from './view.js';

/** Active sessions change on their own: their duration grows, they end. */
const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);

let view = readView();
let listing = null;
let numHits = null;
let anchor = Date.now();
let loads = 0;
let exporting = null;
let refreshes = 0;

const histogram = new Histogram($('histogram'), {
  onSelect: (from, to) => restart({ range: 'custom', from: from.toISOString(), to: to.toISOString() }),
});
const detail = new Detail($('detail'), {
  onClose: (id) => {
    setView({ session: '' });
    markSelected($('rows'), '');
    $('rows').querySelector(`button[data-id="${CSS.escape(id)}"]`)?.focus();
  },
  onError: (err) => handleAuth(err),
});

// ---- the URL -------------------------------------------------------------

function setView(changes, push = false) {
  view = { ...view, ...changes };
  const url = viewSearch(view);
  if (push) window.history.pushState(null, '', url);
  else window.history.replaceState(null, '', url);
}

/** Query, window or sort changed: back to the first page. */
function restart(changes) {
  setView({ cursor: '', at: '', page: 1, ...changes }, true);
  return load();
}

window.addEventListener('popstate', () => {
  view = readView();
  load();
  syncDetail();
});

// ---- loading -------------------------------------------------------------

async function load({ refresh = false } = {}) {
  const seq = ++loads;
  if (!refresh) syncControls();
  anchor = Date.now();
  const win = windowOf(view, anchor);
  const request = listRequest(view, win);
  if (view.cursor) request.cursor = view.cursor;
  // A refresh of an older page only updates its rows: counts change with new sessions only.
  const aggregations = refresh && view.cursor ? null : loadAggregations(win, seq);
  $('sessions-table').setAttribute('aria-busy', 'true');
  try {
    const result = await call('ListSessionsV2', request);
    if (seq !== loads) return;
    listing = result;
    showQueryError('');
    renderTable($('rows'), result.sessions || [], { selected: detail.id, onOpen: openSession });
  } catch (err) {
    if (seq !== loads || handleAuth(err)) return;
    if (err.code === 'invalid_argument' && view.cursor && /cursor/i.test(err.message)) {
      // A cursor from another query, window or server key: start over rather than fail.
      setView({ cursor: '', at: '', page: 1 });
      load();
      return;
    }
    listing = null;
    showQueryError(err.code === 'invalid_argument' ? err.message : `The sessions could not be loaded (${err.code}): ${err.message}`);
    $('rows').replaceChildren(el('tr', {}, el('td', { colspan: 8, class: 'empty', text: 'Nothing to show: fix the query above.' })));
  } finally {
    if (seq === loads) $('sessions-table').removeAttribute('aria-busy');
  }
  updatePager();
  if (aggregations) await aggregations;
  if (seq === loads) document.body.dataset.loaded = String(seq);
}

async function loadAggregations(win, seq) {
  const end = win.end ? Date.parse(win.end) : anchor;
  const start = win.start ? Date.parse(win.start) : end - 30 * 86400e3;
  const base = {};
  if (view.q.trim()) base.query = view.q.trim();
  if (win.start) base.startTimestamp = win.start;
  if (win.end) base.endTimestamp = win.end;
  // Two calls, so the histogram (cheap) draws without waiting for the facets.
  const histogramCall = call('ListSessionAggregations', {
    ...base,
    mode: 'histogram',
    histogramInterval: histogramInterval(end - start),
    histogramGroupByFields: ['technology'],
  });
  const facetsCall = call('ListSessionAggregations', { ...base, mode: 'facets' });
  // Awaited only after the histogram: a failure that comes first must not
  // count as unhandled in the meantime (it is handled below).
  facetsCall.catch(() => {});
  const failed = (err) => {
    if (seq !== loads || handleAuth(err)) return;
    // The table does not depend on aggregations: say so and carry on.
    $('aggregations-note').textContent = err.code === 'invalid_argument'
      ? ''
      : `The histogram and facet counts are unavailable (${err.code}: ${err.message}). The sessions table still works.`;
  };
  try {
    const result = await histogramCall;
    if (seq !== loads) return;
    numHits = Number(result.numHits || 0);
    $('hits').textContent = `· ${formatCount(numHits)} matching`;
    $('aggregations-note').textContent = '';
    histogram.show((result.aggregations || {}).logsOverTime || []);
  } catch (err) {
    numHits = null;
    $('hits').textContent = '';
    histogram.show([]);
    failed(err);
  }
  updatePager();
  try {
    const result = await facetsCall;
    if (seq !== loads) return;
    renderFacets($('facets'), result.aggregations || {}, (field, value) => {
      const q = addTerm(view.q, field, value);
      $('query').value = q;
      restart({ q });
    });
  } catch (err) {
    if (seq === loads) $('facets').replaceChildren(el('p', { class: 'muted', text: 'Facet counts are unavailable.' }));
    failed(err);
  }
}

function updatePager() {
  const meta = (listing && listing.listMetadata) || {};
  const count = listing ? (listing.sessions || []).length : 0;
  $('prev').disabled = !meta.before || view.page <= 1;
  $('next').disabled = !meta.nextCursor;
  const first = (view.page - 1) * PAGE_SIZE + 1;
  const range = count ? `sessions ${formatCount(first)}–${formatCount(first + count - 1)}` : 'no sessions';
  const of = numHits !== null ? ` of ${formatCount(numHits)}` : '';
  $('page-label').textContent = `Page ${view.page} · ${range}${of}`;
}

function showQueryError(message) {
  $('query-error').textContent = message;
  $('query').setAttribute('aria-invalid', message ? 'true' : 'false');
}

// ---- controls ------------------------------------------------------------

function localInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function syncControls() {
  $('query').value = view.q;
  for (const button of document.querySelectorAll('.presets button')) {
    button.setAttribute('aria-pressed', button.dataset.range === view.range ? 'true' : 'false');
  }
  $('custom-range').hidden = view.range !== 'custom';
  if (view.range === 'custom') {
    $('custom-from').value = localInput(view.from);
    $('custom-to').value = localInput(view.to);
  }
  $('sort').value = view.sort;
  const label = view.range === 'custom'
    ? `from ${view.from ? formatShortTime(new Date(view.from)) : 'the beginning'} to ${view.to ? formatShortTime(new Date(view.to)) : 'now'}`
    : `in the last ${view.range}`;
  $('window-label').textContent = label;
}

$('sort').append(...SORTS.map(([value, label]) => el('option', { value, text: label })));
$('sort').addEventListener('change', (event) => restart({ sort: event.target.value }));

$('search').addEventListener('submit', (event) => {
  event.preventDefault();
  restart({ q: $('query').value });
});

for (const button of document.querySelectorAll('.presets button')) {
  button.addEventListener('click', () => {
    if (button.dataset.range !== 'custom') {
      restart({ range: button.dataset.range, from: '', to: '' });
      return;
    }
    const win = windowOf(view);
    $('custom-range').hidden = false;
    $('custom-from').value = localInput(win.start);
    $('custom-to').value = localInput(win.end || new Date().toISOString());
    $('custom-from').focus();
  });
}

$('custom-range').addEventListener('submit', (event) => {
  event.preventDefault();
  const from = new Date($('custom-from').value);
  const to = $('custom-to').value ? new Date($('custom-to').value) : null;
  if (Number.isNaN(from.getTime()) || (to && (Number.isNaN(to.getTime()) || to <= from))) {
    showQueryError('The custom range needs a start before its end.');
    return;
  }
  restart({ range: 'custom', from: from.toISOString(), to: to ? to.toISOString() : '' });
});

$('prev').addEventListener('click', () => {
  const before = listing?.listMetadata?.before;
  if (!before) return;
  // Page 1 is the live first page, not a cursor pinned in time.
  if (view.page <= 2) setView({ cursor: '', at: '', page: 1 }, true);
  else setView({ cursor: before, page: view.page - 1 }, true);
  load().then(() => $('sessions-table').focus({ preventScroll: true }));
});

$('next').addEventListener('click', () => {
  const next = listing?.listMetadata?.nextCursor;
  if (!next) return;
  // Cursors are bound to their window: pin a preset's "now" while paging.
  const at = view.at || new Date(anchor).toISOString();
  setView({ cursor: next, page: view.page + 1, at }, true);
  load().then(() => $('sessions-table').focus({ preventScroll: true }));
});

function openSession(id) {
  setView({ session: id });
  markSelected($('rows'), id);
  detail.open(id);
}

function syncDetail() {
  if (view.session && view.session !== detail.id) detail.open(view.session);
  else if (!view.session && detail.isOpen) detail.close();
}

document.addEventListener('keydown', (event) => {
  const typing = event.target.closest('input, textarea, select, [contenteditable]');
  if (event.key === '/' && !typing && !$('console').hidden) {
    event.preventDefault();
    $('query').focus();
  } else if (event.key === 'Escape' && detail.isOpen && !$('confirm-terminate').open) {
    detail.close();
  }
});

// ---- live refresh --------------------------------------------------------

function wantsRefresh() {
  if (!$('live').checked || document.hidden || exporting || $('console').hidden) return false;
  const firstLivePage = view.range !== 'custom' && !view.cursor;
  const hasActive = (listing?.sessions || []).some((s) => s.sessionStatus === 'active');
  return firstLivePage || hasActive || (detail.session && detail.session.sessionStatus === 'active');
}

setInterval(async () => {
  if (!wantsRefresh()) return;
  await Promise.all([load({ refresh: true }), detail.refresh()]);
  document.body.dataset.refreshes = String(++refreshes);
}, REFRESH_MS);

// ---- export --------------------------------------------------------------

$('export').addEventListener('click', async () => {
  if (exporting) {
    exporting.abort();
    return;
  }
  const format = $('export-format').value;
  const request = listRequest(view, windowOf(view));
  const status = $('export-status');
  exporting = new AbortController();
  $('export').textContent = 'Cancel export';
  try {
    const { blob, total } = await exportSessions(request, format, {
      signal: exporting.signal,
      progress: (n) => { status.textContent = `Exporting… ${formatCount(n)} sessions`; },
    });
    const name = `gatehouse-sessions-${new Date().toISOString().replace(/[:.]/g, '-')}.${format}`;
    download(blob, name);
    status.textContent = `Exported ${formatCount(total)} sessions to ${name}.`;
  } catch (err) {
    status.textContent = err.name === 'AbortError' ? 'Export cancelled.' : `Export failed (${err.code}): ${err.message}`;
    handleAuth(err);
  } finally {
    exporting = null;
    $('export').textContent = 'Export';
  }
});

// ---- signing in and out --------------------------------------------------

function handleAuth(err) {
  if (err && err.code === 'unauthenticated') {
    signOut(`Signed out: the API key was refused (${err.message}).`);
    return true;
  }
  return false;
}

function showConsole() {
  $('signin').hidden = true;
  $('console').hidden = false;
  load();
  syncDetail();
}

function signOut(message = '') {
  apiKey.clear();
  exporting?.abort();
  detail.close();
  listing = null;
  numHits = null;
  $('rows').replaceChildren();
  $('facets').replaceChildren();
  histogram.show([]);
  $('console').hidden = true;
  $('signin').hidden = false;
  $('signin-key').value = '';
  $('signin-error').textContent = message;
  $('signin-key').focus();
}

$('signout').addEventListener('click', () => signOut());

$('signin-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const key = $('signin-key').value.trim();
  $('signin-error').textContent = '';
  try {
    await call('ListSessionsV2', { limit: 1 }, { key });
  } catch (err) {
    $('signin-error').textContent = err.code === 'unauthenticated'
      ? `This key was not accepted: ${err.message}`
      : `Cannot sign in (${err.code}): ${err.message}`;
    return;
  }
  apiKey.set(key);
  $('signin-key').value = '';
  showConsole();
});

// On a phone the facets would push the table a screen down: start them folded.
if (window.matchMedia('(max-width: 640px)').matches) $('facets-details').open = false;

if (apiKey.get()) showConsole();
else signOut();
