import test from 'node:test';
import assert from 'node:assert/strict';
import {
  shellExecPath, attachPath, resizeMessage, parseTextFrame, decodeFrame,
  encodeStdin, toTerminalNewlines, LOGIN_SCRIPT,
} from '../exec_proto.js';

test('shellExecPath asks for a TTY login shell with repeated cmd', () => {
  const p = shellExecPath('web', { cols: 120, rows: 40 });
  const [path, query] = p.split('?');
  assert.equal(path, '/v1/sprites/web/exec');
  const pairs = query.split('&').map((kv) => kv.split('=').map(decodeURIComponent));
  assert.deepEqual(pairs.filter(([k]) => k === 'cmd').map(([, v]) => v), ['/bin/sh', '-c', LOGIN_SCRIPT]);
  const q = Object.fromEntries(pairs.filter(([k]) => k !== 'cmd'));
  assert.deepEqual(q, { tty: 'true', stdin: 'true', cols: '120', rows: '40', env: 'TERM=xterm-256color' });
  assert.ok(!query.includes('+'), 'spaces are %20, never +');
  assert.match(LOGIN_SCRIPT, /bash -l/);
  assert.match(LOGIN_SCRIPT, /sh -l/);
});

test('attachPath and resizeMessage', () => {
  assert.equal(attachPath('web', '12'), '/v1/sprites/web/exec/12');
  assert.deepEqual(JSON.parse(resizeMessage(100.7, 30)), { type: 'resize', cols: 100, rows: 30 });
});

test('parseTextFrame', () => {
  assert.deepEqual(parseTextFrame('{"type":"exit","exit_code":3}'), { type: 'exit', exit_code: 3 });
  assert.equal(parseTextFrame('not json'), null);
  assert.equal(parseTextFrame('[1]'), null);
  assert.equal(parseTextFrame('{"no":"type"}'), null);
});

test('decodeFrame reads the non-TTY framing', () => {
  const out = decodeFrame(new Uint8Array([1, 104, 105]));
  assert.equal(out.stream, 'stdout');
  assert.deepEqual([...out.data], [104, 105]);
  assert.equal(decodeFrame(new Uint8Array([2, 33])).stream, 'stderr');
  assert.deepEqual(decodeFrame(new Uint8Array([3, 7])), { stream: 'exit', code: 7 });
  assert.deepEqual(decodeFrame(new Uint8Array([3, 255]).buffer), { stream: 'exit', code: 255 });
  assert.equal(decodeFrame(new Uint8Array([])), null);
  assert.equal(decodeFrame(new Uint8Array([9, 1])), null);
});

test('encodeStdin prefixes 0x00', () => {
  assert.deepEqual([...encodeStdin(new Uint8Array([65, 66]))], [0, 65, 66]);
});

test('toTerminalNewlines adds CR before bare LF only', () => {
  const enc = (s) => new TextEncoder().encode(s);
  const dec = (u) => new TextDecoder().decode(u);
  assert.equal(dec(toTerminalNewlines(enc('a\nb\r\nc\n'))), 'a\r\nb\r\nc\r\n');
  assert.equal(dec(toTerminalNewlines(enc('\nx'), true)), '\nx');
  assert.equal(dec(toTerminalNewlines(enc('\nx'), false)), '\r\nx');
  const same = enc('no newline');
  assert.equal(toTerminalNewlines(same), same);
});
