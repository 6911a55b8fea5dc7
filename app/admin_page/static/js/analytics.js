// Usage analytics: utilisation by local hour of day (where off-peak prices would help)
// and revenue per site, from GET /admin/v1/analytics/usage; CSV downloads.

import { api, explain } from './api.js';
import { barChart, barList, destroy } from './charts.js';
import { h, mount } from './dom.js';
import * as M from './money.js';
import * as T from './time.js';

let built = false;
let els = {};
let zones = ['UTC'];

export async function showAnalytics(root) {
  if (built) return;
  built = true;
  try {
    const sites = await api('GET', '/admin/v1/fleet/sites', { query: { limit: 500 } });
    const counts = {};
    for (const s of sites.items) counts[s.timezone] = (counts[s.timezone] || 0) + 1;
    zones = Object.keys(counts).sort((a, b) => counts[b] - counts[a]);
    if (!zones.length) zones = ['UTC'];
  } catch {
    zones = ['UTC'];
  }
  const tz = zones[0];
  const today = T.todayIn(tz);
  const from = h('input', { type: 'date', id: 'an-from', value: T.addDays(today, -6) });
  const to = h('input', { type: 'date', id: 'an-to', value: today });
  const field = (label, input, hint) => h('div', { class: 'field' }, h('label', { for: input.id }, label), input, hint ? h('p', { class: 'hint' }, hint) : null);
  els = {
    from, to,
    error: h('p', { class: 'error', role: 'alert', id: 'an-error' }),
    out: h('div', { id: 'an-out', 'aria-live': 'polite' }),
  };
  const form = h('form', { class: 'toolbar', id: 'an-form', novalidate: true },
    field('From', from), field('Until (inclusive)', to),
    h('button', { type: 'submit' }, 'Show'),
    h('button', { type: 'button', class: 'secondary', onclick: () => download('hour') }, 'CSV by hour'),
    h('button', { type: 'button', class: 'secondary', onclick: () => download('site') }, 'CSV by site'),
    h('button', { type: 'button', class: 'secondary', onclick: () => download('day') }, 'CSV by day'));
  form.addEventListener('submit', (ev) => { ev.preventDefault(); load(); });
  mount(root, h('h1', { id: 'analytics-title' }, 'Usage analytics'),
    h('p', { class: 'hint' }, 'Sessions count where they start; connector time counts wherever a session occupies it. Utilisation = occupied connector-hours ÷ available connector-hours. Hours are each site’s local hours.'),
    h('p', { class: 'hint' }, `The days below are days in ${tz}.`),
    form, els.error, els.out);
  await load();
}

function range() {
  const tz = zones[0];
  if (!els.from.value || !els.to.value) return null;
  const start = T.localMidnight(els.from.value, tz);
  const end = T.localMidnight(T.addDays(els.to.value, 1), tz);
  return end > start ? { from: T.iso(start), to: T.iso(end) } : null;
}

async function load() {
  els.error.textContent = '';
  const r = range();
  if (!r) { els.error.textContent = 'Pick a start day on or before the end day.'; return; }
  try {
    const [byHour, bySite] = await Promise.all([
      api('GET', '/admin/v1/analytics/usage', { query: { ...r, group_by: 'hour' } }),
      api('GET', '/admin/v1/analytics/usage', { query: { ...r, group_by: 'site', limit: 500 } }),
    ]);
    render(byHour, bySite);
  } catch (err) {
    els.error.textContent = explain(err);
  }
}

