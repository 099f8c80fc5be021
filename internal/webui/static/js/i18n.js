// The UI's languages: English (the keys themselves) and German. The choice
// is, in order, the one stored in localStorage, the browser's languages
// (navigator.languages, which the browser also sends as Accept-Language),
// and the page's lang, which the hub set from Accept-Language.
import de from './i18n-de.js';

const dicts = { en: {}, de };
const KEY = 'kaiser.lang';
let current = pick();
document.documentElement.lang = current;

function pick() {
  const stored = localStorage.getItem(KEY);
  if (stored && stored in dicts) return stored;
  for (const l of navigator.languages || [navigator.language || '']) {
    const p = l.toLowerCase().split('-')[0];
    if (p in dicts) return p;
  }
  const page = document.documentElement.lang;
  return page in dicts ? page : 'en';
}

export function lang() { return current; }

export function setLang(l) {
  if (!(l in dicts)) return;
  current = l;
  localStorage.setItem(KEY, l);
  document.documentElement.lang = l;
}

// t translates an English text; {name} placeholders are filled from params.
// Keys with a prefix (state_on, range_1h, …) have English texts of their own.
export function t(key, params) {
  let s = dicts[current][key] ?? en[key] ?? key;
  if (params) s = s.replace(/\{(\w+)\}/g, (_, k) => (params[k] ?? ''));
  return s;
}

// English texts for the prefixed keys.
const en = {
  range_1h: '1 h', range_6h: '6 h', range_24h: '24 h', range_7d: '7 days', range_30d: '30 days', range_1y: '1 year',
  state_on: 'on', state_off: 'off', state_pwm: 'pwm', state_error: 'error', state_unknown: 'unknown', state_stale: 'stale',
  cmd_queued: 'queued', cmd_sent: 'sent', cmd_acknowledged: 'confirmed', cmd_failed: 'failed', cmd_timeout: 'no answer',
  cmd_expired: 'expired', cmd_unknown: 'unknown',
  config_pending: 'pending', config_applied: 'applied', config_failed: 'failed', config_timed_out: 'timed out', config_unknown: 'not sent',
  outcome_cleared: 'cleared', outcome_reconfigured: 'cleared by re-configuration', outcome_rejected_by_device: 'refused by the device',
  outcome_timeout: 'no answer', outcome_guard: 'too early (guard)', outcome_offline: 'offline',
  pending_approval: 'waiting for approval',
  alerts_active: 'Active', alerts_acknowledged: 'Acknowledged', alerts_resolved: 'Resolved',
  cond_sensor: 'Threshold', cond_hysteresis: 'Hysteresis', cond_time_window: 'Time window',
  act_actuator: 'Switch an actuator', act_notification: 'Notify',
};
