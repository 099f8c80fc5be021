// Rules (docs/api.md §10): the list with enable switches, and the editor: a
// form for the common shapes (sensor thresholds, hysteresis, time windows;
// actuator commands and notifications), a JSON editor for every document,
// the dry run of a saved rule, and the backtest (§10.3) drawn on the chart
// of the rule's first sensor: firings as vertical lines, thresholds as
// dashed ones.
import { all, api, get, post } from '../api.js';
import { t } from '../i18n.js';
import { h, replace, badge, fmtNum, ago, table, field, sure } from '../dom.js';
import { history, draw } from '../chart.js';

const enc = encodeURIComponent;

export async function list(ctx) {
  const rules = await all('/logic/rules');
  if (ctx.disposed) return;
  const op = ctx.can('operator');
  const problem = h('p', { class: 'error', role: 'alert' });
  const rows = rules.map((r) => {
    const toggle = h('input', { type: 'checkbox', checked: r.enabled, disabled: !op, 'aria-label': t('Enabled: {n}', { n: r.name }),
      onchange: async (e) => {
        try { await post(`/logic/rules/${r.id}/toggle`, { enabled: e.target.checked }); problem.textContent = ''; } catch (err) { e.target.checked = !e.target.checked; problem.textContent = `${r.name}: ${err.message}`; }
      } });
    return h('tr', { dataset: { rule: r.id } },
      h('td', null, h('a', { href: '/ui/rules/' + r.id }, r.name), r.description ? h('div', { class: 'small muted' }, r.description) : null),
      h('td', null, toggle), h('td', { class: 'num' }, String(r.priority)),
      h('td', { class: 'small' }, r.last_triggered ? ago(r.last_triggered) : t('never')),
      h('td', { class: 'num' }, String(r.execution_count ?? 0)),
      h('td', null, r.last_execution_success == null ? '–' : badge(r.last_execution_success ? 'success' : 'failed', r.last_execution_success ? t('succeeded') : t('failed'))));
  });
  replace(ctx.main, h('div', { class: 'titlebar' }, h('h1', null, t('Rules')),
    op ? h('a', { class: 'button', href: '/ui/rules/new', id: 'new-rule' }, t('New rule')) : null), problem,
  rules.length ? table([t('Rule'), t('Enabled'), t('Priority'), t('Last triggered'), t('Runs'), t('Last run')], rows, { id: 'rules' })
    : h('p', { class: 'muted' }, t('No rules yet.')));
}

// The shapes the form edits; a document with anything else is JSON-only.
const COND = {
  sensor: ['type', 'esp_id', 'gpio', 'sensor_type', 'operator', 'value', 'min', 'max', 'max_age_seconds'],
  hysteresis: ['type', 'esp_id', 'gpio', 'sensor_type', 'activate_above', 'deactivate_below', 'activate_below', 'deactivate_above'],
  time_window: ['type', 'start_time', 'end_time', 'days_of_week', 'timezone'],
};
const ACT = {
  actuator: ['type', 'esp_id', 'gpio', 'command', 'value', 'duration_seconds', 'is_safety_critical'],
  notification: ['type', 'channel', 'target', 'message_template', 'severity'],
};
const alias = { sensor_threshold: 'sensor', time: 'time_window', actuator_command: 'actuator' };
const TOP = ['name', 'description', 'conditions', 'actions', 'logic_operator', 'enabled', 'priority', 'cooldown_seconds', 'max_executions_per_hour'];

function formable(doc) {
  const fits = (x, shapes) => {
    const type = alias[x?.type] || x?.type;
    return shapes[type] && Object.keys(x).every((k) => shapes[type].includes(k)) &&
      (type !== 'time_window' || (typeof x.start_time === 'string' && typeof x.end_time === 'string'));
  };
  return Array.isArray(doc.conditions) && Array.isArray(doc.actions) &&
    doc.conditions.every((c) => fits(c, COND)) && doc.actions.every((a) => fits(a, ACT));
}

function blankCondition(type, sensors) {
  const s = sensors[0] || {};
  if (type === 'time_window') return { type, start_time: '06:00', end_time: '18:00' };
  if (type === 'hysteresis') return { type, esp_id: s.esp_device_id || '', gpio: s.gpio ?? 0, sensor_type: s.sensor_type, activate_below: 18, deactivate_above: 21 };
  return { type: 'sensor', esp_id: s.esp_device_id || '', gpio: s.gpio ?? 0, sensor_type: s.sensor_type, operator: '>', value: 25 };
}

