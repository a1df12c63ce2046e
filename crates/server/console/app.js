// The console: wires the view (in the URL) to the API and the page's parts.

import { CALL_TIMEOUT_MS, apiKey, call, callerKey, keyProblem } from './api.js';
import { Detail } from './detail.js';
import { download, exportSessions } from './export.js';
import { renderFacets } from './facets.js';
import { el, formatCount, formatShortTime, printable, sessionCount, timeZoneLabel, unprintable } from './format.js';
import { Histogram } from './histogram.js';
import { markSelected, renderTable } from './table.js';
import { PAGE_SIZE, SORTS, addTerm, histogramInterval, listRequest, readView, viewSearch, windowEnd, windowOf } from './view.js';

/** Active sessions change on their own: their duration grows, they end. */
const REFRESH_MS = 5000;
/**
 * An auto-refresh asks for the facets again only once this many times their last answer's
 * time has passed: on a large store they take seconds (tens on SQLite at a million sessions),
 * and each holds one of the organization's two reads meanwhile, which every other console,
 * CLI and script of the organization waits on.
 */
const FACETS_BACKOFF = 5;
/** When the facets were last asked for, and how long their answer took (ms). */
const facetsCost = { at: 0, took: 0 };
const $ = (id) => document.getElementById(id);

let view = readView();
let listing = null;
let numHits = null;
/** The "now" the listing on screen was asked for: its cursors belong to the window anchored there. */
let anchor = Date.now();
/** Why the last load failed, when not for its query: the next tick retries (wantsRefresh). */
let failure = null;
let loads = 0;
/** The AbortController of the load under way: there is at most one. */
let current = null;
let exporting = null;
let refreshes = 0;
/**
 * A refresh's answers held back while the pointer is on the table (see holdingRefresh):
 * `{ seq, show }`, shown when the pointer leaves. The rows and the counts around them (hits,
 * histogram, facets, page label) wait together, so that they always describe the same answers.
 */
let heldRefresh = null;
/**
 * Whether the key's organization has any session at all, in any window: null until an empty
 * listing makes it worth asking. An empty organization's table says how to get sessions.
 */
let anySessions = null;
const NO_SESSIONS_YET = 'No sessions yet: connect through a connector (gatehouse connector) or run gatehouse seed.';

const histogram = new Histogram($('histogram'), {
  onSelect: (from, to) => restart({ range: 'custom', from: from.toISOString(), to: to.toISOString() }),
});
const detail = new Detail($('detail'), {
  // On a phone the panel covers these: they are inert while it is open there.
  behind: [$('console'), document.querySelector('.skip')],
  onClose: (id, returnFocus) => {
    if (window.history.state?.detail === id && view.session === id) {
      // Opening pushed an entry: closing goes back to the one before, so that
      // Back afterwards leaves the list rather than showing it twice.
      view = { ...view, session: '' };
      window.history.back();
    } else {
      setView({ session: '' });
    }
    markSelected($('rows'), '');
    if (returnFocus) $('rows').querySelector(`button[data-id="${CSS.escape(id)}"]`)?.focus();
  },
  onError: (err) => handleAuth(err),
});

// Between phone and desktop widths the open panel starts below the top region, which stays at
// the top of the window meanwhile (style.css): it is as tall as the controls wrap it to be.
new ResizeObserver(() => {
  document.documentElement.style.setProperty('--top-height', `${Math.ceil($('top').getBoundingClientRect().height)}px`);
}).observe($('top'));

// ---- the URL -------------------------------------------------------------

/**
 * Changes the view and the URL. `push` adds a history entry (Back undoes the
 * change); its `state` marks an entry that opened a session's detail.
 */
function setView(changes, push = false, state = null) {
  view = { ...view, ...changes };
  const url = viewSearch(view);
  if (push) window.history.pushState(state, '', url);
  // Replacing keeps the mark while the same session stays open.
  else window.history.replaceState(window.history.state?.detail === view.session ? window.history.state : null, '', url);
}

/** Query, window or sort changed: back to the first page. */
function restart(changes) {
  showRangeError('');
  const next = { ...view, cursor: '', at: '', page: 1, ...changes };
  // Applying the same search or window again reloads it, without a second Back step.
  setView(next, viewSearch(next) !== viewSearch(view));
  return load();
}

