// Human formatting of sizes, durations, money and times. Pure: no DOM.

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 1536 → "1.5 KiB". One decimal below 10 units, none above. */
export function formatBytes(n) {
  if (n == null || !Number.isFinite(Number(n))) return '—';
  let v = Number(n);
  const neg = v < 0;
  v = Math.abs(v);
  let i = 0;
  while (v >= 1024 && i < BYTE_UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  const digits = i === 0 || v >= 10 ? 0 : 1;
  let text = v.toFixed(digits);
  if (digits === 1 && text.endsWith('.0')) text = text.slice(0, -2);
  return (neg ? '-' : '') + text + ' ' + BYTE_UNITS[i];
}

/** A RAM size the API states in MB: 512 → "512 MB", 2048 → "2 GB". */
export function formatMB(mb) {
  if (mb == null || !Number.isFinite(Number(mb))) return '—';
  const v = Number(mb);
  if (v >= 1024) {
    const gb = v / 1024;
    return (Number.isInteger(gb) ? String(gb) : gb.toFixed(1)) + ' GB';
  }
  return v + ' MB';
}

/** Seconds → "45s", "3m 20s", "2h 5m", "3d 4h". */
export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(Number(seconds))) return '—';
  let s = Math.max(0, Math.round(Number(seconds)));
  if (s < 60) return s + 's';
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d > 0) return h > 0 ? `${d}d ${h}h` : `${d}d`;
  if (h > 0) return m > 0 ? `${h}h ${m}m` : `${h}h`;
  return s > 0 ? `${m}m ${s}s` : `${m}m`;
}

/**
 * Money: cents for ordinary amounts, more digits for the tiny amounts
 * per-second billing produces (so they do not all read "$0.00").
 */
export function formatMoney(amount, currency = 'USD') {
  if (amount == null || !Number.isFinite(Number(amount))) return '—';
  const v = Number(amount);
  const abs = Math.abs(v);
  let text;
  if (abs === 0) text = '0.00';
  else if (abs < 0.01) text = abs.toPrecision(2).replace(/0+$/, '');
  else text = abs.toFixed(2);
  if (text.endsWith('.')) text = text.slice(0, -1);
  const sign = v < 0 ? '-' : '';
  if (currency === 'USD') return sign + '$' + text;
  return sign + text + ' ' + currency;
}

/** A number for chart labels: few significant digits, no exponent. */
export function formatNumber(v, maxDigits = 3) {
  if (v == null || !Number.isFinite(Number(v))) return '—';
  const n = Number(v);
  if (n === 0) return '0';
  const abs = Math.abs(n);
  if (abs >= 1000) return Math.round(n).toLocaleString('en-US');
  if (abs >= 100) return String(Math.round(n));
  // Significant digits, then strip the trailing zeros toPrecision leaves.
  const text = n.toPrecision(maxDigits);
  // Below 1e-6 toPrecision answers in exponent form: keep it (a fixed
  // form would round a tiny axis's ticks all to "0"), its zeros stripped.
  const [mantissa, exponent] = text.split('e');
  const short = mantissa.includes('.') ? mantissa.replace(/0+$/, '').replace(/\.$/, '') : mantissa;
  return exponent === undefined ? short : `${short}e${exponent}`;
}

function toDate(t) {
  if (t == null || t === '') return null;
  const d = t instanceof Date ? t : new Date(t);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** "just now", "5 min ago", "in 3 h"; "never" for no time. */
export function relativeTime(t, now = Date.now()) {
  const d = toDate(t);
  if (!d) return 'never';
  const nowMs = now instanceof Date ? now.getTime() : Number(now);
  const diff = Math.round((nowMs - d.getTime()) / 1000);
  const abs = Math.abs(diff);
  if (abs < 10) return 'just now';
  let text;
  if (abs < 60) text = abs + ' s';
  else if (abs < 3600) text = Math.floor(abs / 60) + ' min';
  else if (abs < 86400) text = Math.floor(abs / 3600) + ' h';
  else if (abs < 86400 * 60) text = Math.floor(abs / 86400) + ' d';
  else if (abs < 86400 * 730) text = Math.floor(abs / (86400 * 30)) + ' mo';
  else text = Math.floor(abs / (86400 * 365)) + ' y';
  return diff >= 0 ? text + ' ago' : 'in ' + text;
}

const pad = (n) => String(n).padStart(2, '0');

/** Local "YYYY-MM-DD HH:MM" (seconds with `seconds`). */
export function formatTime(t, { seconds = false, utc = false } = {}) {
  const d = toDate(t);
  if (!d) return '—';
  const g = utc
    ? [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()]
    : [d.getFullYear(), d.getMonth() + 1, d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds()];
  let text = `${g[0]}-${pad(g[1])}-${pad(g[2])} ${pad(g[3])}:${pad(g[4])}`;
  if (seconds) text += ':' + pad(g[5]);
  return text;
}

/** Local "HH:MM" for short axis labels. */
export function formatClock(t) {
  const d = toDate(t);
  if (!d) return '—';
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** "MM-DD" of a time (UTC when `utc`) for daily axis labels. */
export function formatDay(t, { utc = false } = {}) {
  const d = toDate(t);
  if (!d) return '—';
  return utc
    ? `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`
    : `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** The later of several times (any may be missing); null if none. */
export function latestTime(...times) {
  let best = null;
  for (const t of times) {
    const d = toDate(t);
    if (d && (!best || d > best)) best = d;
  }
  return best;
}
