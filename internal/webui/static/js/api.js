// The REST client: JSON in and out, the session's tokens, one refresh on an
// expired access token, and errors as ApiError with the hub's machine code
// (docs/api.md §1.5).
const KEY = 'kaiser.session';
let session = load();
let refreshing = null;
const listeners = new Set();

function load() {
  try { return JSON.parse(localStorage.getItem(KEY) || 'null'); } catch { return null; }
}

export function getSession() { return session; }

export function setSession(s) {
  session = s;
  if (s) localStorage.setItem(KEY, JSON.stringify(s)); else localStorage.removeItem(KEY);
  for (const fn of listeners) fn(s);
}

export function onSession(fn) { listeners.add(fn); }

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message || code || String(status));
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

function send(method, path, body, token) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  return fetch('/api/v1' + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

// refresh rotates the token pair once for every caller waiting on it.
export function refresh() {
  if (!session?.refresh) return Promise.resolve(false);
  refreshing ??= (async () => {
    try {
      const res = await send('POST', '/auth/refresh', { refresh_token: session.refresh });
      if (!res.ok) return false;
      const b = await res.json();
      setSession({ ...session, access: b.tokens.access_token, refresh: b.tokens.refresh_token });
      return true;
    } catch { return false; } finally { setTimeout(() => { refreshing = null; }, 0); }
  })();
  return refreshing;
}

export async function api(method, path, body) {
  let res = await send(method, path, body, session?.access);
  // An expired access token is renewed once; the routes that hand out
  // tokens answer 401 for wrong credentials, which a refresh cannot fix.
  if (res.status === 401 && session?.refresh && !/^\/auth\/(login|setup|refresh)/.test(path)) {
    if (await refresh()) res = await send(method, path, body, session?.access);
    else setSession(null);
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let b = null;
  try { b = text ? JSON.parse(text) : null; } catch { b = null; }
  if (!res.ok) {
    const e = b?.error || {};
    let msg = e.message || (typeof b?.detail === 'string' ? b.detail : '') || res.statusText;
    const errs = e.details?.errors || (Array.isArray(b?.detail) ? b.detail : null);
    if (Array.isArray(errs) && errs.length) {
      msg = errs.map((x) => (x.loc ? x.loc.filter((p) => p !== 'body').join('.') + ': ' : x.path ? x.path + ': ' : '') + (x.msg || x.message)).join('; ');
    }
    if (res.status === 401 && session) setSession(null);
    throw new ApiError(res.status, e.code, msg, e.details);
  }
  return b;
}

export const get = (p) => api('GET', p);
export const post = (p, b) => api('POST', p, b ?? {});

// all reads every page of a paginated list (docs/api.md §1.7), the pages
// after the first in parallel.
export async function all(path, pageSize = 100) {
  const sep = path.includes('?') ? '&' : '?';
  const first = await get(`${path}${sep}page=1&page_size=${pageSize}`);
  const pages = first.pagination?.total_pages || 1;
  const rest = await Promise.all(Array.from({ length: Math.max(0, pages - 1) }, (_, i) =>
    get(`${path}${sep}page=${i + 2}&page_size=${pageSize}`)));
  return [first, ...rest].flatMap((p) => p.data || []);
}

export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== '') u.set(k, v);
  const s = u.toString();
  return s ? '?' + s : '';
}