/** The view without the open session: what the table, histogram and facets show. */
const listingOf = (v) => viewSearch({ ...v, session: '' });

window.addEventListener('popstate', () => {
  const next = readView();
  // Back from a session's detail only closes it: the list on screen is the right one.
  const changed = listingOf(next) !== listingOf(view);
  view = next;
  showViewProblem();
  // Signed out, the sign-in page stays: the console shows this view once signed in.
  if ($('console').hidden) return;
  if (changed) load();
  syncDetail();
});

/** A link with a bad time was read as the default window (view.js): say so, and fix the URL. */
function showViewProblem() {
  if (!view.problem) return;
  showRangeError(view.problem);
  setView({ problem: '' });
}

// ---- loading -------------------------------------------------------------

/**
 * Loads the table, histogram and facets of the view. At most one load runs
 * at a time: an auto-refresh is skipped while one is under way (on a slow
 * control plane each refresh would otherwise supersede the last, so that no
 * answer ever lands), and a user's action aborts the older load, whose
 * answer would be for a view no longer asked for.
 */
async function load({ refresh = false } = {}) {
  if (refresh && current) return;
  current?.abort();
  const controller = new AbortController();
  current = controller;
  try {
    await loadView(++loads, controller.signal, refresh);
  } finally {
    if (current === controller) current = null;
  }
}

async function loadView(seq, signal, refresh) {
  const shown = view;
  if (!refresh) {
    // A refresh held back for the pointer belongs to the view being left.
    heldRefresh = null;
    showHeld();
    syncControls();
    showLoading();
  }
  // A new view draws each part as its answer lands. A refresh draws nothing until all its
  // answers are in, then every part at once (or once the pointer leaves the table): the rows
  // and the counts on screen never come from two different answers.
  const parts = [];
  const draw = refresh ? (part) => parts.push(part) : (part) => part();
  const now = Date.now();
  const win = windowOf(shown, now);
  // A refresh of an older page only updates its rows: counts change with new sessions only.
  // After a failure they may be missing, though.
  const aggregations = refresh && shown.cursor && !failure
    ? Promise.resolve(null)
    : loadAggregations(shown, win, now, seq, signal, refresh, draw);
  const listFailure = await loadListing(shown, win, now, seq, signal, refresh, draw);
  if (seq !== loads) return;
  draw(updatePager);
  const aggregationsFailure = await aggregations;
  if (seq !== loads) return;
  if (refresh) showRefresh(seq, () => parts.forEach((part) => part()));
  showFailure(listFailure, aggregationsFailure, refresh);
  document.body.dataset.loaded = String(seq);
}

/**
 * The table's rows, drawn by `draw` (loadView). Returns the error of a failure that is not the
 * query's, for showFailure.
 */
async function loadListing(shown, win, now, seq, signal, refresh, draw) {
  const request = listRequest(shown, win);
  if (shown.cursor) request.cursor = shown.cursor;
  try {
    const result = await call('ListSessionsV2', request, { signal });
    if ((result.sessions || []).length) anySessions = true;
    else if (!anySessions) anySessions = await hasAnySession(signal);
    if (seq !== loads) return null;
    draw(() => {
      listing = result;
      anchor = now;
      showQueryError('');
      $('window-label').textContent = windowLabel(shown);
      const empty = anySessions === false ? NO_SESSIONS_YET : undefined;
      renderTable($('rows'), result.sessions || [], { selected: detail.id, onOpen: openSession, empty });
    });
    return null;
  } catch (err) {
    if (seq !== loads || handleAuth(err)) return null;
    if (err.code === 'invalid_argument' && shown.cursor && /cursor/i.test(err.message)) {
      // A link's cursor from another query, window or server key: start over, and say so.
      showRangeError(`The link's page cannot be continued (${err.message}): showing the first page instead.`);
      setView({ cursor: '', at: '', page: 1 });
      load();
      return null;
    }
    const queryRefused = err.code === 'invalid_argument';
    // A failed refresh keeps the rows it would have replaced; a new view has none to keep.
    if (refresh && !queryRefused) return err;
    draw(() => {
      listing = null;
      showQueryError(queryRefused ? err.message : '');
      $('window-label').textContent = windowLabel(shown);
      const why = queryRefused ? 'Nothing to show: fix the query above.' : 'The sessions could not be loaded: see the message above.';
      $('rows').replaceChildren(el('tr', {}, el('td', { colspan: 8, class: 'empty', text: why })));
    });
    return queryRefused ? null : err;
  } finally {
    if (seq === loads) $('sessions-table').removeAttribute('aria-busy');
  }
}

