// Every call to the server: same-origin fetch (the session cookie goes by
// itself), the CSRF header on anything but GET/HEAD, Sprites error bodies
// turned into messages, and a 401 anywhere ending the session.

import { errorMessage } from './errors.js';
import { readNdjson } from './ndjson.js';

let session = null;
let unauthorized = () => {};

/** The signed-in session ({csrf, admin, scope}) or null. */
export function currentSession() {
  return session;
}

export function setSession(s) {
  session = s;
}

/** What to do when the server says the session is gone. */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

/**
 * fetch with the console's rules. Resolves to the Response when it is a
 * success (2xx), else throws an ApiError carrying the server's message.
 * `json` is sent as the JSON body; `body` as is.
 */
/** Counts a request tried again after a network failure (boot.js's key). */
function countRetry() {
  try {
    const key = 'console:network-retries';
    sessionStorage.setItem(key, String(Number(sessionStorage.getItem(key) || 0) + 1));
  } catch {
    // Not counted.
  }
}

export async function request(path, { method = 'GET', json, body, headers, accept, signal } = {}) {
  const h = new Headers(headers || {});
  if (method !== 'GET' && method !== 'HEAD' && session && session.csrf) {
    h.set('X-CSRF-Token', session.csrf);
  }
  if (json !== undefined) {
    h.set('Content-Type', 'application/json');
    body = JSON.stringify(json);
  }
  if (accept) h.set('Accept', accept);
  const init = { method, headers: h, body, signal, credentials: 'same-origin', cache: 'no-store' };
  let res;
  try {
    try {
      res = await fetch(path, init);
    } catch (e) {
      // A read is tried once more: Chromium fails the requests in flight
      // when its host's addresses change (see boot.js). A change is not
      // repeated (it may have happened). Counted as boot.js counts.
      if ((e && e.name === 'AbortError') || (method !== 'GET' && method !== 'HEAD')) throw e;
      countRetry();
      await new Promise((r) => setTimeout(r, 200));
      res = await fetch(path, init);
    }
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'cannot reach the server (' + (e && e.message ? e.message : e) + ')');
  }
  if (res.ok) return res;
  const text = await res.text().catch(() => '');
  // The sign-in call's own 401 is a wrong token, not a lost session.
  if (res.status === 401 && !path.startsWith('/console/session')) unauthorized();
  throw new ApiError(res.status, errorMessage(res.status, res.statusText, text));
}

/** The JSON answer of a call (null for an empty one, e.g. 204). */
export async function call(path, opts) {
  const res = await request(path, opts);
  if (res.status === 204) return null;
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export const getJSON = (path, opts) => call(path, opts);

export const send = (method, path, json, opts = {}) => call(path, { ...opts, method, json });

/**
 * A call answering NDJSON: `onEvent` gets each value as it arrives.
 * Resolves to the list of all of them when the stream ends.
 */
export async function stream(path, opts, onEvent) {
  const res = await request(path, { accept: 'application/x-ndjson', ...opts });
  const all = [];
  if (!res.body) return all;
  for await (const ev of readNdjson(res.body)) {
    all.push(ev);
    if (onEvent) onEvent(ev);
  }
  return all;
}

/**
 * Calls `fn` over `items` with at most `limit` running at once; resolves
 * to the results in order (a failure becomes null and is kept in errors).
 */
export async function mapLimit(items, limit, fn) {
  const results = new Array(items.length).fill(null);
  const errors = [];
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i], i);
      } catch (e) {
        errors.push(e);
        results[i] = null;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return { results, errors };
}
