// The detail panel: every field of the session, its statements, and the
// Terminate button (CreateSessionTermination, after a confirmation).

import { ApiError, apiKey, call } from './api.js';
import { durationSeconds, el, formatDuration, formatTime, keepingFocus, printable, userLabel } from './format.js';

/** Every leaf of the session object as [dotted JSON name, text]. */
export function flatten(value, prefix = '', out = []) {
  if (Array.isArray(value)) {
    out.push([prefix, value.join(', ')]);
  } else if (value && typeof value === 'object') {
    for (const [key, inner] of Object.entries(value)) flatten(inner, prefix ? `${prefix}.${key}` : key, out);
  } else {
    out.push([prefix, String(value)]);
  }
  return out;
}

/** Where a session's statements come from, with what each did: ours, beside core.v1. */
const STATEMENTS = 'gatehouse.sessions.v1.StatementsService';

/** A statement's duration (`0.001500s`) in words: milliseconds to the microsecond under a second, seconds to the millisecond under a minute. */
export function statementDuration(duration) {
  const seconds = durationSeconds(duration);
  if (seconds < 1) return `${(seconds * 1000).toFixed(3)} ms`;
  return seconds < 60 ? `${seconds.toFixed(3)} s` : formatDuration(duration);
}

/** A statement's text is shown up to this many characters or lines, then on request: a 1 MB one would fill pages. */
const SHOWN_CHARS = 2000;
const SHOWN_LINES = 25;

/** The first SHOWN_CHARS characters and SHOWN_LINES lines of `text`, or null when that is all of it. */
function shownPart(text) {
  let end = Math.min(text.length, SHOWN_CHARS);
  let lines = 0;
  for (let i = 0; i < end; i++) {
    if (text[i] === '\n' && ++lines === SHOWN_LINES) end = i;
  }
  return end < text.length ? text.slice(0, end) : null;
}

/** A statement's text, long ones cut with a button that shows the rest. */
function statementText(text) {
  const part = shownPart(text);
  if (part === null) return [el('code', { text })];
  const code = el('code', { text: `${part}…` });
  const more = el('button', {
    type: 'button', class: 'link show-all', text: `Show all ${text.length.toLocaleString('en-US')} characters`,
    onclick: () => { code.textContent = text; more.remove(); },
  });
  return [code, more];
}

/** What a statement did, in a few words: how long, rows sent and changed, bytes sent, its error, and whether it still runs. */
export function outcomeOf(st) {
  const parts = [statementDuration(st.duration)];
  const rows = Number(st.rows || 0);
  parts.push(`${rows} ${rows === 1 ? 'row' : 'rows'}`);
  const changed = Number(st.rowsChanged || 0);
  if (changed) parts.push(`${changed} ${changed === 1 ? 'row' : 'rows'} changed`);
  parts.push(`${Number(st.bytesSent || 0)} bytes`);
  if (st.sqlstate) parts.push(`error ${st.sqlstate}`);
  if (st.status === 'running') parts.push('running');
  if (st.status === 'unreported') parts.push('outcome never reported (its connector was lost)');
  return parts.join(' · ');
}

/**
 * Statements are read and drawn a page at a time: a session can hold 100,000 of them or more,
 * and drawing them all at once froze the tab for half a minute.
 */
export const STATEMENTS_PAGE = 200;

/**
 * A session's statements as far as they are loaded, page after page. ListSessionStatements
 * numbers them 1, 2, 3, ... with no gap, so a page read again (a live session's last one, whose
 * running statement completed since) replaces the statements it holds and adds those after.
 */
class StatementPages {
  constructor() {
    /** The statements loaded, in order: the one numbered n at n - 1. */
    this.list = [];
    /** The token the last page loaded was read with: a live session grows from there. */
    this.last = '';
    /** The last page's next_page_token: '' when no statement follows it. */
    this.next = '';
    /** Why the last read failed; null when it worked. What was loaded stays. */
    this.error = null;
  }

  /**
   * Where a refresh of a live session reads from: the last page again, with what follows it;
   * null while later pages wait for "Show more", as nothing new would be shown.
   */
  get refreshFrom() {
    return this.next ? null : this.last;
  }