/** Whether the organization has recorded any session, ever; null when that is not known. */
async function hasAnySession(signal) {
  try {
    const all = await call('ListSessionsV2', { limit: 1 }, { signal });
    return Boolean((all.sessions || []).length);
  } catch {
    return null;
  }
}

let pointerOnTable = false;

/**
 * True while the pointer is on the table: a refresh would move the rows
 * under it, and a click meant for the session seen there would open
 * another. Keyboard focus needs no hold: the focused row keeps focus by its
 * session (renderTable), so Enter opens the session it names.
 */
const holdingRefresh = () => pointerOnTable;

/** Shows a refresh's answers (`show` draws them all), or holds them while holdingRefresh. */
function showRefresh(seq, show) {
  heldRefresh = holdingRefresh() ? { seq, show } : null;
  if (!heldRefresh) show();
  showHeld();
}

/** The held refresh, when no load came after it: the pager's cursors are the rows' own. */
function showHeldRefresh() {
  const held = heldRefresh;
  heldRefresh = null;
  if (held && held.seq === loads && !current) held.show();
  showHeld();
}

/** Says that a refresh waits: the rows and counts shown are older than its answers. */
function showHeld() {
  $('rows-held').hidden = !heldRefresh;
}

// Tracked by events, not :hover, which a phone leaves on the row last tapped.
// A touch enters at touchstart and leaves after lifting, so a tap is covered too.
$('sessions-table').addEventListener('pointerenter', () => { pointerOnTable = true; });
$('sessions-table').addEventListener('pointerleave', () => {
  pointerOnTable = false;
  showHeldRefresh();
});

/**
 * Says what failed other than the query: the control plane is unreachable,
 * overloaded or failing. A failed refresh keeps the answers on screen; the
 * next tick retries either way (wantsRefresh).
 */
function showFailure(listFailure, aggregationsFailure, refresh) {
  failure = listFailure || aggregationsFailure;
  const shown = listFailure || (refresh ? aggregationsFailure : null);
  let text = '';
  if (shown) {
    const retry = $('live').checked ? 'Retrying every few seconds.' : 'Turn on Auto-refresh or search again to retry.';
    // Last answers to show: a refresh's failure after a load that failed has none.
    text = printable(refresh && listing !== null
      ? `Not up to date (${shown.code}): ${shown.message} Showing the last answers. ${retry}`
      : `The sessions could not be loaded (${shown.code}): ${shown.message} ${retry}`);
  }
  // Set only when it changes: a screen reader would read it out again at every retry.
  if ($('connection-note').textContent !== text) $('connection-note').textContent = text;
  // The note keeps its word through failed refreshes; it says the table works only when it does.
  if (refresh && aggregationsFailure) return;
  $('aggregations-note').textContent = aggregationsFailure && !listFailure
    ? printable(`The histogram and facet counts are unavailable (${aggregationsFailure.code}: ${aggregationsFailure.message}). `
      + 'The sessions table still works.')
    : '';
}

/**
 * A user's action started a load: until its answers land, the parts show
 * the previous answers faded, and the labels say that they are loading
 * rather than describe a window whose data is not on screen yet.
 */
function showLoading() {
  numHits = null;
  $('window-label').textContent = `${windowLabel(view)} · loading…`;
  $('hits').textContent = '· loading…';
  $('page-label').textContent = 'Loading…';
  // Their cursors belong to the previous answer.
  $('prev').disabled = true;
  $('next').disabled = true;
  for (const id of ['sessions-table', 'histogram', 'facets']) $(id).setAttribute('aria-busy', 'true');
}

/**
 * The histogram and facets, drawn by `draw` (loadView). Returns the first failure that is not
 * the query's, for showFailure.
 */
