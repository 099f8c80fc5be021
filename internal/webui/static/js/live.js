// The live feed (docs/api.md §17): one WebSocket per tab, reconnected with
// backoff, its events dispatched by type. A view subscribes with on() and
// its listeners go when the view does.
import { getSession, refresh } from './api.js';

const listeners = new Map();
let ws = null;
let retry = 0;
let timer = null;
let wanted = false;
let opened = false; // a later open is a reconnect: views reload what they missed
const clientId = sessionStorage.getItem('kaiser.client') || ('ui-' + Math.random().toString(36).slice(2, 12));
sessionStorage.setItem('kaiser.client', clientId);

export function on(type, fn) {
  if (!listeners.has(type)) listeners.set(type, new Set());
  listeners.get(type).add(fn);
  return () => listeners.get(type)?.delete(fn);
}

function emit(type, data, msg) {
  for (const fn of listeners.get(type) || []) {
    try { fn(data, msg); } catch (e) { console.error(e); }
  }
}

export function isUp() { return ws?.readyState === WebSocket.OPEN; }

// expiresSoon reads the access token's exp claim: a handshake with an
// expired token would only be refused (401) and retried forever.
function expiresSoon(token) {
  try {
    const claims = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return claims.exp * 1000 < Date.now() + 10000;
  } catch { return false; }
}

export async function connect() {
  wanted = true;
  if (ws && ws.readyState <= WebSocket.OPEN) return;
  if (getSession()?.access && expiresSoon(getSession().access)) await refresh();
  const token = getSession()?.access;
  if (!token || !wanted || (ws && ws.readyState <= WebSocket.OPEN)) return;
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  ws = new WebSocket(`${proto}://${location.host}/api/v1/ws/realtime/${clientId}?token=${encodeURIComponent(token)}`);
  ws.onopen = () => {
    retry = 0;
    emit('_state', true);
    emit('_open', true);
    if (opened) emit('_reconnect', true);
    opened = true;
  };
  ws.onmessage = (e) => {
    let m;
    try { m = JSON.parse(e.data); } catch { return; }
    emit(m.type, m.data || {}, m);
  };
  ws.onclose = async (e) => {
    ws = null;
    emit('_state', false);
    if (!wanted) return;
    // 4001: the session was revoked; a refresh tells whether it still lives.
    if (e.code === 4001 && !(await refresh())) return;
    const delay = Math.min(30000, 500 * 2 ** retry++);
    clearTimeout(timer);
    timer = setTimeout(connect, delay);
  };
}

export function disconnect() {
  wanted = false;
  clearTimeout(timer);
  if (ws) ws.close(1000);
  ws = null;
}
