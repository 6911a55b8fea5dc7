// Pricing: pick a tariff or a site, see the price over a day or a week in the site's
// zone, edit the elements, preview (chart + sample quote, old vs new), publish or
// schedule, see and make assignments, read the audit trail.

import { ApiError, all, api, can, currentSession, explain } from './api.js';
import { destroy, priceChart } from './charts.js';
import { summarise } from './diff.js';
import { h, mount, toast } from './dom.js';
import { TariffEditor, blankTariff, modelOf } from './editor.js';
import * as M from './money.js';
import * as T from './time.js';

const S = {
  built: false,
  tariffs: [],
  sites: [],
  chargers: [],
  names: {},
  tariff: null, // the version on screen (TariffOut)
  latest: null, // the current version number
  isNew: false,
  tz: 'UTC',
  tzChosen: false,
  date: null,
  span: 'day',
  assignments: [],
  editor: null,
  previewed: null, // JSON of the draft last previewed successfully
  sampleTouched: false,
};
let els = {};

export async function showPricing(root) {
  if (!S.built) {
    build(root);
    S.built = true;
    await loadLists();
  }
}

function sel(id, label, hint) {
  const select = h('select', { id });
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) select.setAttribute('aria-describedby', hintEl.id);
  return { wrap: h('div', { class: 'field' }, h('label', { for: id }, label), select, hintEl), select };
}

