import test from 'node:test';
import assert from 'node:assert/strict';
import { errorMessage } from '../errors.js';
import { textOf, MAX_VIEW_BYTES } from '../bytes.js';
import { sortCheckpoints } from '../timeline.js';

test('errorMessage prefers the Sprites message, then fs errors, then the status', () => {
  assert.equal(errorMessage(400, 'Bad Request', '{"error":"bad_request","message":"name taken"}'), 'name taken');
  assert.equal(errorMessage(404, 'Not Found', '{"error":"no such file","code":"ENOENT","path":"/x"}'), 'no such file (ENOENT)');
  assert.equal(errorMessage(401, 'Unauthorized', '{"error":"unauthorized"}'), 'unauthorized');
  assert.equal(errorMessage(502, 'Bad Gateway', ''), '502 Bad Gateway');
  assert.equal(errorMessage(500, '', 'plain text failure'), 'plain text failure');
  assert.equal(errorMessage(503, 'Service Unavailable', '<html>busy</html>'), '503 Service Unavailable');
});

test('textOf refuses NUL bytes and invalid UTF-8', () => {
  assert.equal(textOf(new TextEncoder().encode('héllo\n')), 'héllo\n');
  assert.equal(textOf(new Uint8Array([104, 0, 105])), null);
  assert.equal(textOf(new Uint8Array([0xff, 0xfe, 0x41])), null);
  assert.equal(textOf(new ArrayBuffer(0)), '');
  assert.equal(MAX_VIEW_BYTES, 1048576);
});

test('sortCheckpoints: newest first, by id number on equal times', () => {
  const list = [
    { id: 'v1', create_time: '2025-01-01T00:00:00Z' },
    { id: 'v10', create_time: '2025-01-03T00:00:00Z' },
    { id: 'v2', create_time: '2025-01-03T00:00:00Z' },
    { id: 'v0', create_time: '2024-12-31T00:00:00Z' },
  ];
  assert.deepEqual(sortCheckpoints(list).map((c) => c.id), ['v10', 'v2', 'v1', 'v0']);
  assert.equal(list[0].id, 'v1', 'the input is not reordered');
});
