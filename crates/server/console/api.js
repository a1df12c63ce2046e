// The public core.v1.SessionsService (and our gatehouse.sessions.v1.StatementsService and
// gatehouse.keys.v1.KeysService) over Connect JSON, with the key kept in this tab's session
// storage (never local storage: it leaves with the tab).

const KEY_STORAGE = 'gatehouse.apiKey';

/**
 * How long a call may wait for its whole answer. A control plane that hangs
 * (its process stopped, its network black-holed) neither answers nor
 * refuses: without a bound, the load waiting for it would show stale answers
 * as live and hold off every refresh. A working control plane answers in
 * milliseconds; its own store statements stop at 30 s by default, so a slow
 * query is usually refused before this bound, not cut by it.
 */
export const CALL_TIMEOUT_MS = 20_000;

export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
    /** True when no answer came within the bound: whether the call took effect is not known. */
    this.timedOut = false;
  }
}

export const apiKey = {
  get: () => sessionStorage.getItem(KEY_STORAGE) || '',
  set: (key) => sessionStorage.setItem(KEY_STORAGE, key),
  clear: () => sessionStorage.removeItem(KEY_STORAGE),
};

/**
 * Why `key` cannot be an API key, or '' when it can. A key is printable
 * ASCII; the browser refuses to send a header with characters past Latin-1
 * or line breaks, which would read as the control plane being unreachable.
 */
export function keyProblem(key) {
  return /[^\x21-\x7e]/.test(key)
    ? 'An API key is gh_ followed by letters, digits and underscores: this one has spaces or other characters.'
    : '';
}

/**
 * Calls one method of `service`; resolves to the response message or throws an ApiError.
 * `signal` cancels (an AbortError is thrown then); `timeout` bounds the wait (CALL_TIMEOUT_MS).
 */
export async function call(method, body, { signal, key = apiKey.get(), service = 'core.v1.SessionsService', timeout = CALL_TIMEOUT_MS } = {}) {
  const problem = keyProblem(key);
  if (problem) throw new ApiError('unauthenticated', problem, 0);
  // One controller for both ends of the wait: the caller's cancel and the bound.
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeout);
  const cancel = () => controller.abort();
  if (signal?.aborted) controller.abort();
  signal?.addEventListener('abort', cancel, { once: true });
  /** A fetch or a body read that failed: cancelled, timed out, or no connection. */
  const failed = (err) => {
    if (timedOut) {
      const late = new ApiError('unavailable',
        `The control plane did not answer within ${timeout / 1000} seconds: it may be stopped or unreachable.`, 0);
      late.timedOut = true;
      return late;
    }
    if (err.name === 'AbortError') return err;
    return new ApiError('unavailable', 'The control plane cannot be reached. Check that it is running.', 0);
  };
  let response;
  let text;
  try {
    try {
      response = await fetch(`/${service}/${method}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'Connect-Protocol-Version': '1', 'X-API-KEY': key },
        body: JSON.stringify(body),
        signal: controller.signal,
        cache: 'no-store',
      });
      // The body can stall as well as the headers: the bound covers both.
      text = await response.text();
    } catch (err) {
      throw failed(err);
    }
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', cancel);
  }
  let data = null;
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = null;
  }
  if (!response.ok) {
    const code = (data && data.code) || 'unknown';
    const message = (data && data.message) || `HTTP ${response.status}`;
    throw new ApiError(code, message, response.status);
  }
  if (data === null) throw new ApiError('internal', 'The control plane answered with something other than JSON.', response.status);
  return data;
}

/**
 * The key as the control plane knows it (gatehouse.keys.v1.KeysService/GetCallerKey):
 * `{ organization, role, prefix, name }`, never its secret (proto3 JSON leaves out an empty
 * name); null when that is not known (no answer, or an unexpected one).
 */
export async function callerKey(key = apiKey.get()) {
  try {
    return await call('GetCallerKey', {}, { key, service: 'gatehouse.keys.v1.KeysService' });
  } catch {
    return null;
  }
}
