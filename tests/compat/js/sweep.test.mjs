// The rest of @fly/sprites's public calls against sprited: those
// sprites.test.mjs and filesystem.test.mjs leave out (surface.mjs lists
// them all), and the issue-20 calls, which must fail clearly.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import {
  SpritesClient, SpriteCommand, PortWatcher, ProxyManager, APIError, ExecError,
} from '@fly/sprites';
import { startDaemon } from './daemon.mjs';
import { recordCalls, assertCalled, fns } from './surface.mjs';

recordCalls();

let daemon;
let client;
let sprite;

before(async () => {
  daemon = await startDaemon();
  client = new SpritesClient(daemon.token, { baseURL: daemon.url, controlMode: daemon.controlMode });
  sprite = await client.createSprite('js-sweep');
});

after(async () => {
  await daemon?.stop();
  assertCalled('sweep.test.mjs');
});

const sleep = ms => new Promise(r => setTimeout(r, ms));

function collect(stream) {
  const chunks = [];
  stream.on('data', c => chunks.push(c));
  return () => Buffer.concat(chunks).toString();
}

async function until(fn, what, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

test('client: handles, URL settings, update, upgrade, delete and destroy', async () => {
  const handle = client.sprite('js-life');
  assert.equal(handle.name, 'js-life');
  assert.equal(handle.id, undefined);
  const s = await client.createSprite('js-life', {
    config: { ramMB: 512, cpus: 1 },
    environment: { GREETING: 'hello' },
    labels: ['x'],
  });
  assert.deepEqual([s.name, s.labels, s.primaryRegion], ['js-life', ['x'], 'local']);
  assert.equal(s.config.ramMB, 512);
  assert.equal(s.config.cpus, 1);
  assert.deepEqual(s.environment, { GREETING: 'hello' });
  assert.equal((await s.execFile('sh', ['-c', 'echo $GREETING'])).stdout, 'hello\n');

  await client.updateURLSettings('js-life', { auth: 'public' });
  assert.equal((await client.getSprite('js-life')).urlSettings.auth, 'public');
  await s.updateURLSettings({ auth: 'sprite' });
  assert.equal((await client.getSprite('js-life')).urlSettings.auth, 'sprite');
  const updated = await s.update({ labels: ['a', 'b'] });
  assert.deepEqual([updated.name, updated.labels], ['js-life', ['a', 'b']]);
  assert.deepEqual((await client.getSprite('js-life')).labels, ['a', 'b']);

  await s.execFile('sh', ['-c', 'echo kept > /home/sprite/f']);
  assert.equal(await client.upgradeSprite('js-life'), undefined);
  assert.equal(await s.upgrade(), undefined);
  assert.equal((await s.execFile('cat', ['/home/sprite/f'])).stdout, 'kept\n');

  assert.equal(await s.delete(), undefined);
  await assert.rejects(client.getSprite('js-life'), e => e instanceof APIError && e.statusCode === 404);
  const other = await client.createSprite('js-life-2');
  assert.equal(await other.destroy(), undefined);
  await assert.rejects(client.getSprite('js-life-2'), e => e instanceof APIError && e.statusCode === 404);
});

test('commands: start, signal, kill, resize, exitCode', async () => {
  const cmd = new SpriteCommand(sprite, 'sh', ['-c', 'echo started']);
  assert.equal(cmd.exitCode(), -1);
  const out = collect(cmd.stdout);
  assert.equal(await cmd.start(), undefined);
  assert.equal(await cmd.wait(), 0);
  assert.equal(cmd.exitCode(), 0);
  assert.equal(out(), 'started\n');

  const trapped = sprite.spawn('sh', ['-c', 'trap "echo got USR1; exit 7" USR1; echo ready; while :; do sleep 0.1; done']);
  const seen = collect(trapped.stdout);
  await until(() => seen().includes('ready'), 'ready');
  trapped.signal('SIGUSR1');
  assert.equal(await trapped.wait(), 7);
  assert.equal(seen(), 'ready\ngot USR1\n');
  assert.equal(trapped.exitCode(), 7);

  const victim = sprite.spawn('sh', ['-c', 'echo ready; exec sleep 60']);
  const ready = collect(victim.stdout);
  await until(() => ready().includes('ready'), 'ready');
  victim.kill('SIGKILL');
  assert.equal(await victim.wait(), 137);

  // It waits for the resize, however late it comes.
  const tty = sprite.spawn('sh', ['-c', 'while [ "$(stty size)" = "24 80" ]; do sleep 0.05; done; stty size'],
    { tty: true, rows: 24, cols: 80 });
  const screen = collect(tty.stdout);
  await new Promise(resolve => tty.once('spawn', resolve));
  tty.resize(100, 30);
  assert.equal(await tty.wait(), 0);
  assert.equal(screen().trim(), '30 100');

  await assert.rejects(sprite.execFile('sh', ['-c', 'echo bad >&2; exit 3']),
    e => e instanceof ExecError && e.exitCode === 3 && e.stderr === 'bad\n');
});

test('sessions: the kill stream, read with processAll', async () => {
  const session = sprite.createSession('sh', ['-c', 'exec sleep 120']);
  const info = await new Promise((resolve, reject) => {
    session.on('message', m => m?.type === 'session_info' && resolve(m));
    session.on('error', reject);
  });
  const id = String(info.session_id);
  assert.ok((await sprite.listSessions()).some(s => String(s.id) === id));
  const events = [];
  const stream = await sprite.killSession(id, 'SIGKILL', '5s');
  await stream.processAll(ev => { events.push(ev); });
  assert.equal(events.at(-1)?.type, 'complete', JSON.stringify(events));
  stream.close();
  await until(async () => !(await sprite.listSessions()).some(s => String(s.id) === id), 'session gone');
  // A session id that never existed is unknown (404), not gone (410).
  await assert.rejects(sprite.killSession('999999'), e => e instanceof APIError && e.statusCode === 404);
  const closed = await sprite.killSession(id).catch(e => e);
  assert.ok(closed instanceof APIError && closed.statusCode === 410, String(closed));
});

test('checkpoints: streams read with processAll and closed; history filter', async () => {
  await sprite.execFile('sh', ['-c', 'echo one > /home/sprite/cp']);
  const made = [];
  const first = await sprite.createCheckpoint('sweep one');
  await first.processAll(m => { made.push(m); });
  first.close();
  assert.equal(made.at(-1)?.type, 'complete', JSON.stringify(made));
  const one = (await sprite.listCheckpoints())[0];
  assert.equal(one.comment, 'sweep one');

  const second = await sprite.createCheckpoint('sweep two');
  let m;
  const msgs = [];
  while ((m = await second.next()) !== null) msgs.push(m);
  second.close();
  assert.equal(msgs.at(-1)?.type, 'complete');
  const two = (await sprite.listCheckpoints())[0];
  assert.equal(two.comment, 'sweep two');

  await sprite.execFile('sh', ['-c', 'echo two > /home/sprite/cp']);
  const restored = [];
  const restore = await sprite.restoreCheckpoint(one.id);
  await restore.processAll(x => { restored.push(x); });
  restore.close();
  assert.equal(restored.at(-1)?.type, 'complete', JSON.stringify(restored));
  assert.equal((await sprite.execFile('cat', ['/home/sprite/cp'])).stdout, 'one\n');

  // `two` was taken on `one`; after the restore the next is taken on `one` too.
  const third = await sprite.createCheckpoint('sweep three');
  await third.processAll(() => {});
  const three = (await sprite.listCheckpoints())[0];
  assert.deepEqual((await sprite.listCheckpoints(two.id)).map(c => c.id), [two.id, one.id]);
  assert.deepEqual((await sprite.listCheckpoints(three.id)).map(c => c.id), [three.id, one.id]);
  assert.deepEqual((await sprite.listCheckpoints(one.id)).map(c => c.id), [three.id, two.id, one.id]);
});

test('services: restart, and the log stream read with processAll and next', async () => {
  for await (const _ of await sprite.createService('js-sweep-svc',
    { cmd: 'sh', args: ['-c', 'echo boot; exec sleep 1000'] }, '500ms')) { /* drained */ }
  const pid = (await sprite.getService('js-sweep-svc')).state.pid;
  assert.ok(pid > 0);
  const events = [];
  const restarted = await sprite.restartService('js-sweep-svc', '500ms');
  await restarted.processAll(ev => { events.push(ev); });
  restarted.close();
  assert.ok(events.some(e => e.type === 'started'), JSON.stringify(events));
  assert.equal(events.at(-1)?.type, 'complete', JSON.stringify(events));
  const after = await sprite.getService('js-sweep-svc');
  assert.equal(after.state.status, 'running');
  assert.notEqual(after.state.pid, pid);

  const logs = await sprite.getServiceLogs('js-sweep-svc', { lines: 1 });
  const firstLine = await logs.next();
  logs.close();
  assert.equal(firstLine.type, 'stdout');
  assert.equal(firstLine.data, 'boot\n');
  await sprite.deleteService('js-sweep-svc');
});

test('ports: watchPorts and PortWatcher see a listener open and close', async () => {
  const watcher = await sprite.watchPorts();
  const list = await watcher.next();
  assert.equal(list.type, 'port_list', JSON.stringify(list));
  assert.ok(Array.isArray(list.ports));
  assert.ok(!list.ports.some(p => p.port === 8123), JSON.stringify(list));

  const own = new PortWatcher(client, 'js-sweep');
  assert.equal(await own.connect(), undefined);
  assert.equal((await own.next()).type, 'port_list');

  const server = sprite.spawn('httpd', ['-f', '-p', '8123', '-h', '/tmp']);
  let opened;
  while ((opened = await watcher.next()) !== null && !(opened.type === 'port_opened' && opened.port === 8123));
  assert.equal(opened?.port, 8123, JSON.stringify(opened));
  let seenByOwn;
  while ((seenByOwn = await own.next()) !== null && seenByOwn.type !== 'port_opened');
  assert.equal(seenByOwn?.port, 8123);

  server.kill('SIGKILL');
  await server.wait();
  let closed;
  while ((closed = await watcher.next()) !== null && closed.type !== 'port_closed');
  assert.equal(closed?.port, 8123, JSON.stringify(closed));

  assert.equal(watcher.isClosed(), false);
  watcher.close();
  own.close();
  assert.equal(watcher.isClosed(), true);
  assert.equal(await watcher.next(), null);
});

async function httpGet(addr, path) {
  const [host, port] = addr.split(':');
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), host === 'localhost' ? '127.0.0.1' : host);
    const chunks = [];
    sock.on('connect', () => sock.write(`GET ${path} HTTP/1.0\r\nHost: x\r\n\r\n`));
    sock.on('data', c => chunks.push(c));
    sock.on('end', () => resolve(Buffer.concat(chunks).toString()));
    sock.on('error', reject);
  });
}

