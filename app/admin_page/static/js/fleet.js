// Fleet health: chargers by connectivity state with their reasons, the open operator
// alerts, and the release of a quarantined charger (fleet_write: operator, admin).

import { api, can, explain } from './api.js';
import { h, mount, toast } from './dom.js';
import * as T from './time.js';

const STATES = ['quarantined', 'offline', 'degraded', 'online'];
let built = false;
let els = {};
let current = 'quarantined';
let picked = false; // the operator chose a tab: keep it
const LIMIT = 200;
const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

export async function showFleet(root) {
  if (!built) {
    built = true;
    els = {
      tabs: h('div', { class: 'tabs', role: 'group', 'aria-label': 'Connectivity state' }),
      list: h('div', { id: 'fleet-list', 'aria-live': 'polite' }),
      alerts: h('div', { id: 'fleet-alerts' }),
      error: h('p', { class: 'error', role: 'alert' }),
    };
    mount(root, h('h1', { id: 'fleet-title' }, 'Fleet health'),
      can('fleet_write') ? null : h('p', { class: 'banner', id: 'fleet-readonly' }, 'Releasing a quarantined charger needs the operator or admin role; you can see everything here.'),
      els.error,
      h('h2', {}, 'Chargers by connectivity'), els.tabs, els.list,
      h('h2', {}, 'Open alerts'), els.alerts);
  }
  await refresh();
}

async function refresh() {
  els.error.textContent = '';
  try {
    const pages = await Promise.all(STATES.map((s) => api('GET', '/admin/v1/fleet/chargers', { query: { connectivity: s, limit: LIMIT } })));
    const by = Object.fromEntries(STATES.map((s, i) => [s, pages[i]]));
    if (!picked && !by[current].items.length) current = STATES.find((s) => by[s].items.length) || current;
    mount(els.tabs, STATES.map((s) => h('button', {
      type: 'button', 'aria-pressed': String(s === current), id: `fleet-tab-${s}`,
      onclick: () => { current = s; picked = true; refresh(); },
    }, `${s} (${by[s].items.length}${by[s].next_cursor ? '+' : ''})`)));
    renderList(by[current]);
    const alerts = await api('GET', '/admin/v1/alerts', { query: { open: 'true', limit: 100 } });
    renderAlerts(alerts.items);
  } catch (err) {
    els.error.textContent = explain(err);
  }
}

function renderList(page) {
  const rows = page.items;
  if (!rows.length) { mount(els.list, h('p', { class: 'empty' }, `No ${current} chargers.`)); return; }
  const writer = can('fleet_write');
  mount(els.list, h('div', { class: 'table-wrap' }, h('table', { id: 'fleet-table' },
    h('caption', {}, `${rows.length}${page.next_cursor ? '+' : ''} ${current} charger${rows.length === 1 ? '' : 's'}`),
    h('thead', {}, h('tr', {}, ['Charge point', 'State', 'Reason', 'Last seen', 'SIM', 'IMEI', ''].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.map((c) => h('tr', {},
      h('td', {}, c.charge_point_id),
      h('td', {}, h('span', { class: `pill ${c.connectivity}` }, c.connectivity)),
      h('td', {}, c.connectivity_reason.replaceAll('_', ' ')),
      h('td', {}, c.last_seen_at ? T.fmt(Date.parse(c.last_seen_at), tz) : 'never'),
      h('td', {}, c.sim_status || '—'),
      h('td', {}, c.imei || '—'),
      h('td', {}, c.connectivity === 'quarantined' && writer
        ? h('button', { type: 'button', class: 'small', 'aria-label': `Release ${c.charge_point_id} from quarantine`, onclick: (ev) => release(c, ev.target) }, 'Release')
        : null)))))));
}

async function release(charger, button) {
  button.disabled = true;
  try {
    const r = await api('POST', `/admin/v1/fleet/chargers/${charger.charger_id}/release`);
    toast(`${r.charge_point_id}: ${r.released ? 'released' : 'was not quarantined'}; now ${r.connectivity} (${r.connectivity_reason.replaceAll('_', ' ')}).`);
    await refresh();
  } catch (err) {
    button.disabled = false;
    els.error.textContent = explain(err);
  }
}

function renderAlerts(items) {
  if (!items.length) { mount(els.alerts, h('p', { class: 'empty' }, 'No open alerts.')); return; }
  mount(els.alerts, h('div', { class: 'table-wrap' }, h('table', { id: 'alerts-table' },
    h('thead', {}, h('tr', {}, ['Raised', 'Charge point', 'Kind', 'Reason'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, items.map((a) => h('tr', {},
      h('td', {}, T.fmt(Date.parse(a.raised_at), tz)),
      h('td', {}, a.charge_point_id),
      h('td', {}, h('span', { class: `pill ${a.kind === 'quarantine' ? 'quarantined' : a.kind}` }, a.kind)),
      h('td', {}, a.reason.replaceAll('_', ' '))))))));
}