  /** Takes ListSessionStatements' answer for `token`, or `{ error }`. */
  take(token, answer) {
    this.error = answer.error || null;
    if (this.error) return;
    for (const st of answer.statements || []) this.list[Number(st.seq) - 1] = st;
    this.last = token;
    this.next = answer.nextPageToken || '';
  }
}

/** Identifies a statement as shown: one that changed (a running one completed) is redrawn. */
const shownAs = (st) => `${st.seq}|${st.status}|${st.sqlstate || ''}|${st.duration}`;

const statementItem = (st) => el('li', { class: st.sqlstate ? 'failed' : st.status },
  el('time', { datetime: st.startTime, text: formatTime(st.startTime) }),
  ...statementText(st.text || ''),
  el('span', { class: 'outcome', text: outcomeOf(st) }));

/**
 * Where the panel covers the whole page (style.css makes it full-screen
 * there): it is then modal, the page behind it inert.
 */
const COVERING = '(max-width: 640px)';

/** How long a sent termination is watched for the session to end. */
const AWAIT_END_MS = 20_000;

export class Detail {
  /** `behind`: the page's parts the panel covers on a phone, made inert while it is open there. */
  constructor(root, { onClose, onError, behind = [] }) {
    this.root = root;
    this.body = root.querySelector('#detail-body');
    this.title = root.querySelector('#detail-title');
    this.dialog = document.getElementById('confirm-terminate');
    this.onClose = onClose;
    this.onError = onError;
    this.id = '';
    this.session = null;
    /** The statements of the session shown, as far as loaded (StatementPages). */
    this.pages = null;
    /** The panel's parts, built once per session shown (layout()); null while it shows something else. */
    this.parts = null;
    /** True while a termination is being sent: Terminate is off meanwhile. */
    this.sending = false;
    this.notice = null;
    /** While refreshes of the session shown fail, when the control plane last answered one; null while they work. */
    this.staleSince = null;
    /** When the control plane last answered a load of the session shown. */
    this.answeredAt = null;
    /** Why the session could not be shown at all, while the panel says so: tried again at each refresh. */
    this.unshown = null;
    /** The AbortController of the load under way, if any. */
    this.loading = null;
    /**
     * The key known to be a reader's, which may not terminate: app.js asks at
     * sign-in (knowReader), and a termination refused with permission_denied
     * says so too (when that question had no answer). Terminate is off for it.
     */
    this.readerKey = null;
    this.behind = behind;
    this.covering = window.matchMedia(COVERING);
    // A phone turned sideways, a window resized: modal only while it covers.
    this.covering.addEventListener('change', () => this.syncInert());
    root.querySelector('#detail-close').addEventListener('click', () => this.close());
    this.dialog.addEventListener('close', () => {
      if (this.dialog.returnValue === 'terminate') this.terminate();
      else this.root.querySelector('#terminate')?.focus();
    });
  }

  get isOpen() {
    return !this.root.hidden;
  }

  async open(id) {
    if (this.id !== id) {
      this.notice = null;
      this.staleSince = null;
      this.answeredAt = null;
      this.unshown = null;
      this.session = null;
    }
    this.id = id;
    // Read afresh from the first page: a refresh meanwhile must not read on from another session's.
    this.pages = null;
    this.root.hidden = false;
    document.body.classList.add('detail-open');
    this.syncInert();
    this.title.textContent = 'Session';
    this.showOnly(el('p', { class: 'muted', text: 'Loading…' }));
    this.title.focus();
    await this.load();
  }

  close() {
    if (!this.isOpen) return;
    const id = this.id;
    // Focus goes back to the row only from the panel (or from nowhere):
    // Escape typed in the search box beside the panel leaves focus there.
    const active = document.activeElement;
    const hadFocus = !active || active === document.body || this.root.contains(active);
    this.hide();
    this.onClose(id, hadFocus);
  }

  /**
   * Takes the panel away, leaving the session open in the view (onClose is not called): on a
   * sign-out the URL keeps it, so that the next sign-in shows it again.
   */
  hide() {
    this.loading?.abort();
    this.root.hidden = true;
    document.body.classList.remove('detail-open');
    this.syncInert();
    this.id = '';
    this.session = null;
    this.pages = null;
  }