test('proxy: proxyPort, proxyPorts and the manager carry TCP to a port inside', async () => {
  await sprite.filesystem('/home/sprite/www').writeFile('index.html', 'proxied page\n');
  await sprite.filesystem('/home/sprite/www2').writeFile('index.html', 'second page\n');
  const a = sprite.spawn('httpd', ['-f', '-p', '8124', '-h', '/home/sprite/www']);
  const b = sprite.spawn('httpd', ['-f', '-p', '8125', '-h', '/home/sprite/www2']);
  const watcher = await sprite.watchPorts();
  const open = new Set();
  for (let ev; open.size < 2 && (ev = await watcher.next()) !== null;) {
    for (const p of ev.type === 'port_list' ? ev.ports : [ev]) {
      if ([8124, 8125].includes(p.port) && ev.type !== 'port_closed') open.add(p.port);
    }
  }
  watcher.close();

  const one = await sprite.proxyPort(0, 8124);
  const addr = one.localAddr();
  assert.match(addr, /^localhost:\d+$/);
  assert.match(await httpGet(addr, '/index.html'), /^HTTP\/1\.[01] 200[\s\S]*proxied page\n$/);

  const [p2, p3] = await sprite.proxyPorts([
    { localPort: 0, remotePort: 8125 },
    { localPort: 0, remotePort: 8124, remoteHost: 'localhost' },
  ]);
  assert.match(await httpGet(p2.localAddr(), '/'), /second page\n$/);
  assert.match(await httpGet(p3.localAddr(), '/'), /proxied page\n$/);

  const direct = await fns.proxyPort(client, 'js-sweep', 0, 8125);
  assert.match(await httpGet(direct.localAddr(), '/'), /second page\n$/);
  const [viaFn] = await fns.proxyPorts(client, 'js-sweep', [{ localPort: 0, remotePort: 8124 }]);
  assert.match(await httpGet(viaFn.localAddr(), '/'), /proxied page\n$/);

  const manager = new ProxyManager();
  for (const s of [one, p2, p3, direct]) manager.addSession(s);
  const waited = manager.waitAll();
  manager.closeAll();
  assert.deepEqual(await waited, undefined);
  assert.equal(one.localAddr(), null);

  const closing = viaFn.wait();
  viaFn.close();
  assert.equal(await closing, undefined);

  const own = new (one.constructor)(client, 'js-sweep', { localPort: 0, remotePort: 8124 });
  assert.equal(await own.start(), undefined);
  assert.match(await httpGet(own.localAddr(), '/'), /proxied page\n$/);
  own.close();
  a.kill('SIGKILL');
  b.kill('SIGKILL');
  await Promise.all([a.wait(), b.wait()]);
});