function build(root) {
  const writer = can('pricing_write');
  const tariffSel = sel('tariff-select', 'Tariff');
  const siteSel = sel('site-select', 'Or a site', 'shows the tariff in force there');
  const tzSel = sel('tz-select', 'Time zone');
  const dateInput = h('input', { type: 'date', id: 'chart-date' });
  const span = h('fieldset', { class: 'seg' }, h('legend', {}, 'Period'),
    ['day', 'week'].map((v) => h('label', {}, h('input', {
      type: 'radio', name: 'span', value: v, checked: v === S.span,
      onchange: () => { S.span = v; renderChart(); },
    }), v === 'day' ? 'Day' : 'Week')));
  const newBtn = writer ? h('button', { type: 'button', class: 'secondary', id: 'new-tariff', onclick: startNew }, 'New tariff') : null;
  els = {
    tariffSel: tariffSel.select,
    siteSel: siteSel.select,
    tzSel: tzSel.select,
    dateInput,
    status: h('p', { id: 'pricing-status', role: 'status', class: 'muted' }),
    meta: h('div', { class: 'meta', id: 'tariff-meta' }),
    caption: h('figcaption', { id: 'chart-caption' }),
    chart: h('div', { class: 'chart-box', id: 'price-chart', role: 'img', 'aria-describedby': 'band-table-caption' }),
    bandTable: h('div', { class: 'table-wrap', id: 'band-table' }),
    editorTitle: h('h2', { id: 'editor-title' }),
    editorRoot: h('div', { id: 'editor-root' }),
    previewOut: h('div', { id: 'preview-out', 'aria-live': 'polite' }),
    publishStatus: h('p', { id: 'publish-status', role: 'status' }),
    assignTable: h('div', { class: 'table-wrap', id: 'assign-table' }),
    assignForm: h('div', { id: 'assign-form-wrap' }),
    audit: h('div', { id: 'tariff-audit' }),
  };
  tariffSel.select.addEventListener('change', () => selectTariff(tariffSel.select.value));
  siteSel.select.addEventListener('change', () => pickSite(siteSel.select.value));
  tzSel.select.addEventListener('change', () => { S.tz = tzSel.select.value; S.tzChosen = true; renderChart(); });
  dateInput.addEventListener('change', () => { if (dateInput.value) { S.date = dateInput.value; renderChart(); } });

  const sampleStart = h('input', { type: 'datetime-local', id: 'sample-start' });
  const sampleKwh = h('input', { type: 'text', inputmode: 'decimal', id: 'sample-kwh', value: '30' });
  const samplePower = h('input', { type: 'text', inputmode: 'decimal', id: 'sample-power', value: '50' });
  els.sampleStart = sampleStart;
  sampleStart.addEventListener('input', () => { S.sampleTouched = true; });
  els.sampleKwh = sampleKwh;
  els.samplePower = samplePower;
  const sampleField = (label, input, hint) => {
    const err = h('p', { class: 'field-error', id: `${input.id}-error` });
    input.setAttribute('aria-describedby', err.id);
    return h('div', { class: 'field' }, h('label', { for: input.id }, label), input, hint ? h('p', { class: 'hint' }, hint) : null, err);
  };

  const publishActions = writer ? h('div', { class: 'row-actions', id: 'publish-actions' },
    h('button', { type: 'button', id: 'publish-btn', disabled: true, onclick: publish }, 'Publish now'),
    sampleField('Or from', h('input', { type: 'datetime-local', id: 'schedule-at' }), 'in the chart’s time zone'),
    h('button', { type: 'button', class: 'secondary', id: 'schedule-btn', disabled: true, onclick: schedule }, 'Schedule'),
  ) : null;

  mount(root,
    h('h1', { id: 'pricing-title' }, 'Pricing'),
    writer ? null : h('p', { class: 'banner', id: 'pricing-readonly' },
      `Your role (${currentSession().roles.join(', ')}) can see prices, previews, assignments and the audit trail, but not change them. Changing prices needs the admin or pricing_admin role.`),
    h('div', { class: 'toolbar' }, tariffSel.wrap, siteSel.wrap, tzSel.wrap, span,
      h('div', { class: 'field' }, h('label', { for: 'chart-date' }, 'Date'), dateInput), newBtn),
    els.status,
    els.meta,
    h('figure', { class: 'chart', id: 'price-figure' }, els.caption, els.chart),
    h('p', { class: 'legend-note' }, 'Shaded stripes are price bands; the red line is now. Energy and flat prices use the left axis, time and idle prices per hour the right one. Prices exclude VAT.'),
    els.bandTable,
    h('section', { 'aria-labelledby': 'editor-title' },
      els.editorTitle,
      els.editorRoot,
      h('div', { class: 'panel', id: 'preview-panel' },
        h('h3', {}, 'Preview'),
        h('p', { class: 'hint' }, 'See the edited prices over the chart’s period and what a sample session would cost, old against new, before you publish.'),
        h('div', { class: 'grid-fields wide' },
          sampleField('Sample session starts', sampleStart, 'in the chart’s time zone'),
          sampleField('Energy kWh', sampleKwh),
          sampleField('Power kW', samplePower)),
        h('div', { class: 'row-actions' }, h('button', { type: 'button', id: 'preview-btn', onclick: preview }, 'Preview changes')),
        els.previewOut,
        publishActions,
        writer ? h('p', { class: 'hint' }, 'Publishing makes a new version at once (sessions already running keep theirs). Scheduling publishes the edit as a new tariff and assigns it, from that moment, wherever this tariff applies.') : null,
        els.publishStatus)),
    h('section', { 'aria-labelledby': 'assign-title' },
      h('h2', { id: 'assign-title' }, 'Where it applies'),
      els.assignTable,
      els.assignForm),
    h('section', { 'aria-labelledby': 'tariff-audit-title' },
      h('h2', { id: 'tariff-audit-title' }, 'Price changes'),
      els.audit),
  );
}

async function loadLists() {
  els.status.textContent = 'Loading tariffs and sites…';
  try {
    const [tariffs, sites] = await Promise.all([
      all('/admin/v1/tariffs', { limit: 200 }),
      all('/admin/v1/fleet/sites', { limit: 500 }),
    ]);
    S.tariffs = tariffs;
    S.sites = [...sites].sort((a, b) => a.name.localeCompare(b.name));
    S.chargers = S.sites.flatMap((s) => s.chargers.map((c) => ({ ...c, site: s })));
    for (const s of S.sites) S.names[s.site_id] = s.name;
    for (const c of S.chargers) S.names[c.charger_id] = `${c.charge_point_id} (${c.site.name})`;
    for (const t of S.tariffs) S.names[t.tariff_id] = t.name || t.tariff_id;
    fillSelects();
    els.status.textContent = '';
    if (S.tariffs.length) await selectTariff(S.tariffs[0].tariff_id);
    else {
      els.status.textContent = can('pricing_write') ? 'No tariffs yet: create one with “New tariff”.' : 'No tariffs yet.';
      if (can('pricing_write')) startNew();
    }
  } catch (err) {
    els.status.textContent = explain(err);
  }
}

