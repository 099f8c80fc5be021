// The device page (issue 12): the device's state and zone, its sensors with
// live value, quality and config state, a chart with min/avg/max bands over
// 1 h … 1 year from the rollups, and its actuators with the confirmed state,
// ON/OFF/toggle controls and command history. Commands other than OFF are
// not offered while an emergency latch holds the device (docs/api.md §8.4).
import { get, post, all, qs } from '../api.js';
import { t } from '../i18n.js';
import { h, replace, badge, fmtNum, fmtTime, ago, rssiText, table, field } from '../dom.js';
import * as estop from '../emergency.js';
import { history, draw, rangePicker, RANGES } from '../chart.js';

const enc = encodeURIComponent;

export async function device(ctx, espId) {
  const base = `/esp/devices/${enc(espId)}`;
  let d;
  try { d = await get(base); } catch (e) {
    if (e.status === 404) { replace(ctx.main, h('h1', null, t('Device not found')), h('p', null, h('a', { href: '/' }, t('Back to the overview')))); return; }
    throw e;
  }
  const [sensors, actuators, subzones, zone, latest] = await Promise.all([
    all('/sensors' + qs({ esp_id: espId })).catch(() => []),
    all('/actuators' + qs({ esp_id: espId })).catch(() => []),
    get(`/subzone/devices/${enc(espId)}/subzones`).catch(() => ({ subzones: [] })),
    get(`/zone/devices/${enc(espId)}`).catch(() => null),
    get('/sensors/data/latest' + qs({ esp_id: espId })).then((r) => r.data).catch(() => []),
  ]);
  // Series the device reports without a sensor config are listed too, so
  // a node's values and history show before it is configured.
  const configured = new Set(sensors.map((s) => `${s.gpio}|${s.sensor_type}`));
  const reported = latest.filter((r) => !configured.has(`${r.gpio}|${r.sensor_type}`)).map((r) => ({
    esp_device_id: espId, gpio: r.gpio, sensor_type: r.sensor_type, unit: r.unit, latest_value: r.value,
    latest_quality: r.quality, latest_timestamp: r.timestamp, config_status: null, unconfigured: true,
  }));
  if (ctx.disposed) return;
  document.title = `${d.name || d.device_id} · kaiser`;
  const op = ctx.can('operator');

  // Header: status, connectivity, zone and the config push state.
  const status = badge(d.status);
  const rssi = h('dd', null, rssiText(d.wifi_rssi));
  const seen = h('dd', null, ago(d.last_seen));
  let lastSeen = d.last_seen;
  const configState = h('dd', { id: 'config-state' });
  const drawConfig = () => {
    const items = [...sensors, ...actuators];
    const failed = items.filter((x) => x.config_status === 'failed' || x.config_status === 'timed_out');
    const pending = items.filter((x) => x.config_status === 'pending');
    replace(configState, !items.length ? t('nothing configured')
      : failed.length ? [badge('failed', t('failed')), ' ', failed.map((x) => `GPIO ${x.gpio}: ${x.config_error_code || x.config_status} ${x.config_error_message || ''}`).join('; ')]
        : pending.length ? badge('pending', t('waiting for the device'))
          : badge('applied', t('applied')));
  };
  drawConfig();
  const resend = op ? h('button', { type: 'button', id: 'resend-config', onclick: async (e) => {
    e.target.disabled = true;
    try { await post(`${base}/config`, {}); note(t('Config sent; waiting for the device.')); } catch (err) { note(err.message, true); }
    e.target.disabled = false;
  } }, t('Re-send config')) : null;
  const notes = h('p', { 'aria-live': 'polite', class: 'small' });
  const note = (text, bad) => { notes.textContent = text; notes.className = 'small ' + (bad ? 'error' : 'muted'); };

  const zoneText = zone?.zone_id ? `${zone.zone_name || zone.zone_id}${zone.pending_zone_assignment ? ' (' + t('waiting for the device') + ')' : ''}${zone.zone_error ? ' — ' + zone.zone_error : ''}` : t('No zone');
  const zoneForm = op ? h('form', { class: 'row', onsubmit: async (e) => {
    e.preventDefault();
    const id = e.target.elements.zone.value.trim();
    if (!id) return;
    try { await post(`/zone/devices/${enc(espId)}/assign`, { zone_id: id }); ctx.navigate(location.pathname, true); } catch (err) { note(err.message, true); }
  } }, field(t('Assign to zone'), h('input', { name: 'zone', maxLength: 32, pattern: '[A-Za-z0-9_\\-]+', value: zone?.zone_id || '' })),
  h('button', { type: 'submit' }, t('Assign'))) : null;

  const info = h('section', { class: 'card' },
    h('div', { class: 'titlebar' }, h('h1', null, d.name || d.device_id), status),
    h('dl', { class: 'kv' },
      h('dt', null, t('Device id')), h('dd', { class: 'mono' }, d.device_id),
      h('dt', null, t('Wi-Fi signal')), rssi,
      h('dt', null, t('Last seen')), seen,
      h('dt', null, t('Zone')), h('dd', { id: 'zone' }, zoneText),
      h('dt', null, t('Subzones')), h('dd', null, (subzones.subzones || []).length
        ? subzones.subzones.map((s) => `${s.subzone_name || s.subzone_id} [GPIO ${s.assigned_gpios.join(', ')}] (${t(s.status)})`).join('; ') : '–'),
      h('dt', null, t('Configuration')), configState,
      h('dt', null, t('Hardware')), h('dd', null, [d.hardware_type, d.firmware_version].filter(Boolean).join(' · ') || '–'),
      h('dt', null, t('Free memory')), h('dd', null, d.heap_free != null ? fmtNum(d.heap_free / 1024, 0) + ' KiB' : '–'),
      (d.subscriptions_lost || d.reboot_required) ? [h('dt', null, t('Attention')), h('dd', { class: 'error' }, t('The device cannot receive until it reboots.'))] : null),
    h('div', { class: 'row' }, resend, zoneForm), notes);

  // Sensors.
  const liveCells = new Map();
  const units = new Map((d.sensors || []).map((s) => [`${s.gpio}|${s.sensor_type}`, s.unit]));
  for (const s of sensors) s.unit ??= units.get(`${s.gpio}|${s.sensor_type}`);
  const sensorKey = (s) => `${s.esp_device_id || espId}|${s.gpio}|${s.sensor_type}`;
  const shown = [...sensors, ...reported];
  let chartSensor = shown[0] || null;
  const sensorRows = shown.map((s) => {
    const value = h('td', { class: 'num' }, h('b', null, fmtNum(s.latest_value)), ' ', h('span', { class: 'muted small' }, unitOf(s)));
    const quality = h('td', null, badge(s.latest_quality || 'unknown'));
    const when = h('td', { class: 'small' }, ago(s.latest_timestamp));
    liveCells.set(sensorKey(s), { value, quality, when, s, ts: s.latest_timestamp });
    return h('tr', { dataset: { sensor: sensorKey(s) } },
      h('td', null, s.name || s.sensor_type, h('div', { class: 'small muted' }, `${s.sensor_type} · GPIO ${s.gpio}`)),
      value, quality, when,
      h('td', null, s.unconfigured ? badge('unknown', t('not configured')) : badge(s.config_status || 'unknown', t('config_' + (s.config_status || 'unknown'))),
        s.config_error_message ? h('div', { class: 'small error' }, s.config_error_message) : null),
      h('td', null, h('button', { type: 'button', onclick: () => { chartSensor = s; loadChart(); } }, t('Chart'))));
  });
  const sensorSection = h('section', { 'aria-labelledby': 'sensors-h' }, h('h2', { id: 'sensors-h' }, t('Sensors')),
    shown.length ? table([t('Sensor'), t('Value'), t('Quality'), t('Reading'), t('Config state'), ''], sensorRows, { id: 'sensors' })
      : h('p', { class: 'muted' }, t('No sensors configured')));

  // The chart.
  let range = sessionStorage.getItem('kaiser.range') || '24h';
  let plot = null;
  const chartEl = h('div', { class: 'chart', id: 'chart', role: 'img', 'aria-label': t('Sensor history') });
  const chartInfo = h('p', { class: 'small muted', id: 'chart-info', 'aria-live': 'polite' });
  const chartTitle = h('h2', { id: 'chart-h' });
  let seq = 0;
  const loadChart = async () => {
    if (!chartSensor) return;
    const mine = ++seq;
    replace(chartTitle, t('History'), ': ', chartSensor.name || chartSensor.sensor_type);
    chartInfo.textContent = t('Loading…');
    const [, span, buckets] = RANGES.find(([k]) => k === range);
    try {
      const name = 'chart-' + range;
      performance.clearMarks(name + '-response'); performance.clearMarks(name + '-drawn');
      performance.mark(name + '-request');
      const res = await history({ esp_id: espId, gpio: chartSensor.gpio, sensor_type: chartSensor.sensor_type }, span, buckets);
      performance.mark(name + '-response');
      if (mine !== seq || ctx.disposed) return;
      plot?.destroy();
      plot = await draw(chartEl, res.rows, { unit: unitOf(chartSensor), start: res.start, end: res.end, name });
      performance.measure(name, name + '-response', name + '-drawn');
      performance.measure(name + '-fetch', name + '-request', name + '-response');
      chartInfo.textContent = res.rows.length ? t('{n} buckets · line: average · band: minimum to maximum', { n: res.rows.length }) : t('No readings in this range.');
      chartEl.dataset.points = String(res.rows.length);
      chartEl.dataset.range = range;
    } catch (err) { chartInfo.textContent = err.message; }
  };
  ctx.cleanup(() => plot?.destroy());
  const chartSection = chartSensor ? h('section', { 'aria-labelledby': 'chart-h' }, chartTitle,
    rangePicker(range, (k) => { range = k; sessionStorage.setItem('kaiser.range', k); loadChart(); }), chartEl, chartInfo) : null;

  // Actuators.
  const actRows = new Map();
  const seenStatus = new Map(); // command_id → latest status, for events that beat the POST's reply
  const confirmed = new Map(d.actuators.map((a) => [a.gpio, a]));
  const actuatorRow = (a) => {
    const st = confirmed.get(a.gpio) || {};
    const state = h('td', { class: 'state' });
    const controls = op ? h('td', null) : h('span');
    const last = h('td', { class: 'small' });
    const hist = h('details', { onToggle: (e) => { if (e.target.open) loadHistory(a.gpio); } },
      h('summary', null, t('Command history')), h('div', { class: 'history' }));
    const row = { a, state, controls, last, hist, st: { state: st.confirmed_state || a.state || 'unknown', stale: st.stale ?? a.stale, value: st.pwm_value ?? a.current_value, emergency: st.emergency_stopped }, pending: null };
    actRows.set(a.gpio, row);
    drawActuator(row);
    return [h('tr', { dataset: { actuator: String(a.gpio) } },
      h('td', null, a.name || a.actuator_type, h('div', { class: 'small muted' }, `${a.actuator_type} · GPIO ${a.gpio}`)),
      state, op ? controls : null, last),
    h('tr', null, h('td', { colspan: op ? 4 : 3 }, hist))];
  };
  const drawActuator = (row) => {
    const { a, st } = row;
    const shown = st.stale ? 'stale' : st.state;
    replace(row.state, badge(shown, t('state_' + shown)),
      st.state === 'pwm' && st.value != null ? ' ' + fmtNum(st.value * 100, 0) + ' %' : '',
      row.pending ? h('div', { class: 'small muted' }, t('command {c}: {s}', { c: row.pending.command, s: t('cmd_' + row.pending.status) })) : null,
      row.error ? h('div', { class: 'small error' }, row.error) : null);
    replace(row.last, a.last_command ? `${a.last_command} · ${ago(a.last_command_at)}` : '–');
    if (!op) { replace(row.controls); return; }
    const blocked = estop.latched(espId) || st.emergency;
    const usable = d.status === 'online' && a.enabled !== false;
    const send = (command, value) => async (e) => {
      e.target.disabled = true;
      row.error = null;
      try {
        const body = { command };
        if (value != null) body.value = value;
        const r = await post(`/actuators/${enc(espId)}/${a.gpio}/command`, body);
        row.pending = { id: r.command_id, command: r.command, status: seenStatus.get(r.command_id) || r.status };
        if (terminal(row.pending.status)) settle(row, r.command_id);
      } catch (err) { row.error = err.message; }
      drawActuator(row);
    };
    const pwm = a.actuator_type === 'pwm' || a.actuator_type === 'servo';
    const slider = pwm ? h('input', { type: 'range', min: 0, max: 100, step: 1, value: String(Math.round((st.value || 0) * 100)), 'aria-label': t('Level for {n}', { n: a.name || 'GPIO ' + a.gpio }), disabled: blocked || !usable }) : null;
    replace(row.controls, h('div', { class: 'row' },
      pwm ? [slider, h('button', { type: 'button', dataset: { cmd: 'PWM' }, disabled: blocked || !usable, onclick: (e) => send('PWM', Number(slider.value) / 100)(e) }, t('Set'))]
        : h('button', { type: 'button', class: 'on', dataset: { cmd: 'ON' }, disabled: blocked || !usable, title: blocked ? t('Blocked by the emergency stop') : null }, t('ON')),
      h('button', { type: 'button', dataset: { cmd: 'OFF' }, disabled: d.status !== 'online' }, t('OFF')),
      h('button', { type: 'button', dataset: { cmd: 'TOGGLE' }, disabled: blocked || !usable || st.stale || !['on', 'off', 'pwm'].includes(st.state) }, t('Toggle'))),
    blocked ? h('div', { class: 'small error', dataset: { blocked: '1' } }, t('Blocked by the emergency stop: only OFF is allowed.')) : null,
    !usable && d.status !== 'online' ? h('div', { class: 'small muted' }, t('The device is {s}.', { s: t(d.status) })) : null);
    for (const b of row.controls.querySelectorAll('button[data-cmd]')) {
      if (b.dataset.cmd !== 'PWM') b.addEventListener('click', send(b.dataset.cmd));
    }
  };
  // settle drops a finished command's line after a moment.
  const settle = (row, id) => setTimeout(() => { if (row.pending?.id === id) { row.pending = null; drawActuator(row); } }, 4000);
  const loadHistory = async (gpio) => {
    const row = actRows.get(gpio);
    if (!row?.hist.open) return;
    const box = row.hist.querySelector('.history');
    try {
      const r = await get(`/actuators/${enc(espId)}/${gpio}/history?limit=20`);
      replace(box, r.entries.length ? table([t('Time'), t('Command'), t('Value'), t('Status'), t('By')],
        r.entries.map((e) => h('tr', null, h('td', { class: 'small' }, fmtTime(e.timestamp)), h('td', null, e.command_type),
          h('td', { class: 'num' }, fmtNum(e.value)), h('td', null, badge(e.status || (e.success ? 'acknowledged' : 'failed'), t('cmd_' + (e.status || 'unknown'))),
            e.error_message ? h('div', { class: 'small error' }, e.error_message) : null), h('td', { class: 'small' }, e.issued_by)))) : h('p', { class: 'muted' }, t('No commands yet.')));
    } catch (err) { replace(box, h('p', { class: 'error' }, err.message)); }
  };
  const actSection = h('section', { 'aria-labelledby': 'act-h' }, h('h2', { id: 'act-h' }, t('Actuators')),
    actuators.length ? table([t('Actuator'), t('Confirmed state'), op ? t('Control') : null, t('Last command')].filter(Boolean), actuators.flatMap(actuatorRow), { id: 'actuators' })
      : h('p', { class: 'muted' }, t('No actuators configured')));

  replace(ctx.main, h('p', { class: 'small' }, h('a', { href: '/' }, '← ', t('Overview'))), info,
    h('div', { class: 'split' }, h('div', null, sensorSection, actSection), h('div', null, chartSection)));
  loadChart();

  // Live updates.
  ctx.on('sensor_data', (m) => {
    if (m.esp_id !== espId) return;
    const c = liveCells.get(`${m.esp_id}|${m.gpio}|${m.sensor_type}`);
    if (!c) return;
    replace(c.value, h('b', { class: 'flash' }, fmtNum(m.value)), ' ', h('span', { class: 'muted small' }, unitOf(c.s, m.unit)));
    replace(c.quality, badge(m.quality));
    c.ts = m.timestamp;
    c.when.textContent = ago(c.ts);
  });
  ctx.on('esp_health', (m) => {
    if (m.esp_id !== espId) return;
    if (m.wifi_rssi != null) rssi.textContent = rssiText(m.wifi_rssi);
    lastSeen = m.timestamp;
    seen.textContent = ago(lastSeen);
  });
  ctx.on('device_status', (m) => {
    if (m.esp_id !== espId) return;
    if (m.status !== d.status) { d.status = m.status; replace(status, t(m.status)); status.className = 'badge b-' + m.status; for (const r of actRows.values()) drawActuator(r); }
  });
  ctx.on('actuator_status', (m) => {
    const row = m.esp_id === espId && actRows.get(m.gpio);
    if (!row) return;
    row.st = { state: m.state, stale: m.stale, value: m.value, emergency: m.emergency === 'active' };
    if (m.last_command) { row.a.last_command = m.last_command; row.a.last_command_at = new Date(m.timestamp * 1000).toISOString(); }
    drawActuator(row);
  });
  ctx.on('command_status', (m) => {
    const row = m.esp_id === espId && actRows.get(m.gpio);
    if (!row) return;
    seenStatus.set(m.command_id, m.status);
    if (row.pending && row.pending.id === m.command_id) {
      row.pending.status = m.status;
      if (m.error) row.error = m.error;
      if (terminal(m.status)) settle(row, m.command_id);
    }
    drawActuator(row);
    loadHistory(m.gpio);
  });
  ctx.on('config_response', async (m) => {
    if (m.esp_id !== espId) return;
    note(`${t('The device answered the config')}: ${m.config_type} ${t(m.status)} ${m.message || ''}`, m.status !== 'success');
    const [s2, a2] = await Promise.all([all('/sensors' + qs({ esp_id: espId })).catch(() => sensors), all('/actuators' + qs({ esp_id: espId })).catch(() => actuators)]);
    sensors.splice(0, sensors.length, ...s2); actuators.splice(0, actuators.length, ...a2);
    drawConfig();
  });
  ctx.cleanup(estop.subscribe(() => { for (const r of actRows.values()) drawActuator(r); }));
  ctx.on('_reconnect', () => ctx.navigate(location.pathname, true));
  ctx.every(10000, () => {
    seen.textContent = ago(lastSeen);
    for (const c of liveCells.values()) c.when.textContent = ago(c.ts);
  });
}

const terminal = (s) => ['acknowledged', 'failed', 'timeout', 'expired'].includes(s);

function unitOf(s, unit) {
  const u = unit || s.unit || s.metadata?.unit || '';
  return u === 'raw' ? '' : u;
}
