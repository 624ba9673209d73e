// A small SVG line chart: axes with a few ticks, the line, and one
// <circle class="point"> per data point with a <title> (time and value).
// The geometry is chart_scale.js's.

import { s, h } from './dom.js';
import { chartModel } from './chart_scale.js';
import { formatNumber } from './format.js';

const WIDTH = 600;
const HEIGHT = 200;

/**
 * Draw into `svg` (emptied first).
 * opts: {title, unit, points: [{x, y, ...}], formatX(x) for ticks,
 * describe(point) for a point's title, formatY(y)}.
 */
export function renderChart(svg, { title, unit = '', points, formatX, describe, formatY = formatNumber }) {
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${WIDTH} ${HEIGHT}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('class', 'chart');
  const known = points.filter((p) => p.y != null);
  const last = known.length ? known[known.length - 1] : null;
  const summary = last
    ? `${title}: ${points.length} points, latest ${formatY(last.y)} ${unit}`.trim()
    : `${title}: no data`;
  svg.setAttribute('aria-label', summary);
  svg.append(s('title', {}, summary));

  const m = chartModel(points, { width: WIDTH, height: HEIGHT });
  const { plot } = m;
  const axes = s('g', { class: 'axes', 'aria-hidden': 'true' });
  for (const t of m.yTicks) {
    axes.append(
      s('line', { class: 'gridline', x1: plot.left, x2: plot.right, y1: t.y, y2: t.y }),
      s('text', { class: 'tick y', x: plot.left - 6, y: t.y, 'text-anchor': 'end', 'dominant-baseline': 'middle' },
        formatY(t.value)),
    );
  }
  for (const t of m.xTicks) {
    axes.append(
      s('line', { class: 'tick-mark', x1: t.x, x2: t.x, y1: plot.bottom, y2: plot.bottom + 4 }),
      s('text', { class: 'tick x', x: t.x, y: plot.bottom + 16, 'text-anchor': 'middle' },
        formatX ? formatX(t.value) : String(t.value)),
    );
  }
  axes.append(
    s('line', { class: 'axis', x1: plot.left, x2: plot.left, y1: plot.top, y2: plot.bottom }),
    s('line', { class: 'axis', x1: plot.left, x2: plot.right, y1: plot.bottom, y2: plot.bottom }),
  );
  if (unit) {
    axes.append(s('text', { class: 'unit', x: plot.left, y: 4, 'dominant-baseline': 'hanging' }, unit));
  }
  svg.append(axes);
  if (m.path) svg.append(s('path', { class: 'line', d: m.path }));
  const dots = s('g', { class: 'points' });
  for (const c of m.coords) {
    const label = describe ? describe(c.point) : `${formatY(c.point.y)} ${unit}`;
    // data-y: the point's value, for tests and for anyone scripting the page.
    dots.append(s('circle', { class: 'point', cx: c.x, cy: c.y, r: 3.5, 'data-y': c.point.y },
      s('title', {}, label)));
  }
  svg.append(dots);
  if (!known.length) {
    svg.append(s('text', { class: 'empty', x: WIDTH / 2, y: HEIGHT / 2, 'text-anchor': 'middle' }, 'No data'));
  }
}

/** A chart's figure: caption, the svg (with `id`), and its data as a table. */
export function chartFigure(id, caption) {
  const svg = s('svg', { id, class: 'chart', focusable: 'false' });
  const table = h('table', { class: 'chart-data' });
  const details = h('details', { class: 'chart-details' }, h('summary', {}, 'Data'), table);
  const fig = h('figure', { class: 'chart-figure' }, h('figcaption', {}, caption), svg, details);
  return { fig, svg, table };
}

/** Fill a chart's data table: rows of [label, value] pairs. */
export function fillDataTable(table, headers, rows) {
  table.replaceChildren(
    h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))),
  );
}