function fillSelects() {
  mount(els.tariffSel, S.tariffs.map((t) => h('option', { value: t.tariff_id }, `${t.name || '(no name)'} · v${t.version} · ${t.currency}`)));
  mount(els.siteSel, h('option', { value: '' }, '—'), S.sites.map((s) => h('option', { value: s.site_id }, s.name)));
  const zones = [...new Set(S.sites.map((s) => s.timezone))].sort();
  if (!zones.includes('UTC')) zones.push('UTC');
  if (!zones.includes(S.tz)) zones.push(S.tz);
  mount(els.tzSel, zones.map((z) => h('option', { value: z, selected: z === S.tz }, z)));
}

function setTz(tz) {
  if (![...els.tzSel.options].some((o) => o.value === tz)) els.tzSel.append(h('option', { value: tz }, tz));
  S.tz = tz;
  els.tzSel.value = tz;
}

async function pickSite(siteId) {
  if (!siteId) return;
  const site = S.sites.find((s) => s.site_id === siteId);
  try {
    const page = await api('GET', '/admin/v1/tariff-assignments', { query: { site_id: siteId, limit: 50 } });
    setTz(site.timezone);
    S.tzChosen = true;
    const inForce = page.items.find((a) => a.state === 'in_force');
    if (!inForce) {
      const next = page.items.find((a) => a.state === 'scheduled');
      els.status.textContent = `No tariff is in force at ${site.name}${next ? ` (one is scheduled from ${T.fmt(Date.parse(next.effective_from), site.timezone)})` : ''}.`;
      return;
    }
    els.status.textContent = `${site.name} (${site.timezone}) is on this tariff since ${T.fmt(Date.parse(inForce.effective_from), site.timezone)}; a charger-level tariff may still beat it on single chargers.`;
    await selectTariff(inForce.tariff_id);
  } catch (err) {
    els.status.textContent = explain(err);
  }
}

async function selectTariff(tariffId, version) {
  S.isNew = false;
  try {
    const [tariff, assignments] = await Promise.all([
      api('GET', `/admin/v1/tariffs/${tariffId}`, { query: { version } }),
      all('/admin/v1/tariff-assignments', { tariff_id: tariffId, limit: 500 }),
    ]);
    if (!version) S.latest = tariff.version;
    S.tariff = tariff;
    S.assignments = assignments;
    els.tariffSel.value = tariffId;
    if (!S.tzChosen) {
      const first = assignments.find((a) => a.state === 'in_force') || assignments[0];
      if (first) setTz(first.timezone);
    }
    if (!S.date) S.date = T.todayIn(S.tz);
    els.dateInput.value = S.date;
    renderMeta();
    await renderChart();
    renderEditor(modelOf(tariff));
    renderAssignments();
    await renderAudit();
  } catch (err) {
    els.status.textContent = explain(err);
  }
}

function renderMeta() {
  const t = S.tariff;
  const versions = h('select', { id: 'version-select', 'aria-label': 'Version shown' });
  for (let v = S.latest; v >= 1; v -= 1) versions.append(h('option', { value: v, selected: v === t.version }, `version ${v}${v === S.latest ? ' (current)' : ''}`));
  versions.addEventListener('change', () => selectTariff(t.tariff_id, Number(versions.value) === S.latest ? undefined : Number(versions.value)));
  mount(els.meta,
    h('span', {}, h('strong', {}, t.name || '(no name)')),
    h('span', {}, versions),
    h('span', {}, `${t.currency} · VAT ${t.vat_percent} %`),
    h('span', { class: 'muted' }, `published ${T.fmt(Date.parse(t.version_created_at), S.tz)}`),
    t.version !== S.latest ? h('span', { class: 'pill scheduled' }, 'an earlier version') : null);
}

function period() {
  return T.dayRange(S.date, S.span === 'day' ? 1 : 7, S.tz);
}

