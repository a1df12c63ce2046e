// Formatting of API values for people: times, durations, counts, users.

const timeParts = { month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false };
const dateTime = new Intl.DateTimeFormat(undefined, timeParts);
const dateTimeWithYear = new Intl.DateTimeFormat(undefined, { year: 'numeric', ...timeParts });
const thisYear = new Date().getFullYear();
const shortParts = { month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false };
const shortTime = new Intl.DateTimeFormat(undefined, shortParts);
const shortTimeWithYear = new Intl.DateTimeFormat(undefined, { year: 'numeric', ...shortParts });
const number = new Intl.NumberFormat();

export function formatTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return (date.getFullYear() === thisYear ? dateTime : dateTimeWithYear).format(date);
}

/** Minutes only; the year is shown when it is not this one (a window may reach back into last year). */
export function formatShortTime(date) {
  return (date.getFullYear() === thisYear ? shortTime : shortTimeWithYear).format(date);
}

/**
 * The zone the page shows times in (the browser's), e.g. "Europe/Paris
 * (UTC+01:00)": the table is local time, the API and the Fields list are UTC.
 */
export function timeZoneLabel(date = new Date()) {
  const name = Intl.DateTimeFormat().resolvedOptions().timeZone || '';
  const minutes = -date.getTimezoneOffset();
  const pad = (n) => String(Math.floor(n)).padStart(2, '0');
  if (!minutes && (!name || /^(Etc\/)?UTC$/.test(name))) return 'UTC';
  const offset = `UTC${minutes < 0 ? '-' : '+'}${pad(Math.abs(minutes) / 60)}:${pad(Math.abs(minutes) % 60)}`;
  return name ? `${name} (${offset})` : offset;
}

export function formatCount(n) {
  return number.format(Number(n) || 0);
}

/** `1 session`, `2,431 sessions`. */
export function sessionCount(n) {
  return `${formatCount(n)} ${Number(n) === 1 ? 'session' : 'sessions'}`;
}

/** Seconds from a proto3 JSON Duration ("3.5s"). */
export function durationSeconds(duration) {
  if (!duration) return 0;
  const seconds = Number.parseFloat(String(duration).replace(/s$/, ''));
  return Number.isFinite(seconds) ? seconds : 0;
}

export function formatDuration(duration) {
  // In whole microseconds, as the API gives it: 2.3 * 10 is 22.999999999999996 in floating point.
  const micros = Math.round(durationSeconds(duration) * 1e6);
  // As the CLI's table: milliseconds under a second, tenths cut (59.9s never reads 60.0s) under a minute.
  if (micros < 1e6) return `${Math.floor(micros / 1e3)}ms`;
  const tenths = Math.floor(micros / 1e5);
  if (micros < 60e6) return `${Math.floor(tenths / 10)}.${tenths % 10}s`;
  const total = Math.floor(micros / 1e6);
  const d = Math.floor(total / 86400);
  const h = Math.floor((total % 86400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (d > 0) return `${d}d ${String(h).padStart(2, '0')}h`;
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
  return `${m}m ${String(s).padStart(2, '0')}s`;
}

/** Milliseconds in a span such as 15m, 24h or 7d. */
export function spanMillis(span) {
  const match = /^(\d+)(s|m|h|d)$/.exec(span || '');
  if (!match) return 0;
  const unit = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[match[2]];
  return Number(match[1]) * unit;
}

/** Who opened the session: the identity's email, else its name, else the database username. */
export function userLabel(session) {
  const user = session.user || {};
  const formal = (user.formal && user.formal.user) || {};
  return formal.email || formal.name || user.username || '';
}

export function nativeRole(session) {
  return (session.user && session.user.native && session.user.native.username) || '';
}

// Control characters other than line breaks and tabs, and Unicode's
// Bidi_Control characters, which reorder the text around them.
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * `text` with control characters and bidirectional controls written out as
 * the transcript writes them (`\x1b`, `\u{202e}`): recorded values come from
 * the people being audited, and a right-to-left override in a user name would
 * make it read as another.
 */
export function printable(text) {
  return String(text).replace(UNPRINTABLE, (c) => {
    const code = c.codePointAt(0);
    return code < 0x80 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
}

/**
 * Undoes printable() in text a person edits (the search box shows a query
 * through printable()): its escapes stand for their characters again, so
 * that a value shown escaped still matches. Only characters printable()
 * escapes are read back, and an escaped backslash (`\\`, the query
 * language's) is left as it is, so a query for a literal `\\x1b` keeps it.
 */
export function unprintable(text) {
  return String(text).replace(/\\\\|\\x([0-9a-f]{2})|\\u\{([0-9a-f]{1,6})\}/gi, (escape, x, u) => {
    const code = Number.parseInt(x || u, 16);
    // An escaped backslash, or a code that is no character.
    if (Number.isNaN(code) || code > 0x10ffff) return escape;
    const c = String.fromCodePoint(code);
    return printable(c) !== c ? c : escape;
  });
}

/** The console's own element builder: text only, never markup from strings, always printable. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = printable(value);
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, '');
    // Tooltips and labels carry recorded values too.
    else node.setAttribute(name, name === 'title' || name.startsWith('aria-') ? printable(value) : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(printable(child)));
  }
  return node;
}

/**
 * Runs `rebuild`, which replaces `root`'s children, and gives focus back to
 * the new element with the `data-key` of the one that had it: a refresh
 * must not throw a keyboard user back to the top of the page.
 */
export function keepingFocus(root, rebuild) {
  const active = document.activeElement;
  const key = active && active !== root && root.contains(active) ? active.dataset.key : undefined;
  rebuild();
  if (key === undefined || root.contains(document.activeElement)) return;
  const again = [...root.querySelectorAll('[data-key]')].find((node) => node.dataset.key === key);
  again?.focus({ preventScroll: true });
}
