// Export: every session of the current query and window, page by page, to a
// JSONL or CSV file. Each page is turned into a Blob as it arrives, so the
// page's objects can be collected at once and the browser keeps the file's
// bytes in its blob store (which spills to disk), not in the JS heap.

import { CALL_TIMEOUT_MS, call } from './api.js';

export const EXPORT_PAGE = 1000;
/** A page of an export is 20 times a table's, so it gets longer than an ordinary call (api.js). */
const PAGE_TIMEOUT_MS = 60_000;

/** The CSV columns, the same as `gatehouse sessions list --output csv`. */
export const CSV_COLUMNS = [
  ['id', (s) => s.id],
  ['session_status', (s) => s.sessionStatus],
  ['start_time', (s) => s.startTime],
  ['end_time', (s) => s.endTime],
  // As the API writes it, less its unit: the CLI's export writes the same text.
  ['duration_seconds', (s) => (s.duration ? String(s.duration).replace(/s$/, '') : '')],
  ['user_type', (s) => s.user?.type],
  ['username', (s) => s.user?.username],
  ['user_id', (s) => s.user?.formal?.user?.id],
  ['user_name', (s) => s.user?.formal?.user?.name],
  ['user_email', (s) => s.user?.formal?.user?.email],
  ['user_groups', (s) => (s.user?.formal?.user?.groups || []).join(';')],
  ['end_user_id', (s) => s.user?.formal?.endUser?.id],
  ['end_user_name', (s) => s.user?.formal?.endUser?.name],
  ['end_user_email', (s) => s.user?.formal?.endUser?.email],
  ['end_user_groups', (s) => (s.user?.formal?.endUser?.groups || []).join(';')],
  ['native_username', (s) => s.user?.native?.username],
  ['resource_id', (s) => s.resource?.id],
  ['resource_name', (s) => s.resource?.name],
  ['resource_type', (s) => s.resource?.type],
  ['resource_technology', (s) => s.resource?.technology],
  ['connector_id', (s) => s.connector?.id],
  ['connector_name', (s) => s.connector?.name],
  ['client_ip', (s) => s.network?.clientIpAddress],
  ['server_ip', (s) => s.network?.serverIpAddress],
  ['parent_session_id', (s) => s.parentSessionId],
];

/**
 * One CSV cell, as `gatehouse sessions list --output csv` writes it (the
 * CLI neutralises and quotes its cells the same way, so the rows match; the
 * console's file alone starts with a byte order mark, for spreadsheets):
 * - a cell a spreadsheet would read as a formula (starting with =, +, -, @,
 *   a tab or a carriage return) gets a leading single quote, so that
 *   `=HYPERLINK(...)` in a role or user name stays text when the file is opened;
 * - RFC 4180 quoting: a cell with a comma, quote or line break is quoted, quotes doubled.
 */
export function csvField(value) {
  let text = value === undefined || value === null ? '' : String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** Rows end with a line feed, as the CLI's do. */
function csvRow(values) {
  return `${values.map(csvField).join(',')}\n`;
}

/**
 * Walks every page of `request` and returns the file as a Blob. `progress`
 * is told the count so far, and whether a page has kept it waiting past an
 * ordinary call's bound (which the rest of the console calls unreachable);
 * `signal` cancels.
 */
export async function exportSessions(request, format, { progress, signal }) {
  const parts = [];
  // A byte order mark: without it Excel reads the file as the system's code page and garbles
  // every name that is not ASCII.
  if (format === 'csv') parts.push(new Blob([`\uFEFF${csvRow(CSV_COLUMNS.map(([name]) => name))}`]));
  let cursor = '';
  let total = 0;
  for (;;) {
    const waiting = setTimeout(() => progress(total, { waiting: true }), CALL_TIMEOUT_MS);
    const page = await call('ListSessionsV2', { ...request, limit: EXPORT_PAGE, ...(cursor ? { cursor } : {}) },
      { signal, timeout: PAGE_TIMEOUT_MS }).finally(() => clearTimeout(waiting));
    const sessions = page.sessions || [];
    const text = format === 'csv'
      ? sessions.map((s) => csvRow(CSV_COLUMNS.map(([, get]) => get(s)))).join('')
      : sessions.map((s) => `${JSON.stringify(s)}\n`).join('');
    parts.push(new Blob([text]));
    total += sessions.length;
    progress(total);
    cursor = (page.listMetadata && page.listMetadata.nextCursor) || '';
    if (!cursor) break;
  }
  const type = format === 'csv' ? 'text/csv' : 'application/x-ndjson';
  return { blob: new Blob(parts, { type }), total };
}

export function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