async function renderChart() {
  if (!S.tariff || S.isNew) return;
  const [start, end] = period();
  try {
    const tl = await api('GET', `/admin/v1/tariffs/${S.tariff.tariff_id}/timeline`, {
      query: { from: T.iso(start), to: T.iso(end), timezone: S.tz, version: S.tariff.version },
    });
    const hours = T.hoursBetween(start, end);
    const dst = hours !== (S.span === 'day' ? 24 : 168) ? ` — ${hours} h: the clocks change` : '';
    els.caption.textContent = `${S.tariff.name || 'Tariff'}, version ${tl.version}: ${S.span === 'day' ? T.fmtDay(start, S.tz) : `week from ${T.fmtDay(start, S.tz)}`} in ${S.tz}${dst}`;
    els.chart.setAttribute('aria-label', `Price chart with ${tl.bands.length} bands`);
    priceChart(els.chart, { sides: [{ name: 'current', bands: tl.bands }], start, end, tz: S.tz, currency: tl.currency });
    const table = bandTable(tl.bands, tl.currency, 'band-table-caption');
    mount(els.bandTable, tl.bands.length > 8
      ? h('details', {}, h('summary', {}, `Table of the ${tl.bands.length} price bands`), table)
      : table);
    if (!S.sampleTouched) els.sampleStart.value = T.toLocalInput(T.zonedToMs(...S.date.split('-').map(Number), 18, 0, S.tz), S.tz);
    const sched = document.getElementById('schedule-at');
    if (sched && !sched.value) sched.value = T.toLocalInput(T.localMidnight(T.addDays(T.todayIn(S.tz), 1), S.tz), S.tz);
  } catch (err) {
    els.caption.textContent = explain(err);
  }
}

function bandTable(bands, currency, captionId) {
  const now = Date.now();
  const multiDay = bands.length && Date.parse(bands[bands.length - 1].to) - Date.parse(bands[0].from) > 26 * 36e5;
  const when = (ms) => (multiDay ? `${T.fmtDay(ms, S.tz)} ${T.fmtTime(ms, S.tz)}` : T.fmtTime(ms, S.tz));
  return h('table', { class: 'bands' },
    h('caption', { id: captionId }, `${bands.length} price band${bands.length === 1 ? '' : 's'} (${S.tz}, excl. VAT)`),
    h('thead', {}, h('tr', {}, ['From', 'Until', 'Energy /kWh', 'Time /h', 'Flat', 'Idle /h'].map((c, i) => h('th', { scope: 'col', class: i > 1 ? 'num' : null }, c)))),
    h('tbody', {}, bands.map((b) => {
      const a = Date.parse(b.from);
      const z = Date.parse(b.to);
      const isNow = a <= now && now < z;
      return h('tr', { class: isNow ? 'band-now' : null },
        h('td', {}, when(a), isNow ? h('strong', {}, ' (now)') : null), h('td', {}, when(z)),
        [b.energy_per_kwh, b.time_per_hour, b.flat, b.idle_per_hour].map((v) => h('td', { class: 'num' }, M.price(v, currency))));
    })));
}

function renderEditor(model) {
  const writer = can('pricing_write');
  els.editorTitle.textContent = S.isNew ? 'New tariff' : writer ? `Edit prices (publishes version ${S.latest + 1})` : 'Prices (read-only)';
  S.editor = new TariffEditor(els.editorRoot, model, { readOnly: !writer, onInput: invalidatePreview });
  invalidatePreview();
  mount(els.previewOut);
  els.publishStatus.textContent = '';
  const publishBtn = document.getElementById('publish-btn');
  if (publishBtn) publishBtn.textContent = S.isNew ? 'Create tariff' : `Publish version ${S.latest + 1} now`;
  const scheduleBtn = document.getElementById('schedule-btn');
  if (scheduleBtn) scheduleBtn.hidden = S.isNew;
  const schedAt = document.getElementById('schedule-at');
  if (schedAt) schedAt.closest('.field').hidden = S.isNew;
}