test('errors: APIError helpers and parseAPIError on real answers', async () => {
  const err = await client.getSprite('js-no-such').catch(e => e);
  assert.ok(err instanceof APIError);
  assert.equal(err.statusCode, 404);
  assert.equal(err.isRateLimitError(), false);
  assert.equal(err.isCreationRateLimited(), false);
  assert.equal(err.isConcurrentLimitExceeded(), false);
  assert.equal(err.getRetryAfterSeconds(), undefined);

  const r = await fetch(`${daemon.url}/v1/sprites/js-no-such`, { headers: { Authorization: `Bearer ${daemon.token}` } });
  const body = await r.text();
  const parsed = fns.parseAPIError(r.status, body, Object.fromEntries(r.headers.entries()));
  assert.ok(parsed instanceof APIError);
  assert.deepEqual([parsed.statusCode, parsed.errorCode], [404, 'not_found']);
  assert.match(parsed.message, /no sprite named js-no-such/);
  assert.equal(fns.parseAPIError(200, '{}'), undefined);
});

test('network policy: a rule that does not parse is a 400 the SDK names', async () => {
  await assert.rejects(
    sprite.updateNetworkPolicy({ rules: [{ domain: 'x.com', action: 'maybe' }] }),
    e => /^Invalid policy: /.test(e.message) && JSON.parse(e.message.slice('Invalid policy: '.length)).error === 'bad_request',
  );
  assert.deepEqual((await sprite.getNetworkPolicy()).rules ?? [], []);
});

