// The official JS SDK (@fly/sprites from npm), unchanged, against sprited:
// watchSprites (the NDJSON sprite stream) and sprite.filesystem().watch
// (the fs/watch WebSocket).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { SpritesClient } from '@fly/sprites';
import { startDaemon, withSprite } from './daemon.mjs';

let daemon;
let client;

before(async () => {
  daemon = await startDaemon();
  client = new SpritesClient(daemon.token, { baseURL: daemon.url, controlMode: daemon.controlMode });
});

after(async () => {
  await daemon?.stop();
});

// The next value of an async iterator, or a failure after `ms`.
async function nextWithin(iter, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([iter.next(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// The next line of a watchSprites stream that is not a heartbeat.
async function nextState(iter) {
  for (;;) {
    const { value, done } = await nextWithin(iter, 30_000, 'sprite state line');
    assert.ok(!done, 'the stream ended');
    if (value.type !== 'heartbeat') return value;
  }
}

test('watchSprites: the sprites as they are, then their changes', async () => {
  await client.createSprite('jsw-a');
  await client.createSprite('jsx-other');
  const stream = await client.watchSprites({ prefix: 'jsw-' });
  const iter = stream[Symbol.asyncIterator]();
  try {
    let ev = await nextState(iter);
    assert.equal(ev.name, 'jsw-a');
    assert.equal(ev.status, 'running');
    assert.ok(ev.timestamp instanceof Date && !isNaN(ev.timestamp));
    assert.ok(ev.lastRunningAt instanceof Date && !isNaN(ev.lastRunningAt));
    assert.equal(typeof ev.runningVersion, 'string');
    assert.equal(ev.organization.name, 'local');
    assert.equal(ev.organization.running, 2);
    assert.equal(ev.organization.cold, 0);

    await client.createSprite('jsw-b');
    ev = await nextState(iter);
    assert.deepEqual([ev.name, ev.status], ['jsw-b', 'running']);
    assert.equal(ev.organization.running, 3);

    await client.deleteSprite('jsw-b');
    ev = await nextState(iter);
    assert.deepEqual([ev.name, ev.status], ['jsw-b', 'destroyed']);

    // processAll hands each line to a handler until the stream is closed.
    const again = await client.watchSprites({ prefix: 'jsw-', maxResults: 1 });
    const seen = [];
    await again.processAll(line => {
      seen.push(line.name);
      again.close();
    });
    assert.deepEqual(seen, ['jsw-a']);
  } finally {
    stream.close();
    await client.deleteSprite('jsw-a').catch(() => {});
    await client.deleteSprite('jsx-other').catch(() => {});
  }
});

// The next fs watch event matching `want` (fields compared), skipping others.
async function nextEvent(iter, want) {
  for (;;) {
    const { value, done } = await nextWithin(iter, 20_000, `event ${JSON.stringify(want)}`);
    assert.ok(!done, 'the watch ended');
    if (Object.entries(want).every(([k, v]) => value[k] === v)) return value;
  }
}

test('filesystem().watch: subscribed, then the changes, recursive', async () => {
  await withSprite(client, 'js-fswatch', async sprite => {
    await sprite.exec('mkdir -p /tmp/w/sub');
    const fs = sprite.filesystem('/tmp');
    const watcher = await fs.watch('w', { recursive: true });
    const iter = watcher[Symbol.asyncIterator]();
    try {
      const first = await nextWithin(iter, 20_000, 'subscribed');
      assert.deepEqual(first.value, { type: 'subscribed', paths: ['/tmp/w'] });

      await fs.writeFile('w/a.txt', 'hello');
      const created = await nextEvent(iter, { type: 'event', path: '/tmp/w/a.txt', event: 'create' });
      assert.equal(created.isDir, false);
      assert.ok(!isNaN(new Date(created.timestamp)));

      await fs.writeFile('w/sub/b.txt', 'deep');
      await nextEvent(iter, { type: 'event', path: '/tmp/w/sub/b.txt' });

      await fs.rm('w/sub/b.txt');
      await nextEvent(iter, { type: 'event', path: '/tmp/w/sub/b.txt', event: 'remove' });
    } finally {
      watcher.close();
    }
    assert.equal(watcher.isClosed(), true);
  });
});

test('filesystem().watch: an unwatchable path is an error event', async () => {
  await withSprite(client, 'js-fswatch-err', async sprite => {
    const watcher = await sprite.filesystem().watch('/no/such/dir');
    const iter = watcher[Symbol.asyncIterator]();
    const { value } = await nextWithin(iter, 20_000, 'error');
    assert.equal(value.type, 'error');
    assert.match(value.message, /no such file/i);
    const end = await nextWithin(iter, 20_000, 'end');
    assert.equal(end.done, true);
  });
});