function invalidatePreview() {
  const draft = S.editor ? JSON.stringify(S.editor.value()) : null;
  const ok = S.previewed !== null && S.previewed === draft;
  for (const id of ['publish-btn', 'schedule-btn']) {
    const b = document.getElementById(id);
    if (b) {
      b.disabled = !ok;
      b.title = ok ? '' : 'Preview the changes first';
    }
  }
}

function startNew() {
  S.isNew = true;
  S.tariff = null;
  destroy(els.chart);
  mount(els.chart);
  mount(els.bandTable);
  mount(els.meta, h('span', {}, 'A new tariff: preview it, then create it; assign it to sites below once it exists.'));
  els.caption.textContent = 'New tariff (preview to see its chart)';
  mount(els.assignTable);
  mount(els.assignForm);
  mount(els.audit);
  if (!S.date) S.date = T.todayIn(S.tz);
  els.dateInput.value = S.date;
  if (!els.sampleStart.value) els.sampleStart.value = T.toLocalInput(T.localMidnight(S.date, S.tz) + 18 * 36e5, S.tz);
  renderEditor(blankTariff());
  document.getElementById(`ed-name`)?.focus();
}

function sampleErrors(errors) {
  for (const id of ['sample-start', 'sample-kwh', 'sample-power']) {
    document.getElementById(`${id}-error`).textContent = '';
    document.getElementById(id).removeAttribute('aria-invalid');
  }
  const map = { 'sample.start_at': 'sample-start', 'sample.energy_kwh': 'sample-kwh', 'sample.power_kw': 'sample-power' };
  const rest = [];
  for (const e of errors) {
    const id = map[e.field];
    if (id) {
      document.getElementById(`${id}-error`).textContent = e.message;
      document.getElementById(id).setAttribute('aria-invalid', 'true');
    } else rest.push(e);
  }
  return rest;
}

async function preview() {
  const draft = S.editor.value();
  const [start, end] = period();
  const startAt = T.fromLocalInput(els.sampleStart.value, S.tz);
  const kwh = Number(els.sampleKwh.value);
  const power = Number(els.samplePower.value);
  const local = [];
  if (startAt === null) local.push({ field: 'sample.start_at', message: 'pick a start date and time' });
  if (!(kwh > 0)) local.push({ field: 'sample.energy_kwh', message: 'a number of kWh above 0' });
  if (!(power > 0)) local.push({ field: 'sample.power_kw', message: 'a power in kW above 0' });
  sampleErrors(local);
  if (local.length) return;
  const btn = document.getElementById('preview-btn');
  btn.disabled = true;
  try {
    const out = await api('POST', '/admin/v1/tariff-previews', {
      body: {
        tariff: draft,
        tariff_id: S.isNew ? undefined : S.tariff.tariff_id,
        timezone: S.tz,
        from: T.iso(start),
        to: T.iso(end),
        sample: { start_at: T.iso(startAt), energy_kwh: kwh, power_kw: power },
      },
    });
    S.editor.clearErrors();
    S.previewed = JSON.stringify(draft);
    renderPreview(out, start, end);
    invalidatePreview();
  } catch (err) {
    S.previewed = null;
    invalidatePreview();
    if (err instanceof ApiError && err.status === 422 && err.errors.length) {
      const rest = sampleErrors(err.errors);
      const tariffErrors = rest.filter((e) => e.field.startsWith('tariff.') || e.field.startsWith('elements') || ['name', 'currency', 'vat_percent'].includes(e.field));
      if (tariffErrors.length) S.editor.showErrors(tariffErrors);
      const other = rest.filter((e) => !tariffErrors.includes(e));
      mount(els.previewOut, other.length ? h('p', { class: 'error' }, other.map((e) => `${e.field}: ${e.message}`).join('; ')) : null);
    } else {
      mount(els.previewOut, h('p', { class: 'error' }, explain(err)));
    }
  } finally {
    btn.disabled = false;
  }
}

