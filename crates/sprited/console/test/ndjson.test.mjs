import test from 'node:test';
import assert from 'node:assert/strict';
import { LineSplitter, parseLine, readLines, readNdjson } from '../ndjson.js';

test('LineSplitter joins lines across chunks', () => {
  const s = new LineSplitter();
  assert.deepEqual(s.push('{"a":'), []);
  assert.deepEqual(s.push('1}\n{"b"'), ['{"a":1}']);
  assert.deepEqual(s.push(':2}\r\n\n{"c":3}'), ['{"b":2}', '']);
  assert.deepEqual(s.end(), ['{"c":3}']);
  assert.deepEqual(s.end(), []);
});

test('parseLine skips blank lines and keeps non-JSON as raw', () => {
  assert.equal(parseLine('   '), null);
  assert.deepEqual(parseLine('{"type":"info","data":"x"}'), { type: 'info', data: 'x' });
  assert.deepEqual(parseLine('oops'), { type: 'raw', data: 'oops' });
});

function streamOf(chunks) {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(ctl) {
      for (const c of chunks) ctl.enqueue(typeof c === 'string' ? enc.encode(c) : c);
      ctl.close();
    },
  });
}

test('readNdjson yields values as the bytes arrive, even split inside UTF-8', async () => {
  const bytes = new TextEncoder().encode('{"data":"é"}\n');
  // Split in the middle of the two-byte "é".
  const cut = bytes.indexOf(0xc3) + 1;
  const body = streamOf([bytes.slice(0, cut), bytes.slice(cut), '\n{"type":"heartbeat"}', '\n{"type":"complete"}']);
  const got = [];
  for await (const v of readNdjson(body)) got.push(v);
  assert.deepEqual(got, [{ data: 'é' }, { type: 'heartbeat' }, { type: 'complete' }]);
});

test('readLines gives the last line without a newline', async () => {
  const got = [];
  for await (const l of readLines(streamOf(['a\nb', 'c']))) got.push(l);
  assert.deepEqual(got, ['a', 'bc']);
});
