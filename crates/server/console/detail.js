// The detail panel: every field of the session, its statements, and the
// Terminate button (CreateSessionTermination, after a confirmation).

import { ApiError, apiKey, call } from './api.js';
import { el, formatDuration, formatTime, keepingFocus, userLabel } from './format.js';

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

/**
 * GetSessionTranscript's text: one statement per line, its time, a tab, its
 * text. A statement's own line breaks are escaped so that lines stay
 * statements: `\n` is a line feed, `\r` a carriage return, `\\` a backslash.
 * Other control characters and bidirectional overrides (`\x1b`, `\u{202e}`)
 * stay escaped here too: shown, not acted on.
 * The first tab ends the time; later ones are the statement's.
 */
export function statementsOf(transcript) {
  return (transcript || '').split('\n').filter(Boolean).map((line) => {
    const tab = line.indexOf('\t');
    const [time, text] = tab < 0 ? ['', line] : [line.slice(0, tab), line.slice(tab + 1)];
    return { time, text: unescapeStatement(text) };
  });
}

/** Undoes the transcript's escapes, left to right (so `\\n` is a backslash, then n); any other backslash stays. */
export function unescapeStatement(text) {
  return text.replace(/\\([\\nr])/g, (_, c) => ({ n: '\n', r: '\r', '\\': '\\' })[c]);
}

export class Detail {
  constructor(root, { onClose, onError }) {
    this.root = root;
    this.body = root.querySelector('#detail-body');
    this.title = root.querySelector('#detail-title');
    this.dialog = document.getElementById('confirm-terminate');
    this.onClose = onClose;
    this.onError = onError;
    this.id = '';
    this.session = null;
    this.notice = null;
    /** The AbortController of the load under way, if any. */
    this.loading = null;
    /**
     * The key a termination was refused for (permission_denied): a reader.
     * The API has no call that says what a key may do, so the console learns
     * it the first time and stops offering what the key cannot do.
     */
    this.refusedKey = null;
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
    if (this.id !== id) this.notice = null;
    this.id = id;
    this.root.hidden = false;
    document.body.classList.add('detail-open');
    this.title.textContent = 'Session';
    this.body.replaceChildren(el('p', { class: 'muted', text: 'Loading…' }));
    this.title.focus();
    await this.load();
  }

  close() {
    if (!this.isOpen) return;
    const id = this.id;
    this.loading?.abort();
    this.root.hidden = true;
    document.body.classList.remove('detail-open');
    this.id = '';
    this.session = null;
    this.onClose(id);
  }

  /**
   * Reloads an active session (its duration and statements grow) without
   * moving the panel's scroll. Skipped while a load is under way: on a slow
   * control plane, refreshes must not pile up behind each other.
   */
  async refresh() {
    if (this.isOpen && !this.loading && this.session && this.session.sessionStatus === 'active') await this.load();
  }

  /** Loads the open session; a newer load (another session, a termination) aborts this one. */
  async load() {
    this.loading?.abort();
    const controller = new AbortController();
    const { signal } = controller;
    this.loading = controller;
    const id = this.id;
    try {
      const [found, transcript] = await Promise.all([
        call('GetSession', { sessionId: id }, { signal }),
        call('GetSessionTranscript', { sessionId: id }, { signal }).catch((err) => {
          if (err.name === 'AbortError') throw err;
          return { error: err };
        }),
      ]);
      if (signal.aborted || id !== this.id) return;
      this.session = found.session || {};
      this.render(transcript);
    } catch (err) {
      if (signal.aborted || id !== this.id) return;
      this.onError(err);
      this.body.replaceChildren(el('p', { class: 'error', role: 'alert', text: `This session cannot be shown: ${err.message}` }));
    } finally {
      if (this.loading === controller) this.loading = null;
    }
  }

