// The official JS SDK (@fly/sprites from npm), unchanged, against sprited:
// SpritesClient.createToken (POST /v1/organizations/{org}/tokens).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { SpritesClient } from '@fly/sprites';
import { startDaemon } from './daemon.mjs';

let daemon;

before(async () => {
  daemon = await startDaemon();
});

after(async () => {
  await daemon?.stop();
});

test('createToken: the SDK call makes a token that works', async () => {
  // createToken always asks https://api.sprites.dev: send that one request
  // to the local daemon instead, and refuse anything else, so nothing
  // leaves the machine.
  const realFetch = globalThis.fetch;
  const seen = [];
  globalThis.fetch = async (url, init) => {
    const u = new URL(url);
    if (u.origin !== 'https://api.sprites.dev') throw new Error(`unexpected request to ${url}`);
    seen.push({ path: u.pathname, auth: init.headers.Authorization });
    return realFetch(`${daemon.url}${u.pathname}${u.search}`, init);
  };
  let token;
  try {
    token = await SpritesClient.createToken(daemon.token, 'personal');
  } finally {
    globalThis.fetch = realFetch;
  }
  assert.deepEqual(seen, [{ path: '/v1/organizations/personal/tokens', auth: `FlyV1 ${daemon.token}` }]);
  assert.match(token, /^spr_/);
  const other = new SpritesClient(token, { baseURL: daemon.url });
  const page = await other.listSprites();
  assert.ok(Array.isArray(page.sprites));
});
