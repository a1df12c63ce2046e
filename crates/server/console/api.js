// The public core.v1.SessionsService (and our gatehouse.sessions.v1.StatementsService) over
// Connect JSON, with the key kept in this tab's session storage (never local storage: it leaves
// with the tab).

const KEY_STORAGE = 'gatehouse.apiKey';

export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

export const apiKey = {
  get: () => sessionStorage.getItem(KEY_STORAGE) || '',
  set: (key) => sessionStorage.setItem(KEY_STORAGE, key),
  clear: () => sessionStorage.removeItem(KEY_STORAGE),
};

/** Calls one method of `service`; resolves to the response message or throws an ApiError. */
export async function call(method, body, { signal, key = apiKey.get(), service = 'core.v1.SessionsService' } = {}) {
  // A key is printable ASCII; the browser refuses to send a header with
  // characters past Latin-1 or line breaks, which would read as the control
  // plane being unreachable.
  if (/[^\x21-\x7e]/.test(key)) {
    throw new ApiError('unauthenticated', 'An API key is letters, digits and underscores (gh_...): this one has other characters.', 0);
  }
  let response;
  try {
    response = await fetch(`/${service}/${method}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Connect-Protocol-Version': '1', 'X-API-KEY': key },
      body: JSON.stringify(body),
      signal,
      cache: 'no-store',
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError('unavailable', 'The control plane cannot be reached. Check that it is running.', 0);
  }
  const text = await response.text();
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
