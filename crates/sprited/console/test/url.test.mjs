import test from 'node:test';
import assert from 'node:assert/strict';
import { queryString, withQuery, spritePath, wsUrl } from '../url.js';

test('queryString repeats arrays, drops null, encodes + and space', () => {
  assert.equal(queryString({ cmd: ['a', 'b c'], tty: true, x: null, y: undefined }), 'cmd=a&cmd=b%20c&tty=true');
  assert.equal(queryString({ path: '/d/a+b&c=d' }), 'path=%2Fd%2Fa%2Bb%26c%3Dd');
  assert.equal(queryString({}), '');
});

test('withQuery and spritePath', () => {
  assert.equal(withQuery('/v1/usage', {}), '/v1/usage');
  assert.equal(withQuery('/v1/usage', { from: 5 }), '/v1/usage?from=5');
  assert.equal(spritePath('my sprite', '/exec'), '/v1/sprites/my%20sprite/exec');
});

test('wsUrl follows the page scheme', () => {
  assert.equal(wsUrl('https:', 'h:8', '/v1/x'), 'wss://h:8/v1/x');
  assert.equal(wsUrl('http:', 'h', '/v1/x'), 'ws://h/v1/x');
});