function renderPreview(out, start, end) {
  const box = h('div', { class: 'chart-box', id: 'preview-chart', role: 'img', 'aria-label': `Preview chart with ${out.draft.bands.length} bands` });
  const sides = [{ name: 'new', bands: out.draft.bands }];
  if (out.current) sides.push({ name: `now, v${out.current.version}`, bands: out.current.bands, dash: true });
  mount(els.previewOut,
    h('figure', { class: 'chart' }, h('figcaption', {}, out.current ? `New prices (solid) against version ${out.current.version} (dashed)` : 'New prices'), box),
    h('div', { class: 'grid2' },
      h('div', { class: 'table-wrap' }, bandTable(out.draft.bands, out.draft.currency, 'preview-bands-caption')),
      quoteCompare(out)));
  requestAnimationFrame(() => priceChart(box, { sides, start, end, tz: S.tz, currency: out.draft.currency }));
}

function quoteCompare(out) {
  const nq = out.draft.quote;
  const oq = out.current ? out.current.quote : null;
  if (!nq) return h('p', {}, 'No sample session.');
  const cur = nq.currency;
  const fmt = (q, pick) => (q ? M.minor(pick(q), q.currency) : '—');
  const delta = oq && oq.currency === nq.currency ? nq.total_minor - oq.total_minor : null;
  const lineRows = (q) => Object.fromEntries((q ? q.lines : []).map((l) => [l.component, l]));
  const nl = lineRows(nq);
  const ol = lineRows(oq);
  const comps = [...new Set([...Object.keys(ol), ...Object.keys(nl)])];
  const label = { ENERGY: 'Energy', TIME: 'Time', PARKING_TIME: 'Idle', FLAT: 'Flat' };
  const sumBy = (q, comp) => (q ? q.lines.filter((l) => l.component === comp).reduce((s, l) => s + l.amount_minor, 0) : null);
  return h('div', {},
    h('table', { class: 'quote-compare', id: 'quote-compare' },
      h('caption', {}, `Sample: ${nq.energy_kwh} kWh at ${nq.power_kw} kW from ${T.fmt(Date.parse(nq.start_at), S.tz)}`),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, ''), oq ? h('th', { scope: 'col', class: 'num' }, `Now (v${out.current.version})`) : null, h('th', { scope: 'col', class: 'num' }, 'New'))),
      h('tbody', {},
        comps.map((c) => h('tr', {}, h('th', { scope: 'row' }, label[c] || c),
          oq ? h('td', { class: 'num' }, ol[c] ? M.minor(sumBy(oq, c), cur) : '—') : null,
          h('td', { class: 'num' }, nl[c] ? M.minor(sumBy(nq, c), cur) : '—'))),
        h('tr', {}, h('th', { scope: 'row' }, 'Subtotal'), oq ? h('td', { class: 'num' }, fmt(oq, (q) => q.subtotal_minor)) : null, h('td', { class: 'num' }, fmt(nq, (q) => q.subtotal_minor))),
        h('tr', {}, h('th', { scope: 'row' }, 'VAT'), oq ? h('td', { class: 'num' }, fmt(oq, (q) => q.vat_minor)) : null, h('td', { class: 'num' }, fmt(nq, (q) => q.vat_minor))),
        h('tr', {}, h('th', { scope: 'row' }, 'Total'), oq ? h('td', { class: 'num', id: 'quote-old-total' }, fmt(oq, (q) => q.total_minor)) : null, h('td', { class: 'num', id: 'quote-new-total' }, h('strong', {}, fmt(nq, (q) => q.total_minor)))))),
    delta === null ? null : h('p', { id: 'quote-delta', class: delta > 0 ? 'error' : 'ok' },
      delta === 0 ? 'The sample session costs the same.' : `The sample session costs ${M.minor(Math.abs(delta), cur)} ${delta > 0 ? 'more' : 'less'} (${oq.total_minor ? `${((100 * delta) / oq.total_minor).toFixed(1)} %` : 'new'}).`));
}