  /**
   * While the panel covers the page, the page behind it is inert: Tab stays
   * in the panel, and a screen reader does not read what cannot be seen.
   */
  syncInert() {
    const inert = this.isOpen && this.covering.matches;
    for (const part of this.behind) part.inert = inert;
  }

  /**
   * Reloads an active session (its duration and statements grow) without
   * moving the panel's scroll. Skipped while a load is under way: on a slow
   * control plane, refreshes must not pile up behind each other.
   */
  async refresh() {
    if (!this.wantsRefresh() || this.loading) return;
    await (this.session ? this.load({ refresh: true }) : this.load());
  }

  /**
   * Whether the open session may have changed (it is active), or waits to be shown (the
   * control plane did not answer): shown once it answers again, as the table is.
   */
  wantsRefresh() {
    if (!this.isOpen) return false;
    if (this.session) return this.session.sessionStatus === 'active';
    return Boolean(this.unshown) && !['not_found', 'invalid_argument'].includes(this.unshown.code);
  }

  /**
   * Loads the open session and its first page of statements; `refresh`: its
   * statements from the last page read on (a live session's grow), `more`:
   * its next page. A newer load (another session, a termination, "Show
   * more") aborts this one. A failed refresh or "Show more" keeps the panel
   * as it is: the page says that the control plane is not answering.
   */
  async load({ refresh = false, more = false } = {}) {
    const again = refresh || more;
    this.loading?.abort();
    const controller = new AbortController();
    const { signal } = controller;
    this.loading = controller;
    const id = this.id;
    const pages = again && this.pages ? this.pages : new StatementPages();
    const from = more ? pages.next : pages.refreshFrom;
    const shown = pages.list.length;
    try {
      const [found, page] = await Promise.all([
        call('GetSession', { sessionId: id }, { signal }),
        from === null ? null : call('ListSessionStatements', { sessionId: id, pageSize: STATEMENTS_PAGE, pageToken: from },
          { signal, service: STATEMENTS }).catch((err) => {
          if (err.name === 'AbortError') throw err;
          return { error: err };
        }),
      ]);
      if (signal.aborted || id !== this.id) return;
      this.session = found.session || {};
      if (page) pages.take(from, page);
      this.pages = pages;
      this.staleSince = null;
      this.answeredAt = new Date();
      this.unshown = null;
      this.render();
      // Where the page asked for begins: read on from there (the button may be gone).
      if (more) this.focusStatement(shown);
    } catch (err) {
      if (signal.aborted || id !== this.id) return;
      if (again && this.parts) {
        // What is shown stays, saying since when it is not up to date: an active session may have ended meanwhile.
        this.staleSince ??= this.answeredAt ?? new Date();
        this.showStale(err);
      }
      if (this.onError(err) || (again && this.parts)) return;
      this.unshown = err;
      const text = `This session cannot be shown: ${err.message}`;
      // Once: a retry that fails alike leaves the alert be, for a screen reader not to say it again.
      if (this.parts || this.body.textContent !== text) this.showOnly(el('p', { class: 'error', role: 'alert', text }));
    } finally {
      if (this.loading === controller) this.loading = null;
    }
  }

  /** Says, atop the panel, that what it shows is the last the control plane said. */
  showStale(err) {
    const text = `Not up to date: no answer since ${formatTime(this.staleSince.toISOString())} (${err.code || 'error'}). `
      + 'This is the session as last seen: it may have ended meanwhile.';
    if (this.parts.stale.textContent !== text) this.parts.stale.textContent = text;
    this.parts.stale.hidden = false;
  }

  /** A message in place of the session's parts. */
  showOnly(message) {
    this.parts = null;
    this.body.replaceChildren(message);
  }

