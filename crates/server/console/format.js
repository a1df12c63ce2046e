// Formatting of API values for people: times, durations, counts, users.

const timeParts = { month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false };
const dateTime = new Intl.DateTimeFormat(undefined, timeParts);
const dateTimeWithYear = new Intl.DateTimeFormat(undefined, { year: 'numeric', ...timeParts });
const thisYear = new Date().getFullYear();
const shortTime = new Intl.DateTimeFormat(undefined, { month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false });
const number = new Intl.NumberFormat();

export function formatTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return (date.getFullYear() === thisYear ? dateTime : dateTimeWithYear).format(date);
}

export function formatShortTime(date) {
  return shortTime.format(date);
}

export function formatCount(n) {
  return number.format(Number(n) || 0);
}

/** Seconds from a proto3 JSON Duration ("3.5s"). */
export function durationSeconds(duration) {
  if (!duration) return 0;
  const seconds = Number.parseFloat(String(duration).replace(/s$/, ''));
  return Number.isFinite(seconds) ? seconds : 0;
}

export function formatDuration(duration) {
  const total = Math.floor(durationSeconds(duration));
  if (total < 60) return `${total}s`;
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

/** The console's own element builder: text only, never markup from strings. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
