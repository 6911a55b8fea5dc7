// The audit log: who changed which price or quarantine, when, from what to what.

import { api, explain } from './api.js';
import { summarise } from './diff.js';
import { h, mount } from './dom.js';
import * as T from './time.js';

let built = false;
let els = {};
let cursor = null;
const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

export async function showAudit(root) {
  if (!built) {
    built = true;
    const kind = h('select', { id: 'audit-kind' },
      [['', 'everything'], ['tariff', 'tariffs'], ['site', 'site assignments'], ['charger', 'chargers (assignments, quarantine)']].map(([v, t]) => h('option', { value: v }, t)));
    kind.addEventListener('change', () => load(true));
    els = {
      kind,
      body: h('tbody', {}),
      more: h('button', { type: 'button', class: 'secondary', id: 'audit-more', onclick: () => load(false) }, 'Load more'),
      error: h('p', { class: 'error', role: 'alert' }),
    };
    mount(root, h('h1', { id: 'audit-title' }, 'Audit log'),
      h('div', { class: 'toolbar' }, h('div', { class: 'field' }, h('label', { for: 'audit-kind' }, 'Show'), kind)),
      els.error,
      h('div', { class: 'table-wrap' }, h('table', { id: 'audit-table' },
        h('caption', {}, `Newest first; times in ${tz}`),
        h('thead', {}, h('tr', {}, ['When', 'Who', 'Action', 'What', 'Change', ''].map((c) => h('th', { scope: 'col' }, c)))),
        els.body)),
      els.more);
  }
  await load(true);
}

async function load(reset) {
  els.error.textContent = '';
  if (reset) { cursor = null; mount(els.body); }
  try {
    const page = await api('GET', '/admin/v1/audit-log', { query: { limit: 50, cursor, entity_type: els.kind.value || undefined } });
    for (const e of page.items) {
      els.body.append(h('tr', {},
        h('td', {}, T.fmt(Date.parse(e.at), tz)),
        h('td', {}, e.actor_email || e.actor_id || e.actor_type),
        h('td', {}, e.action),
        h('td', {}, `${e.entity_type} ${e.entity_id ? e.entity_id.slice(0, 8) : ''}`),
        h('td', {}, summarise(e)),
        h('td', {}, h('details', {}, h('summary', {}, 'Before / after'), h('pre', {}, JSON.stringify({ before: e.before, after: e.after }, null, 1))))));
    }
    cursor = page.next_cursor;
    els.more.hidden = !cursor;
    if (!els.body.children.length) els.body.append(h('tr', {}, h('td', { colspan: 6 }, 'Nothing recorded yet.')));
  } catch (err) {
    els.error.textContent = explain(err);
  }
}
