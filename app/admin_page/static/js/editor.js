// The tariff editor: a form over a TariffIn-shaped model ({name, currency, vat_percent,
// elements: [{price_components: [{type, price, step_size}], restrictions}]}). Field ids
// follow the API's error paths, so a 422 `errors[]` lands next to the right input.

import { h, mount } from './dom.js';

const TYPES = [
  ['ENERGY', 'Energy (per kWh)'],
  ['TIME', 'Charging time (per hour)'],
  ['PARKING_TIME', 'Idle / parking (per hour)'],
  ['FLAT', 'Flat (per session)'],
];
const DAYS = ['MONDAY', 'TUESDAY', 'WEDNESDAY', 'THURSDAY', 'FRIDAY', 'SATURDAY', 'SUNDAY'];
const NUMERIC = [
  ['min_kwh', 'Min kWh', 'energy so far'],
  ['max_kwh', 'Max kWh', 'energy so far'],
  ['min_power', 'Min power kW', null],
  ['max_power', 'Max power kW', null],
  ['min_duration', 'Min duration s', 'seconds'],
  ['max_duration', 'Max duration s', 'seconds'],
];

const KIND = { type: 'kind', price: 'price', step_size: 'step size' };

// "elements[0].price_components[1].price" → "Element 1, component 2: price".
export function humanField(path) {
  const p = path.replace(/^tariff\./, '');
  const m = /^elements\[(\d+)\](?:\.price_components\[(\d+)\](?:\.(\w+))?|\.restrictions\.(\w+)(?:\[(\d+)\])?|\.(\w+))?$/.exec(p);
  if (!m) return { name: 'Tariff name', currency: 'Currency', vat_percent: 'VAT %', elements: 'Elements' }[p] || p;
  const el = `Element ${Number(m[1]) + 1}`;
  if (m[2] !== undefined) return `${el}, component ${Number(m[2]) + 1}${m[3] ? `: ${KIND[m[3]] || m[3]}` : ''}`;
  if (m[4]) return `${el}, restriction ${m[4].replaceAll('_', ' ')}`;
  if (m[6]) return `${el}: ${m[6].replaceAll('_', ' ')}`;
  return el;
}

export function idFor(path) {
  return `ed-${path.replace(/^tariff\./, '').replace(/\[(\d+)\]/g, '-$1').replace(/\./g, '-')}`;
}

function clone(x) {
  return JSON.parse(JSON.stringify(x));
}

export function blankTariff() {
  return {
    name: 'New tariff',
    currency: 'EUR',
    vat_percent: '19',
    elements: [{ price_components: [{ type: 'ENERGY', price: '0.39', step_size: 1 }] }],
  };
}

// The model from a stored tariff (TariffOut) or a blank one.
export function modelOf(tariff) {
  return {
    name: tariff.name || '',
    currency: tariff.currency,
    vat_percent: tariff.vat_percent,
    elements: clone(tariff.elements),
  };
}

function numberOrRaw(text) {
  const t = text.trim();
  if (t === '') return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : t; // the API explains what is wrong with the raw text
}

export class TariffEditor {
  constructor(root, model, { readOnly = false, onInput = () => {} } = {}) {
    this.root = root;
    this.model = clone(model);
    this.readOnly = readOnly;
    this.onInput = onInput;
    this.summary = h('div', { class: 'summary', id: 'editor-errors', tabindex: '-1', role: 'alert' });
    this.render();
  }

