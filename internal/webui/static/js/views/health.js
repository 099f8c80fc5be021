// System health (docs/api.md §13, §16.1): ingest rate, drops by reason,
// queue depths, database size, broker and live feed; for admins the
// scheduled jobs with a trigger. Refreshed every 5 s.
import { get, post } from '../api.js';
import { t } from '../i18n.js';
import { h, replace, badge, fmtNum, fmtTime, table } from '../dom.js';

const mb = (b) => (b == null ? '–' : fmtNum(b / 1048576, 1) + ' MiB');

export async function health(ctx) {
  const box = h('div', { id: 'health' });
  const jobs = h('div', { id: 'jobs' });
  const admin = ctx.can('admin');
  const load = async () => {
    const [d, m] = await Promise.all([get('/health/detailed'), admin ? get('/debug/maintenance/status').catch(() => null) : null]);
    if (ctx.disposed) return;
    const kv = (pairs) => h('dl', { class: 'kv' }, pairs.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
    const map = (obj, head) => Object.keys(obj || {}).length ? table([head, t('Count')],
      Object.entries(obj).sort((a, b) => b[1] - a[1]).map(([k, v]) => h('tr', null, h('td', { class: 'mono' }, k), h('td', { class: 'num' }, fmtNum(v, 0))))) : h('p', { class: 'muted small' }, t('none'));
    const ing = d.ingest || {};
    replace(box, h('div', { class: 'stats' }, badge(d.status, t(d.status)), h('span', null, t('up {u}', { u: d.uptime_formatted || '' })), h('span', { class: 'small muted' }, d.version)),
      (d.warnings || []).map((w) => h('p', { class: 'notice small' }, typeof w === 'string' ? w : JSON.stringify(w))),
      h('div', { class: 'grid fit' },
        h('section', { class: 'card' }, h('h2', null, t('Ingest')), kv([
          [t('Messages per second'), h('b', { id: 'ingest-rate' }, fmtNum(ing.messages_per_second, 1))],
          [t('Averaged over'), ing.rate_window_seconds ? ing.rate_window_seconds + ' s' : '–']]),
        h('h3', null, t('Dropped by reason')), map(ing.dropped, t('Reason')),
        h('h3', null, t('Queue depths')), map(ing.queue_depths, t('Queue'))),
        h('section', { class: 'card' }, h('h2', null, t('Database')), kv([
          [t('Connected'), d.database?.connected ? t('yes') : t('no')],
          [t('Latency'), d.database?.latency_ms != null ? fmtNum(d.database.latency_ms, 1) + ' ms' : '–'],
          [t('Size'), h('b', { id: 'db-size' }, mb(d.database?.size_bytes))]]),
        (d.database?.files || []).length ? table([t('File'), t('Size'), 'WAL'], d.database.files.map((f) => h('tr', null,
          h('td', { class: 'mono small' }, f.name || f.path || ''), h('td', { class: 'num' }, mb(f.size_bytes)), h('td', { class: 'num' }, mb(f.wal_size_bytes))))) : null),
        h('section', { class: 'card' }, h('h2', null, t('Broker')), kv([
          [t('Connected'), d.mqtt?.connected ? t('yes') : t('no')],
          [t('Device login'), d.mqtt?.auth_mode || '–'],
          [t('Received'), fmtNum(d.mqtt?.messages_received, 0)], [t('Published'), fmtNum(d.mqtt?.messages_published, 0)],
          [t('Publish failures'), fmtNum(d.mqtt?.publish_failures, 0)], [t('Last message'), fmtTime(d.mqtt?.last_message_at)]])),
        h('section', { class: 'card' }, h('h2', null, t('Live feed and system')), kv([
          [t('Connections'), fmtNum(d.websocket?.active_connections, 0)], [t('Messages sent'), fmtNum(d.websocket?.total_messages_sent, 0)],
          [t('Coalesced'), fmtNum(d.websocket?.messages_coalesced, 0)], [t('Slow clients dropped'), fmtNum(d.websocket?.slow_client_disconnects, 0)],
          ['CPU', d.system?.cpu_percent != null ? fmtNum(d.system.cpu_percent, 0) + ' %' : '–'],
          [t('Memory'), d.system?.memory_percent != null ? fmtNum(d.system.memory_percent, 0) + ' %' : '–'],
          [t('Disk free'), d.system?.disk_free_gb != null ? fmtNum(d.system.disk_free_gb, 1) + ' GB' : '–']]))),
      (d.components || []).length ? [h('h2', null, t('Components')), table([t('Component'), t('Status'), t('Message')],
        d.components.map((c) => h('tr', null, h('td', null, c.name), h('td', null, badge(c.status, t(c.status))), h('td', { class: 'small' }, c.message || ''))))] : null);
    if (m) {
      replace(jobs, h('h2', null, t('Scheduled jobs')), table([t('Job'), t('Last run'), t('Result'), t('Next run'), ''], (m.jobs || []).map((j) => h('tr', null,
        h('td', { class: 'mono' }, j.job_id), h('td', { class: 'small' }, fmtTime(j.last_run)),
        h('td', { class: 'small' }, j.last_result ?? '–'),
        h('td', { class: 'small' }, fmtTime(j.next_run)),
        h('td', null, h('button', { type: 'button', onclick: async (e) => {
          e.target.disabled = true;
          try { const r = await post(`/debug/maintenance/trigger/${encodeURIComponent(j.job_id)}`); e.target.title = r.message || ''; } catch (err) { e.target.title = err.message; e.target.classList.add('danger'); }
          e.target.disabled = false; load();
        } }, t('Run now')))))));
    }
  };
  replace(ctx.main, h('h1', null, t('System health')), box, jobs);
  await load();
  ctx.every(5000, () => load().catch(() => {}));
}
