// The per-sprite Usage tab: CPU, memory, hot and cold storage over a
// range, built from one usage call per window (the API answers totals
// over a range), and the range's cost.

import { getJSON, mapLimit } from './api.js';
import { h, field, showError } from './dom.js';
import { spritePath, withQuery } from './url.js';
import { RANGES, usageWindows, windowSeries } from './usage_series.js';
import { formatMoney } from './format.js';
import { makeCharts, drawCharts } from './usage_view.js';

const REFRESH_MS = 60_000;

export function mountUsage(panel, ctx) {
  const range = h('select', { id: 'usage-range' },
    Object.entries(RANGES).map(([k, r]) => h('option', { value: k }, r.label)));
  const refresh = h('button', { id: 'usage-refresh', type: 'button', class: 'secondary small' }, 'Refresh');
  const total = h('p', { id: 'usage-total', class: 'total', 'aria-live': 'polite' }, '…');
  const error = h('p', { id: 'usage-error', class: 'error', role: 'alert' });
  const { charts, grid } = makeCharts('usage');
  panel.append(
    h('div', { class: 'toolbar wrap' }, h('h2', {}, 'Usage'), field('Range', range), refresh),
    total, error, grid);

  let timer = null;
  let seq = 0;

  async function load() {
    clearTimeout(timer);
    const my = ++seq;
    const key = range.value;
    const windows = usageWindows(key, Date.now());
    total.setAttribute('aria-busy', 'true');
    const { results, errors } = await mapLimit(windows, 8, (w) =>
      getJSON(withQuery(spritePath(ctx.name, '/usage'), { from: w.from, to: w.to }), { signal: ctx.signal }));
    if (my !== seq || ctx.signal.aborted) return;
    total.removeAttribute('aria-busy');
    const { series, total: t } = windowSeries(windows, results);
    const failed = errors.filter((e) => e.name !== 'AbortError');
    showError(error, failed.length ? `${failed.length} of ${windows.length} usage calls failed: ${failed[0].message}` : '');
    drawCharts(charts, series, { daily: RANGES[key].step >= 86400, currency: t.currency });
    const c = t.costs;
    total.textContent = `${RANGES[key].label}: ${formatMoney(t.cost, t.currency)} ` +
      `(CPU ${formatMoney(c.cpu, t.currency)}, RAM ${formatMoney(c.ram, t.currency)}, ` +
      `hot storage ${formatMoney(c.hot_storage, t.currency)}, cold storage ${formatMoney(c.cold_storage, t.currency)})`;
    timer = setTimeout(load, REFRESH_MS);
  }

  range.addEventListener('change', load);
  refresh.addEventListener('click', load);

  return {
    show: load,
    hide() {
      clearTimeout(timer);
      seq++;
    },
    unmount() {
      clearTimeout(timer);
      seq++;
    },
  };
}
