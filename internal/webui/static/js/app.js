// The dashboard's shell: start-up (setup, login or the session), the client
// router over /ui/… paths, the navigation by role, the language switch and
// the live-feed indicator. Views are modules loaded on first use.
import { api, get, getSession, setSession, onSession } from './api.js';
import * as live from './live.js';
import { t, lang, setLang } from './i18n.js';
import { h, replace } from './dom.js';
import * as estop from './emergency.js';

const main = document.getElementById('main');
let user = null;
let current = null; // the mounted view's context

const rank = { viewer: 1, operator: 2, admin: 3 };
export const can = (role) => !!user && rank[user.role] >= rank[role];

// Routes: a path pattern, the view module, its export and the minimum role.
const routes = [
  [/^\/(?:ui\/?)?$/, 'overview', 'overview', 'viewer'],
  [/^\/ui\/devices\/([^/]+)\/?$/, 'device', 'device', 'viewer'],
  [/^\/ui\/rules\/?$/, 'rules', 'list', 'viewer'],
  [/^\/ui\/rules\/([^/]+)\/?$/, 'rules', 'editor', 'viewer'],
  [/^\/ui\/alerts\/?$/, 'alerts', 'alerts', 'viewer'],
  [/^\/ui\/audit\/?$/, 'audit', 'audit', 'viewer'],
  [/^\/ui\/health\/?$/, 'health', 'health', 'viewer'],
  [/^\/ui\/users\/?$/, 'users', 'users', 'admin'],
  [/^\/ui\/logs\/?$/, 'logs', 'logs', 'admin'],
  [/^\/ui\/login\/?$/, 'auth', 'login', null],
  [/^\/ui\/setup\/?$/, 'auth', 'setup', null],
];

const navItems = [
  ['/', 'Overview', 'viewer'],
  ['/ui/rules', 'Rules', 'viewer'],
  ['/ui/alerts', 'Alerts', 'viewer'],
  ['/ui/audit', 'Audit log', 'viewer'],
  ['/ui/health', 'System health', 'viewer'],
  ['/ui/users', 'Users', 'admin'],
  ['/ui/logs', 'Logs', 'admin'],
];

export function navigate(path, replaceState) {
  if (replaceState) history.replaceState(null, '', path); else history.pushState(null, '', path);
  render();
}

// A view's context: where it draws, who is looking, and listeners and
// timers that end with it.
function context() {
  const cleanups = [];
  return {
    main, user, can, navigate,
    on(type, fn) { cleanups.push(live.on(type, fn)); },
    every(ms, fn) { const id = setInterval(fn, ms); cleanups.push(() => clearInterval(id)); },
    cleanup(fn) { cleanups.push(fn); },
    dispose() { for (const fn of cleanups.splice(0)) fn(); this.disposed = true; },
    disposed: false,
  };
}

async function render() {
  const path = location.pathname;
  let match = null;
  for (const r of routes) {
    const m = path.match(r[0]);
    if (m) { match = [r, m.slice(1).map(decodeURIComponent)]; break; }
  }
  current?.dispose();
  current = context();
  const ctx = current;
  drawChrome();
  if (!match) {
    replace(main, h('h1', null, t('Not found')), h('p', null, h('a', { href: '/' }, t('Back to the overview'))));
    return;
  }
  const [[, mod, fn, role], params] = match;
  if (role && !user) { navigate('/ui/login', true); return; }
  if (role && !can(role)) {
    replace(main, h('h1', null, t('Not allowed')), h('p', null, t('Your role does not include this page.')));
    return;
  }
  try {
    const view = await import(`./views/${mod}.js`);
    if (ctx.disposed) return;
    document.title = 'kaiser';
    await view[fn](ctx, ...params);
  } catch (e) {
    if (ctx.disposed) return;
    console.error(e);
    replace(main, h('h1', null, t('Something went wrong')), h('p', { class: 'error' }, e.message));
  }
}

function drawChrome() {
  const nav = document.getElementById('nav');
  const path = location.pathname;
  replace(nav, user ? navItems.filter(([, , r]) => can(r)).map(([href, label]) =>
    h('a', { href, 'aria-current': (href === '/' ? /^\/(ui\/?)?$|^\/ui\/devices/.test(path) : path.startsWith(href)) ? 'page' : null },
      t(label), href === '/ui/alerts' ? h('span', { id: 'unread', class: 'small' }) : null)) : []);
  const who = document.getElementById('who');
  replace(who, user ? [h('span', { class: 'small muted' }, `${user.username} (${t(user.role)}) `),
    h('button', { type: 'button', onclick: logout }, t('Log out'))] : []);
  document.querySelector('.skip').textContent = t('Skip to content');
  estop.chrome({ user, can, navigate });
  unread();
}

async function unread() {
  const el = document.getElementById('unread');
  if (!el || !user) return;
  try {
    const u = await get('/notifications/unread-count');
    el.textContent = u.unread_count ? ` (${u.unread_count})` : '';
  } catch { /* the badge is optional */ }
}

async function logout() {
  try { await api('POST', '/auth/logout', { refresh_token: getSession()?.refresh }); } catch { /* gone anyway */ }
  setSession(null);
}

// Links below / are the router's; modified clicks keep the browser's meaning.
document.addEventListener('click', (e) => {
  const a = e.target.closest('a');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const href = a.getAttribute('href');
  if (!href || !href.startsWith('/') || href.startsWith('/api/') || a.target) return;
  e.preventDefault();
  navigate(href);
});
window.addEventListener('popstate', render);

const langSelect = document.getElementById('lang');
langSelect.value = lang();
langSelect.setAttribute('aria-label', t('Language'));
langSelect.addEventListener('change', () => { setLang(langSelect.value); langSelect.setAttribute('aria-label', t('Language')); render(); });

const liveState = document.getElementById('live-state');
live.on('_state', (up) => {
  liveState.classList.toggle('up', up);
  liveState.textContent = up ? t('live') : t('offline');
});
live.on('notification', unread);

onSession(async (s) => {
  if (s) return;
  user = null;
  live.disconnect();
  estop.reset();
  navigate('/ui/login', true);
});

// signedIn is called by the login and setup views with the reply's tokens.
export async function signedIn(tokens, u) {
  setSession({ access: tokens.access_token, refresh: tokens.refresh_token });
  user = u;
  live.connect();
  await estop.load();
  const next = sessionStorage.getItem('kaiser.next');
  sessionStorage.removeItem('kaiser.next');
  navigate(next && next.startsWith('/') && !next.startsWith('/ui/login') ? next : '/', true);
}

async function boot() {
  const path = location.pathname;
  // The setup check and the session's user in parallel: both are needed
  // before the first view, and the overview's budget is one second.
  const [status, me] = await Promise.all([
    get('/auth/status').catch(() => null),
    getSession() ? get('/auth/me').catch(() => null) : null,
  ]);
  if (status?.setup_required) { navigate('/ui/setup', true); return; }
  user = me;
  if (!user) {
    if (!/^\/ui\/(login|setup)/.test(path)) sessionStorage.setItem('kaiser.next', path);
    navigate('/ui/login', true);
    return;
  }
  if (/^\/ui\/(login|setup)/.test(path)) history.replaceState(null, '', '/');
  live.connect();
  estop.load(); // draws the banner when it answers; views ask estop.latched
  render();
}

boot();