async function loadAggregations(shown, win, now, seq, signal, refresh, draw) {
  const base = {};
  if (shown.q.trim()) base.query = shown.q.trim();
  if (win.start) base.startTimestamp = win.start;
  const end = windowEnd(shown, win);
  if (end) base.endTimestamp = end;
  const histogramRequest = { ...base, mode: 'histogram', histogramGroupByFields: ['technology'] };
  // A window open at its start reaches back to the first session, which only the control
  // plane knows: it sizes those bars itself.
  if (win.start) histogramRequest.histogramInterval = histogramInterval((end ? Date.parse(end) : now) - Date.parse(win.start));
  // Two calls, so the histogram (cheap) draws without waiting for the facets.
  const histogramCall = call('ListSessionAggregations', histogramRequest, { signal });
  // Timers drift: a floor of REFRESH_MS would skip fast facets on every other tick.
  const facetsDue = !refresh || failure || now - facetsCost.at >= FACETS_BACKOFF * facetsCost.took;
  const facetsCall = facetsDue ? timedFacets({ ...base, mode: 'facets' }, signal) : null;
  // Awaited only after the histogram: a failure that comes first must not
  // count as unhandled in the meantime (it is handled below).
  facetsCall?.catch(() => {});
  let failed = null;
  /** A failed refresh keeps what is on screen; a new view's counts cannot be shown. */
  const fail = (err, clear) => {
    // An aborted (superseded) load must not wipe what the newer one shows.
    if (seq !== loads || handleAuth(err)) return;
    if (!refresh) clear();
    if (err.code !== 'invalid_argument') failed ??= err;
  };
  try {
    const result = await histogramCall;
    if (seq !== loads) return null;
    draw(() => {
      numHits = Number(result.numHits || 0);
      $('hits').textContent = `· ${formatCount(numHits)} matching`;
      histogram.show((result.aggregations || {}).logsOverTime || []);
    });
  } catch (err) {
    fail(err, () => {
      numHits = null;
      $('hits').textContent = '';
      histogram.show([]);
    });
  } finally {
    if (seq === loads) $('histogram').removeAttribute('aria-busy');
  }
  if (seq !== loads) return null;
  draw(updatePager);
  // Not due: the counts on screen stay until they are.
  if (!facetsCall) return failed;
  try {
    const result = await facetsCall;
    if (seq !== loads) return null;
    draw(() => renderFacets($('facets'), result.aggregations || {}, (field, value) => restart({ q: addTerm(queryText(), field, value) })));
  } catch (err) {
    fail(err, () => $('facets').replaceChildren(el('p', { class: 'muted', text: 'Facet counts are unavailable.' })));
  } finally {
    if (seq === loads) $('facets').removeAttribute('aria-busy');
  }
  return failed;
}

/** The facets call, its cost kept in facetsCost for the refreshes after it. */
async function timedFacets(request, signal) {
  const at = Date.now();
  facetsCost.at = at;
  const result = await call('ListSessionAggregations', request, { signal });
  facetsCost.took = Date.now() - at;
  return result;
}

/** Called when an answer lands: the label describes the rows on screen. */
function updatePager() {
  const meta = (listing && listing.listMetadata) || {};
  const count = listing ? (listing.sessions || []).length : 0;
  $('prev').disabled = !meta.before || view.page <= 1;
  $('next').disabled = !meta.nextCursor;
  const first = (view.page - 1) * PAGE_SIZE + 1;
  const of = numHits !== null ? ` of ${formatCount(numHits)}` : '';
  let label = '';
  if (count) label = `Page ${view.page} · sessions ${formatCount(first)}–${formatCount(first + count - 1)}${of}`;
  else if (listing) label = view.page > 1 ? `Page ${view.page} · no more sessions` : 'No sessions';
  $('page-label').textContent = label;
}

function showQueryError(message) {
  // The server's message quotes the query, which may hold bidirectional controls.
  $('query-error').textContent = printable(message);
  $('query').setAttribute('aria-invalid', message ? 'true' : 'false');
}

// ---- controls ------------------------------------------------------------

function localInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** The inputs show the view asked for; the labels wait for its answers (see showLoading). */
function syncControls() {
  $('query').value = printable(view.q);
  pressPreset(view.range);
  $('custom-range').hidden = view.range !== 'custom';
  if (view.range === 'custom') {
    $('custom-from').value = localInput(view.from);
    $('custom-to').value = localInput(view.to);
  }
  $('sort').value = view.sort;
}

function pressPreset(range) {
  for (const button of document.querySelectorAll('.presets button')) {
    button.setAttribute('aria-pressed', button.dataset.range === range ? 'true' : 'false');
  }
}

