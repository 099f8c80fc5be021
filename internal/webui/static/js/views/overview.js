// The fleet overview (issue 12): every approved device by zone with its
// status, RSSI, last seen and live values, and the devices waiting for
// approval with approve and reject. Values change in place from the live
// feed; a status change that moves a device between lists reloads the lists.
import { all, get, post } from '../api.js';
import { t } from '../i18n.js';
import { h, replace, badge, fmtNum, ago, rssiText, table, ask } from '../dom.js';

const UNASSIGNED = '\u0000';
let lastFilter = ''; // kept across the reloads that live events cause

export async function overview(ctx) {
  performance.mark('overview-start');
  const [devices, pending, zones, latest] = await Promise.all([
    all('/esp/devices'),
    get('/esp/devices/pending'),
    all('/zones').catch(() => []),
    // Readings of sensors that have no config yet (a node that reports
    // before anyone configured it) are shown too.
    get('/sensors/data/latest').then((r) => r.data).catch(() => []),
  ]);
  if (ctx.disposed) return;
  performance.mark('overview-data');

  const values = new Map(); // esp|gpio|type → value element
  const cards = new Map(); // esp_id → {status, rssi, seen, lastSeen, box, shown}
  const unconfigured = new Map(); // esp_id → latest readings without a config
  for (const r of latest) {
    if (!unconfigured.has(r.esp_id)) unconfigured.set(r.esp_id, []);
    unconfigured.get(r.esp_id).push({ gpio: r.gpio, sensor_type: r.sensor_type, unit: r.unit, processed_value: r.value });
  }
  const zoneNames = new Map(zones.map((z) => [z.zone_id, z.name]));
  const filter = h('input', { id: 'filter', type: 'search', placeholder: t('Filter by name or id'), 'aria-label': t('Filter by name or id') });

  const byZone = new Map();
  for (const d of devices) {
    const z = d.zone_id || UNASSIGNED;
    if (!byZone.has(z)) byZone.set(z, []);
    byZone.get(z).push(d);
  }
  const order = [...byZone.keys()].sort((a, b) => (a === UNASSIGNED) - (b === UNASSIGNED) ||
    (zoneNames.get(a) || a).localeCompare(zoneNames.get(b) || b));

  // The counts follow the live feed like the cards do.
  const statusOf = new Map(devices.map((d) => [d.device_id, d.status]));
  const stats = h('div', { class: 'stats', role: 'status' });
  const drawStats = () => {
    const counts = {};
    for (const st of statusOf.values()) counts[st] = (counts[st] || 0) + 1;
    replace(stats,
      h('span', null, h('b', null, String(devices.length)), ' ', t('devices')),
      h('span', null, h('b', { class: 'ok', id: 'count-online' }, String(counts.online || 0)), ' ', t('online')),
      h('span', null, h('b', { class: 'error' }, String(counts.offline || 0)), ' ', t('offline')),
      h('span', null, h('b', null, String(pending.devices.length)), ' ', t('waiting for approval')));
  };
  drawStats();
  const setStatus = (espId, st) => {
    const c = cards.get(espId);
    if (!c || statusOf.get(espId) === st) return;
    statusOf.set(espId, st);
    replace(c.status, t(st));
    c.status.className = 'badge b-' + st;
    drawStats();
  };

  // addValue puts one sensor's value on a device's card (at most six).
  const addValue = (espId, s) => {
    const c = cards.get(espId);
    const key = `${espId}|${s.gpio}|${s.sensor_type}`;
    if (!c || values.has(key) || c.shown >= 6) return values.get(key);
    const v = h('b', null, fmtNum(s.processed_value ?? s.raw_value));
    values.set(key, v);
    c.shown++;
    c.box.append(h('span', { class: 'value' }, h('span', { class: 'label' }, s.name || `${s.sensor_type} · ${s.gpio}`), v,
      h('span', { class: 'unit' }, s.unit && s.unit !== 'raw' ? s.unit : '')));
    c.box.parentElement?.querySelector('[data-nosensors]')?.remove();
    return v;
  };

  const card = (d) => {
    const status = badge(d.status);
    const rssi = h('span', { title: t('Wi-Fi signal') }, rssiText(d.wifi_rssi));
    const seen = h('span', { title: t('Last seen') });
    const box = h('div', { class: 'values' });
    const entry = { status, rssi, seen, lastSeen: d.last_seen, box, shown: 0 };
    seen.textContent = ago(d.last_seen);
    cards.set(d.device_id, entry);
    const known = new Set((d.sensors || []).map((s) => `${s.gpio}|${s.sensor_type}`));
    const extra = (unconfigured.get(d.device_id) || []).filter((r) => !known.has(`${r.gpio}|${r.sensor_type}`));
    for (const s of [...(d.sensors || []), ...extra]) addValue(d.device_id, s);
    const acts = (d.actuators || []).map((a) => h('span', { class: 'small' }, (a.name || a.actuator_type) + ' ',
      badge(a.stale ? 'stale' : a.confirmed_state, t('state_' + (a.stale ? 'stale' : a.confirmed_state)))));
    return h('a', { class: 'card device', href: '/ui/devices/' + encodeURIComponent(d.device_id),
      dataset: { id: d.device_id, search: `${d.device_id} ${d.name || ''}`.toLowerCase() } },
    h('div', { class: 'head' }, h('span', { class: 'name' }, d.name || d.device_id), status),
    d.name ? h('span', { class: 'small muted mono' }, d.device_id) : null,
    entry.shown ? box : [box, h('span', { class: 'small muted', dataset: { nosensors: '1' } }, t('No sensors configured'))],
    acts.length ? h('div', { class: 'values' }, acts) : null,
    h('div', { class: 'meta' }, rssi, seen));
  };

  const pendingSection = pending.devices.length ? h('section', { 'aria-labelledby': 'pending-h' },
    h('h2', { id: 'pending-h' }, t('Waiting for approval'), ` (${pending.devices.length})`),
    table([t('Device'), t('Discovered'), t('Wi-Fi signal'), t('Address'), t('Hardware'), ctx.can('operator') ? t('Decision') : null].filter(Boolean),
      pending.devices.map((p) => h('tr', { dataset: { pending: p.device_id } },
        h('td', { class: 'mono' }, p.device_id),
        h('td', null, ago(p.discovered_at)),
        h('td', null, rssiText(p.wifi_rssi)),
        h('td', { class: 'mono' }, p.ip_address || '–'),
        h('td', null, p.hardware_type || '–'),
        ctx.can('operator') ? h('td', null, h('div', { class: 'row' },
          h('button', { class: 'primary', type: 'button', dataset: { approve: p.device_id }, onclick: (e) => approve(e, p.device_id) }, t('Approve')),
          h('button', { class: 'danger', type: 'button', dataset: { reject: p.device_id }, onclick: (e) => reject(e, p.device_id) }, t('Reject')))) : null)))) : null;

  const problem = h('p', { class: 'error', role: 'alert' });
  const approve = async (e, id) => {
    e.target.disabled = true;
    try { await post(`/esp/devices/${encodeURIComponent(id)}/approve`, {}); reload(); } catch (err) { problem.textContent = err.message; e.target.disabled = false; }
  };
  const reject = async (e, id) => {
    const reason = await ask(t('Reject {id}', { id }), t('Why is {id} rejected?', { id }), t('Unknown device'));
    if (!reason) return;
    try { await post(`/esp/devices/${encodeURIComponent(id)}/reject`, { reason }); reload(); } catch (err) { problem.textContent = err.message; }
  };

  const sections = order.map((z) => h('section', { class: 'zone', 'aria-labelledby': 'z-' + (z === UNASSIGNED ? 'none' : z) },
    h('h2', { id: 'z-' + (z === UNASSIGNED ? 'none' : z) }, z === UNASSIGNED ? t('No zone') : (zoneNames.get(z) || z),
      h('span', { class: 'small muted' }, ` · ${byZone.get(z).length}`)),
    h('div', { class: 'grid' }, byZone.get(z).map(card))));

  const applyFilter = () => {
    lastFilter = filter.value;
    const q = filter.value.trim().toLowerCase();
    for (const el of ctx.main.querySelectorAll('.device')) el.hidden = !!q && !el.dataset.search.includes(q);
  };
  filter.addEventListener('input', applyFilter);
  filter.value = lastFilter;

  replace(ctx.main, h('h1', null, t('Overview')), stats, problem, pendingSection,
    devices.length ? h('div', { class: 'row filter' }, filter) : null,
    devices.length ? sections : h('p', { class: 'muted', id: 'empty' }, pending.devices.length ? t('Approve a device to see it here.') : t('No devices yet. Nodes appear here when they send their first heartbeat.')));
  if (lastFilter) applyFilter();

  let timer = null;
  const reload = () => { clearTimeout(timer); timer = setTimeout(() => { if (!ctx.disposed) ctx.navigate(location.pathname, true); }, 300); };
  ctx.cleanup(() => clearTimeout(timer));

  ctx.on('sensor_data', (d) => {
    const el = values.get(`${d.esp_id}|${d.gpio}|${d.sensor_type}`) || addValue(d.esp_id, d);
    if (!el) return;
    el.textContent = fmtNum(d.value ?? d.processed_value ?? d.raw_value);
    el.classList.remove('flash'); void el.offsetWidth; el.classList.add('flash');
    const c = cards.get(d.esp_id);
    if (c) c.lastSeen = d.timestamp;
  });
  ctx.on('esp_health', (d) => {
    const c = cards.get(d.esp_id);
    if (!c) return;
    if (d.wifi_rssi != null) c.rssi.textContent = rssiText(d.wifi_rssi);
    c.lastSeen = d.timestamp;
    c.seen.textContent = ago(c.lastSeen);
    setStatus(d.esp_id, d.status);
  });
  ctx.on('device_status', (d) => {
    const c = cards.get(d.esp_id);
    const moved = ['pending_approval', 'approved', 'rejected', 'deleted'].includes(d.status) || !c;
    if (moved) { reload(); return; }
    setStatus(d.esp_id, d.status);
  });
  ctx.on('device_discovered', reload);
  ctx.on('device_rediscovered', reload);
  ctx.on('_reconnect', reload);
  ctx.every(10000, () => { for (const c of cards.values()) c.seen.textContent = ago(c.lastSeen); });

  performance.mark('overview-interactive');
  performance.measure('overview', 'overview-start', 'overview-interactive');
}
