// Money arrives in minor units (integers) or as decimal strings (prices); formatted with
// the currency's own number of decimals.

const formats = new Map();
function nf(currency, minDigits, maxDigits) {
  const key = `${currency}:${minDigits}:${maxDigits}`;
  let f = formats.get(key);
  if (!f) {
    f = new Intl.NumberFormat('en-GB', { style: 'currency', currency, minimumFractionDigits: minDigits, maximumFractionDigits: maxDigits });
    formats.set(key, f);
  }
  return f;
}

export function exponent(currency) {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
  } catch {
    return 2;
  }
}

export function minor(amount, currency) {
  const e = exponent(currency);
  return nf(currency, e, e).format(amount / 10 ** e);
}

export function price(value, currency) {
  if (value === null || value === undefined) return '—';
  const e = exponent(currency);
  return nf(currency, e, Math.max(e, 4)).format(Number(value));
}

export function sumMoney(list) {
  return (list || []).map((m) => minor(m.amount_minor, m.currency)).join(' + ') || '—';
}