/** The window of a view in words; from/to are valid (view.js checks them). */
function windowLabel(v) {
  // A preset pinned by paging ends when the first page was loaded: said once that is not just now
  // (a link opened later).
  const pinned = v.at ? Date.parse(v.at) : NaN;
  if (v.range !== 'custom' && Date.now() - pinned > 60e3) return `in the ${v.range} before ${formatShortTime(new Date(pinned))}`;
  if (v.range !== 'custom') return `in the last ${v.range}`;
  return `from ${v.from ? formatShortTime(new Date(v.from)) : 'the beginning'} to ${v.to ? formatShortTime(new Date(v.to)) : 'now'}`;
}

/** A custom range the form cannot take: said beside its fields, which are marked. */
function showRangeError(message, fields = []) {
  // A link's problem quotes the link, which may hold bidirectional controls.
  $('range-error').textContent = printable(message);
  for (const id of ['custom-from', 'custom-to']) $(id).setAttribute('aria-invalid', fields.includes(id) ? 'true' : 'false');
}

$('sort').append(...SORTS.map(([value, label]) => el('option', { value, text: label })));
$('sort').addEventListener('change', (event) => restart({ sort: event.target.value }));

$('search').addEventListener('submit', (event) => {
  event.preventDefault();
  restart({ q: queryText() });
});

/**
 * The query in the search box, submitted or not. The box shows control and
 * bidirectional characters escaped (syncControls): read back, they match.
 */
const queryText = () => unprintable($('query').value);

