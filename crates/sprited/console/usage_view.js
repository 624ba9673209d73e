// What the per-sprite Usage tab and the host page share: four resource
// charts (and a cost one), drawn from series of usage_series.js.

import { h } from './dom.js';
import { chartFigure, renderChart, fillDataTable } from './chart.js';
import { RESOURCES } from './usage_series.js';
import { formatNumber, formatMoney, formatTime, formatClock, formatDay } from './format.js';

/** Figures for cpu, memory, hot, cold (and cost when `withCost`), ids `<prefix>-chart-<key>`. */
export function makeCharts(prefix, { withCost = false } = {}) {
  const list = [...RESOURCES];
  if (withCost) list.push({ key: 'cost', title: 'Cost', unit: '' });
  const charts = {};
  for (const r of list) {
    const caption = r.key === 'cost' ? 'Cost per day' : `${r.title} (average ${r.unit})`;
    charts[r.key] = { ...r, ...chartFigure(`${prefix}-chart-${r.key}`, caption) };
  }
  const grid = h('div', { class: 'charts' }, Object.values(charts).map((c) => c.fig));
  return { charts, grid };
}

/** How a point's window reads: "10:31–10:32" or a day. */
export function windowLabel(p, daily) {
  if (daily) return p.date || formatDay(p.from, { utc: true });
  return `${formatTime(p.from)}–${formatClock(p.to)}`;
}

/** Draw every chart of `charts` from `series`. */
export function drawCharts(charts, series, { daily = false, currency = 'USD' } = {}) {
  const fmtX = daily ? (x) => formatDay(x, { utc: true }) : (x) => formatClock(x);
  for (const c of Object.values(charts)) {
    const points = series[c.key] || [];
    const isCost = c.key === 'cost';
    const fmtY = isCost ? (v) => formatMoney(v, currency) : formatNumber;
    renderChart(c.svg, {
      title: c.title,
      unit: c.unit,
      points,
      formatX: fmtX,
      formatY: fmtY,
      describe: (p) => isCost
        ? `${windowLabel(p, daily)}: ${formatMoney(p.y, currency)}`
        : `${windowLabel(p, daily)}: ${formatNumber(p.y)} ${c.unit}` +
          (p.cost != null ? `, cost ${formatMoney(p.cost, currency)}` : ''),
    });
    fillDataTable(c.table, ['Time', isCost ? 'Cost' : `${c.title} (${c.unit})`],
      points.map((p) => [windowLabel(p, daily), p.y == null ? 'no data' : fmtY(p.y)]));
  }
}
