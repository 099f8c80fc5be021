// Time-series charts over the rollup history (docs/api.md §7.3): the
// average as a line in a min–max band, drawn by uPlot (vendored, see
// vendor/VENDORED.md), which is loaded only when a chart is first shown.
import { get, qs } from './api.js';
import { t, lang } from './i18n.js';
import { h, replace, fmtNum } from './dom.js';

export const RANGES = [
  ['1h', 3600, 60], ['6h', 6 * 3600, 180], ['24h', 86400, 288],
  ['7d', 7 * 86400, 336], ['30d', 30 * 86400, 360], ['1y', 365 * 86400, 365],
];

let uPlotP = null;
function uPlot() {
  if (!uPlotP) {
    document.head.append(h('link', { rel: 'stylesheet', href: '/ui/vendor/uplot/uPlot.min.css' }));
    uPlotP = import('/ui/vendor/uplot/uPlot.esm.js').then((m) => m.default);
  }
  return uPlotP;
}

// history fetches one sensor's buckets over [end−span, end).
export async function history(sensor, span, buckets, end = new Date()) {
  const start = new Date(end.getTime() - span * 1000);
  const r = await get('/sensors/data' + qs({
    esp_id: sensor.esp_id, gpio: sensor.gpio, sensor_type: sensor.sensor_type,
    start_time: start.toISOString(), end_time: end.toISOString(), buckets, order: 'asc', limit: 10000,
  }));
  return { rows: r.readings || [], start, end };
}

function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

// draw renders rows into el and resolves once uPlot has drawn. markers are
// vertical lines ({t: unix s, color, label}); levels horizontal ones
// ({y, label}), for a rule's firings and thresholds.
export async function draw(el, rows, { unit = '', start, end, markers = [], levels = [], name = 'chart' } = {}) {
  const U = await uPlot();
  const xs = new Float64Array(rows.length);
  const avg = [], min = [], max = [];
  rows.forEach((r, i) => {
    xs[i] = Date.parse(r.timestamp) / 1000;
    avg.push(r.avg_value ?? r.processed_value ?? r.raw_value);
    min.push(r.min_value ?? avg[i]);
    max.push(r.max_value ?? avg[i]);
  });
  el.replaceChildren();
  const width = Math.max(280, el.clientWidth || 600);
  const accent = css('--accent') || '#1f6f4a';
  const fmt = (u, v) => (v == null ? '–' : fmtNum(v) + (unit && unit !== 'raw' ? ' ' + unit : ''));
  let resolveDrawn;
  const drawn = new Promise((r) => { resolveDrawn = r; });
  const opts = {
    width, height: 260, tzDate: (ts) => new Date(ts * 1000),
    // The legend's time, in the UI's language.
    fmtDate: () => (d) => new Intl.DateTimeFormat(lang(), { dateStyle: 'short', timeStyle: 'short' }).format(d),
    scales: { x: { time: true, range: () => [start.getTime() / 1000, end.getTime() / 1000] } },
    axes: [{ stroke: css('--muted'), grid: { stroke: css('--line') }, values: (u, splits) => timeLabels(splits) },
      { stroke: css('--muted'), grid: { stroke: css('--line') }, values: (u, vals) => vals.map((v) => fmtNum(v)) }],
    series: [{ label: t('Time') },
      { label: t('min'), stroke: 'transparent', value: fmt, points: { show: false } },
      { label: t('max'), stroke: 'transparent', value: fmt, points: { show: false } },
      { label: t('average'), stroke: accent, width: 2, value: fmt, spanGaps: false }],
    bands: [{ series: [2, 1], fill: accent + '4d' }],
    hooks: {
      draw: [(u) => {
        const ctx = u.ctx;
        ctx.save();
        for (const m of markers) {
          const x = u.valToPos(m.t, 'x', true);
          if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
          ctx.strokeStyle = m.color || css('--warn');
          ctx.globalAlpha = 0.6;
          ctx.lineWidth = devicePixelRatio;
          ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
        }
        ctx.globalAlpha = 1;
        ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
        for (const l of levels) {
          const y = u.valToPos(l.y, 'y', true);
          ctx.strokeStyle = l.color || css('--bad');
          ctx.lineWidth = devicePixelRatio;
          ctx.beginPath(); ctx.moveTo(u.bbox.left, y); ctx.lineTo(u.bbox.left + u.bbox.width, y); ctx.stroke();
        }
        ctx.restore();
        performance.mark(name + '-drawn');
        resolveDrawn();
      }],
    },
  };
  if (levels.length) {
    opts.scales.y = { range: (u, lo, hi) => {
      const all = [lo, hi, ...levels.map((l) => l.y)].filter((v) => v != null && Number.isFinite(v));
      const a = Math.min(...all), b = Math.max(...all), pad = (b - a) * 0.08 || 1;
      return [a - pad, b + pad];
    } };
  }
  const plot = new U(opts, [xs, min, max, avg], el);
  const ro = new ResizeObserver(() => { const w = el.clientWidth; if (w && Math.abs(w - plot.width) > 4) plot.setSize({ width: w, height: 260 }); });
  ro.observe(el);
  await drawn;
  return { plot, destroy() { ro.disconnect(); plot.destroy(); } };
}

// timeLabels formats the x axis in the UI's language: dates for splits a
// day or more apart, else times, with the date where a split starts a day.
function timeLabels(splits) {
  const step = splits.length > 1 ? splits[1] - splits[0] : 86400;
  const date = new Intl.DateTimeFormat(lang(), { day: 'numeric', month: 'numeric' });
  const time = new Intl.DateTimeFormat(lang(), { hour: '2-digit', minute: '2-digit' });
  return splits.map((s, i) => {
    const d = new Date(s * 1000);
    if (step >= 86400) return date.format(d);
    const first = i === 0 || new Date(splits[i - 1] * 1000).getDate() !== d.getDate();
    return first && step >= 3600 ? date.format(d) + '\n' + time.format(d) : time.format(d);
  });
}

// rangePicker is a group of toggle buttons for RANGES.
export function rangePicker(selected, onPick) {
  const group = h('div', { class: 'tabs', role: 'group', 'aria-label': t('Time range') });
  const buttons = RANGES.map(([key]) => h('button', { type: 'button', 'aria-pressed': String(key === selected), dataset: { range: key },
    onclick: () => { for (const b of buttons) b.setAttribute('aria-pressed', String(b === buttons.find((x) => x.dataset.range === key))); onPick(key); } }, t('range_' + key)));
  replace(group, buttons);
  return group;
}
