// The geometry of a line chart: nice ticks, scales, the line's path and
// the points' positions. Pure: no DOM (chart.js draws what this computes).

/** Round off floating-point noise (0.1 + 0.2) for tick values. */
function clean(v) {
  return Number(v.toPrecision(12));
}

/**
 * Ticks at "nice" steps (1, 2, 2.5, 5 × 10^k) covering [lo, hi], about
 * `maxTicks` of them: {min, max, step, ticks}.
 */
export function niceTicks(lo, hi, maxTicks = 5) {
  if (!Number.isFinite(lo)) lo = 0;
  if (!Number.isFinite(hi)) hi = lo + 1;
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) {
    if (lo === 0) hi = 1;
    else if (lo > 0) lo = 0;
    else hi = 0;
  }
  const raw = (hi - lo) / Math.max(1, maxTicks - 1);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = clean((norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * mag);
  const min = clean(Math.floor(lo / step + 1e-9) * step);
  const max = clean(Math.ceil(hi / step - 1e-9) * step);
  const ticks = [];
  for (let i = 0; ; i++) {
    const v = clean(min + i * step);
    if (v > max + step * 1e-9) break;
    ticks.push(v);
  }
  return { min, max, step, ticks };
}

/** A linear map from [d0, d1] onto [r0, r1] (the middle when d0 == d1). */
export function linearScale(d0, d1, r0, r1) {
  if (d1 === d0) return () => (r0 + r1) / 2;
  const k = (r1 - r0) / (d1 - d0);
  return (v) => r0 + (v - d0) * k;
}

/** `count` indices spread evenly over `n` items, first and last included. */
export function spreadIndices(n, count) {
  if (n <= 0) return [];
  if (n <= count) return [...Array(n).keys()];
  const out = new Set();
  for (let i = 0; i < count; i++) out.add(Math.round((i * (n - 1)) / (count - 1)));
  return [...out];
}

const r2 = (v) => Math.round(v * 100) / 100;

/**
 * Everything to draw `points` ([{x, y}], x ascending; a null y is a gap)
 * in a width × height box with margins:
 * {plot, yTicks: [{value, y}], xTicks: [{value, x}], coords: [{x, y, point}], path}.
 */
export function chartModel(points, {
  width = 600,
  height = 200,
  margin = { top: 24, right: 16, bottom: 28, left: 56 },
  yMin = 0,
  yTickCount = 5,
  xTickCount = 4,
} = {}) {
  const plot = {
    left: margin.left,
    top: margin.top,
    right: width - margin.right,
    bottom: height - margin.bottom,
  };
  const known = points.filter((p) => p.y != null && Number.isFinite(p.y));
  const ys = known.map((p) => p.y);
  const ny = niceTicks(Math.min(yMin, ...ys), Math.max(yMin, ...ys), yTickCount);
  const xs = points.map((p) => p.x);
  const x0 = xs.length ? Math.min(...xs) : 0;
  const x1 = xs.length ? Math.max(...xs) : 1;
  const xScale = linearScale(x0, x1, plot.left, plot.right);
  const yScale = linearScale(ny.min, ny.max, plot.bottom, plot.top);
  const yTicks = ny.ticks.map((value) => ({ value, y: r2(yScale(value)) }));
  const xTicks = spreadIndices(points.length, xTickCount).map((i) => ({
    value: points[i].x,
    x: r2(xScale(points[i].x)),
  }));
  const coords = [];
  let path = '';
  let pen = false;
  for (const p of points) {
    if (p.y == null || !Number.isFinite(p.y)) {
      pen = false;
      continue;
    }
    const c = { x: r2(xScale(p.x)), y: r2(yScale(p.y)), point: p };
    coords.push(c);
    path += (pen ? ' L' : (path ? ' M' : 'M')) + c.x + ' ' + c.y;
    pen = true;
  }
  return { plot, yTicks, xTicks, coords, path, yDomain: [ny.min, ny.max] };
}