  // The body for POST/PUT /admin/v1/tariffs (empty restriction fields left out).
  value() {
    const m = clone(this.model);
    for (const el of m.elements) {
      if (el.restrictions) {
        for (const [k, v] of Object.entries(el.restrictions)) {
          if (v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0)) delete el.restrictions[k];
        }
        if (Object.keys(el.restrictions).length === 0) delete el.restrictions;
      }
    }
    return m;
  }

  changed() {
    this.clearErrors();
    this.onInput();
  }

  input(path, attrs, get, set) {
    const id = idFor(path);
    const { tag = 'input', options, ...rest } = attrs;
    const input = h(tag, { id, disabled: this.readOnly, ...rest });
    if (input.tagName === 'SELECT') {
      for (const [value, text] of options) input.append(h('option', { value, selected: get() === value }, text));
    } else {
      input.value = get() ?? '';
    }
    input.addEventListener(input.tagName === 'SELECT' ? 'change' : 'input', () => {
      set(input.value);
      this.changed();
    });
    return input;
  }

  labelled(label, input, hint) {
    const err = h('p', { class: 'field-error', id: `${input.id}-error` });
    const hintEl = hint ? h('p', { class: 'hint', id: `${input.id}-hint` }, hint) : null;
    input.setAttribute('aria-describedby', [hintEl && hintEl.id, err.id].filter(Boolean).join(' '));
    return h('div', { class: 'field' }, h('label', { for: input.id }, label), input, hintEl, err);
  }

  structural(fn, focusId) {
    fn();
    this.render();
    this.changed();
    if (focusId) document.getElementById(focusId)?.focus();
  }

  render() {
    const m = this.model;
    const top = h('div', { class: 'grid-fields' },
      this.labelled('Tariff name', this.input('name', { type: 'text', maxlength: 200, autocomplete: 'off' }, () => m.name, (v) => { m.name = v; })),
      this.labelled('Currency', this.input('currency', { type: 'text', maxlength: 3, autocomplete: 'off', class: 'upper' }, () => m.currency, (v) => { m.currency = v.trim().toUpperCase(); }), 'ISO 4217, e.g. EUR'),
      this.labelled('VAT %', this.input('vat_percent', { type: 'text', inputmode: 'decimal', autocomplete: 'off' }, () => m.vat_percent, (v) => { m.vat_percent = v.trim(); }), 'e.g. 19 or 7.7'),
    );
    const elements = m.elements.map((el, i) => this.renderElement(el, i));
    const addElement = this.readOnly ? null : h('button', {
      type: 'button', class: 'secondary', id: 'add-element',
      onclick: () => this.structural(() => m.elements.push({ price_components: [{ type: 'ENERGY', price: '', step_size: 1 }] }), idFor(`elements[${m.elements.length}].price_components[0].price`)),
    }, 'Add element');
    mount(this.root,
      this.summary,
      h('p', { class: 'hint' }, 'Prices exclude VAT. For each kind of price, the first element whose restrictions all hold supplies it (OCPI 2.2.1), so put special prices (peak, night) above the default.'),
      top,
      h('p', { class: 'field-error', id: `${idFor('elements')}-error` }),
      elements,
      addElement,
    );
  }

  renderElement(el, i) {
    const m = this.model;
    const base = `elements[${i}]`;
    const rows = el.price_components.map((pc, j) => {
      const p = `${base}.price_components[${j}]`;
      const type = this.input(`${p}.type`, { tag: 'select', options: TYPES, 'aria-label': `Element ${i + 1}, component ${j + 1}: kind` }, () => pc.type, (v) => { pc.type = v; });
      const price = this.input(`${p}.price`, { type: 'text', inputmode: 'decimal', autocomplete: 'off', 'aria-label': `Element ${i + 1}, component ${j + 1}: price excl. VAT` }, () => pc.price, (v) => { pc.price = v.trim(); });
      const step = this.input(`${p}.step_size`, { type: 'number', min: 0, step: 1, 'aria-label': `Element ${i + 1}, component ${j + 1}: step size` }, () => pc.step_size, (v) => { pc.step_size = v.trim() === '' ? undefined : numberOrRaw(v); });
      const errs = ['type', 'price', 'step_size'].map((k) => h('p', { class: 'field-error', id: `${idFor(`${p}.${k}`)}-error` }));
      type.setAttribute('aria-describedby', errs[0].id);
      price.setAttribute('aria-describedby', errs[1].id);
      step.setAttribute('aria-describedby', errs[2].id);
      const remove = this.readOnly ? null : h('button', {
        type: 'button', class: 'danger small', 'aria-label': `Remove component ${j + 1} of element ${i + 1}`,
        onclick: () => this.structural(() => el.price_components.splice(j, 1), idFor(`${base}.price_components[0].price`)),
      }, 'Remove');
      return h('tr', { id: idFor(p) },
        h('td', {}, type, errs[0]), h('td', {}, price, errs[1]), h('td', {}, step, errs[2]), h('td', {}, remove));
    });
    const comps = h('table', { class: 'components' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Kind'), h('th', { scope: 'col' }, 'Price excl. VAT'), h('th', { scope: 'col' }, 'Step size'), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
      h('tbody', {}, rows));
    const r = el.restrictions || (el.restrictions = {});
    const rp = `${base}.restrictions`;
    const days = h('fieldset', { id: idFor(`${rp}.day_of_week`) },
      h('legend', {}, 'Days of week'),
      DAYS.map((d) => {
        const box = h('input', {
          type: 'checkbox', value: d, disabled: this.readOnly, checked: (r.day_of_week || []).includes(d),
          onchange: (ev) => {
            const set = new Set(r.day_of_week || []);
            if (ev.target.checked) set.add(d); else set.delete(d);
            r.day_of_week = DAYS.filter((x) => set.has(x));
            this.changed();
          },
        });
        return h('label', { class: 'check' }, box, d.slice(0, 1) + d.slice(1, 3).toLowerCase());
      }),
      h('p', { class: 'hint' }, 'None ticked = every day'),
      h('p', { class: 'field-error', id: `${idFor(`${rp}.day_of_week`)}-error` }));
    const restrictionFields = h('div', { class: 'grid-fields' },
      this.labelled('From time', this.input(`${rp}.start_time`, { type: 'time' }, () => r.start_time, (v) => { r.start_time = v || undefined; }), 'local time'),
      this.labelled('Until time', this.input(`${rp}.end_time`, { type: 'time' }, () => r.end_time, (v) => { r.end_time = v || undefined; }), 'may wrap past midnight'),
      this.labelled('From date', this.input(`${rp}.start_date`, { type: 'date' }, () => r.start_date, (v) => { r.start_date = v || undefined; })),
      this.labelled('Until date', this.input(`${rp}.end_date`, { type: 'date' }, () => r.end_date, (v) => { r.end_date = v || undefined; }), 'exclusive'),
      NUMERIC.map(([k, label, hint]) => this.labelled(label, this.input(`${rp}.${k}`, { type: 'text', inputmode: 'decimal', autocomplete: 'off' }, () => r[k], (v) => { r[k] = numberOrRaw(v); }), hint)),
    );
    const hasRestrictions = Object.values(r).some((v) => v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0));
    const actions = this.readOnly ? null : h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'secondary small', onclick: () => this.structural(() => el.price_components.push({ type: 'ENERGY', price: '', step_size: 1 }), idFor(`${base}.price_components[${el.price_components.length}].price`)) }, 'Add price component'),
      h('button', { type: 'button', class: 'secondary small', disabled: i === 0, 'aria-label': `Move element ${i + 1} up`, onclick: () => this.structural(() => m.elements.splice(i - 1, 0, ...m.elements.splice(i, 1))) }, 'Move up'),
      h('button', { type: 'button', class: 'secondary small', disabled: i === m.elements.length - 1, 'aria-label': `Move element ${i + 1} down`, onclick: () => this.structural(() => m.elements.splice(i + 1, 0, ...m.elements.splice(i, 1))) }, 'Move down'),
      h('button', { type: 'button', class: 'danger small', 'aria-label': `Remove element ${i + 1}`, onclick: () => this.structural(() => m.elements.splice(i, 1), 'add-element') }, 'Remove element'),
    );
    return h('fieldset', { class: 'element', id: idFor(base) },
      h('legend', {}, `Element ${i + 1}${hasRestrictions ? '' : ' (always applies)'}`),
      actions,
      comps,
      h('p', { class: 'field-error', id: `${idFor(`${base}.price_components`)}-error` }),
      h('details', { open: hasRestrictions }, h('summary', {}, 'When it applies (restrictions)'), restrictionFields),
      h('p', { class: 'field-error', id: `${idFor(base)}-error` }),
    );
  }

  clearErrors() {
    mount(this.summary);
    for (const el of this.root.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute('aria-invalid');
    for (const el of this.root.querySelectorAll('.field-error')) el.textContent = '';
  }

  // errors: [{field, message}] from a 422; each goes next to its input (or the nearest
  // enclosing part of the form) and into a summary with links.
  showErrors(errors) {
    this.clearErrors();
    const items = [];
    for (const e of errors) {
      let path = e.field.replace(/^tariff\./, '');
      let target = null;
      while (path) {
        target = document.getElementById(idFor(path));
        if (target) break;
        const cut = Math.max(path.lastIndexOf('.'), path.lastIndexOf('['));
        path = cut > 0 ? path.slice(0, cut) : '';
      }
      if (target) {
        const slot = document.getElementById(`${target.id}-error`);
        if (slot) slot.textContent = slot.textContent ? `${slot.textContent}; ${e.message}` : e.message;
        if (['INPUT', 'SELECT'].includes(target.tagName)) target.setAttribute('aria-invalid', 'true');
        const details = target.closest('details');
        if (details) details.open = true;
      }
      const link = target ? h('a', { href: `#${target.id}`, onclick: (ev) => { ev.preventDefault(); target.focus(); } }, humanField(e.field)) : humanField(e.field);
      items.push(h('li', {}, link, `: ${e.message}`));
    }
    mount(this.summary, h('h3', {}, `The tariff has ${errors.length} problem${errors.length === 1 ? '' : 's'}`), h('ul', {}, items));
    this.summary.focus();
  }
}