function render(byHour, bySite) {
  const t = byHour.totals;
  const old = document.getElementById('an-hour-chart');
  if (old) destroy(old);
  if (t.sessions === 0 && t.occupied_h === 0) {
    mount(els.out, h('p', { class: 'empty', id: 'an-empty' },
      'No sessions yet in this period: the charts appear once drivers charge. ',
      t.available_h > 0 ? `${Math.round(t.available_h).toLocaleString('en-GB')} connector-hours were available.` : ''));
    return;
  }
  const pct = (v) => (v === null || v === undefined ? '—' : `${(v * 100).toFixed(1)} %`);
  const stat = (value, label) => h('div', { class: 'stat' }, h('b', {}, value), h('span', {}, label));
  const hourBox = h('div', { class: 'chart-box', id: 'an-hour-chart', role: 'img', 'aria-label': 'Utilisation by hour of day' });
  const withRevenue = bySite.items.filter((i) => i.revenue.length).map((i) => ({
    label: i.label,
    value: i.revenue.reduce((s, m) => s + m.amount_minor, 0),
    text: M.sumMoney(i.revenue),
  })).sort((a, b) => b.value - a.value).slice(0, 15);
  const peak = byHour.items.reduce((best, i) => ((i.utilisation ?? -1) > (best.utilisation ?? -1) ? i : best), byHour.items[0]);
  const quiet = byHour.items.reduce((best, i) => ((i.utilisation ?? 2) < (best.utilisation ?? 2) ? i : best), byHour.items[0]);
  mount(els.out,
    h('div', { class: 'stats' },
      stat(t.sessions.toLocaleString('en-GB'), 'sessions'),
      stat(`${t.energy_kwh.toLocaleString('en-GB', { maximumFractionDigits: 1 })} kWh`, 'energy'),
      stat(M.sumMoney(t.revenue), 'revenue (billed, incl. VAT)'),
      stat(pct(t.utilisation), 'utilisation')),
    h('h2', {}, 'Utilisation by hour of day'),
    h('p', { class: 'hint' }, `Busiest ${peak.label} (${pct(peak.utilisation)}), quietest ${quiet.label} (${pct(quiet.utilisation)}): quiet hours are where an off-peak price could move demand.`),
    h('figure', { class: 'chart' }, hourBox),
    h('details', {}, h('summary', {}, 'Table: utilisation by hour'),
      h('table', { id: 'an-hour-table' },
        h('thead', {}, h('tr', {}, ['Hour', 'Sessions', 'kWh', 'Occupied h', 'Available h', 'Utilisation'].map((c, i) => h('th', { scope: 'col', class: i ? 'num' : null }, c)))),
        h('tbody', {}, byHour.items.map((i) => h('tr', {}, h('td', {}, i.label), h('td', { class: 'num' }, i.sessions), h('td', { class: 'num' }, i.energy_kwh.toFixed(1)), h('td', { class: 'num' }, i.occupied_h.toFixed(1)), h('td', { class: 'num' }, i.available_h.toFixed(0)), h('td', { class: 'num' }, pct(i.utilisation))))))),
    h('h2', {}, 'Revenue per site'),
    withRevenue.length
      ? barList(withRevenue, { describe: 'Revenue per site, highest first' })
      : h('p', { class: 'empty', id: 'an-no-revenue' }, 'No billed sessions in this period yet.'),
    h('h2', {}, 'Busiest sites'),
    h('div', { class: 'table-wrap' }, h('table', { id: 'an-site-table' },
      h('thead', {}, h('tr', {}, ['Site', 'Sessions', 'kWh', 'Revenue', 'Utilisation'].map((c, i) => h('th', { scope: 'col', class: i ? 'num' : null }, c)))),
      h('tbody', {}, bySite.items.filter((i) => i.sessions > 0 || i.occupied_h > 0).slice(0, 20).map((i) => h('tr', {},
        h('td', {}, i.label), h('td', { class: 'num' }, i.sessions), h('td', { class: 'num' }, i.energy_kwh.toFixed(1)),
        h('td', { class: 'num' }, M.sumMoney(i.revenue)), h('td', { class: 'num' }, pct(i.utilisation))))))));
  requestAnimationFrame(() => barChart(hourBox, {
    labels: byHour.items.map((i) => i.label.slice(0, 2)),
    values: byHour.items.map((i) => i.utilisation),
    label: 'Utilisation',
    format: (v) => `${(v * 100).toFixed(v < 0.1 ? 1 : 0)} %`,
  }));
}

async function download(groupBy) {
  els.error.textContent = '';
  const r = range();
  if (!r) { els.error.textContent = 'Pick a start day on or before the end day.'; return; }
  try {
    const blob = await api('GET', '/admin/v1/analytics/usage', { query: { ...r, group_by: groupBy, limit: 10000 }, accept: 'text/csv' });
    const a = h('a', { href: URL.createObjectURL(blob), download: `usage-${groupBy}-${els.from.value}-${els.to.value}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (err) {
    els.error.textContent = explain(err);
  }
}