async function publish() {
  const draft = S.editor.value();
  const btn = document.getElementById('publish-btn');
  btn.disabled = true;
  els.publishStatus.textContent = 'Publishing…';
  try {
    let ref;
    if (S.isNew) ref = await api('POST', '/admin/v1/tariffs', { body: draft });
    else ref = await api('PUT', `/admin/v1/tariffs/${S.tariff.tariff_id}`, { body: draft });
    S.previewed = null;
    await refreshTariffs();
    await selectTariff(ref.tariff_id);
    const msg = S.isNew ? `Created “${draft.name}” (version ${ref.version}).` : `Published version ${ref.version}. Sessions already running keep the version they started with.`;
    els.publishStatus.textContent = msg;
    els.publishStatus.className = 'ok';
    toast(msg);
  } catch (err) {
    els.publishStatus.className = 'error';
    if (err instanceof ApiError && err.status === 422 && err.errors.length) {
      S.editor.showErrors(err.errors);
      els.publishStatus.textContent = 'Not published: fix the problems above.';
    } else {
      els.publishStatus.textContent = `Not published. ${explain(err)}`;
    }
    invalidatePreview();
  }
}

async function refreshTariffs() {
  S.tariffs = await all('/admin/v1/tariffs', { limit: 200 });
  for (const t of S.tariffs) S.names[t.tariff_id] = t.name || t.tariff_id;
  const keep = els.tariffSel.value;
  fillSelects();
  if (keep) els.tariffSel.value = keep;
}

async function schedule() {
  const at = T.fromLocalInput(document.getElementById('schedule-at').value, S.tz);
  const err = document.getElementById('schedule-at-error');
  err.textContent = '';
  if (at === null || at <= Date.now()) {
    err.textContent = 'Pick a moment in the future.';
    document.getElementById('schedule-at').focus();
    return;
  }
  const targets = new Map();
  for (const a of S.assignments) {
    if (a.state === 'superseded') continue;
    const key = a.site_id ? `s:${a.site_id}` : `c:${a.charger_id}`;
    targets.set(key, a.site_id ? { site_id: a.site_id } : { charger_id: a.charger_id });
  }
  if (!targets.size) {
    els.publishStatus.className = 'error';
    els.publishStatus.textContent = 'This tariff is not assigned anywhere, so there is nothing to schedule: publish it now, or assign it below.';
    return;
  }
  const draft = S.editor.value();
  const when = T.fmt(at, S.tz);
  draft.name = `${draft.name} (from ${T.todayIn(S.tz, at)})`.slice(0, 200);
  els.publishStatus.className = '';
  els.publishStatus.textContent = 'Scheduling…';
  try {
    const ref = await api('POST', '/admin/v1/tariffs', { body: draft });
    for (const target of targets.values()) {
      await api('POST', '/admin/v1/tariff-assignments', { body: { tariff_id: ref.tariff_id, effective_from: T.iso(at), ...target } });
    }
    S.previewed = null;
    invalidatePreview();
    await refreshTariffs();
    const sites = [...targets.values()].filter((t) => t.site_id).length;
    const msg = `Scheduled “${draft.name}”: it applies from ${when} (${S.tz}) at ${sites} site${sites === 1 ? '' : 's'} and ${targets.size - sites} charger${targets.size - sites === 1 ? '' : 's'}.`;
    els.publishStatus.className = 'ok';
    mount(els.publishStatus, msg, ' ', h('button', { type: 'button', class: 'secondary small', onclick: () => selectTariff(ref.tariff_id) }, 'Open it'));
    toast(msg);
  } catch (e) {
    els.publishStatus.className = 'error';
    els.publishStatus.textContent = `Not scheduled. ${explain(e)}`;
  }
}

