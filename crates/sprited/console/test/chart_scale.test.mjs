import test from 'node:test';
import assert from 'node:assert/strict';
import { niceTicks, linearScale, spreadIndices, chartModel } from '../chart_scale.js';

test('niceTicks picks 1/2/2.5/5 steps covering the range', () => {
  assert.deepEqual(niceTicks(0, 0.37), { min: 0, max: 0.4, step: 0.1, ticks: [0, 0.1, 0.2, 0.3, 0.4] });
  assert.deepEqual(niceTicks(0, 1234).ticks, [0, 500, 1000, 1500]);
  assert.deepEqual(niceTicks(0, 0).ticks, [0, 0.25, 0.5, 0.75, 1]);
  assert.deepEqual(niceTicks(0, 10).ticks, [0, 2.5, 5, 7.5, 10]);
  const t = niceTicks(0.1, 0.3);
  for (const v of t.ticks) assert.equal(v, Number(v.toPrecision(12)), 'no float noise');
  assert.ok(t.min <= 0.1 && t.max >= 0.3);
  const neg = niceTicks(-3, 7);
  assert.ok(neg.min <= -3 && neg.max >= 7 && neg.ticks.includes(0));
  assert.deepEqual(niceTicks(5, 5).min, 0);
  assert.deepEqual(niceTicks(NaN, NaN).ticks, [0, 0.25, 0.5, 0.75, 1]);
});

test('linearScale', () => {
  const s = linearScale(0, 10, 100, 0);
  assert.equal(s(0), 100);
  assert.equal(s(5), 50);
  assert.equal(s(10), 0);
  assert.equal(linearScale(3, 3, 0, 10)(3), 5);
});

test('spreadIndices includes both ends', () => {
  assert.deepEqual(spreadIndices(0, 4), []);
  assert.deepEqual(spreadIndices(3, 4), [0, 1, 2]);
  assert.deepEqual(spreadIndices(30, 4), [0, 10, 19, 29]);
});

test('chartModel maps points into the plot, with gaps for missing values', () => {
  const pts = [{ x: 0, y: 0 }, { x: 1, y: 1 }, { x: 2, y: null }, { x: 3, y: 2 }];
  const m = chartModel(pts, { width: 100, height: 100, margin: { top: 0, right: 0, bottom: 0, left: 0 }, yTickCount: 3 });
  assert.deepEqual(m.yDomain, [0, 2]);
  assert.equal(m.coords.length, 3);
  assert.deepEqual(m.coords.map((c) => [c.x, c.y]), [[0, 100], [33.33, 50], [100, 0]]);
  assert.equal(m.path, 'M0 100 L33.33 50 M100 0');
  assert.deepEqual(m.yTicks.map((t) => t.value), [0, 1, 2]);
  assert.equal(m.xTicks[0].x, 0);
  assert.equal(m.xTicks[m.xTicks.length - 1].x, 100);
});

test('chartModel of one point or none', () => {
  const one = chartModel([{ x: 5, y: 3 }], { width: 100, height: 100, margin: { top: 0, right: 0, bottom: 0, left: 0 } });
  assert.equal(one.coords.length, 1);
  assert.equal(one.coords[0].x, 50);
  assert.match(one.path, /^M50 /);
  const none = chartModel([]);
  assert.equal(none.path, '');
  assert.equal(none.coords.length, 0);
  assert.ok(none.yTicks.length > 0);
});
