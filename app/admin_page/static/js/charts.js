// Charts on the vendored uPlot (static/vendor, MIT): a tariff's price bands over time in
// the site's zone, and bar charts for analytics.

import uPlot from '../vendor/uPlot.esm.js';
import { h } from './dom.js';
import { fmtDay, fmtTime } from './time.js';

export const COMPONENTS = [
  { key: 'energy_per_kwh', label: 'Energy', unit: '/kWh', scale: 'kwh', color: '#0b57d0' },
  { key: 'flat', label: 'Flat', unit: '/session', scale: 'kwh', color: '#0b7a75' },
  { key: 'time_per_hour', label: 'Time', unit: '/h', scale: 'h', color: '#7a3db8' },
  { key: 'idle_per_hour', label: 'Idle', unit: '/h', scale: 'h', color: '#b45309' },
];

const ms = (iso) => Date.parse(iso);

// The value of `key` at instant t over a list of bands ([from, to)).
function valueAt(bands, key, t) {
  for (const b of bands) {
    if (ms(b.from) <= t && t < ms(b.to)) return b[key] === null ? null : Number(b[key]);
  }
  return null;
}

// Align several band lists on the union of their edges (seconds for uPlot).
export function aligned(sides, start, end) {
  const edges = new Set([start, end]);
  for (const s of sides) for (const b of s.bands) {
    edges.add(Math.max(start, ms(b.from)));
    edges.add(Math.min(end, ms(b.to)));
  }
  const xs = [...edges].filter((t) => t >= start && t <= end).sort((a, b) => a - b);
  const columns = [];
  for (const s of sides) {
    for (const c of COMPONENTS) {
      const ys = xs.map((t, i) => valueAt(s.bands, c.key, i === xs.length - 1 ? xs[i - 1] ?? t : t));
      columns.push({ side: s, component: c, ys });
    }
  }
  return { xs: xs.map((t) => t / 1000), columns };
}

const charts = new WeakMap();

function sizeOf(box, height) {
  return { width: Math.max(280, Math.floor(box.clientWidth || 600)), height };
}

function observe(box, plot, height) {
  const ro = new ResizeObserver(() => plot.setSize(sizeOf(box, height)));
  ro.observe(box);
  charts.set(box, { plot, ro });
}

export function destroy(box) {
  const old = charts.get(box);
  if (old) {
    old.ro.disconnect();
    old.plot.destroy();
    charts.delete(box);
  }
}

// sides: [{name, bands, dash}] — the first side's bands are shaded and counted.
export function priceChart(box, { sides, start, end, tz, currency, now = Date.now(), height = 300 }) {
  destroy(box);
  const { xs, columns } = aligned(sides, start, end);
  const used = columns.filter((c) => c.ys.some((v) => v !== null));
  const hasH = used.some((c) => c.component.scale === 'h');
  const money = (v) => (v === null || v === undefined ? '—' : `${Number(v).toFixed(4).replace(/0{1,2}$/, '')} ${currency}`);
  const primary = sides[0].bands;
  const series = [
    { label: 'Local time', value: (u, v) => (v === null ? '—' : fmtTime(v * 1000, tz)) },
    ...used.map((c) => ({
      label: `${c.component.label}${sides.length > 1 ? ` (${c.side.name})` : ''} ${c.component.unit}`,
      scale: c.component.scale,
      stroke: c.component.color,
      width: c.side.dash ? 2 : 2.5,
      dash: c.side.dash ? [6, 4] : undefined,
      paths: uPlot.paths.stepped({ align: 1 }),
      points: { show: false },
      value: (u, v) => money(v),
      spanGaps: false,
    })),
  ];
  const zeroUp = (u, min, max) => [0, max > 0 ? max * 1.2 : 1];
  const hours = (end - start) / 36e5;
  const week = hours > 48;
  const timeLabels = (u, splits) => splits.map((s) => {
    const t = fmtTime(s * 1000, tz);
    return week && t === '00:00' ? fmtDay(s * 1000, tz) : t;
  });
  const opts = {
    ...sizeOf(box, height),
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), tz),
    scales: { x: { time: true, range: [start / 1000, end / 1000] }, kwh: { range: zeroUp }, h: { range: zeroUp } },
    series,
    axes: [
      { stroke: '#1b1f24', grid: { stroke: '#e3e7eb' }, values: timeLabels, incrs: week ? [6 * 3600, 12 * 3600, 86400] : [3600, 2 * 3600, 3 * 3600, 6 * 3600], space: 48 },
      { scale: 'kwh', label: `${currency} per kWh · per session`, stroke: '#1b1f24', grid: { stroke: '#e3e7eb' }, size: 60 },
      hasH ? { scale: 'h', side: 1, label: `${currency} per hour`, stroke: '#1b1f24', grid: { show: false }, size: 60 } : null,
    ].filter(Boolean),
    cursor: { y: false },
    legend: { live: true },
    hooks: {
      drawClear: [(u) => shadeBands(u, primary)],
      draw: [(u) => markNow(u, now, tz)],
    },
  };
  const data = [xs, ...used.map((c) => c.ys)];
  const plot = new uPlot(opts, data, box);
  observe(box, plot, height);
  box.dataset.bandCount = String(primary.length);
  return plot;
}

