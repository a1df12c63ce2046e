// The view: query, window, sort, page cursor and open session. It lives in
// the URL's query string, so a view can be shared and survives a reload.

import { spanMillis } from './format.js';

export const PRESETS = ['15m', '1h', '24h', '7d', '30d'];
export const SORTS = [
  ['start_time:desc', 'Newest first'],
  ['start_time:asc', 'Oldest first'],
  ['end_time:desc', 'Ended last'],
  ['end_time:asc', 'Ended first'],
  ['duration:desc', 'Longest first'],
  ['duration:asc', 'Shortest first'],
];
export const PAGE_SIZE = 50;

const DEFAULTS = { q: '', range: '24h', from: '', to: '', at: '', sort: 'start_time:desc', cursor: '', page: 1, session: '' };

/**
 * The view in a URL. A link can hold anything, so times are checked here:
 * a bad one falls back to the default window, and `view.problem` says what
 * was dropped (it is not part of the URL).
 */
export function readView(search = window.location.search) {
  const params = new URLSearchParams(search);
  const view = { ...DEFAULTS, problem: '' };
  for (const name of Object.keys(DEFAULTS)) {
    if (params.has(name)) view[name] = params.get(name);
  }
  view.page = Math.max(1, Number.parseInt(view.page, 10) || 1);
  // A page's cursor is bound to its window and sort: either replaced, the view starts over.
  const problems = [];
  if (view.range !== 'custom' && !PRESETS.includes(view.range)) {
    problems.push(`The link's ${shown(view, 'range')} is not a window (${PRESETS.join(', ')} or custom): showing the last ${DEFAULTS.range} instead.`);
    Object.assign(view, { range: DEFAULTS.range, at: '', cursor: '' });
  }
  if (!SORTS.some(([value]) => value === view.sort)) {
    problems.push(`The link's ${shown(view, 'sort')} is not a sort order: showing the newest first instead.`);
    Object.assign(view, { sort: DEFAULTS.sort, at: '', cursor: '' });
  }
  checkWindow(view);
  view.problem = [...problems, view.problem].filter(Boolean).join(' ');
  if (!view.cursor) view.page = 1;
  return view;
}

/** A parameter of the link as it was, cut short if long. */
function shown(view, name) {
  return `${name}=${view[name].length > 40 ? `${view[name].slice(0, 40)}…` : view[name]}`;
}

/** An instant as the API takes it (RFC 3339, UTC), or null for text that is not a date and time. */
export function parseInstant(text) {
  // Date.parse alone also takes "1" or "May 5": only ISO 8601 dates, with or without time and zone.
  if (!/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?$/i.test(text)) return null;
  const millis = Date.parse(text);
  return Number.isNaN(millis) ? null : new Date(millis).toISOString();
}

function checkWindow(view) {
  // `at` pins a preset's "now" while paging; the page's cursor is bound to it.
  if (view.at) {
    const at = parseInstant(view.at);
    if (at) {
      view.at = at;
    } else {
      view.problem = `The link's ${shown(view, 'at')} is not a date and time: showing the first page instead.`;
      view.at = '';
      view.cursor = '';
    }
  }
  if (view.range !== 'custom') {
    view.from = '';
    view.to = '';
    return;
  }
  const from = view.from ? parseInstant(view.from) : '';
  const to = view.to ? parseInstant(view.to) : '';
  let bad = '';
  if (from === null) bad = `${shown(view, 'from')} is not a date and time`;
  else if (to === null) bad = `${shown(view, 'to')} is not a date and time`;
  else if (from && to && Date.parse(to) <= Date.parse(from)) bad = 'custom window ends before it starts';
  if (!bad) {
    view.from = from;
    view.to = to;
    return;
  }
  view.problem = `The link's ${bad}: showing the last ${DEFAULTS.range} instead.`;
  Object.assign(view, { range: DEFAULTS.range, from: '', to: '', at: '', cursor: '' });
}

export function viewSearch(view) {
  const params = new URLSearchParams();
  for (const [name, fallback] of Object.entries(DEFAULTS)) {
    const value = view[name];
    if (value !== undefined && value !== '' && String(value) !== String(fallback)) params.set(name, value);
  }
  const text = params.toString();
  return text ? `?${text}` : window.location.pathname;
}

/**
 * The window as the API takes it. A preset is anchored at `at` once the view
 * pages (cursors are bound to the window they came from), else at `now`; its
 * end stays open so that active sessions are included.
 */
export function windowOf(view, now = Date.now()) {
  if (view.range === 'custom') return { start: view.from || '', end: view.to || '' };
  const anchor = view.at ? Date.parse(view.at) : now;
  return { start: new Date(anchor - spanMillis(view.range)).toISOString(), end: '' };
}

/**
 * Where the view's sessions end, as the API takes it: a window's own end, else, on pages after
 * the first, the time paging began (`at`): those pages walk the sessions as they were then, so
 * their counts and their export leave out sessions started since, which they never list.
 */
export function windowEnd(view, window) {
  if (window.end) return window.end;
  return view.cursor && view.at && (!window.start || window.start <= view.at) ? view.at : '';
}

/** The listing request for a view, without its cursor. */
export function listRequest(view, window, limit = PAGE_SIZE) {
  const request = { limit, sortBy: view.sort };
  if (view.q.trim()) request.query = view.q.trim();
  if (window.start) request.startTimestamp = window.start;
  if (window.end) request.endTimestamp = window.end;
  return request;
}

/**
 * A histogram interval giving at most about 100 buckets over `millis`: past
 * a year's, whole years (a custom window from year 0202, a typo, still draws).
 */
export function histogramInterval(millis) {
  const steps = ['1m', '5m', '15m', '30m', '1h', '3h', '6h', '12h', '1d', '7d', '30d', '90d', '365d'];
  return steps.find((step) => millis / spanMillis(step) <= 100) || `${365 * Math.ceil(millis / spanMillis('365d') / 100)}d`;
}

/**
 * Adds `field:"value"` to a query, unless the query already requires it: it
 * is that clause, or ANDs it at its top level. An OR query is parenthesised
 * so that AND keeps its meaning.
 */
export function addTerm(query, field, value) {
  const term = `${field}:"${String(value).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  const current = query.trim();
  if (!current) return term;
  const words = topLevelWords(current);
  const alternatives = words.some((word) => word === 'OR' || word === '||');
  if (!alternatives && words.some((word, i) => word === term && words[i - 1] !== 'NOT')) return current;
  return `${alternatives ? `(${current})` : current} AND ${term}`;
}

/**
 * A query's words outside quotes and parentheses (a group is one word):
 * enough to tell its top-level operators and clauses from the same text
 * inside a quoted value or a group.
 */
function topLevelWords(query) {
  const words = [];
  let word = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < query.length; i++) {
    const c = query[i];
    if (c === '\\') {
      // An escaped character never opens or closes anything.
      word += query.slice(i, i + 2);
      i += 1;
      continue;
    }
    if (c === '"') quoted = !quoted;
    else if (!quoted && c === '(') depth += 1;
    else if (!quoted && c === ')') depth -= 1;
    else if (!quoted && depth === 0 && /\s/.test(c)) {
      if (word) words.push(word);
      word = '';
      continue;
    }
    word += c;
  }
  if (word) words.push(word);
  return words;
}
