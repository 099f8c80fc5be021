// Element construction and formatting without a framework.
import { t, lang } from './i18n.js';

// h builds an element: attributes (on* are listeners; booleans and
// non-strings are set as properties) and children (strings become text).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (typeof v !== 'string' && k in el) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  add(el, children);
  return el;
}

function add(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

// replace swaps an element's children.
export function replace(el, ...children) {
  el.replaceChildren();
  add(el, children);
  return el;
}

export function badge(value, text) {
  return h('span', { class: 'badge b-' + String(value || 'unknown').replace(/[^a-z_]/gi, '') }, text ?? t(String(value ?? 'unknown')));
}

export function fmtNum(v, digits) {
  if (v == null || Number.isNaN(v)) return '–';
  const abs = Math.abs(v);
  const d = digits ?? (abs >= 100 ? 1 : abs >= 10 ? 2 : 3);
  return new Intl.NumberFormat(lang(), { maximumFractionDigits: d }).format(v);
}

export function fmtTime(ts) {
  if (!ts) return '–';
  const d = typeof ts === 'number' ? new Date(ts * 1000) : new Date(ts);
  if (Number.isNaN(d.getTime())) return '–';
  return new Intl.DateTimeFormat(lang(), { dateStyle: 'short', timeStyle: 'medium' }).format(d);
}

// ago is a short relative time ("12 s ago"), updated by the views' ticker.
export function ago(ts) {
  if (!ts) return t('never');
  const ms = typeof ts === 'number' ? ts * 1000 : Date.parse(ts);
  if (Number.isNaN(ms)) return '–';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  const rtf = new Intl.RelativeTimeFormat(lang(), { numeric: 'auto', style: 'short' });
  if (s < 60) return rtf.format(-s, 'second');
  if (s < 3600) return rtf.format(-Math.round(s / 60), 'minute');
  if (s < 86400) return rtf.format(-Math.round(s / 3600), 'hour');
  return rtf.format(-Math.round(s / 86400), 'day');
}

export function rssiText(rssi) {
  if (rssi == null) return '–';
  const q = rssi >= -55 ? '▂▄▆█' : rssi >= -67 ? '▂▄▆' : rssi >= -78 ? '▂▄' : '▂';
  return `${q} ${rssi} dBm`;
}

export function table(headers, rows, attrs) {
  return h('div', { class: 'table-wrap' },
    h('table', attrs || {},
      h('thead', null, h('tr', null, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', null, rows)));
}

export function field(label, input) {
  return h('label', null, label, input);
}

// ask shows the page's dialog with one text field and resolves to the text,
// or null when cancelled (instead of window.prompt, which blocks the page
// and cannot be styled or translated).
export function ask(title, label, value = '', type = 'text') {
  const dialog = document.getElementById('dialog');
  return new Promise((resolve) => {
    const input = h('input', { id: 'ask-input', type, value, required: true, maxLength: 500 });
    let answer = null;
    const form = h('form', { class: 'form', method: 'dialog', onsubmit: (e) => {
      e.preventDefault();
      if (!input.value.trim()) { input.focus(); return; }
      answer = input.value.trim();
      dialog.close();
    } },
    h('label', null, label, input),
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => dialog.close() }, t('Cancel')),
      h('button', { type: 'submit', class: 'primary', id: 'ask-ok' }, t('OK'))));
    dialog.replaceChildren(h('h2', { id: 'dialog-title' }, title), form);
    dialog.addEventListener('close', () => resolve(answer), { once: true });
    dialog.showModal();
    input.focus();
    input.select();
  });
}

// sure asks to confirm a destructive step in the page's dialog; it
// resolves true only for the confirming button.
export function sure(title, text, confirmLabel) {
  const dialog = document.getElementById('dialog');
  return new Promise((resolve) => {
    let ok = false;
    const yes = h('button', { type: 'button', class: 'danger', id: 'sure-ok', onclick: () => { ok = true; dialog.close(); } }, confirmLabel);
    dialog.replaceChildren(h('h2', { id: 'dialog-title' }, title), h('p', null, text),
      h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => dialog.close() }, t('Cancel')), yes));
    dialog.addEventListener('close', () => resolve(ok), { once: true });
    dialog.showModal();
    yes.focus();
  });
}
