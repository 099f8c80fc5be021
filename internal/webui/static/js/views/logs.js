// The hub's log viewer (docs/api.md §15, admin): filters by level,
// component, text, request id and file; newest first, paged.
import { get, qs } from '../api.js';
import { t } from '../i18n.js';
import { h, replace, badge, fmtTime, table, field } from '../dom.js';

export async function logs(ctx) {
  const files = await get('/logs/files').catch(() => ({ files: [] }));
  const f = { level: 'INFO', component: '', search: '', request_id: '', file: '' };
  let page = 1;
  const list = h('div', { id: 'logs' });
  const pager = h('div', { class: 'pager' });
  const load = async () => {
    const r = await get('/logs' + qs({ ...f, page, page_size: 100 }));
    if (ctx.disposed) return;
    replace(list, r.logs.length ? table([t('Time'), t('Level'), t('Component'), t('Message')], r.logs.map((e) => {
      const extra = { ...(e.attributes || {}) };
      if (e.file) extra.file = e.file;
      return h('tr', null, h('td', { class: 'small mono' }, fmtTime(e.timestamp)),
        h('td', null, badge({ ERROR: 'error', WARN: 'warning', INFO: 'info', DEBUG: 'unknown' }[e.level] || 'info', e.level)),
        h('td', { class: 'small mono' }, e.component || ''),
        h('td', null, e.message, e.error ? h('div', { class: 'small error' }, e.error) : null,
          e.request_id ? h('div', { class: 'small muted mono' }, e.request_id) : null,
          Object.keys(extra).length ? h('details', null, h('summary', { class: 'small' }, t('Details')), h('pre', { class: 'mono small' }, JSON.stringify(extra, null, 2))) : null));
    })) : h('p', { class: 'muted' }, t('No log lines match.')),
    r.truncated ? h('p', { class: 'notice small' }, t('The search stopped at its read limit; narrow it down.')) : null);
    replace(pager, h('button', { type: 'button', disabled: page <= 1, onclick: () => { page--; load(); } }, t('Previous')),
      h('span', null, t('Page {p}', { p: r.page }), ` · ${r.total_count}`),
      h('button', { type: 'button', disabled: !r.has_more, onclick: () => { page++; load(); } }, t('Next')));
  };
  const input = (key, label, attrs) => field(label, h('input', { type: 'search', ...attrs, onchange: (e) => { f[key] = e.target.value.trim(); page = 1; load(); } }));
  replace(ctx.main, h('h1', null, t('Logs')),
    h('div', { class: 'row' },
      field(t('Level'), h('select', { onchange: (e) => { f.level = e.target.value; page = 1; load(); } },
        ['DEBUG', 'INFO', 'WARNING', 'ERROR'].map((l) => h('option', { value: l, selected: l === f.level }, l)))),
      input('component', t('Component')), input('search', t('Text'), { maxLength: 200 }), input('request_id', t('Request id')),
      field(t('File'), h('select', { onchange: (e) => { f.file = e.target.value; page = 1; load(); } },
        h('option', { value: '' }, t('current')), (files.files || []).map((x) => h('option', { value: x.name }, `${x.name} (${x.size_human})`)))),
      h('button', { type: 'button', onclick: () => load() }, t('Refresh'))),
    list, pager);
  await load();
}