function renderAssignments() {
  const rows = S.assignments;
  mount(els.assignTable, rows.length === 0
    ? h('p', { class: 'empty' }, 'This tariff is not assigned to any site or charger yet.')
    : h('table', { id: 'assignments' },
      h('caption', {}, `${rows.length} assignment${rows.length === 1 ? '' : 's'} (charger-level beats site-level; per level the latest start wins)`),
      h('thead', {}, h('tr', {}, ['Where', 'Level', 'From (local)', 'State', 'By'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.map((a) => h('tr', {},
        h('td', {}, a.charger_id ? `${a.charge_point_id} at ${a.site_name}` : a.site_name),
        h('td', {}, a.charger_id ? 'charger' : 'site'),
        h('td', {}, `${T.fmt(Date.parse(a.effective_from), a.timezone)} ${T.zoneName(Date.parse(a.effective_from), a.timezone)}`),
        h('td', {}, h('span', { class: `pill ${a.state}` }, a.state.replace('_', ' '))),
        h('td', {}, a.created_by || '—'))))));
  if (!can('pricing_write')) {
    mount(els.assignForm);
    return;
  }
  const level = h('select', { id: 'assign-level' }, h('option', { value: 'site' }, 'a site'), h('option', { value: 'charger' }, 'a charger'));
  const target = h('select', { id: 'assign-target' });
  const fillTargets = () => mount(target, level.value === 'site'
    ? S.sites.map((s) => h('option', { value: s.site_id }, `${s.name} (${s.timezone})`))
    : S.chargers.map((c) => h('option', { value: c.charger_id }, `${c.charge_point_id} — ${c.site.name}`)));
  level.addEventListener('change', fillTargets);
  fillTargets();
  const from = h('input', { type: 'datetime-local', id: 'assign-from' });
  const zoneOf = () => (level.value === 'site' ? S.sites.find((s) => s.site_id === target.value) : S.chargers.find((c) => c.charger_id === target.value)?.site)?.timezone || S.tz;
  from.value = T.toLocalInput(Date.now(), zoneOf());
  const err = h('p', { class: 'error', id: 'assign-error', role: 'alert' });
  const field = (label, input, hint) => h('div', { class: 'field' }, h('label', { for: input.id }, label), input, hint ? h('p', { class: 'hint' }, hint) : null);
  const form = h('form', { id: 'assign-form', class: 'panel', novalidate: true },
    h('h3', {}, 'Assign this tariff'),
    h('div', { class: 'grid-fields wide' }, field('To', level), field('Which', target), field('From', from, 'local time at the site')),
    err,
    h('div', { class: 'row-actions' }, h('button', { type: 'submit', id: 'assign-btn' }, 'Assign')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    const at = T.fromLocalInput(from.value, zoneOf());
    if (at === null) { err.textContent = 'Pick the date and time it starts to apply.'; from.focus(); return; }
    try {
      await api('POST', '/admin/v1/tariff-assignments', {
        body: { tariff_id: S.tariff.tariff_id, effective_from: T.iso(at), [level.value === 'site' ? 'site_id' : 'charger_id']: target.value },
      });
      S.assignments = await all('/admin/v1/tariff-assignments', { tariff_id: S.tariff.tariff_id, limit: 500 });
      renderAssignments();
      toast(`Assigned to ${S.names[target.value] || target.value}.`);
      await renderAudit();
    } catch (e) {
      err.textContent = explain(e);
    }
  });
  mount(els.assignForm, form);
}

async function renderAudit() {
  const id = S.tariff.tariff_id;
  try {
    const [changes, sites, chargers] = await Promise.all([
      api('GET', '/admin/v1/audit-log', { query: { entity_type: 'tariff', entity_id: id, limit: 50 } }),
      api('GET', '/admin/v1/audit-log', { query: { entity_type: 'site', limit: 200 } }),
      api('GET', '/admin/v1/audit-log', { query: { entity_type: 'charger', limit: 200 } }),
    ]);
    const assigns = [...sites.items, ...chargers.items].filter((e) => e.action === 'tariff.assign' && e.after && e.after.tariff_id === id);
    const entries = [...changes.items, ...assigns].sort((a, b) => Date.parse(b.at) - Date.parse(a.at));
    mount(els.audit, entries.length === 0 ? h('p', { class: 'empty' }, 'No changes recorded.') : h('table', { id: 'tariff-audit-table' },
      h('caption', {}, 'Who changed what, when (newest first)'),
      h('thead', {}, h('tr', {}, ['When', 'Who', 'What', 'Change'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, entries.map((e) => h('tr', {},
        h('td', {}, T.fmt(Date.parse(e.at), S.tz)),
        h('td', {}, e.actor_email || e.actor_id || e.actor_type),
        h('td', {}, e.action),
        h('td', {}, summarise(e, S.names)))))));
  } catch (err) {
    mount(els.audit, h('p', { class: 'error' }, explain(err)));
  }
}

