// The official JS SDK (@fly/sprites from npm), unchanged, against sprited:
// sprites, exec (spawn, exec, execFile, execFileHTTP), sessions, checkpoints, services,
// network and resources policy, restart.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { SpritesClient, ExecError, APIError } from '@fly/sprites';
import { startDaemon, withSprite } from './daemon.mjs';
import { recordCalls, assertCalled } from './surface.mjs';

recordCalls();

let daemon;
let client;

before(async () => {
  daemon = await startDaemon();
  client = new SpritesClient(daemon.token, { baseURL: daemon.url, controlMode: daemon.controlMode });
});

after(async () => {
  await daemon?.stop();
  assertCalled('sprites.test.mjs');
});

const sleep = ms => new Promise(r => setTimeout(r, ms));

function collect(stream) {
  const chunks = [];
  stream.on('data', c => chunks.push(c));
  return () => Buffer.concat(chunks).toString();
}

test('create, get, list, update, delete', async () => {
  const s = await client.createSprite('js-crud');
  assert.equal(s.name, 'js-crud');
  assert.equal(s.status, 'running');
  const got = await client.getSprite('js-crud');
  assert.equal(got.id, s.id);
  assert.ok(got.createdAt instanceof Date);
  const page = await client.listSprites({ prefix: 'js-cr' });
  assert.deepEqual(page.sprites.map(x => x.name), ['js-crud']);
  const all = await client.listAllSprites('js-');
  assert.ok(all.some(x => x.name === 'js-crud'));
  const updated = await client.updateSprite('js-crud', { labels: ['a', 'b'] });
  assert.deepEqual(updated.labels, ['a', 'b']);
  await client.deleteSprite('js-crud');
  await assert.rejects(client.getSprite('js-crud'), e => e instanceof APIError && e.statusCode === 404);
});

// execFileHTTP takes every read of fetch's body as one frame, and fetch
// joins chunks that arrive together (the SDK's own docs say so): the exit
// frame must come apart from the output or the exit code is lost. Without
// sprited's pause before it, 6 calls in 10 lost it on loopback; with it,
// none or 1 in 1,000 on a loaded 2-core machine, so a few are tolerated.
test('exec over HTTP: 200 echo calls in a row keep their output and exit code', async () => {
  await withSprite(client, 'js-exec-http', async sprite => {
    const calls = 200;
    let lost = 0;
    for (let i = 0; i < calls; i++) {
      try {
        const r = await sprite.execFileHTTP('echo', [String(i)]);
        assert.deepEqual([r.stdout, r.stderr, r.exitCode], [`${i}\n`, '', 0]);
      } catch (e) {
        if (!/did not include an exit frame/.test(e.message)) throw e;
        lost += 1;
      }
    }
    assert.ok(lost <= 3, `${lost} of ${calls} calls lost their exit frame`);
    await assert.rejects(
      sprite.execFileHTTP('sh', ['-c', 'echo partial; exit 3']),
      e => e instanceof ExecError && e.exitCode === 3 && e.stdout === 'partial\n',
    );
    const quiet = await sprite.execFileHTTP('true');
    assert.deepEqual([quiet.stdout, quiet.exitCode], ['', 0]);
  });
});

test('exec: execFile, exec, spawn with stdin', async () => {
  await withSprite(client, 'js-exec', async sprite => {
    const r = await sprite.execFile('sh', ['-c', 'echo out; echo err >&2']);
    assert.deepEqual([r.stdout, r.stderr, r.exitCode], ['out\n', 'err\n', 0]);
    assert.equal((await sprite.exec('echo hello world')).stdout, 'hello world\n');
    const env = await sprite.execFile('sh', ['-c', 'echo $GREETING in $(pwd)'], {
      env: { GREETING: 'hi' },
      cwd: '/tmp',
    });
    assert.equal(env.stdout, 'hi in /tmp\n');
    await assert.rejects(
      sprite.execFile('sh', ['-c', 'echo partial; exit 3']),
      e => e instanceof ExecError && e.exitCode === 3 && e.stdout === 'partial\n',
    );
    // Commands that end at once never lose their output.
    for (let i = 0; i < 20; i++) {
      assert.equal((await sprite.execFile('echo', [String(i)])).stdout, `${i}\n`);
    }

    const cmd = sprite.spawn('sh', ['-c', 'tr a-z A-Z; echo done >&2']);
    const out = collect(cmd.stdout);
    const err = collect(cmd.stderr);
    cmd.on('spawn', () => {
      cmd.stdin.write('streamed ');
      cmd.stdin.end('input\n');
    });
    assert.equal(await cmd.wait(), 0);
    assert.equal(out(), 'STREAMED INPUT\n');
    assert.equal(err(), 'done\n');
  });
});

