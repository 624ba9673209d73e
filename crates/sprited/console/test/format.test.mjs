import test from 'node:test';
import assert from 'node:assert/strict';
import {
  formatBytes, formatMB, formatDuration, formatMoney, formatNumber,
  relativeTime, formatTime, formatDay, latestTime,
} from '../format.js';

test('formatBytes uses binary units with one decimal below ten', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1023), '1023 B');
  assert.equal(formatBytes(1024), '1 KiB');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(10 * 1024 * 1024), '10 MiB');
  assert.equal(formatBytes(1073741824), '1 GiB');
  assert.equal(formatBytes(5.25 * 1024 ** 4), '5.3 TiB');
  assert.equal(formatBytes(null), '—');
  assert.equal(formatBytes('x'), '—');
});

test('formatMB states RAM as the API gives it', () => {
  assert.equal(formatMB(512), '512 MB');
  assert.equal(formatMB(1024), '1 GB');
  assert.equal(formatMB(1536), '1.5 GB');
  assert.equal(formatMB(undefined), '—');
});

test('formatDuration', () => {
  assert.equal(formatDuration(0), '0s');
  assert.equal(formatDuration(45), '45s');
  assert.equal(formatDuration(60), '1m');
  assert.equal(formatDuration(200), '3m 20s');
  assert.equal(formatDuration(7500), '2h 5m');
  assert.equal(formatDuration(3600), '1h');
  assert.equal(formatDuration(3 * 86400 + 4 * 3600 + 5), '3d 4h');
  assert.equal(formatDuration(-5), '0s');
});

test('formatMoney keeps tiny per-second amounts readable', () => {
  assert.equal(formatMoney(0), '$0.00');
  assert.equal(formatMoney(1.234), '$1.23');
  assert.equal(formatMoney(12), '$12.00');
  assert.equal(formatMoney(0.0042), '$0.0042');
  assert.equal(formatMoney(0.000123), '$0.00012');
  assert.equal(formatMoney(0.001), '$0.001');
  assert.equal(formatMoney(-0.5), '-$0.50');
  assert.equal(formatMoney(2, 'EUR'), '2.00 EUR');
  assert.equal(formatMoney(undefined), '—');
});

test('formatNumber', () => {
  assert.equal(formatNumber(0), '0');
  assert.equal(formatNumber(0.25), '0.25');
  assert.equal(formatNumber(0.123456), '0.123');
  assert.equal(formatNumber(1.5), '1.5');
  assert.equal(formatNumber(2), '2');
  assert.equal(formatNumber(150.4), '150');
  assert.equal(formatNumber(12345), '12,345');
  assert.equal(formatNumber(0.0000012), '0.0000012');
  // Tiny axis ticks stay apart rather than all rounding to 0.
  assert.equal(formatNumber(2.5e-7), '2.5e-7');
  assert.equal(formatNumber(7.5e-7), '7.5e-7');
  assert.equal(formatNumber(-1e-8), '-1e-8');
});

test('relativeTime', () => {
  const now = Date.parse('2025-06-01T12:00:00Z');
  assert.equal(relativeTime('2025-06-01T11:59:55Z', now), 'just now');
  assert.equal(relativeTime('2025-06-01T11:59:30Z', now), '30 s ago');
  assert.equal(relativeTime('2025-06-01T11:55:00Z', now), '5 min ago');
  assert.equal(relativeTime('2025-06-01T09:00:00Z', now), '3 h ago');
  assert.equal(relativeTime('2025-05-30T12:00:00Z', now), '2 d ago');
  assert.equal(relativeTime('2025-06-01T12:10:00Z', now), 'in 10 min');
  assert.equal(relativeTime(null, now), 'never');
  assert.equal(relativeTime('garbage', now), 'never');
  assert.equal(relativeTime(new Date(now - 90 * 86400000), now), '3 mo ago');
});

test('formatTime and formatDay', () => {
  assert.equal(formatTime('2025-01-05T10:30:07Z', { utc: true }), '2025-01-05 10:30');
  assert.equal(formatTime('2025-01-05T10:30:07Z', { utc: true, seconds: true }), '2025-01-05 10:30:07');
  assert.equal(formatTime(null), '—');
  assert.equal(formatDay('2025-01-05T23:30:00Z', { utc: true }), '01-05');
});

test('latestTime picks the latest valid time', () => {
  assert.equal(latestTime(null, undefined, 'bad'), null);
  const t = latestTime('2025-01-01T00:00:00Z', '2025-03-01T00:00:00Z', null, '2025-02-01T00:00:00Z');
  assert.equal(t.toISOString(), '2025-03-01T00:00:00.000Z');
});
