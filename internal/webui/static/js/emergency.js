// The emergency stop (docs/api.md §8.4): the always-visible stop button for
// operators, the latched banner everyone sees, and the clear flow with its
// guard (a device is cleared no sooner than 6 s after its stop), per device
// or for all, optionally by re-configuration for baseline firmware that
// does not answer a clear.
import { get, post } from './api.js';
import * as live from './live.js';
import { t } from './i18n.js';
import { h, replace, fmtTime, badge } from './dom.js';

const GUARD_MS = 6000;
let status = null;
let chromeCtx = null;
const subs = new Set();
const banner = document.getElementById('banner');
const button = document.getElementById('estop');
const dialog = document.getElementById('dialog');
let stopped = ''; // what the last stop from this tab did, shown in the banner

// latched tells whether commands other than OFF to espId are blocked.
export function latched(espId) {
  if (!status?.active) return false;
  return !!status.global || (status.devices || []).some((d) => d.esp_id === espId);
}

export function subscribe(fn) { subs.add(fn); return () => subs.delete(fn); }

export async function load() {
  try { status = await get('/actuators/emergency'); } catch { return; }
  drawBanner();
  for (const fn of subs) fn(status);
}

export function reset() { status = null; drawBanner(); }

live.on('emergency', () => load());
live.on('_open', () => load());

export function chrome(ctx) {
  chromeCtx = ctx;
  button.hidden = !ctx.user || !ctx.can('operator');
  button.textContent = t('Emergency stop');
  button.onclick = () => openStop();
  drawBanner();
}

// currentDevice is the device whose page is open, offered as the stop's scope.
function currentDevice() {
  const m = location.pathname.match(/^\/ui\/devices\/([^/]+)/);
  return m ? decodeURIComponent(m[1]) : null;
}

function show(title, body) {
  replace(dialog, h('h2', { id: 'dialog-title' }, title), body);
  if (!dialog.open) dialog.showModal();
}

export function closeDialog() { if (dialog.open) dialog.close(); }

function openStop() {
  const dev = currentDevice();
  const reason = h('input', { id: 'estop-reason', required: true, maxLength: 500, value: t('Emergency stop from the dashboard') });
  const scope = h('select', { id: 'estop-scope' },
    h('option', { value: '' }, t('All devices')),
    dev ? h('option', { value: dev, selected: true }, t('Only {id}', { id: dev })) : null);
  const msg = h('p', { class: 'error', role: 'alert' });
  const go = h('button', { class: 'estop', type: 'submit' }, t('Stop now'));
  const form = h('form', { class: 'form', onsubmit: async (e) => {
    e.preventDefault();
    go.disabled = true;
    try {
      const body = { reason: reason.value.trim() || t('Emergency stop from the dashboard') };
      if (scope.value) body.esp_id = scope.value;
      const r = await post('/actuators/emergency_stop', body);
      closeDialog();
      await load();
      stopped = t('Stopped {n} actuators on {d} devices', { n: r.actuators_stopped, d: r.devices_stopped });
      drawBanner();
    } catch (err) { msg.textContent = err.message; go.disabled = false; }
  } },
  h('p', null, t('Every actuator in scope is switched OFF and stays blocked until the stop is cleared.')),
  h('label', null, t('Scope'), scope), h('label', null, t('Reason'), reason), msg,
  h('div', { class: 'actions' }, h('button', { type: 'button', onclick: closeDialog }, t('Cancel')), go));
  show(t('Emergency stop'), form);
  go.focus();
}

// guardLeft is how long the hub will still refuse to clear a stop
// activated at `at`.
function guardLeft(at) {
  const ms = Date.parse(at || 0);
  if (Number.isNaN(ms)) return 0;
  return Math.max(0, Math.min(GUARD_MS, ms + GUARD_MS - Date.now()));
}