test('sessions: a TTY session outlives its client, is listed, re-attached and killed', async () => {
  await withSprite(client, 'js-sess', async sprite => {
    const first = sprite.createSession('sh', ['-c', 'echo started; exec sleep 120']);
    const info = await new Promise((resolve, reject) => {
      first.on('message', m => m?.type === 'session_info' && resolve(m));
      first.on('error', reject);
    });
    assert.equal(info.tty, true);
    const seen = collect(first.stdout);
    for (let i = 0; i < 100 && !seen().includes('started'); i++) await sleep(50);
    assert.ok(seen().includes('started'), seen());

    const id = String(info.session_id);
    const sessions = await sprite.listSessions();
    const mine = sessions.find(s => String(s.id) === id);
    assert.ok(mine, JSON.stringify(sessions));
    assert.equal(mine.tty, true);

    // Leave without ending it: the session keeps running.
    first.wsCmd.close();
    await sleep(300);
    assert.ok((await sprite.listSessions()).some(s => String(s.id) === id));

    const again = sprite.attachSession(id);
    const replay = collect(again.stdout);
    const exited = new Promise(resolve => again.on('exit', resolve));
    for (let i = 0; i < 100 && !replay().includes('started'); i++) await sleep(50);
    assert.ok(replay().includes('started'), `scrollback on attach: ${replay()}`);

    const events = [];
    for await (const ev of await sprite.killSession(id, 'SIGTERM', '5s')) events.push(ev);
    assert.equal(events.at(-1)?.type, 'complete', JSON.stringify(events));
    assert.ok(events.some(e => e.type === 'signal'), JSON.stringify(events));
    await exited;
    await assert.rejects(sprite.killSession(id), e => e instanceof APIError && e.statusCode === 410);
  });
});

async function drain(stream) {
  const msgs = [];
  let m;
  while ((m = await stream.next()) !== null) msgs.push(m);
  return msgs;
}

test('checkpoints: create, list, get, restore', async () => {
  await withSprite(client, 'js-ckpt', async sprite => {
    await sprite.execFile('sh', ['-c', 'echo clean > /home/sprite/state']);
    const made = await drain(await sprite.createCheckpoint('js clean'));
    assert.equal(made.at(-1)?.type, 'complete', JSON.stringify(made));
    const list = await sprite.listCheckpoints();
    assert.deepEqual(list.map(c => c.id), ['v0']);
    const cp = await sprite.getCheckpoint('v0');
    assert.equal(cp.comment, 'js clean');
    assert.ok(cp.createTime instanceof Date && !Number.isNaN(cp.createTime.getTime()));

    await sprite.execFile('sh', ['-c', 'echo broken > /home/sprite/state']);
    const restored = await drain(await sprite.restoreCheckpoint('v0'));
    assert.equal(restored.at(-1)?.type, 'complete', JSON.stringify(restored));
    assert.equal((await sprite.execFile('cat', ['/home/sprite/state'])).stdout, 'clean\n');
    await assert.rejects(sprite.getCheckpoint('v9'), /not found/i);
  });
});

test('a wrong token is refused', async () => {
  const bad = new SpritesClient('not-the-token', { baseURL: daemon.url });
  await assert.rejects(bad.listSprites(), e => e instanceof APIError && e.statusCode === 401);
});

test('services: create (streamed), list, get, signal, logs, stop, start, delete', async () => {
  await withSprite(client, 'js-svc', async sprite => {
    const created = [];
    for await (const ev of await sprite.createService(
      'js-web',
      { cmd: 'sh', args: ['-c', 'echo up; exec sleep 1000'], env: { X: '1' } },
      '1s',
    )) {
      created.push(ev);
    }
    assert.equal(created[0]?.type, 'started', JSON.stringify(created));
    assert.equal(created.at(-1)?.type, 'complete', JSON.stringify(created));
    assert.ok(created.some(e => e.type === 'stdout' && String(e.data).includes('up')), JSON.stringify(created));
    assert.deepEqual((await sprite.listServices()).map(s => s.name), ['js-web']);
    const svc = await sprite.getService('js-web');
    assert.deepEqual([svc.cmd, svc.env, svc.state?.status], ['sh', { X: '1' }, 'running']);
    assert.ok(svc.state.pid > 0);
    await sprite.signalService('js-web', 'SIGCONT');

    // getServiceLogs parses NDJSON messages: a `stdout` per log line, then
    // `complete` with the log's files.
    const logged = [];
    for await (const ev of await sprite.getServiceLogs('js-web', { lines: 10 })) logged.push(ev);
    assert.equal(logged.at(-1)?.type, 'complete', JSON.stringify(logged));
    const lines = logged.slice(0, -1);
    assert.ok(lines.length >= 1 && lines.length <= 10, JSON.stringify(logged));
    assert.ok(lines.every(e => e.type === 'stdout' && typeof e.data === 'string' && e.timestamp > 0), JSON.stringify(logged));
    assert.ok(lines.some(e => e.data === 'up\n'), JSON.stringify(logged));
    assert.deepEqual(logged.at(-1).logFiles, {
      stdout: '/.sprite/logs/js-web.log',
      stderr: '/.sprite/logs/js-web.log',
    });
    const one = [];
    for await (const ev of await sprite.getServiceLogs('js-web', { lines: 1 })) one.push(ev);
    assert.deepEqual(one.map(e => [e.type, e.data]), [['stdout', 'up\n'], ['complete', undefined]]);

    const stopped = [];
    for await (const ev of await sprite.stopService('js-web', '2s')) stopped.push(ev);
    assert.ok(stopped.some(e => e.type === 'stopped'), JSON.stringify(stopped));
    assert.equal((await sprite.getService('js-web')).state.status, 'stopped');
    const started = [];
    for await (const ev of await sprite.startService('js-web', '500ms')) started.push(ev);
    assert.equal(started.at(-1)?.type, 'complete', JSON.stringify(started));
    assert.equal((await sprite.getService('js-web')).state.status, 'running');

    await sprite.deleteService('js-web');
    assert.deepEqual(await sprite.listServices(), []);
  });
});

