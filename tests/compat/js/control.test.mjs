// @fly/sprites' control mode against sprited's `/v1/sprites/{name}/control`:
// a controlMode client's commands run on the SDK's pool of control
// WebSockets (the daemon counts them, so the SDK's silent fallback to the
// plain exec WebSocket would fail this file), and the connection's and
// operation's own calls work as the SDK documents them.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { SpritesClient, ControlConnection, ExecError } from '@fly/sprites';
import { startDaemon, withSprite, controlOps } from './daemon.mjs';
import { recordCalls, assertCalled } from './surface.mjs';

recordCalls();

let daemon;
let client;

before(async () => {
  daemon = await startDaemon();
  client = new SpritesClient(daemon.token, { baseURL: daemon.url, controlMode: true });
});

after(async () => {
  await daemon?.stop();
  assertCalled('control.test.mjs');
});

// Summed over the hosts (a cluster runs each sprite on one of them).
const ops = async () => {
  let n = 0;
  for (const url of daemon.hosts ?? [daemon.url]) n += await controlOps(url, daemon.token);
  return n;
};

// Run an operation to its end; what it wrote and its exit code.
async function run(cc, options, feed) {
  const op = await cc.startOp('exec', options);
  const out = [];
  const err = [];
  const texts = [];
  op.on('stdout', d => out.push(d));
  op.on('stderr', d => err.push(d));
  op.on('message', m => texts.push(m));
  if (feed) await feed(op);
  const code = await op.wait();
  return { op, code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), texts };
}

test('commands of a controlMode client run on the control WebSocket', async () => {
  await withSprite(client, 'js-control', async sprite => {
    assert.equal(sprite.useControlMode(), true);
    const before = await ops();
    for (let i = 0; i < 10; i++) {
      const r = await sprite.execFile('sh', ['-c', `echo out${i}; echo err${i} >&2`]);
      assert.deepEqual([r.stdout, r.stderr, r.exitCode], [`out${i}\n`, `err${i}\n`, 0]);
    }
    const env = await sprite.execFile('sh', ['-c', 'echo "$A" && pwd'], { env: { A: 'b c' }, cwd: '/tmp' });
    assert.equal(env.stdout, 'b c\n/tmp\n');
    assert.equal(await ops() - before, 11, 'every command went through /control');
    // A failure is an ExecError with the command's status. (The SDK then
    // also retries it on the plain exec WebSocket: its own fallback.)
    await assert.rejects(sprite.execFile('sh', ['-c', 'exit 3']), e => e instanceof ExecError && e.exitCode === 3);
    assert.equal(sprite.hasControlConnection(), true);
    sprite.closeControlConnection();
    assert.equal(sprite.hasControlConnection(), false);
  });
});

test('a control connection driven by hand', async () => {
  await withSprite(client, 'js-control-ops', async sprite => {
    const cc = await sprite.getControlConnection();
    assert.equal(cc.isActive(), true);
    assert.equal(cc.isClosed(), false);

    // Stdin and EOF, exit status from op.complete, session_info as a message.
    let r = await run(cc, { cmd: ['sh', '-c', 'read x; echo got $x >&2; exit 4'], stdin: true }, async op => {
      op.write(Buffer.from('it\n'));
      op.sendEOF();
    });
    assert.equal(r.code, 4);
    assert.equal(r.op.getExitCode(), 4);
    assert.equal(r.stderr, 'got it\n');
    assert.equal(r.op.isClosed(), true);
    assert.ok(r.texts.some(t => t.type === 'session_info'), JSON.stringify(r.texts));

    // TTY: the SDK sends its resize as a binary frame.
    r = await run(cc, { cmd: ['sh', '-c', 'sleep 0.5; stty size'], tty: true, rows: 24, cols: 80 }, async op => {
      op.resize(132, 43);
    });
    assert.equal(r.code, 0);
    assert.match(r.stdout, /43 132/);

    // A signal (also a binary frame from this SDK).
    r = await run(cc, { cmd: ['sleep', '30'] }, async op => {
      await new Promise(res => setTimeout(res, 300));
      op.signal('TERM');
    });
    assert.equal(r.code, 143);

    // The pool's bookkeeping, as the SDK calls it on release.
    cc.setActive(false);
    cc.clearOpConn();
    assert.equal(cc.isActive(), false);
    cc.sendData(Buffer.from([4])); // a stray EOF between operations is ignored
    r = await run(cc, { cmd: ['echo', 'after'] });
    assert.equal(r.stdout, 'after\n');

    // The SDK's own handlers, fed by hand.
    const op = await cc.startOp('exec', { cmd: ['true'] });
    op.handleText('{"type":"note"}');
    op.handleData(Buffer.from([1, 104, 105]));
    op.complete(0);
    assert.equal(await op.wait(), 0);
    op.close();

    const direct = new ControlConnection(sprite);
    await direct.connect();
    r = await run(direct, { cmd: ['echo', 'direct'] });
    assert.equal(r.stdout, 'direct\n');
    direct.close();
    assert.equal(direct.isClosed(), true);
    cc.close();
    sprite.closeControlConnection();
  });
});
