// The console's only way to the server: the public admin REST API under /api/v1, same origin.
// The session cookie (HttpOnly, set by POST /api/v1/sessions) authenticates; every state change
// carries the session's CSRF token in X-CSRF-Token. The API key itself never stays in the browser.

export const API = "/api/v1";

/** An API error: `status` (HTTP), `code` ("validation_failed", "precondition_failed", ...),
 * `message`, and `details`: [{path: JSON pointer into the request, message}]. */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = (body && body.code) || "http_error";
    this.details = (body && Array.isArray(body.details)) ? body.details : [];
    this.body = body;
  }
}

let csrfToken = null;
let onUnauthenticated = () => {};

/** Remember the CSRF token of the current session (from POST /sessions or GET /sessions/current). */
export function setCsrfToken(token) {
  csrfToken = token;
}

let onChange = () => {};

/** Called after every successful change (any non-GET request): the header's propagation indicator looks
 * again at once instead of at its next poll. */
export function setChangeListener(listener) {
  onChange = listener;
}

/** What to do when the session is gone (401): the shell shows the sign-in page. */
export function setUnauthenticatedHandler(handler) {
  onUnauthenticated = handler;
}

/**
 * request("PATCH", "/projects/p/flags/f", {body, ifMatch, idempotencyKey, query})
 * → {status, body, etag, headers}. Throws ApiError for any status >= 400.
 */
export async function request(method, path, options = {}) {
  const { body, ifMatch, idempotencyKey, query } = options;
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  if (ifMatch) headers["If-Match"] = ifMatch;
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  let url = API + path;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v === null || v === undefined || v === "") continue;
      for (const one of Array.isArray(v) ? v : [v]) params.append(k, String(one));
    }
    const text = params.toString();
    if (text) url += "?" + text;
  }
  const response = await fetch(url, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let parsed = null;
  if (response.status !== 204) {
    const text = await response.text();
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = { message: text.slice(0, 200) };
      }
    }
  }
  if (response.status === 401 && !path.startsWith("/sessions")) onUnauthenticated();
  if (!response.ok) throw new ApiError(response.status, parsed);
  if (method !== "GET" && method !== "HEAD" && !path.startsWith("/sessions")) onChange(method, path);
  return { status: response.status, body: parsed, etag: response.headers.get("ETag"), headers: response.headers };
}

export const get = (path, query) => request("GET", path, { query });

/** Every item of a paginated list (`{items, next_cursor}`), following cursors up to `max` items. */
export async function getAll(path, query = {}, max = 5000) {
  const items = [];
  let cursor = null;
  do {
    const { body } = await get(path, { ...query, cursor, limit: 200 });
    items.push(...body.items);
    cursor = body.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

/** A fresh Idempotency-Key, so a retried POST is never applied twice. */
export function idempotencyKey() {
  return crypto.randomUUID();
}