  render(transcript) {
    const s = this.session;
    const scroll = this.root.scrollTop;
    this.title.textContent = `Session ${s.id}`;
    const resource = s.resource || {};
    const summary = el('p', { class: 'summary' },
      el('span', { class: `status status-${s.sessionStatus}`, text: s.sessionStatus }), ' ',
      userLabel(s) || 'unknown user', ' on ', resource.name || resource.id || 'unknown resource',
      ` · ${formatTime(s.startTime)} · ${formatDuration(s.duration)}`);

    const actions = el('div', { class: 'actions' });
    const refused = this.refusedKey !== null && this.refusedKey === apiKey.get();
    if (s.sessionStatus === 'active') {
      actions.append(el('button', {
        type: 'button', id: 'terminate', class: 'danger', 'data-key': 'terminate',
        disabled: refused,
        // The reason below, or the refusal's own notice while it is shown.
        'aria-describedby': refused ? (this.notice ? 'terminate-result' : 'terminate-refused') : null,
        onclick: () => {
          document.getElementById('confirm-text').textContent =
            `${userLabel(s) || 'This user'} will be disconnected from ${resource.name || 'the resource'} at once. `
            + `Session ${s.id} through connector ${(s.connector && s.connector.name) || ''}.`;
          this.dialog.returnValue = '';
          this.dialog.showModal();
        },
      }, 'Terminate session'));
      if (refused && !this.notice) {
        actions.append(el('p', {
          id: 'terminate-refused', class: 'muted',
          text: 'This API key cannot terminate sessions (a reader key). Sign in with an admin key to terminate.',
        }));
      }
    }
    if (this.notice) {
      actions.append(el('p', {
        id: 'terminate-result', 'data-key': 'terminate-result', role: 'status', tabindex: '-1', class: this.notice.kind, text: this.notice.text,
      }));
    }

    const fields = el('dl', { class: 'fields' });
    for (const [name, value] of flatten(s)) fields.append(el('dt', { text: name }), el('dd', { text: value }));

    const statements = el('ol', { class: 'statements', 'aria-label': 'Statements' });
    if (transcript.error) {
      statements.append(el('li', { class: 'error', text: `Statements unavailable: ${transcript.error.message}` }));
    } else {
      const list = statementsOf(transcript.transcript);
      for (const st of list) {
        statements.append(el('li', {}, el('time', { datetime: st.time, text: formatTime(st.time) }), el('code', { text: st.text })));
      }
      // A statement is recorded when it completes: a live session's running one is not there yet.
      const none = s.sessionStatus === 'active'
        ? 'No statements yet: each statement appears here when it completes.'
        : 'No statements recorded.';
      if (!list.length) statements.append(el('li', { class: 'muted', text: none }));
    }
    // Rebuilt on every refresh of a live session: the focused button keeps focus.
    keepingFocus(this.body, () => this.body.replaceChildren(summary, actions,
      el('h3', { text: 'Statements' }), statements,
      el('h3', { text: 'Fields' }), el('p', { class: 'muted fields-note', text: 'As the API returns them: times in UTC.' }), fields));
    this.root.scrollTop = scroll;
  }

  async terminate() {
    const s = this.session;
    if (!s) return;
    const connector = s.connector || {};
    this.notice = { kind: 'muted', text: 'Sending the termination…' };
    this.render({ transcript: '' });
    try {
      const result = await call('CreateSessionTermination', { sessionId: s.id, connectorId: connector.id || '' });
      const shutdown = result.sessionShutdown || {};
      this.notice = {
        kind: 'ok',
        text: `Termination sent to connector ${connector.name || shutdown.connectorId} at ${formatTime(shutdown.createdAt)}. Waiting for the session to end…`,
      };
      await this.load();
      await this.awaitEnd(s.id);
    } catch (err) {
      const denied = err instanceof ApiError && err.code === 'permission_denied';
      if (denied) this.refusedKey = apiKey.get();
      const text = denied
        ? `Not allowed: this API key cannot terminate sessions (permission_denied: ${err.message}). Sign in with an admin key.`
        : `Termination failed (${err.code || 'error'}): ${err.message}`;
      this.notice = { kind: 'error', text };
      await this.load();
    }
    this.root.querySelector('#terminate-result')?.focus();
  }

  /** Polls the session until it completes, for up to 20 seconds. */
  async awaitEnd(id) {
    for (let i = 0; i < 40 && this.id === id; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const { session } = await call('GetSession', { sessionId: id });
      if (session && session.sessionStatus === 'completed') {
        this.notice = { kind: 'ok', text: `Session terminated: completed at ${formatTime(session.endTime)}.` };
        await this.load();
        return;
      }
    }
    if (this.id === id) {
      this.notice = { kind: 'error', text: 'The termination was sent, but the session has not ended yet. Its connector may be unreachable.' };
      await this.load();
    }
  }
}
