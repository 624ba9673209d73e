import test from 'node:test';
import assert from 'node:assert/strict';
import { parseMetrics, metricValue, metricsByLabel } from '../metrics.js';

const TEXT = `# HELP sprited_sprites Sprites by status.
# TYPE sprited_sprites gauge
sprited_sprites{status="running"} 2
sprited_sprites{status="cold"} 1
# HELP sprited_pool_bytes The sprite pool's disk.
# TYPE sprited_pool_bytes gauge
sprited_pool_bytes{kind="size"} 1073741824
sprited_pool_bytes{kind="free"} 1048576
sprited_execs_total 17
sprited_sprite_cpu_seconds{sprite="we\\"ird,name",other="x"} 1.5e0 1700000000000
sprited_nan NaN
# EOF
`;

test('parseMetrics reads samples, labels with escapes, timestamps', () => {
  const s = parseMetrics(TEXT);
  assert.equal(s.length, 7);
  assert.equal(metricValue(s, 'sprited_pool_bytes', { kind: 'size' }), 1073741824);
  assert.equal(metricValue(s, 'sprited_pool_bytes', { kind: 'free' }), 1048576);
  assert.equal(metricValue(s, 'sprited_execs_total'), 17);
  assert.equal(metricValue(s, 'sprited_sprite_cpu_seconds', { sprite: 'we"ird,name' }), 1.5);
  assert.equal(metricValue(s, 'sprited_pool_bytes', { kind: 'other' }), undefined);
  assert.ok(Number.isNaN(metricValue(s, 'sprited_nan')));
});

test('metricsByLabel', () => {
  assert.deepEqual(metricsByLabel(parseMetrics(TEXT), 'sprited_sprites', 'status'), { running: 2, cold: 1 });
});
