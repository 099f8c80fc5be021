// The alerts inbox (docs/api.md §12): the caller's notifications by state,
// with acknowledge and resolve; new ones arrive over the live feed.
import { api, get, qs } from '../api.js';
import { t } from '../i18n.js';
import { h, replace, badge, fmtTime, table } from '../dom.js';

const STATES = ['active', 'acknowledged', 'resolved'];
let state = 'active';

export async function alerts(ctx) {
  const list = h('div', { id: 'alerts' });
  const tabs = h('div', { class: 'tabs', role: 'group', 'aria-label': t('State') });
  const pager = h('div', { class: 'pager' });
  let page = 1;
  const load = async () => {
    const r = await get('/notifications' + qs({ status: state, page, page_size: 50 }));
    if (ctx.disposed) return;
    replace(tabs, STATES.map((s) => h('button', { type: 'button', 'aria-pressed': String(s === state), onclick: () => { state = s; page = 1; load(); } }, t('alerts_' + s))));
    replace(list, r.data.length ? table([t('Severity'), t('Alert'), t('Source'), t('Created'), ''], r.data.map((n) => h('tr', { dataset: { alert: n.id } },
      h('td', null, badge(n.severity, t(n.severity))),
      h('td', null, h('b', null, n.title), n.body ? h('div', { class: 'small' }, n.body) : null),
      h('td', { class: 'small' }, [n.source, n.category].filter(Boolean).join(' · ')),
      h('td', { class: 'small' }, fmtTime(n.created_at), n.acknowledged_at ? h('div', { class: 'muted' }, t('acknowledged {at}', { at: fmtTime(n.acknowledged_at) })) : null),
      h('td', null, h('div', { class: 'row' },
        n.status === 'active' ? h('button', { type: 'button', dataset: { ack: n.id }, onclick: () => act(n.id, 'acknowledge') }, t('Acknowledge')) : null,
        n.status !== 'resolved' ? h('button', { type: 'button', dataset: { resolve: n.id }, onclick: () => act(n.id, 'resolve') }, t('Resolve')) : null)))))
      : h('p', { class: 'muted' }, t('No alerts here.')));
    const p = r.pagination;
    replace(pager, p.total_pages > 1 ? [
      h('button', { type: 'button', disabled: !p.has_prev, onclick: () => { page--; load(); } }, t('Previous')),
      h('span', null, t('Page {p} of {n}', { p: p.page, n: p.total_pages })),
      h('button', { type: 'button', disabled: !p.has_next, onclick: () => { page++; load(); } }, t('Next'))] : []);
  };
  const act = async (id, what) => {
    try { await api('PATCH', `/notifications/${id}/${what}`); load(); } catch (err) { replace(list, h('p', { class: 'error', role: 'alert' }, err.message)); }
  };
  const readAll = h('button', { type: 'button', onclick: async () => { await api('PATCH', '/notifications/read-all'); load(); } }, t('Mark all read'));
  replace(ctx.main, h('div', { class: 'titlebar' }, h('h1', null, t('Alerts')), readAll), tabs, list, pager);
  await load();
  let timer = null;
  ctx.on('notification', () => { clearTimeout(timer); timer = setTimeout(() => load(), 200); });
  ctx.cleanup(() => clearTimeout(timer));
}