for (const button of document.querySelectorAll('.presets button')) {
  button.addEventListener('click', () => {
    if (button.dataset.range !== 'custom') {
      restart({ range: button.dataset.range, from: '', to: '' });
      return;
    }
    const win = windowOf(view);
    // The form is what is chosen now, though the table keeps its window until Apply.
    pressPreset('custom');
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
  if (Number.isNaN(from.getTime())) {
    showRangeError('The custom range needs a start: a date and time.', ['custom-from']);
    return;
  }
  if (to && Number.isNaN(to.getTime())) {
    showRangeError('The end of the custom range is not a date and time.', ['custom-to']);
    return;
  }
  if (to && to <= from) {
    showRangeError('The custom range needs a start before its end.', ['custom-from', 'custom-to']);
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
  // Cursors are bound to their window: pin a preset's "now" while paging, the one
  // the rows on screen were listed at (a refresh under way may have asked at a later one).
  const at = view.at || new Date(anchor).toISOString();
  setView({ cursor: next, page: view.page + 1, at }, true);
  load().then(() => $('sessions-table').focus({ preventScroll: true }));
});

/**
 * Opens a session's detail with a history entry of its own, so that Back
 * closes it. Switching from one opened this way to another replaces the
 * entry: Back then returns to the list, not through every session seen.
 */
function openSession(id) {
  if (id !== view.session) {
    const switching = Boolean(view.session) && window.history.state?.detail === view.session;
    if (switching) {
      view = { ...view, session: id };
      window.history.replaceState({ detail: id }, '', viewSearch(view));
    } else {
      setView({ session: id }, true, { detail: id });
    }
  }
  markSelected($('rows'), id);
  detail.open(id);
}

function syncDetail() {
  if (view.session && view.session !== detail.id) {
    markSelected($('rows'), view.session);
    detail.open(view.session);
  } else if (!view.session && detail.isOpen) {
    detail.close();
  }
}

document.addEventListener('keydown', (event) => {
  const typing = event.target.closest('input, textarea, select, [contenteditable]');
  if (event.key === '/' && !typing && !$('console').hidden) {
    event.preventDefault();
    $('query').focus();
  } else if (event.key === 'Escape' && detail.isOpen && !$('confirm-terminate').open) {
    // In the search box Escape would also clear the typed query (type=search): it only closes.
    if (event.target === $('query')) event.preventDefault();
    detail.close();
  }
});

/**
 * The skip link moves focus without putting #sessions-table in the URL: the
 * URL holds the view alone, and going Back to such an entry (closing a
 * session does) would move focus to the table, not to the row that opened it.
 */
document.querySelector('.skip').addEventListener('click', (event) => {
  event.preventDefault();
  $('sessions-table').focus();
});

// ---- live refresh --------------------------------------------------------

/** True while the user selects text in the table or the detail: a refresh would redraw it away. */
function selecting() {
  const selection = document.getSelection();
  if (!selection || selection.isCollapsed || !selection.rangeCount) return false;
  const range = selection.getRangeAt(0);
  return [$('detail'), $('sessions-table')].some((part) => range.intersectsNode(part));
}

function wantsRefresh() {
  if (!$('live').checked || document.hidden || exporting || $('console').hidden) return false;
  // A load under way (see load()), a drag across the histogram, a selection: wait for the next tick.
  if (current || histogram.dragging || selecting()) return false;
  // A failed load is retried (showFailure says so).
  if (failure) return true;
  const firstLivePage = view.range !== 'custom' && !view.cursor;
  const hasActive = (listing?.sessions || []).some((s) => s.sessionStatus === 'active');
  return firstLivePage || hasActive || detail.wantsRefresh();
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
  const win = windowOf(view);
  const request = listRequest(view, { ...win, end: windowEnd(view, win) });
  const status = $('export-status');
  exporting = new AbortController();
  $('export').textContent = 'Cancel export';
  try {
    const { blob, total } = await exportSessions(request, format, {
      signal: exporting.signal,
      progress: (n, { waiting = false } = {}) => {
        status.textContent = waiting
          ? `Exporting… ${sessionCount(n)}; the control plane has not answered for ${CALL_TIMEOUT_MS / 1000} s, still waiting`
          : `Exporting… ${sessionCount(n)}`;
      },
    });
    const name = `gatehouse-sessions-${new Date().toISOString().replace(/[:.]/g, '-')}.${format}`;
    download(blob, name);
    status.textContent = `Exported ${sessionCount(total)} to ${name}.`;
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
  learnKey(apiKey.get());
  load();
  syncDetail();
}

/**
 * Asks once per sign-in (and page load) which key this is (api.js): the top bar
 * shows its organization and role, and a reader is never offered Terminate. Not
 * known (the control plane not answering) counts as "may terminate": an admin
 * is not locked out, and a reader's refused termination still turns Terminate
 * off (detail.js). The answer is kept for its key: one that comes after the key
 * changed does not apply to the new one.
 */
async function learnKey(key) {
  const caller = await callerKey(key);
  if (!caller || key !== apiKey.get()) return;
  if (caller.role === 'reader') detail.knowReader(key);
  const name = caller.name ? ` "${caller.name}"` : '';
  $('caller').replaceChildren(el('strong', { text: caller.organization }), el('span', { text: ` · ${caller.role} key ${caller.prefix}` }));
  $('caller').title = printable(`Signed in to ${caller.organization} with the ${caller.role} API key${name} (gh_${caller.prefix}_…)`);
  $('caller').hidden = false;
}

function signOut(message = '') {
  apiKey.clear();
  // A load still under way for this key must not write to the page: abort it and mark it stale.
  current?.abort();
  loads += 1;
  failure = null;
  $('connection-note').textContent = '';
  exporting?.abort();
  // The view stays in the URL as it is, its open session too: the next sign-in (with a key
  // that replaces one refused or expired, say) shows it where it was.
  detail.hide();
  listing = null;
  numHits = null;
  heldRefresh = null;
  anySessions = null;
  $('caller').hidden = true;
  $('caller').replaceChildren();
  showHeld();
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
  // The field is required, but spaces fill it.
  if (!key) {
    $('signin-error').textContent = 'Enter an API key: this one is only spaces.';
    return;
  }
  // Not sent at all (no header can carry it): a typing or pasting problem, not a refusal.
  const problem = keyProblem(key);
  if (problem) {
    $('signin-error').textContent = `This is not an API key's format, so it was not sent: ${problem}`;
    return;
  }
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
  // The sign-in form is gone: without this, focus would be nowhere and Tab
  // would start after it. A session in the URL has its detail focused already.
  if (!detail.isOpen) $('query').focus();
});

// Times in the table, histogram and labels are the browser's local time: say which.
$('time-zone').textContent = `Times in ${timeZoneLabel()}`;
showViewProblem();

// On a phone the facets would push the table a screen down: start them folded.
if (window.matchMedia('(max-width: 640px)').matches) $('facets-details').open = false;

if (apiKey.get()) showConsole();
else signOut();