function blankAction(type, actuators) {
  const a = actuators[0] || {};
  if (type === 'notification') return { type, channel: 'websocket', target: 'operators', message_template: '{rule_name}: {sensor_value}', severity: 'warning' };
  return { type: 'actuator', esp_id: a.esp_device_id || '', gpio: a.gpio ?? 0, command: 'ON', value: 1, duration_seconds: 0 };
}

export async function editor(ctx, id) {
  const isNew = id === 'new';
  const [saved, sensors, actuators] = await Promise.all([
    isNew ? null : get(`/logic/rules/${enc(id)}`),
    all('/sensors').catch(() => []),
    all('/actuators').catch(() => []),
  ]);
  if (ctx.disposed) return;
  const op = ctx.can('operator');
  let doc = saved ? Object.fromEntries(TOP.filter((k) => saved[k] !== undefined).map((k) => [k, structuredClone(saved[k])]))
    : { name: '', description: '', logic_operator: 'AND', enabled: true, priority: 50, cooldown_seconds: 60,
      conditions: [blankCondition('sensor', sensors)], actions: [blankAction('actuator', actuators)] };
  let mode = formable(doc) ? 'form' : 'json';
  let changed = false;

  const body = h('div');
  const msg = h('div', { 'aria-live': 'polite' });
  const results = h('section', { 'aria-live': 'polite', id: 'rule-results' });
  const chartBox = h('div', { class: 'chart', id: 'rule-chart', role: 'img', 'aria-label': t('Sensor history with the backtest') });
  let plot = null;
  ctx.cleanup(() => plot?.destroy());

  const tabs = h('div', { class: 'tabs', role: 'tablist' });
  const drawTabs = () => replace(tabs,
    h('button', { type: 'button', role: 'tab', 'aria-selected': String(mode === 'form'), id: 'tab-form', onclick: () => switchTo('form') }, t('Form')),
    h('button', { type: 'button', role: 'tab', 'aria-selected': String(mode === 'json'), id: 'tab-json', onclick: () => switchTo('json') }, t('JSON')));
  let textarea = null;
  const switchTo = (m) => {
    if (m === mode) return;
    if (mode === 'json') {
      try { doc = JSON.parse(textarea.value); } catch (e) { replace(msg, h('p', { class: 'error' }, t('The JSON is not valid: {e}', { e: e.message }))); return; }
      if (m === 'form' && !formable(doc)) { replace(msg, h('p', { class: 'notice' }, t('This rule uses shapes the form does not cover; edit it as JSON.'))); return; }
    }
    replace(msg);
    mode = m;
    drawBody();
  };

  const sensorOptions = (c) => {
    const key = `${c.esp_id}|${c.gpio}|${c.sensor_type || ''}`;
    const opts = sensors.map((s) => [`${s.esp_device_id}|${s.gpio}|${s.sensor_type}`, `${s.esp_device_id} · ${s.name || s.sensor_type} (GPIO ${s.gpio})`]);
    if (!opts.some(([k]) => k === key)) opts.unshift([key, `${c.esp_id || '?'} · ${c.sensor_type || '?'} (GPIO ${c.gpio})`]);
    return h('select', { 'aria-label': t('Sensor'), onchange: (e) => { const [esp, g, type] = e.target.value.split('|'); Object.assign(c, { esp_id: esp, gpio: Number(g), sensor_type: type || undefined }); changed = true; } },
      opts.map(([k, label]) => h('option', { value: k, selected: k === key }, label)));
  };
  const actuatorOptions = (a) => {
    const key = `${a.esp_id}|${a.gpio}`;
    const opts = actuators.map((x) => [`${x.esp_device_id}|${x.gpio}`, `${x.esp_device_id} · ${x.name || x.actuator_type} (GPIO ${x.gpio})`]);
    if (!opts.some(([k]) => k === key)) opts.unshift([key, `${a.esp_id || '?'} (GPIO ${a.gpio})`]);
    return h('select', { 'aria-label': t('Actuator'), onchange: (e) => { const [esp, g] = e.target.value.split('|'); Object.assign(a, { esp_id: esp, gpio: Number(g) }); changed = true; } },
      opts.map(([k, label]) => h('option', { value: k, selected: k === key }, label)));
  };
  const num = (obj, key, label, attrs = {}) => field(label, h('input', { type: 'number', step: 'any', value: obj[key] ?? '', ...attrs,
    oninput: (e) => { if (e.target.value === '') delete obj[key]; else obj[key] = Number(e.target.value); changed = true; } }));
  const text = (obj, key, label, attrs = {}) => field(label, h('input', { value: obj[key] ?? '', ...attrs,
    oninput: (e) => { obj[key] = e.target.value; changed = true; } }));
  const select = (obj, key, label, options, after) => field(label, h('select', { onchange: (e) => { obj[key] = e.target.value; changed = true; after?.(); } },
    options.map(([v, l]) => h('option', { value: v, selected: String(obj[key]) === v }, l))));

  const condition = (c, i) => {
    const type = alias[c.type] || c.type;
    const remove = h('button', { type: 'button', class: 'danger', onclick: () => { doc.conditions.splice(i, 1); drawBody(); } }, t('Remove'));
    let fields;
    if (type === 'sensor') {
      fields = [field(t('Sensor'), sensorOptions(c)),
        select(c, 'operator', t('Operator'), ['>', '>=', '<', '<=', '==', '!=', 'between'].map((o) => [o, o === 'between' ? t('between') : o]), drawBody),
        c.operator === 'between' ? [num(c, 'min', t('Minimum')), num(c, 'max', t('Maximum'))] : num(c, 'value', t('Value'))];
    } else if (type === 'hysteresis') {
      const cooling = c.activate_above != null;
      fields = [field(t('Sensor'), sensorOptions(c)),
        field(t('Mode'), h('select', { onchange: (e) => {
          for (const k of ['activate_above', 'deactivate_below', 'activate_below', 'deactivate_above']) delete c[k];
          Object.assign(c, e.target.value === 'cooling' ? { activate_above: 25, deactivate_below: 22 } : { activate_below: 18, deactivate_above: 21 });
          drawBody();
        } }, h('option', { value: 'heating', selected: !cooling }, t('on below, off above (heating)')), h('option', { value: 'cooling', selected: cooling }, t('on above, off below (cooling)')))),
        cooling ? [num(c, 'activate_above', t('On above')), num(c, 'deactivate_below', t('Off below'))]
          : [num(c, 'activate_below', t('On below')), num(c, 'deactivate_above', t('Off above'))]];
    } else {
      const days = h('fieldset', { class: 'row' }, h('legend', { class: 'small muted' }, t('Days (none = every day)')),
        [t('Mon'), t('Tue'), t('Wed'), t('Thu'), t('Fri'), t('Sat'), t('Sun')].map((d, n) => h('label', { class: 'check' },
          h('input', { type: 'checkbox', checked: (c.days_of_week || []).includes(n), onchange: (e) => {
            const set = new Set(c.days_of_week || []);
            if (e.target.checked) set.add(n); else set.delete(n);
            if (set.size) c.days_of_week = [...set].sort(); else delete c.days_of_week;
            changed = true;
          } }), d)));
      fields = [text(c, 'start_time', t('From'), { type: 'time' }), text(c, 'end_time', t('Until'), { type: 'time' }), days];
    }
    return h('div', { class: 'cond', dataset: { condition: String(i) } }, h('div', { class: 'row' },
      h('b', null, t('cond_' + type)), fields, op ? remove : null));
  };
  const action = (a, i) => {
    const type = alias[a.type] || a.type;
    const remove = h('button', { type: 'button', class: 'danger', onclick: () => { doc.actions.splice(i, 1); drawBody(); } }, t('Remove'));
    const fields = type === 'actuator'
      ? [field(t('Actuator'), actuatorOptions(a)), select(a, 'command', t('Command'), ['ON', 'OFF', 'TOGGLE', 'PWM'].map((x) => [x, x]), drawBody),
        a.command === 'PWM' ? num(a, 'value', t('Level (0–1)'), { min: 0, max: 1 }) : null,
        num(a, 'duration_seconds', t('For seconds (0 = until OFF)'), { min: 0, max: 86400 })]
      : [select(a, 'channel', t('Channel'), [['websocket', t('Dashboard')], ['email', t('E-mail')], ['webhook', 'Webhook']]),
        text(a, 'target', t('To (role, user, address or URL)')), text(a, 'message_template', t('Message'), { size: 40 }),
        select(a, 'severity', t('Severity'), [['info', t('info')], ['warning', t('warning')], ['critical', t('critical')]])];
    return h('div', { class: 'cond', dataset: { action: String(i) } }, h('div', { class: 'row' }, h('b', null, t('act_' + type)), fields, op ? remove : null));
  };

  const drawBody = () => {
    drawTabs();
    if (mode === 'json') {
      textarea = h('textarea', { id: 'rule-json', spellcheck: false, readOnly: !op, 'aria-label': t('Rule document (JSON)'), oninput: () => { changed = true; } }, JSON.stringify(doc, null, 2));
      replace(body, textarea, h('p', { class: 'small muted' }, t('Every rule shape of docs/api.md §10.2 can be written here: compound conditions, delays, sequences.')));
      return;
    }
    const fs = h('fieldset', { disabled: !op, class: 'form-rule' },
      h('legend', { class: 'muted small' }, t('Rule')),
      h('div', { class: 'row' }, text(doc, 'name', t('Name'), { id: 'rule-name', required: true, minLength: 3, maxLength: 100 }),
        text(doc, 'description', t('Description'), { maxLength: 500, size: 40 })),
      h('div', { class: 'row' },
        num(doc, 'priority', t('Priority (1 = first)'), { min: 1, max: 100 }),
        num(doc, 'cooldown_seconds', t('Pause after a run (s)'), { min: 0, max: 86400 }),
        h('label', { class: 'check' }, h('input', { type: 'checkbox', checked: doc.enabled !== false, onchange: (e) => { doc.enabled = e.target.checked; changed = true; } }), t('Enabled'))),
      h('h3', null, t('When')),
      select(doc, 'logic_operator', t('Combine conditions'), [['AND', t('all of them')], ['OR', t('any of them')]]),
      doc.conditions.map(condition),
      op ? h('div', { class: 'row' }, ['sensor', 'hysteresis', 'time_window'].map((type) =>
        h('button', { type: 'button', onclick: () => { doc.conditions.push(blankCondition(type, sensors)); drawBody(); } }, '+ ', t('cond_' + type)))) : null,
      h('h3', null, t('Then')),
      doc.actions.map(action),
      op ? h('div', { class: 'row' }, ['actuator', 'notification'].map((type) =>
        h('button', { type: 'button', onclick: () => { doc.actions.push(blankAction(type, actuators)); drawBody(); } }, '+ ', t('act_' + type)))) : null);
    replace(body, fs);
  };

  const current = () => {
    if (mode === 'json') doc = JSON.parse(textarea.value);
    return doc;
  };
  const showError = (err) => {
    const list = err.details?.errors;
    replace(msg, h('div', { class: 'error', role: 'alert' }, h('p', null, err.message),
      Array.isArray(list) && list.length > 1 ? h('ul', null, list.map((e) => h('li', null, `${e.path || (e.loc || []).join('.')}: ${e.msg || e.message}`))) : null));
  };
  const save = async () => {
    try {
      const d = current();
      const r = saved ? await api('PUT', `/logic/rules/${saved.id}`, d) : await api('POST', '/logic/rules', d);
      changed = false;
      replace(msg, h('p', { class: 'ok' }, t('Saved.'), (r.validation_warnings || []).length ? ' ' + t('Warnings: {w}', { w: r.validation_warnings.map((w) => w.msg || w.message || w).join('; ') }) : ''));
      if (!saved) ctx.navigate('/ui/rules/' + r.id, true);
    } catch (err) { showError(err); }
  };
  const dryRun = async () => {
    try {
      const r = await post(`/logic/rules/${saved.id}/test`, { dry_run: true });
      replace(results, h('h2', null, t('Dry run')), h('p', null, r.would_trigger ? h('b', { class: 'ok' }, t('The rule would fire now.')) : h('b', null, t('The rule would not fire now.'))),
        table([t('Condition'), t('Result'), t('Value'), t('Details')], (r.condition_results || []).map((c) => h('tr', null,
          h('td', { class: 'mono' }, c.path || String(c.condition_index)), h('td', null, badge(c.result ? 'success' : 'off', c.result ? t('true') : t('false'))),
          h('td', { class: 'num' }, fmtNum(c.actual_value)), h('td', { class: 'small' }, typeof c.details === 'string' ? c.details : JSON.stringify(c.details ?? ''))))),
        table([t('Action'), t('Would run'), t('Safety')], (r.action_results || []).map((a) => h('tr', null,
          h('td', null, a.action_type), h('td', null, a.would_execute ? t('yes') : t('no')),
          h('td', { class: 'small' }, a.safety_verdict ? (a.safety_verdict.allowed ? t('allowed') : `${a.safety_verdict.code}: ${a.safety_verdict.message}`) : '–')))));
      await chartFor(current(), 86400, []);
    } catch (err) { showError(err); }
  };
  const days = h('select', { id: 'backtest-days', 'aria-label': t('Backtest range') }, [1, 7, 30].map((n) => h('option', { value: n, selected: n === 7 }, t('last {n} days', { n }))));
  const backtest = async () => {
    replace(results, h('p', { class: 'muted' }, t('Replaying the stored history…')));
    const end = new Date(), start = new Date(end.getTime() - Number(days.value) * 86400e3);
    try {
      const body = { start_time: start.toISOString(), end_time: end.toISOString() };
      if (saved && !changed) body.rule_id = saved.id; else body.rule = current();
      const r = await post('/logic/backtest', body);
      const s = r.summary || {};
      replace(results, h('h2', null, t('Backtest')),
        h('div', { class: 'stats', id: 'backtest-summary' },
          h('span', null, h('b', null, String(s.firings ?? 0)), ' ', t('firings')),
          h('span', null, h('b', null, String(s.samples_replayed ?? 0)), ' ', t('readings replayed')),
          h('span', null, h('b', null, String(s.skipped_cooldown ?? 0)), ' ', t('skipped by the pause'))),
        (r.actuators || []).map((a) => h('p', { class: 'small' }, `${a.esp_id} GPIO ${a.gpio}: ${t('{n} switch-ons, on for {m} min', { n: a.switch_ons, m: fmtNum(a.on_seconds / 60, 0) })}`)),
        (r.warnings || []).map((w) => h('p', { class: 'notice small' }, `${w.code}: ${w.message}`)),
        r.firings_truncated ? h('p', { class: 'small muted' }, t('Only the first 1000 firings are listed.')) : null);
      const markers = (r.firings || []).map((f) => ({ t: Date.parse(f.at) / 1000, color: f.kind === 'fired' ? 'var(--ok)' : 'var(--muted)' }));
      await chartFor(current(), Number(days.value) * 86400, markers, end);
    } catch (err) { showError(err); replace(results); }
  };
  // chartFor draws the first sensor the rule reads, with its thresholds.
  const chartFor = async (d, span, markers, end = new Date()) => {
    const leaf = firstSensor(d.conditions || []);
    if (!leaf) { replace(chartBox, h('p', { class: 'muted' }, t('The rule reads no sensor to chart.'))); return; }
    const res = await history({ esp_id: leaf.esp_id, gpio: leaf.gpio, sensor_type: leaf.sensor_type }, span, Math.min(500, Math.round(span / 300)), end);
    const levels = ['value', 'min', 'max', 'activate_above', 'deactivate_below', 'activate_below', 'deactivate_above']
      .filter((k) => typeof leaf[k] === 'number').map((k) => ({ y: leaf[k] }));
    const css = getComputedStyle(document.documentElement);
    for (const m of markers) m.color = m.color.startsWith('var(') ? css.getPropertyValue(m.color.slice(4, -1)).trim() : m.color;
    plot?.destroy();
    plot = await draw(chartBox, res.rows, { start: res.start, end: res.end, markers, levels, name: 'rule-chart' });
    chartBox.dataset.markers = String(markers.length);
  };

  const remove = async () => {
    if (!(await sure(t('Delete'), t('Delete the rule {n} and its history?', { n: saved.name }), t('Delete')))) return;
    try { await api('DELETE', `/logic/rules/${saved.id}`); ctx.navigate('/ui/rules'); } catch (err) { showError(err); }
  };
  replace(ctx.main, h('p', { class: 'small' }, h('a', { href: '/ui/rules' }, '← ', t('Rules'))),
    h('h1', null, saved ? saved.name : t('New rule')),
    tabs, body,
    op ? h('div', { class: 'row' }, h('button', { class: 'primary', type: 'button', id: 'rule-save', onclick: save }, t('Save')),
      saved ? h('button', { type: 'button', id: 'rule-dry-run', onclick: dryRun }, t('Dry run')) : null,
      days, h('button', { type: 'button', id: 'rule-backtest', onclick: backtest }, t('Backtest')),
      saved ? h('button', { type: 'button', class: 'danger', onclick: remove }, t('Delete')) : null) : null,
    msg, results, chartBox);
  drawBody();
  if (saved) chartFor(doc, 86400, []).catch(() => {});
}

function firstSensor(conds) {
  for (const c of conds) {
    if (c.esp_id && c.gpio != null && c.type !== 'time_window' && c.type !== 'time') return c;
    if (Array.isArray(c.conditions)) { const x = firstSensor(c.conditions); if (x) return x; }
  }
  return null;
}