function shadeBands(u, bands) {
  const { ctx } = u;
  const { top, height } = u.bbox;
  ctx.save();
  bands.forEach((b, i) => {
    const x0 = u.valToPos(ms(b.from) / 1000, 'x', true);
    const x1 = u.valToPos(ms(b.to) / 1000, 'x', true);
    ctx.fillStyle = i % 2 ? 'rgba(16, 36, 62, 0.07)' : 'rgba(16, 36, 62, 0.02)';
    ctx.fillRect(x0, top, x1 - x0, height);
    if (i > 0) {
      ctx.strokeStyle = 'rgba(16, 36, 62, 0.35)';
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(Math.round(x0) + 0.5, top);
      ctx.lineTo(Math.round(x0) + 0.5, top + height);
      ctx.stroke();
    }
  });
  ctx.restore();
}

function markNow(u, now, tz) {
  const x = u.valToPos(now / 1000, 'x', true);
  const { left, top, width, height } = u.bbox;
  if (x < left || x > left + width) return;
  const { ctx } = u;
  ctx.save();
  ctx.strokeStyle = '#b3261e';
  ctx.lineWidth = 2 * devicePixelRatio;
  ctx.beginPath();
  ctx.moveTo(x, top);
  ctx.lineTo(x, top + height);
  ctx.stroke();
  ctx.fillStyle = '#b3261e';
  ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
  const label = `now ${fmtTime(now, tz)}`;
  const w = ctx.measureText(label).width;
  ctx.fillText(label, Math.min(x + 4 * devicePixelRatio, left + width - w), top + 14 * devicePixelRatio);
  ctx.restore();
}

// Vertical bars over categories 0..n-1 (labels[i]); values may be null.
export function barChart(box, { labels, values, label, format, height = 240, color = '#0b57d0', max }) {
  destroy(box);
  const xs = labels.map((_, i) => i);
  const top = max ?? Math.max(0, ...values.filter((v) => v !== null));
  const opts = {
    ...sizeOf(box, height),
    scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: { range: [0, top > 0 ? top * 1.1 : 1] } },
    series: [
      { label: 'Hour', value: (u, v) => (v === null || v === undefined ? '—' : labels[v]) },
      {
        label, stroke: color, fill: `${color}cc`, width: 1,
        paths: uPlot.paths.bars({ size: [0.7, 60] }), points: { show: false },
        value: (u, v) => (v === null || v === undefined ? '—' : format(v)),
      },
    ],
    axes: [
      { stroke: '#1b1f24', grid: { show: false }, incrs: [1, 2, 3, 4, 6], values: (u, splits) => splits.map((v) => labels[v] ?? '') },
      { stroke: '#1b1f24', grid: { stroke: '#e3e7eb' }, values: (u, splits) => splits.map((v) => format(v)), size: 64 },
    ],
    cursor: { y: false },
  };
  const plot = new uPlot(opts, [xs, values], box);
  observe(box, plot, height);
  return plot;
}

// Horizontal bars as HTML (long site names stay readable): [{label, value, text}].
export function barList(rows, { describe } = {}) {
  const top = Math.max(0, ...rows.map((r) => r.value));
  return h('ul', { class: 'bars', 'aria-label': describe },
    rows.map((r) => {
      const bar = h('span', { class: 'bar' });
      bar.style.width = `${top > 0 ? (100 * r.value) / top : 0}%`;
      return h('li', {}, h('span', { class: 'label', title: r.label }, r.label), h('span', { class: 'track', 'aria-hidden': 'true' }, bar), h('span', { class: 'value' }, r.text));
    }));
}