function drawBanner() {
  if (!status?.active) stopped = '';
  if (!status?.active && !(status?.rules_paused || []).length) { replace(banner); return; }
  const parts = [];
  if (status.active) {
    parts.push(h('strong', null, t('Emergency stop active')));
    if (status.global) {
      parts.push(h('span', null, t('All devices'), ' — ', status.global.reason, ' · ',
        status.global.activated_by, ' · ', fmtTime(status.global.activated_at)));
    }
    const devs = status.devices || [];
    if (devs.length) {
      parts.push(h('span', null, t('Latched devices: {ids}', { ids: devs.map((d) => d.esp_id).join(', ') })));
    }
    parts.push(h('span', { class: 'small' }, t('Commands other than OFF are blocked.'), stopped ? ' ' + stopped + '.' : ''));
  } else {
    parts.push(h('span', null, t('Rules paused after a stop for: {ids}', { ids: status.rules_paused.join(', ') })));
  }
  if (chromeCtx?.can('operator')) {
    parts.push(h('button', { type: 'button', id: 'estop-clear', onclick: openClear }, status.active ? t('Clear emergency stop…') : t('Resume rules…')));
  }
  replace(banner, h('div', { class: 'inner' }, parts));
}

function targets() {
  const list = (status?.devices || []).map((d) => ({ id: d.esp_id, at: d.activated_at }));
  return list;
}

function openClear() {
  const devs = targets();
  const latestAt = (id) => {
    const all = id ? devs.filter((d) => d.id === id) : devs;
    const ats = all.map((d) => d.at);
    if (status?.global && !id) ats.push(status.global.activated_at);
    return ats.reduce((a, b) => (Date.parse(b || 0) > Date.parse(a || 0) ? b : a), null);
  };
  const target = h('select', { id: 'clear-target' }, h('option', { value: '' }, t('All latched devices')),
    devs.map((d) => h('option', { value: d.id }, d.id)));
  const reason = h('input', { id: 'clear-reason', required: true, maxLength: 500, placeholder: t('What was checked on site') });
  const reconf = h('input', { type: 'checkbox', id: 'clear-reconfigure' });
  const resume = h('input', { type: 'checkbox', id: 'clear-resume' });
  const wait = h('p', { class: 'small muted', 'aria-live': 'polite' });
  const out = h('div', { 'aria-live': 'polite' });
  const go = h('button', { class: 'primary', type: 'submit', id: 'clear-submit' }, t('Clear'));
  let busy = false;
  const guard = () => {
    const left = guardLeft(latestAt(target.value));
    go.disabled = busy || left > 0;
    wait.textContent = left > 0 ? t('The device needs {s} s after the stop before it can be cleared.', { s: Math.ceil(left / 1000) }) : '';
  };
  target.addEventListener('change', guard);
  const form = h('form', { class: 'form', onsubmit: async (e) => {
    e.preventDefault();
    if (!reason.value.trim()) { reason.focus(); return; }
    busy = true; guard();
    replace(out, h('p', { class: 'muted' }, t('Waiting for the devices to confirm…')));
    try {
      const body = { reason: reason.value.trim(), reconfigure_if_no_answer: reconf.checked, resume_rules: resume.checked };
      if (target.value) body.esp_id = target.value;
      const r = await post('/actuators/clear_emergency', body);
      replace(out, h('ul', null, (r.details || []).map((d) => h('li', null, h('b', null, d.esp_id), ' ',
        badge(d.outcome, t('outcome_' + d.outcome)), ' ', d.message || ''))),
      r.still_active ? h('p', { class: 'notice' }, t('Some latches are still active.'),
        (r.details || []).some((d) => d.outcome === 'timeout') && !reconf.checked ? ' ' + t('A device that does not answer (baseline firmware) can be cleared by re-configuration.') : '') : null);
      await load();
      if (!r.still_active) setTimeout(closeDialog, 1200);
    } catch (err) { replace(out, h('p', { class: 'error' }, err.message)); }
    busy = false; guard();
  } },
  status?.active ? h('label', null, t('Devices'), target) : null,
  h('label', null, t('Reason'), reason),
  status?.active ? h('label', { class: 'check' }, reconf, t('Clear by re-configuration when a device does not answer (baseline firmware)')) : null,
  h('label', { class: 'check' }, resume, t('Let the rules act on these devices again')),
  h('p', { class: 'small muted' }, t('Actuators stay off after the clear; switch them on yourself.')),
  wait, out,
  h('div', { class: 'actions' }, h('button', { type: 'button', onclick: closeDialog }, t('Close')), go));
  if (!status?.active) resume.checked = true;
  show(status?.active ? t('Clear emergency stop') : t('Resume rules'), form);
  guard();
  const id = setInterval(() => { if (!dialog.open) clearInterval(id); else guard(); }, 250);
  reason.focus();
}
