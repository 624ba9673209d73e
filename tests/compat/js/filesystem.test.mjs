// The official JS SDK's filesystem (sprite.filesystem(), modelled on
// fs/promises), unchanged, against sprited.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { SpritesClient, FilesystemError } from '@fly/sprites';
import { startDaemon } from './daemon.mjs';
import { recordCalls, assertCalled } from './surface.mjs';

recordCalls();

let daemon;
let sprite;

before(async () => {
  daemon = await startDaemon();
  const client = new SpritesClient(daemon.token, { baseURL: daemon.url, controlMode: daemon.controlMode });
  sprite = await client.createSprite('js-fs');
});

after(async () => {
  await daemon?.stop();
  assertCalled('filesystem.test.mjs');
});

const fsError = code => e => e instanceof FilesystemError && e.code === code;

test('write, read, stat, exists', async () => {
  const fs = sprite.filesystem('/home/sprite');
  await fs.writeFile('notes/hello world.txt', 'hi from node\n');
  assert.equal(await fs.readFile('notes/hello world.txt', 'utf8'), 'hi from node\n');
  const buf = Buffer.alloc(8 << 20, 7);
  buf.write('header');
  await fs.writeFile('/tmp/blob.bin', buf, { mode: 0o600 });
  assert.ok((await fs.readFile('/tmp/blob.bin')).equals(buf));
  const st = await fs.stat('/tmp/blob.bin');
  assert.equal(st.size, buf.length);
  assert.equal(st.mode, 0o600);
  assert.ok(st.isFile() && !st.isDirectory());
  assert.ok(st.mtime instanceof Date && !Number.isNaN(st.mtime.getTime()));
  assert.equal(await fs.exists('notes/hello world.txt'), true);
  assert.equal(await fs.exists('notes/missing.txt'), false);
  const owner = await sprite.execFile('stat', ['-c', '%U', '/home/sprite/notes/hello world.txt']);
  assert.equal(owner.stdout, 'sprite\n');

  await fs.writeJSON('conf.json', { a: 1, list: [1, 2] }, { spaces: 2 });
  assert.deepEqual(await fs.readJSON('conf.json'), { a: 1, list: [1, 2] });
  await fs.appendFile('log.txt', 'one\n');
  await fs.appendFile('log.txt', 'two\n');
  assert.equal(await fs.readFile('log.txt', 'utf8'), 'one\ntwo\n');
  await fs.writeFile('ünïcødé ✓.txt', 'ok');
  assert.equal(await fs.readFile('ünïcødé ✓.txt', 'utf8'), 'ok');
});

test('directories: mkdir, readdir, rm', async () => {
  const fs = sprite.filesystem('/home/sprite/dirs');
  await fs.mkdir('a/b/c', { recursive: true });
  await fs.mkdir('solo');
  await fs.writeFile('a/file.txt', 'x');
  assert.deepEqual(await fs.readdir('.'), ['a', 'solo']);
  assert.deepEqual(await fs.readdir('a/b/c'), []);
  const typed = await fs.readdir('a', { withFileTypes: true });
  assert.deepEqual(typed.map(d => [d.name, d.isDirectory(), d.isFile()]), [
    ['b', true, false],
    ['file.txt', false, true],
  ]);
  assert.deepEqual(await fs.readdir('a', { recursive: true }), ['b', 'b/c', 'file.txt']);
  assert.deepEqual(await fs.readdir('.', { recursive: true, pattern: '*.txt' }), ['a/file.txt']);
  await assert.rejects(fs.rm('a'), fsError('ENOTEMPTY'));
  await fs.rm('a', { recursive: true });
  await fs.rm('a', { force: true });
  await assert.rejects(fs.rm('a'), fsError('ENOENT'));
  assert.deepEqual(await fs.readdir('.'), ['solo']);
});

test('rename, copyFile, chmod, chown', async () => {
  const fs = sprite.filesystem('/home/sprite/ops');
  await fs.writeFile('run.sh', '#!/bin/sh\necho ran\n');
  await fs.chmod('run.sh', 0o755);
  assert.equal((await fs.stat('run.sh')).mode, 0o755);
  assert.equal((await sprite.execFile('/home/sprite/ops/run.sh')).stdout, 'ran\n');
  await fs.rename('run.sh', 'moved.sh');
  assert.equal(await fs.exists('run.sh'), false);
  await fs.copyFile('moved.sh', 'copy.sh');
  assert.equal(await fs.readFile('copy.sh', 'utf8'), '#!/bin/sh\necho ran\n');
  await fs.mkdir('tree/x', { recursive: true });
  await fs.writeFile('tree/x/f.txt', 'f');
  await fs.copyFile('tree', 'tree2', { recursive: true });
  assert.equal(await fs.readFile('tree2/x/f.txt', 'utf8'), 'f');
  await fs.chmod('tree2', 0o700, { recursive: true });
  assert.equal((await fs.stat('tree2/x/f.txt')).mode, 0o700);

  await assert.rejects(fs.chown('copy.sh', { uid: 0 }), fsError('EPERM'));
  await fs.chown('copy.sh', { uid: 'root', gid: 0, asRoot: true });
  const who = await sprite.execFile('stat', ['-c', '%U:%G', '/home/sprite/ops/copy.sh']);
  assert.equal(who.stdout, 'root:root\n');
  await fs.rm('copy.sh', { asRoot: true });
  assert.equal(await fs.exists('copy.sh'), false);
});

test('errors carry errno codes', async () => {
  const fs = sprite.filesystem('/');
  await assert.rejects(fs.readFile('/no/such/file'), fsError('ENOENT'));
  await assert.rejects(fs.readFile('/home/sprite'), fsError('EISDIR'));
  await assert.rejects(fs.writeFile('/etc/passwd', 'x'), fsError('EACCES'));
  await fs.writeFile('/home/sprite/plain', 'x');
  await assert.rejects(fs.writeFile('/home/sprite/plain/child', 'x'), fsError('ENOTDIR'));
  await assert.rejects(fs.stat('/nope'), fsError('ENOENT'));
  // `..` cannot leave the sprite.
  const passwd = await fs.readFile('/home/sprite/../../../../../etc/passwd', 'utf8');
  assert.match(passwd, /^sprite:x:1000/m);
});
