// The sessions table. Rows are rebuilt in place on refresh, so the page keeps
// its scroll position and the focused row keeps focus.

import { el, formatDuration, formatTime, nativeRole, userLabel } from './format.js';

const COLUMNS = ['Status', 'Start', 'Duration', 'User', 'Native role', 'Resource', 'Client IP', 'Connector'];
/**
 * Columns cut with an ellipsis (free text of any length: a long role name
 * must not push Client IP and Connector off screen); their full text is the
 * cell's tooltip. style.css sets their widths.
 */
const CLIPPED = new Set([3, 4, 5, 6]);
const textOf = (cell) => (cell instanceof Node ? cell.textContent : String(cell));

/** `empty`: what an empty table says. */
export function renderTable(tbody, sessions, { selected, onOpen, empty = 'No sessions match this query and window.' }) {
  const focused = document.activeElement && document.activeElement.closest('tbody') === tbody
    ? document.activeElement.dataset.id : null;
  const rows = sessions.map((s) => {
    const resource = s.resource || {};
    const start = formatTime(s.startTime);
    // Named by what it shows first (WCAG 2.5.3, label in name): a speech user says what they see.
    const open = el('button', {
      type: 'button', class: 'link', 'data-id': s.id,
      'aria-label': `${start}: open session ${s.id}`, onclick: () => onOpen(s.id),
    }, el('time', { datetime: s.startTime || '', text: start }));
    const cells = [
      el('span', { class: `status status-${s.sessionStatus || 'unknown'}`, text: s.sessionStatus || '' }),
      open,
      formatDuration(s.duration),
      userLabel(s),
      nativeRole(s),
      el('span', {}, resource.name || resource.id || '', ' ', resource.technology ? el('span', { class: 'tech', text: resource.technology }) : null),
      (s.network && s.network.clientIpAddress) || '',
      (s.connector && (s.connector.name || s.connector.id)) || '',
    ];
    // A plain table's rows are not selectable (no grid): the open one is the current one.
    return el('tr', { 'data-id': s.id, 'aria-current': s.id === selected ? 'true' : null, class: s.id === selected ? 'selected' : null },
      cells.map((cell, i) => el('td', { 'data-label': COLUMNS[i], title: CLIPPED.has(i) ? textOf(cell) : null }, cell)));
  });
  if (!rows.length) {
    rows.push(el('tr', {}, el('td', { colspan: COLUMNS.length, class: 'empty', text: empty })));
  }
  tbody.replaceChildren(...rows);
  if (focused) {
    const again = tbody.querySelector(`button[data-id="${CSS.escape(focused)}"]`);
    if (again) again.focus({ preventScroll: true });
  }
}

export function markSelected(tbody, id) {
  for (const row of tbody.querySelectorAll('tr[data-id]')) {
    const on = row.dataset.id === id;
    if (on) row.setAttribute('aria-current', 'true');
    else row.removeAttribute('aria-current');
    row.classList.toggle('selected', on);
  }
}
