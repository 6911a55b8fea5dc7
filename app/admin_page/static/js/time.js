// Wall-clock arithmetic in IANA zones with Intl only (DST-exact): a site's local day is
// local midnight to the next local midnight, 23 or 25 hours long on DST days.

const cache = new Map();
function parts(ms, tz) {
  let f = cache.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit', weekday: 'short',
    });
    cache.set(tz, f);
  }
  const out = {};
  for (const p of f.formatToParts(new Date(ms))) out[p.type] = p.value;
  return {
    y: Number(out.year), m: Number(out.month), d: Number(out.day),
    h: Number(out.hour) % 24, mi: Number(out.minute), s: Number(out.second), wd: out.weekday,
  };
}

export function offsetMs(ms, tz) {
  const p = parts(ms, tz);
  return Date.UTC(p.y, p.m - 1, p.d, p.h, p.mi, p.s) - Math.floor(ms / 1000) * 1000;
}

// The instant of a local wall time. A time that happens twice (autumn) gets one of its
// two instants; one that never happens (a spring gap, or a midnight skipped by DST, as in
// Chile) becomes the first instant after the gap.
export function zonedToMs(y, m, d, hh, mm, tz) {
  const guess = Date.UTC(y, m - 1, d, hh, mm);
  const t1 = guess - offsetMs(guess, tz);
  const t2 = guess - offsetMs(t1, tz);
  if (t1 === t2) return t1;
  const reads = (t) => {
    const p = parts(t, tz);
    return p.y === y && p.m === m && p.d === d && p.h === hh && p.mi === mm;
  };
  if (reads(t2)) return t2;
  if (reads(t1)) return t1;
  return Math.max(t1, t2);
}

const pad = (n) => String(n).padStart(2, '0');

export function isoDate(y, m, d) {
  return `${y}-${pad(m)}-${pad(d)}`;
}

export function todayIn(tz, ms = Date.now()) {
  const p = parts(ms, tz);
  return isoDate(p.y, p.m, p.d);
}

export function addDays(dateStr, n) {
  const [y, m, d] = dateStr.split('-').map(Number);
  const t = new Date(Date.UTC(y, m - 1, d + n));
  return isoDate(t.getUTCFullYear(), t.getUTCMonth() + 1, t.getUTCDate());
}

export function localMidnight(dateStr, tz) {
  const [y, m, d] = dateStr.split('-').map(Number);
  return zonedToMs(y, m, d, 0, 0, tz);
}

// [start, end) of `days` local days from dateStr, as ms.
export function dayRange(dateStr, days, tz) {
  return [localMidnight(dateStr, tz), localMidnight(addDays(dateStr, days), tz)];
}

// Monday of the week containing dateStr.
export function weekStart(dateStr) {
  const [y, m, d] = dateStr.split('-').map(Number);
  const wd = new Date(Date.UTC(y, m - 1, d)).getUTCDay(); // 0 = Sunday
  return addDays(dateStr, -((wd + 6) % 7));
}

export function fmt(ms, tz, opts = { dateStyle: 'medium', timeStyle: 'short' }) {
  return new Intl.DateTimeFormat('en-GB', { timeZone: tz, ...opts }).format(new Date(ms));
}

export function fmtTime(ms, tz) {
  return new Intl.DateTimeFormat('en-GB', { timeZone: tz, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(new Date(ms));
}

export function fmtDay(ms, tz) {
  return new Intl.DateTimeFormat('en-GB', { timeZone: tz, weekday: 'short', day: 'numeric', month: 'short' }).format(new Date(ms));
}

export function zoneName(ms, tz) {
  const f = new Intl.DateTimeFormat('en-GB', { timeZone: tz, timeZoneName: 'short' });
  const p = f.formatToParts(new Date(ms)).find((x) => x.type === 'timeZoneName');
  return p ? p.value : tz;
}

// <input type="datetime-local"> value ↔ instant, in the given zone.
export function toLocalInput(ms, tz) {
  const p = parts(ms, tz);
  return `${isoDate(p.y, p.m, p.d)}T${pad(p.h)}:${pad(p.mi)}`;
}

export function fromLocalInput(value, tz) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(value || '');
  if (!m) return null;
  return zonedToMs(Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]), tz);
}

export function iso(ms) {
  return new Date(ms).toISOString();
}

export function hoursBetween(a, b) {
  return Math.round((b - a) / 36e5);
}