test('filesystem: symlinks in stat and readdir', async () => {
  await sprite.execFile('sh', ['-c', 'mkdir -p /home/sprite/links && echo t > /home/sprite/links/target && ln -sf target /home/sprite/links/link']);
  const fs = sprite.filesystem('/home/sprite/links');
  const st = await fs.stat('link');
  assert.deepEqual([st.isSymbolicLink(), st.isFile(), st.isDirectory()], [true, false, false]);
  assert.equal((await fs.stat('target')).isSymbolicLink(), false);
  const entries = await fs.readdir('.', { withFileTypes: true });
  assert.deepEqual(entries.map(d => [d.name, d.isSymbolicLink(), d.isFile()]),
    [['link', true, false], ['target', false, true]]);
});

// check: a running sprite is healthy when its agent answers; the list
// carries the organization's counts where this SDK reads them.
test('check and the list counts', async () => {
  await sprite.execFile('true');
  const info = await client.getSprite('js-sweep');
  const c = await client.checkSprite('js-sweep');
  assert.equal(c.spriteName, 'js-sweep');
  assert.equal(c.spriteId, info.id);
  assert.equal(c.status, 'healthy');
  assert.ok(c.checkedAt instanceof Date && !Number.isNaN(c.checkedAt.getTime()), `${c.checkedAt}`);
  assert.equal(typeof c.elapsed, 'number');
  assert.equal((await sprite.check()).status, 'healthy');
  const page = await client.listSprites();
  assert.equal(page.organizationName, 'local');
  assert.ok(page.running + page.warm >= 1, JSON.stringify(page));
  assert.equal(page.running + page.warm + page.cold, page.sprites.length);
});

// The privileges policy in the shape this SDK declares it; applied at the
// sprite's next start.
test('privileges policy: profile, devices, noNewPrivileges', async () => {
  assert.equal(sprite.useControlMode(), daemon.controlMode);
  const initial = await sprite.getPrivilegesPolicy();
  assert.equal(initial.profile, undefined);
  assert.deepEqual(initial.devices, []);
  await sprite.updatePrivilegesPolicy({ profile: 'minimal', devices: [], noNewPrivileges: true });
  const set = await sprite.getPrivilegesPolicy();
  assert.equal(set.profile, 'minimal');
  assert.equal(set.noNewPrivileges, true);
  await assert.rejects(sprite.updatePrivilegesPolicy({ profile: 'root' }),
    /privileges policy \(status 400\): .*unknown profile/);
  await sprite.deletePrivilegesPolicy();
  assert.equal((await sprite.getPrivilegesPolicy()).profile, undefined);
});
