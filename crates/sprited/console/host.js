// #/usage: the host. Sprites by state (live from the watch stream), the
// sprite pool's disk (from /metrics), and org-wide daily usage and cost
// (from /v1/usage). The last two need an admin token.

import { getJSON, request } from './api.js';
import { h, field, showError } from './dom.js';
import { spriteWatch } from './watch.js';
import { withQuery } from './url.js';
import { parseMetrics, metricValue, metricsByLabel } from './metrics.js';
import { daySeries } from './usage_series.js';
import { formatBytes, formatMoney, formatTime } from './format.js';
import { makeCharts, drawCharts } from './usage_view.js';

const METRICS_MS = 15_000;
const USAGE_MS = 60_000;
const DAY_RANGES = { 7: 'Last 7 days', 14: 'Last 14 days', 30: 'Last 30 days' };

export function mountHost(container) {
  document.title = 'Usage · sprited console';
  const ctl = new AbortController();
  const timers = [];

  const count = (id) => h('dd', { id }, '—');
  const counts = h('dl', { id: 'host-counts', class: 'stats', 'aria-live': 'polite' },
    h('div', {}, h('dt', {}, 'Running'), count('count-running')),
    h('div', {}, h('dt', {}, 'Warm'), count('count-warm')),
    h('div', {}, h('dt', {}, 'Cold'), count('count-cold')),
    h('div', {}, h('dt', {}, 'Total'), count('count-total')));

  const poolText = h('p', { id: 'pool-text' }, '…');
  const meter = h('meter', { id: 'pool-meter', min: '0', max: '1', value: '0', 'aria-labelledby': 'pool-title' });
  const poolError = h('p', { id: 'pool-error', class: 'error', role: 'alert' });
  const metricsLine = h('p', { id: 'metrics-sprites', class: 'muted small' });

  const range = h('select', { id: 'host-range' },
    Object.entries(DAY_RANGES).map(([k, label]) => h('option', { value: k }, label)));
  range.value = '14';
  const total = h('p', { id: 'host-total', class: 'total', 'aria-live': 'polite' }, '…');
  const usageError = h('p', { id: 'host-usage-error', class: 'error', role: 'alert' });
  const { charts, grid } = makeCharts('host', { withCost: true });
  const daysBody = h('tbody');
  const daysTable = h('table', { id: 'host-days', class: 'responsive' },
    h('caption', {}, 'Cost per day'),
    h('thead', {}, h('tr', {}, ['Day (UTC)', 'Cost', 'Sprites by cost'].map((t) => h('th', { scope: 'col' }, t)))),
    daysBody);

  container.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Host usage')),
    h('section', { class: 'card', 'aria-labelledby': 'counts-title' }, h('h2', { id: 'counts-title' }, 'Sprites'), counts),
    h('section', { class: 'card', 'aria-labelledby': 'pool-title' },
      h('h2', { id: 'pool-title' }, 'Sprite pool disk'), meter, poolText, poolError, metricsLine),
    h('section', { class: 'card', 'aria-labelledby': 'host-usage-title' },
      h('div', { class: 'toolbar wrap' }, h('h2', { id: 'host-usage-title' }, 'Usage of all sprites'), field('Range', range)),
      total, usageError, grid, h('div', { class: 'table-wrap' }, daysTable)),
  );

  function paintCounts(org) {
    if (!org) return;
    const set = (id, v) => {
      document.getElementById(id).textContent = v == null ? '—' : String(v);
    };
    set('count-running', org.running);
    set('count-warm', org.warm);
    set('count-cold', org.cold);
    set('count-total', org.total ?? ((org.running || 0) + (org.warm || 0) + (org.cold || 0)));
  }

  async function loadOrg() {
    try {
      const o = await getJSON('/v1/organization', { signal: ctl.signal });
      if (!spriteWatch.org) paintCounts(o.counts);
      else document.getElementById('count-total').textContent = String(o.counts.total);
    } catch {
      // The stream's counts are shown instead.
    }
  }

  async function loadMetrics() {
    try {
      const res = await request('/metrics', { signal: ctl.signal, accept: 'text/plain' });
      const samples = parseMetrics(await res.text());
      const size = metricValue(samples, 'sprited_pool_bytes', { kind: 'size' });
      const free = metricValue(samples, 'sprited_pool_bytes', { kind: 'free' });
      showError(poolError, '');
      if (size == null || free == null) {
        poolText.textContent = 'The daemon does not report its pool disk.';
      } else {
        const used = Math.max(0, size - free);
        meter.max = Math.max(1, size);
        meter.value = used;
        meter.low = size * 0.7;
        meter.high = size * 0.9;
        meter.optimum = 0;
        const pct = size > 0 ? Math.round((used / size) * 100) : 0;
        poolText.replaceChildren(
          h('span', { id: 'pool-used' }, `${formatBytes(used)} used`), ' of ',
          h('span', { id: 'pool-size' }, formatBytes(size)), ` (${pct}%) · `,
          h('span', { id: 'pool-free' }, `${formatBytes(free)} free`));
        meter.textContent = `${pct}%`;
      }
      const byStatus = metricsByLabel(samples, 'sprited_sprites', 'status');
      const parts = Object.entries(byStatus).map(([k, v]) => `${v} ${k}`);
      metricsLine.textContent = parts.length ? `Daemon metrics: ${parts.join(', ')} (at ${formatTime(new Date(), { seconds: true })})` : '';
    } catch (e) {
      if (e.name !== 'AbortError') showError(poolError, 'Could not read the metrics: ' + e.message);
    }
  }

  async function loadUsage() {
    const days = Number(range.value);
    const now = Date.now();
    const from = new Date(Math.floor(now / 86400000) * 86400000 - (days - 1) * 86400000);
    try {
      const rep = await getJSON(withQuery('/v1/usage', { from: from.toISOString() }), { signal: ctl.signal });
      showError(usageError, '');
      const series = daySeries(rep, days, now);
      const currency = rep.currency || 'USD';
      drawCharts(charts, series, { daily: true, currency });
      total.textContent = `${DAY_RANGES[days]}: ${formatMoney(rep.cost ? rep.cost.total : 0, currency)}`;
      const byDate = new Map((rep.days || []).map((d) => [d.date, d]));
      daysBody.replaceChildren(...[...series.cost].reverse().map((p) => {
        const d = byDate.get(p.date);
        const top = d ? [...d.sprites].sort((a, b) => b.cost.total - a.cost.total).slice(0, 5)
          .map((s) => `${s.sprite} ${formatMoney(s.cost.total, currency)}`).join(', ') : '';
        return h('tr', { dataset: { date: p.date } },
          h('th', { scope: 'row', 'data-label': 'Day (UTC)' }, p.date),
          h('td', { 'data-label': 'Cost', class: 'num' }, formatMoney(p.y, currency)),
          h('td', { 'data-label': 'Sprites by cost' }, top || '—'));
      }));
    } catch (e) {
      if (e.name === 'AbortError') return;
      showError(usageError, 'Could not read the usage: ' + e.message);
      total.textContent = '';
    }
  }

  const unsubscribe = spriteWatch.subscribe((ev) => {
    if (ev.kind === 'org') paintCounts(ev.org);
  });
  if (spriteWatch.org) paintCounts(spriteWatch.org);
  range.addEventListener('change', loadUsage);
  loadOrg();
  loadMetrics();
  loadUsage();
  timers.push(setInterval(loadMetrics, METRICS_MS));
  timers.push(setInterval(loadUsage, USAGE_MS));
  timers.push(setInterval(loadOrg, USAGE_MS));

  return {
    unmount() {
      ctl.abort();
      unsubscribe();
      timers.forEach(clearInterval);
    },
  };
}
