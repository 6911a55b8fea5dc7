// What changed between two audited snapshots of a tariff, in words.

const LABEL = { ENERGY: 'energy', TIME: 'time', PARKING_TIME: 'idle', FLAT: 'flat' };

function restrictionText(r) {
  if (!r) return 'always';
  const parts = [];
  if (r.start_time || r.end_time) parts.push(`${r.start_time || '00:00'}–${r.end_time || '24:00'}`);
  if (r.day_of_week && r.day_of_week.length) parts.push(r.day_of_week.map((d) => d.slice(0, 2)).join(','));
  if (r.start_date || r.end_date) parts.push(`${r.start_date || '…'} to ${r.end_date || '…'}`);
  for (const k of ['min_kwh', 'max_kwh', 'min_power', 'max_power', 'min_duration', 'max_duration']) {
    if (r[k] !== undefined && r[k] !== null) parts.push(`${k} ${r[k]}`);
  }
  return parts.join(' ') || 'always';
}

export function describeTariff(t) {
  return (t.elements || []).map((el, i) => {
    const prices = el.price_components.map((pc) => `${LABEL[pc.type] || pc.type} ${pc.price}`).join(', ');
    return `#${i + 1} ${restrictionText(el.restrictions)}: ${prices}`;
  });
}

export function diffTariff(before, after) {
  if (!before) return [`created: ${describeTariff(after).join('; ')}`];
  const out = [];
  for (const k of ['name', 'currency', 'vat_percent']) {
    if (before[k] !== after[k]) out.push(`${k === 'vat_percent' ? 'VAT %' : k}: ${before[k]} → ${after[k]}`);
  }
  const n = Math.max(before.elements.length, after.elements.length);
  for (let i = 0; i < n; i += 1) {
    const a = before.elements[i];
    const b = after.elements[i];
    if (!a) { out.push(`element ${i + 1} added: ${describeTariff({ elements: [b] })[0].slice(3)}`); continue; }
    if (!b) { out.push(`element ${i + 1} removed`); continue; }
    const ra = restrictionText(a.restrictions);
    const rb = restrictionText(b.restrictions);
    if (ra !== rb) out.push(`element ${i + 1} applies ${ra} → ${rb}`);
    const pa = Object.fromEntries(a.price_components.map((pc) => [pc.type, pc]));
    const pb = Object.fromEntries(b.price_components.map((pc) => [pc.type, pc]));
    for (const type of new Set([...Object.keys(pa), ...Object.keys(pb)])) {
      const x = pa[type];
      const y = pb[type];
      const name = LABEL[type] || type;
      if (!x) out.push(`element ${i + 1} ${name}: added ${y.price}`);
      else if (!y) out.push(`element ${i + 1} ${name}: removed (was ${x.price})`);
      else if (x.price !== y.price || x.step_size !== y.step_size) {
        out.push(`element ${i + 1} ${name}: ${x.price} → ${y.price}${x.step_size !== y.step_size ? ` (step ${x.step_size} → ${y.step_size})` : ''}`);
      }
    }
  }
  return out.length ? out : ['no price change'];
}

// One line for any audit entry.
export function summarise(entry, names = {}) {
  const { action, before, after } = entry;
  if (action === 'tariff.create' || action === 'tariff.update') {
    if (!before) return `version ${after.version}: ${describeTariff(after).join('; ')}`;
    return `v${before.version} → v${after.version}: ${diffTariff(before, after).join('; ')}`;
  }
  if (action === 'tariff.assign' && after) {
    const where = after.site_id ? (names[after.site_id] || `site ${after.site_id}`) : (names[after.charger_id] || `charger ${after.charger_id}`);
    return `${names[after.tariff_id] || after.tariff_id} assigned to ${where} from ${after.effective_from}`;
  }
  if (before && after && typeof before === 'object' && typeof after === 'object') {
    const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
    const changes = [...keys].filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]))
      .map((k) => `${k}: ${JSON.stringify(before[k])} → ${JSON.stringify(after[k])}`);
    return changes.join('; ') || 'no change';
  }
  return after ? JSON.stringify(after).slice(0, 200) : '';
}
