// The JSON admin API: bearer token from the staff login, RFC 9457 problems as ApiError.

const KEY = 'voltway.admin.session';

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || 'error';
    this.title = problem.title || '';
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
    this.retryAfter = problem.retryAfter;
  }
}

let session = null;
let onSignedOut = () => {};

export function loadSession() {
  try {
    const raw = sessionStorage.getItem(KEY);
    session = raw ? JSON.parse(raw) : null;
  } catch {
    session = null;
  }
  if (session && session.expiresAt && session.expiresAt < Date.now()) session = null;
  return session;
}

export function currentSession() {
  return session;
}

export function setSignedOutHandler(fn) {
  onSignedOut = fn;
}

export function signOut(reason) {
  session = null;
  sessionStorage.removeItem(KEY);
  onSignedOut(reason);
}

const PERMS = {
  admin: ['read', 'fleet_write', 'pricing_write'],
  pricing_admin: ['read', 'pricing_write'],
  operator: ['read', 'fleet_write'],
  viewer: ['read'],
};

export function can(permission) {
  return Boolean(session && session.roles.some((r) => (PERMS[r] || []).includes(permission)));
}

async function problemOf(resp) {
  let body = {};
  try {
    body = await resp.json();
  } catch {
    body = { title: resp.statusText };
  }
  body.retryAfter = resp.headers.get('retry-after');
  return new ApiError(resp.status, body);
}

export async function login(email, password, totpCode) {
  const resp = await fetch('/admin/v1/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ email, password, totp_code: totpCode }),
  });
  if (!resp.ok) throw await problemOf(resp);
  const body = await resp.json();
  session = {
    token: body.access_token,
    roles: body.roles,
    email,
    expiresAt: Date.now() + (body.expires_in_s || 3600) * 1000,
  };
  sessionStorage.setItem(KEY, JSON.stringify(session));
  return session;
}

// api('GET', '/admin/v1/tariffs', {query: {...}}) → parsed JSON; throws ApiError.
export async function api(method, path, { query, body, accept } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  }
  const headers = { accept: accept || 'application/json' };
  if (session) headers.authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const resp = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (resp.status === 401 && session) {
    signOut('Your session has ended. Please sign in again.');
    throw await problemOf(resp);
  }
  if (!resp.ok) throw await problemOf(resp);
  if (accept && accept !== 'application/json') return resp.blob();
  if (resp.status === 204) return null;
  return resp.json();
}

// Every page of a list endpoint ({items, next_cursor}), up to `max` items.
export async function all(path, query = {}, max = 5000) {
  const items = [];
  let cursor = null;
  do {
    const page = await api('GET', path, { query: { ...query, cursor } });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

// A human sentence for an error, for places without field-level messages.
export function explain(err) {
  if (!(err instanceof ApiError)) return `Something went wrong: ${err.message}`;
  if (err.status === 403) return `Your role does not allow this (${err.detail || err.message}).`;
  if (err.status === 429) return `Too many attempts. Try again in ${err.retryAfter || 'a few'} seconds.`;
  if (err.errors.length) return err.errors.map((e) => `${e.field}: ${e.message}`).join('; ');
  return err.message;
}
