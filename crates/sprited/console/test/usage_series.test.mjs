import test from 'node:test';
import assert from 'node:assert/strict';
import {
  usageWindows, windowSeries, averages, daySeries, costBySprite, oldestCreation, utcDate, RANGES,
} from '../usage_series.js';

const NOW = Date.parse('2025-06-10T12:34:56Z');

test('30 one-minute windows, the last one the minute in progress', () => {
  const w = usageWindows('30m', NOW);
  assert.equal(w.length, 30);
  const minute = Date.parse('2025-06-10T12:34:00Z') / 1000;
  assert.equal(w[29].from, minute);
  assert.equal(w[29].to, NOW / 1000);
  assert.equal(w[0].from, minute - 29 * 60);
  for (let i = 1; i < w.length; i++) assert.equal(w[i].from, w[i - 1].to);
  for (const x of w.slice(0, 29)) assert.equal(x.to - x.from, 60);
});

test('6 h in 15-minute windows, the last one ending now', () => {
  const w = usageWindows('6h', NOW);
  assert.equal(w.length, 24);
  assert.equal(w[23].from, Date.parse('2025-06-10T12:30:00Z') / 1000);
  assert.equal(w[23].to, NOW / 1000 - (NOW / 1000) % 1);
  assert.equal(w[0].from, Date.parse('2025-06-10T06:45:00Z') / 1000);
});

test('7 daily windows aligned to UTC midnight', () => {
  const w = usageWindows('7d', NOW);
  assert.equal(w.length, RANGES['7d'].count);
  assert.equal(w[6].from, Date.parse('2025-06-10T00:00:00Z') / 1000);
  assert.equal(w[0].from, Date.parse('2025-06-04T00:00:00Z') / 1000);
  assert.equal(w[0].to - w[0].from, 86400);
  assert.equal(usageWindows('bogus', NOW).length, 30);
});

test('averages turn amounts into vCPUs and GB', () => {
  const a = averages({ cpu_seconds: 30, ram_gb_seconds: 120, hot_storage_gb_seconds: 600, cold_storage_gb_hours: 1 / 60 }, 60);
  assert.equal(a.cpu, 0.5);
  assert.equal(a.memory, 2);
  assert.equal(a.hot, 10);
  assert.ok(Math.abs(a.cold - 1) < 1e-12);
  assert.deepEqual(averages(null, 0), { cpu: 0, memory: 0, hot: 0, cold: 0 });
});

test('windowSeries makes points, gaps for failed windows, and totals', () => {
  const windows = [{ from: 0, to: 60 }, { from: 60, to: 120 }, { from: 120, to: 180 }];
  const rep = (cpu, total) => ({
    usage: { cpu_seconds: cpu, ram_gb_seconds: 0, hot_storage_gb_seconds: 0, cold_storage_gb_hours: 0 },
    cost: { cpu: total, ram: 0, hot_storage: 0, cold_storage: 0, total },
    currency: 'USD',
  });
  const { series, total } = windowSeries(windows, [rep(60, 0.5), null, rep(30, 0.25)]);
  assert.deepEqual(series.cpu.map((p) => p.y), [1, null, 0.5]);
  assert.deepEqual(series.cpu.map((p) => p.x), [0, 60000, 120000]);
  assert.equal(series.cost[2].y, 0.25);
  assert.equal(total.cost, 0.75);
  assert.equal(total.costs.cpu, 0.75);
  assert.equal(total.currency, 'USD');
});

test('daySeries fills missing days with zero', () => {
  const report = {
    days: [{
      date: '2025-06-09', sprites: [],
      usage: { cpu_seconds: 86400, ram_gb_seconds: 0, hot_storage_gb_seconds: 0, cold_storage_gb_hours: 0 },
      cost: { total: 1.68 },
    }],
  };
  const s = daySeries(report, 3, NOW);
  assert.deepEqual(s.cpu.map((p) => p.date), ['2025-06-08', '2025-06-09', '2025-06-10']);
  assert.deepEqual(s.cpu.map((p) => p.y), [0, 1, 0]);
  assert.deepEqual(s.cost.map((p) => p.y), [0, 1.68, 0]);
  assert.equal(utcDate(NOW), '2025-06-10');
});

test('costBySprite sums each sprite over the days', () => {
  const report = {
    days: [
      { date: 'a', sprites: [{ sprite: 'x', cost: { total: 1 } }, { sprite: 'y', cost: { total: 2 } }] },
      { date: 'b', sprites: [{ sprite: 'x', cost: { total: 0.5 } }] },
    ],
  };
  const m = costBySprite(report);
  assert.equal(m.get('x'), 1.5);
  assert.equal(m.get('y'), 2);
  assert.equal(costBySprite(null).size, 0);
});

test('oldestCreation', () => {
  assert.equal(oldestCreation([{ created_at: '2025-02-01T00:00:00Z' }, { created_at: '2025-01-01T00:00:00Z' }, {}], 7),
    Date.parse('2025-01-01T00:00:00Z'));
  assert.equal(oldestCreation([], 7), 7);
});
