// Usage over time from the usage API, which answers totals over a range:
// the windows to ask for, and the series their answers make. Pure: no DOM.

/** The per-sprite ranges: `count` windows of `step` seconds. */
export const RANGES = {
  '30m': { label: 'Last 30 minutes', count: 30, step: 60 },
  '6h': { label: 'Last 6 hours', count: 24, step: 900 },
  '7d': { label: 'Last 7 days', count: 7, step: 86400 },
};

/**
 * The windows of a range, oldest first: [{from, to}] in Unix seconds.
 * Windows are aligned to their step (minutes, quarter hours, days to UTC
 * midnight, as the API's days are) and the last one ends now.
 */
export function usageWindows(rangeKey, nowMs) {
  const r = RANGES[rangeKey] || RANGES['30m'];
  const now = Math.floor(nowMs / 1000);
  const aligned = Math.floor(now / r.step) * r.step;
  // The last one is still in progress: a sprite made a minute ago shows
  // what it has used so far.
  const out = [];
  for (let i = r.count - 1; i >= 0; i--) {
    const from = aligned - i * r.step;
    out.push({ from, to: Math.min(from + r.step, now) });
  }
  return out;
}

export const RESOURCES = [
  { key: 'cpu', title: 'CPU', unit: 'vCPU' },
  { key: 'memory', title: 'Memory', unit: 'GB' },
  { key: 'hot', title: 'Hot storage', unit: 'GB' },
  { key: 'cold', title: 'Cold storage', unit: 'GB' },
];

/**
 * Average use over `seconds` from usage amounts: vCPUs, and GB of RAM,
 * hot and cold storage ({cpu, memory, hot, cold}).
 */
export function averages(usage, seconds) {
  const d = Math.max(1, seconds);
  const u = usage || {};
  return {
    cpu: (u.cpu_seconds || 0) / d,
    memory: (u.ram_gb_seconds || 0) / d,
    hot: (u.hot_storage_gb_seconds || 0) / d,
    cold: ((u.cold_storage_gb_hours || 0) * 3600) / d,
  };
}

/**
 * The series of windows and their reports (a SpriteUsage each, or null
 * when the call for it failed: a gap): {cpu, memory, hot, cold, cost}
 * as [{x (ms), y, from, to, cost}], and the totals {cost, costs: {cpu,
 * ram, hot_storage, cold_storage, total}, currency}.
 */
export function windowSeries(windows, reports) {
  const series = { cpu: [], memory: [], hot: [], cold: [], cost: [] };
  const costs = { cpu: 0, ram: 0, hot_storage: 0, cold_storage: 0, total: 0 };
  let currency = 'USD';
  windows.forEach((w, i) => {
    const rep = reports[i];
    const base = { x: w.from * 1000, from: w.from * 1000, to: w.to * 1000 };
    if (!rep) {
      for (const k of Object.keys(series)) series[k].push({ ...base, y: null });
      return;
    }
    const avg = averages(rep.usage, w.to - w.from);
    const cost = rep.cost ? rep.cost.total || 0 : 0;
    for (const k of Object.keys(costs)) costs[k] += (rep.cost && rep.cost[k]) || 0;
    if (rep.currency) currency = rep.currency;
    for (const k of ['cpu', 'memory', 'hot', 'cold']) series[k].push({ ...base, y: avg[k], cost });
    series.cost.push({ ...base, y: cost, cost });
  });
  return { series, total: { cost: costs.total, costs, currency } };
}

/** "YYYY-MM-DD" of a time in UTC. */
export function utcDate(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

/**
 * Daily series of an org usage report (GET /v1/usage) for the last
 * `days` UTC days up to now; days the report lacks count as zero.
 */
export function daySeries(report, days, nowMs) {
  const byDate = new Map((report && report.days ? report.days : []).map((d) => [d.date, d]));
  const series = { cpu: [], memory: [], hot: [], cold: [], cost: [] };
  const today = Math.floor(nowMs / 86400000) * 86400000;
  for (let i = days - 1; i >= 0; i--) {
    const from = today - i * 86400000;
    const to = Math.min(from + 86400000, nowMs);
    const date = utcDate(from);
    const d = byDate.get(date);
    const avg = averages(d ? d.usage : null, (to - from) / 1000);
    const cost = d && d.cost ? d.cost.total || 0 : 0;
    const base = { x: from, from, to, date, cost };
    for (const k of ['cpu', 'memory', 'hot', 'cold']) series[k].push({ ...base, y: avg[k] });
    series.cost.push({ ...base, y: cost });
  }
  return series;
}

/**
 * Each sprite's cost in an org usage report, summed over its days:
 * Map name → cost.
 */
export function costBySprite(report) {
  const out = new Map();
  for (const day of (report && report.days) || []) {
    for (const s of day.sprites || []) {
      out.set(s.sprite, (out.get(s.sprite) || 0) + ((s.cost && s.cost.total) || 0));
    }
  }
  return out;
}

/** The earliest of the sprites' creation times (ms), or `fallback`. */
export function oldestCreation(sprites, fallback) {
  let best = Infinity;
  for (const s of sprites) {
    const t = Date.parse(s.created_at);
    if (Number.isFinite(t) && t < best) best = t;
  }
  return Number.isFinite(best) ? best : fallback;
}
