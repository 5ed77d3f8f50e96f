// The node's HTTP API, same origin: the browser's session cookie signs every call in,
// and the browser sets `Origin` on every call that changes something. Errors arrive as
// RFC 9457 problem documents and are thrown as `ApiError`.

import { randomKey } from './format.js';

/** A failed call: HTTP status (0: no answer) and the problem document's fields. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.type = problem.type ?? '';
    this.title = problem.title ?? '';
    this.detail = problem.detail || problem.title || `the node answered HTTP ${status}`;
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
  }
}

/** Fired on `window` when the node answers 401: the browser is not signed in. */
export const SIGNED_OUT = 'orien:signed-out';

/**
 * Calls the API. `json`: a body sent as JSON; `body`: a raw body (a File, bytes);
 * `idempotent`: sends a fresh `Idempotency-Key`, so a retry by the network never pays
 * twice. Answers the parsed JSON (or null without a body).
 */
export async function call(method, path, { json, body, idempotent, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (json !== undefined) headers['Content-Type'] = 'application/json';
  if (body !== undefined) headers['Content-Type'] = 'application/octet-stream';
  if (idempotent) headers['Idempotency-Key'] = randomKey();
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: json !== undefined ? JSON.stringify(json) : body,
      credentials: 'same-origin',
      cache: 'no-store',
      signal,
    });
  } catch (e) {
    if (e?.name === 'AbortError') throw e;
    throw new ApiError(0, {
      detail: 'The node did not answer. Is orien-node still running? Reload the page once it is.',
    });
  }
  if (response.status === 401) {
    window.dispatchEvent(new CustomEvent(SIGNED_OUT));
    throw new ApiError(401, await problemOf(response));
  }
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  if (response.status === 204) return null;
  const type = response.headers.get('content-type') ?? '';
  if (type.includes('json')) return response.json();
  return response.text();
}

async function problemOf(response) {
  try {
    const type = response.headers.get('content-type') ?? '';
    if (type.includes('json')) return await response.json();
    const text = (await response.text()).trim();
    return { detail: text.slice(0, 500) || `the node answered HTTP ${response.status}` };
  } catch {
    return { detail: `the node answered HTTP ${response.status}` };
  }
}

export const get = (path, options) => call('GET', path, options);
export const post = (path, json, options = {}) => call('POST', path, { json, ...options });

/** A path segment, escaped. */
export const seg = (value) => encodeURIComponent(String(value));

/** A workspace path as URL segments (each escaped, the slashes kept). */
export const filePath = (path) => String(path).split('/').map(seg).join('/');

/** A query string of the set parameters: `?a=1&b=2`, or '' without any. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') q.set(key, String(value));
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}

/** Whether an error is the node saying it has no chain (payments through the ledgers only). */
export function isNoChain(error) {
  return error instanceof ApiError && error.status === 409 && /not connected to a chain/i.test(error.detail);
}