test('network policy', async () => {
  await withSprite(client, 'js-policy', async sprite => {
    const empty = await sprite.getNetworkPolicy();
    assert.deepEqual(empty.rules ?? [], []);
    await sprite.updateNetworkPolicy({
      rules: [
        { include: 'defaults' },
        { domain: 'example.com', action: 'allow' },
        { domain: '*', action: 'deny' },
      ],
    });
    const got = await sprite.getNetworkPolicy();
    assert.equal(got.rules.length, 3);
    assert.equal(got.rules[1].domain, 'example.com');
    assert.equal(got.rules[2].action, 'deny');
    const shown = await sprite.exec('cat /.sprite/policy/network.json');
    assert.match(String(shown.stdout), /example\.com/);
  });
});

// The cgroup's memory limit inside the sprite, in bytes (cgroup v1 or v2).
// The sprite's memory limit in bytes: its cgroup's (v1 or v2), or under
// gVisor (no host cgroup inside) the memory its kernel reports.
const MEMORY_LIMIT =
  'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max 2>/dev/null || ' +
  "echo $(( $(sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo) * 1024 ))";

test('restart: processes stopped, files kept', async () => {
  await withSprite(client, 'js-restart', async sprite => {
    await sprite.execFile('sh', ['-c', 'echo kept > /home/sprite/f; setsid sleep 1000 </dev/null >/dev/null 2>&1 &']);
    // `100[0]` keeps the checking script's own command line from matching.
    const sleeping = "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -q 'sleep 100[0]' && echo alive || echo gone";
    assert.equal((await sprite.execFile('sh', ['-c', sleeping])).stdout, 'alive\n');
    assert.ok(sprite.id);
    const r = await client.restartSprite('js-restart');
    assert.deepEqual(r, { spriteName: 'js-restart', machineId: sprite.id, message: r.message });
    assert.ok(r.message.length > 0);
    assert.equal((await sprite.execFile('sh', ['-c', sleeping])).stdout, 'gone\n');
    assert.equal((await sprite.execFile('cat', ['/home/sprite/f'])).stdout, 'kept\n');
    const again = await sprite.restart();
    assert.equal(again.machineId, sprite.id);
    await assert.rejects(client.restartSprite('js-no-such'), e => e instanceof APIError && e.statusCode === 404);
  });
});

test('resources policy: get, update, delete; the limit applies at the next start', async () => {
  await withSprite(client, 'js-resources', async sprite => {
    const limit = async () => (await sprite.execFile('sh', ['-c', MEMORY_LIMIT])).stdout;
    assert.deepEqual(await sprite.getResourcesPolicy(), { memory: { limitMB: 1024, autoscale: false } });
    await sprite.updateResourcesPolicy({ memory: { limitMB: 256 } });
    assert.deepEqual(await sprite.getResourcesPolicy(), { memory: { limitMB: 256, autoscale: false } });
    await sprite.restart();
    assert.equal(await limit(), `${256 * 1024 * 1024}\n`);
    await assert.rejects(
      sprite.updateResourcesPolicy({ memory: { limitMB: 512, autoscale: true } }),
      /status 400.*autoscale/,
    );
    await sprite.deleteResourcesPolicy();
    assert.deepEqual(await sprite.getResourcesPolicy(), { memory: { limitMB: 1024, autoscale: false } });
    await sprite.restart();
    assert.equal(await limit(), `${1024 * 1024 * 1024}\n`);
  });
});
