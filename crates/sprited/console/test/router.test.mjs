import test from 'node:test';
import assert from 'node:assert/strict';
import { parseRoute, spriteHash, samePage, TABS } from '../router.js';

test('parseRoute', () => {
  assert.deepEqual(parseRoute(''), { view: 'list' });
  assert.deepEqual(parseRoute('#'), { view: 'list' });
  assert.deepEqual(parseRoute('#/'), { view: 'list' });
  assert.deepEqual(parseRoute('#/sprites'), { view: 'list' });
  assert.deepEqual(parseRoute('#/sprites/web'), { view: 'sprite', name: 'web', tab: 'terminal' });
  assert.deepEqual(parseRoute('#/sprites/web/files'), { view: 'sprite', name: 'web', tab: 'files' });
  assert.deepEqual(parseRoute('#/sprites/web/nope'), { view: 'sprite', name: 'web', tab: 'terminal' });
  assert.deepEqual(parseRoute('#/sprites/a%20b/usage'), { view: 'sprite', name: 'a b', tab: 'usage' });
  assert.deepEqual(parseRoute('#/sprites/%E0%A4%A/usage'), { view: 'sprite', name: '%E0%A4%A', tab: 'usage' });
  assert.deepEqual(parseRoute('#/usage'), { view: 'usage' });
  assert.deepEqual(parseRoute('#/tokens?x=1'), { view: 'tokens' });
  assert.equal(parseRoute('#/elsewhere').view, 'notfound');
});

test('spriteHash round-trips through parseRoute', () => {
  for (const tab of TABS) {
    const r = parseRoute(spriteHash('my-sprite', tab));
    assert.deepEqual(r, { view: 'sprite', name: 'my-sprite', tab });
  }
  assert.equal(spriteHash('web'), '#/sprites/web');
  assert.equal(spriteHash('web', 'files'), '#/sprites/web/files');
});

test('samePage ignores the tab only', () => {
  assert.ok(samePage(parseRoute('#/sprites/a'), parseRoute('#/sprites/a/files')));
  assert.ok(!samePage(parseRoute('#/sprites/a'), parseRoute('#/sprites/b')));
  assert.ok(samePage(parseRoute('#/'), parseRoute('#/sprites')));
  assert.ok(!samePage(parseRoute('#/usage'), parseRoute('#/tokens')));
  assert.ok(!samePage(null, parseRoute('#/')));
});