  /** The panel's parts, which render() fills; the statements list keeps what it shows until the statements change. */
  layout() {
    this.parts = {
      stale: el('p', { class: 'stale', role: 'status', hidden: true }),
      statementsTitle: el('h3', { text: 'Statements' }),
      summary: el('div'),
      actions: el('div', { class: 'actions' }),
      statements: el('ol', { class: 'statements', 'aria-label': 'Statements' }),
      statementsNote: el('p', { class: 'error', role: 'status' }),
      more: el('button', { type: 'button', class: 'show-more', 'data-key': 'show-more', onclick: () => this.load({ more: true }) },
        'Show more statements'),
      fields: el('dl', { class: 'fields' }),
      /** How the statements list shows each statement (shownAs), in order; null when it shows none. */
      listed: null,
    };
    const { stale, statementsTitle, summary, actions, statements, statementsNote, more, fields } = this.parts;
    this.body.replaceChildren(stale, summary, actions, statementsTitle, statements, statementsNote, more,
      el('h3', { text: 'Fields' }), el('p', { class: 'muted fields-note', text: 'As the API returns them: times in UTC.' }), fields);
  }

  /**
   * Shows the session and its statements. A live session is reloaded every
   * few seconds: its summary and fields are small and redrawn, its
   * statements (thousands, maybe) only when they changed.
   */
  render() {
    const s = this.session;
    if (!this.parts) this.layout();
    this.parts.stale.hidden = true;
    const scroll = this.root.scrollTop;
    this.title.textContent = `Session ${s.id}`;
    const resource = s.resource || {};
    this.parts.summary.replaceChildren(el('p', { class: 'summary' },
      el('span', { class: `status status-${s.sessionStatus}`, text: s.sessionStatus }), ' ',
      userLabel(s) || 'unknown user', ' on ', resource.name || resource.id || 'unknown resource',
      ` · ${formatTime(s.startTime)} · ${formatDuration(s.duration)}`));
    this.showActions();
    this.showStatements();
    this.parts.fields.replaceChildren(...flatten(s).flatMap(([name, value]) => [el('dt', { text: name }), el('dd', { text: value })]));
    this.root.scrollTop = scroll;
  }

  /**
   * Told that `key` is a reader's: Terminate is off from then on, in the
   * session shown too when the answer comes after it opened.
   */
  knowReader(key) {
    this.readerKey = key;
    if (this.isOpen && this.parts && this.session) this.showActions();
  }

  /** The actions' part of the panel; the focused button keeps focus. */
  showActions() {
    keepingFocus(this.parts.actions, () => this.parts.actions.replaceChildren(...this.actions()));
  }

  /** Terminate, while the session is live, and what became of it. */
  actions() {
    const s = this.session;
    const resource = s.resource || {};
    const actions = [];
    const reader = this.readerKey !== null && this.readerKey === apiKey.get();
    if (s.sessionStatus === 'active') {
      actions.push(el('button', {
        type: 'button', id: 'terminate', class: 'danger', 'data-key': 'terminate',
        disabled: reader || this.sending,
        title: reader ? 'Needs an admin key' : null,
        // The reason below, or the refusal's own notice while it is shown.
        'aria-describedby': reader ? (this.notice ? 'terminate-result' : 'terminate-refused') : null,
        onclick: () => {
          // Recorded values: a right-to-left override in a user name would reverse the rest.
          document.getElementById('confirm-text').textContent = printable(
            `${userLabel(s) || 'This user'} will be disconnected from ${resource.name || 'the resource'} at once. `
            + `Session ${s.id} through connector ${(s.connector && s.connector.name) || ''}.`);
          this.dialog.returnValue = '';
          this.dialog.showModal();
        },
      }, 'Terminate session'));
      if (reader && !this.notice) {
        actions.push(el('p', {
          id: 'terminate-refused', class: 'muted',
          text: 'This API key cannot terminate sessions (a reader key). Sign in with an admin key to terminate.',
        }));
      }
    }
    if (this.notice) {
      actions.push(el('p', {
        id: 'terminate-result', 'data-key': 'terminate-result', role: 'status', tabindex: '-1', class: this.notice.kind, text: this.notice.text,
      }));
    }
    return actions;
  }

