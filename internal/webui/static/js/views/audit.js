// The audit log (docs/api.md §14): who did what, filtered and paged.
import { get, qs } from '../api.js';
import { t } from '../i18n.js';
import { h, replace, badge, fmtTime, table, field } from '../dom.js';

export async function audit(ctx) {
  const [types, severities] = await Promise.all([get('/audit/event-types').catch(() => []), get('/audit/severities').catch(() => [])]);
  const f = { event_type: '', severity: '', hours: '168', source_id: '' };
  let page = 1;
  const list = h('div', { id: 'audit' });
  const pager = h('div', { class: 'pager' });
  const load = async () => {
    const r = await get('/audit' + qs({ ...f, page, page_size: 50 }));
    if (ctx.disposed) return;
    replace(list, r.data.length ? table([t('Time'), t('Event'), t('Severity'), t('By'), t('Message'), t('Status')], r.data.map((e) => h('tr', null,
      h('td', { class: 'small' }, fmtTime(e.created_at)), h('td', { class: 'mono' }, e.event_type),
      h('td', null, badge(e.severity, t(e.severity))), h('td', { class: 'small' }, `${e.source_type}: ${e.source_id || '–'}`),
      h('td', null, e.message, e.details && Object.keys(e.details).length ? h('details', null, h('summary', { class: 'small' }, t('Details')), h('pre', { class: 'mono small' }, JSON.stringify(e.details, null, 2))) : null),
      h('td', null, badge(e.status === 'success' ? 'success' : 'failed', t(e.status)))))) : h('p', { class: 'muted' }, t('No entries.')));
    replace(pager, h('button', { type: 'button', disabled: page <= 1, onclick: () => { page--; load(); } }, t('Previous')),
      h('span', null, t('Page {p} of {n}', { p: r.page, n: Math.max(1, r.total_pages) }), ` · ${r.total}`),
      h('button', { type: 'button', disabled: page >= r.total_pages, onclick: () => { page++; load(); } }, t('Next')));
  };
  const sel = (key, label, options) => field(label, h('select', { onchange: (e) => { f[key] = e.target.value; page = 1; load(); } },
    options.map(([v, l]) => h('option', { value: v, selected: f[key] === v }, l))));
  replace(ctx.main, h('h1', null, t('Audit log')),
    h('div', { class: 'row' },
      sel('event_type', t('Event'), [['', t('all')], ...types.map((x) => [x.value, x.value])]),
      sel('severity', t('Severity'), [['', t('all')], ...severities.map((x) => [x.value, t(x.value)])]),
      sel('hours', t('Period'), [['24', t('last 24 hours')], ['168', t('last 7 days')], ['720', t('last 30 days')]]),
      field(t('Source id'), h('input', { type: 'search', onchange: (e) => { f.source_id = e.target.value.trim(); page = 1; load(); } }))),
    list, pager);
  await load();
}