  /**
   * The statements list: those shown as they are stay, one that changed (a running statement
   * completed) is redrawn, and new ones are added; "Show more" while more follow.
   */
  showStatements() {
    const { statements, statementsTitle, statementsNote, more } = this.parts;
    const { list, next, error } = this.pages;
    const shown = list.length;
    const counted = (n) => n.toLocaleString('en-US');
    // The session comes with no count of its statements: past the pages read, only that more follow is known.
    const title = next ? `Statements (${counted(shown)} shown of at least ${counted(shown + 1)})`
      : shown ? `Statements (${counted(shown)})` : 'Statements';
    if (statementsTitle.textContent !== title) statementsTitle.textContent = title;
    const note = error ? `Statements unavailable: ${error.message}` : '';
    if (statementsNote.textContent !== note) statementsNote.textContent = note;
    more.hidden = !next;
    if (!shown) {
      this.parts.listed = null;
      const none = this.session.sessionStatus === 'active' ? 'No statements yet.' : 'No statements recorded.';
      statements.replaceChildren(...(error ? [] : [el('li', { class: 'muted', text: none })]));
      return;
    }
    // Shown as `listed` says; null while the list shows no statement (its placeholder).
    if (!this.parts.listed) statements.replaceChildren();
    const listed = this.parts.listed || [];
    const keys = list.map(shownAs);
    const added = document.createDocumentFragment();
    keys.forEach((key, i) => {
      if (i >= listed.length) added.append(statementItem(list[i]));
      else if (key !== listed[i]) statements.children[i].replaceWith(statementItem(list[i]));
    });
    statements.append(added);
    this.parts.listed = keys;
  }

  /** Moves focus to the statement at `index` (the first of a page just shown), if there is one. */
  focusStatement(index) {
    const item = this.parts?.statements.children[index];
    if (!item) return;
    item.tabIndex = -1;
    item.focus();
  }

  async terminate() {
    const s = this.session;
    if (!s) return;
    const connector = s.connector || {};
    this.notice = { kind: 'muted', text: 'Sending the termination…' };
    this.sending = true;
    this.render();
    let sent = false;
    try {
      // Terminate is offered again once the answer is in.
      const result = await call('CreateSessionTermination', { sessionId: s.id, connectorId: connector.id || '' })
        .finally(() => { this.sending = false; });
      const shutdown = result.sessionShutdown || {};
      this.notice = {
        kind: 'ok',
        text: `Termination sent to connector ${connector.name || shutdown.connectorId} at ${formatTime(shutdown.createdAt)}. Waiting for the session to end…`,
      };
      sent = true;
    } catch (err) {
      const denied = err instanceof ApiError && err.code === 'permission_denied';
      if (denied) this.readerKey = apiKey.get();
      let text = `Termination failed (${err.code || 'error'}): ${err.message}`;
      if (denied) text = `Not allowed: this API key cannot terminate sessions (permission_denied: ${err.message}). Sign in with an admin key.`;
      // The request may have reached the control plane and its answer been lost: "failed" would be a guess.
      if (err.timedOut) {
        text = `Not known whether the termination took effect: ${err.message} `
          + 'Check this session: its status reads completed once it has ended.';
      }
      this.notice = { kind: 'error', text };
    }
    // Another session was opened meanwhile: this one's outcome is not its to show.
    if (this.id !== s.id) return;
    // The notice shows at once over the session as last seen; the reload
    // then shows it as it is now, or says that it is not up to date.
    this.render();
    await this.load({ refresh: true });
    if (sent) await this.awaitEnd(s.id);
    this.root.querySelector('#terminate-result')?.focus();
  }

  /**
   * Polls the session until it completes, for up to AWAIT_END_MS. A poll
   * that fails (the control plane not answering) is tried again: the
   * termination was sent either way.
   */
  async awaitEnd(id) {
    const until = Date.now() + AWAIT_END_MS;
    while (this.id === id && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      let session = null;
      try {
        ({ session } = await call('GetSession', { sessionId: id }, { timeout: Math.max(1000, until - Date.now()) }));
      } catch (err) {
        if (this.onError(err)) return;
        continue;
      }
      if (session && session.sessionStatus === 'completed' && this.id === id) {
        this.notice = { kind: 'ok', text: `Session terminated: completed at ${formatTime(session.endTime)}.` };
        // Shown completed with the notice, not a moment still active beside it.
        this.session = session;
        this.render();
        await this.load({ refresh: true });
        return;
      }
    }
    if (this.id === id) {
      this.notice = { kind: 'error', text: 'The termination was sent, but the session has not ended yet. Its connector may be unreachable.' };
      this.render();
      await this.load({ refresh: true });
    }
  }
}
