// A real sprited for the JS SDK tests, as conftest.py starts one for the
// Python SDK: debug build, tiny image, its own port, token and data dir
// under /var/tmp, stopped by its pid and purged afterwards.

import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..', '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');

function binary(name) {
  for (const profile of ['debug', 'release']) {
    const p = path.join(TARGET, profile, name);
    if (existsSync(p)) return p;
  }
  throw new Error(`${name} is not built under ${TARGET}: run scripts/build.sh first`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = ms => new Promise(r => setTimeout(r, ms));

// SPRITES_CONTROL_MODE=1: the suites' clients are made with
// controlMode: true, and a daemon's stop fails unless commands really ran
// on its control WebSocket (the SDK falls back to the plain exec WebSocket
// silently on any error).
export const CONTROL_MODE = process.env.SPRITES_CONTROL_MODE === '1';

// How many operations of `kind` a daemon ran on control WebSockets.
export async function controlOps(url, token, kind = 'exec') {
  const r = await fetch(`${url}/metrics`, { headers: { Authorization: `Bearer ${token}` } });
  const line = (await r.text())
    .split('\n')
    .find(l => l.startsWith(`sprited_control_operations_total{op="${kind}"}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

async function startOne(token, extraEnv = {}, extraArgs = []) {
  const sprited = binary('sprited');
  const dataDir = mkdtempSync('/var/tmp/sprited-compat-js-');
  const logPath = `${dataDir}.log`;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const log = openSync(logPath, 'a');
  const proc = spawn(
    sprited,
    ['--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--default-image', 'tiny',
     // The isolation level of the run (CI runs the suites at both).
     '--isolation', process.env.SPRITED_TEST_ISOLATION || 'container', ...extraArgs],
    { env: { ...process.env, SPRITED_TOKEN: token, RUST_LOG: 'info', ...extraEnv }, stdio: ['ignore', log, log] },
  );
  closeSync(log);
  let exited = null;
  const exit = new Promise(resolve => proc.once('exit', code => { exited = code; resolve(code); }));

  let controlExecs = 0;
  const stop = async () => {
    if (exited === null) {
      if (CONTROL_MODE) controlExecs = await controlOps(url, token).catch(() => 0);
      proc.kill('SIGTERM');
      // The timer is cleared once the daemon is gone: a pending one would
      // keep this test file's process alive for the rest of its 10 s.
      let timer;
      const timeout = new Promise(resolve => { timer = setTimeout(() => resolve(false), 10_000); });
      const killed = await Promise.race([exit.then(() => true), timeout]);
      clearTimeout(timer);
      if (!killed) {
        proc.kill('SIGKILL');
        await exit;
      }
    }
    try {
      execFileSync(sprited, ['purge', '--data-dir', dataDir], { stdio: 'ignore' });
    } finally {
      rmSync(logPath, { force: true });
    }
    if (CONTROL_MODE && controlExecs === 0) {
      throw new Error('SPRITES_CONTROL_MODE=1 but no command ran on a control WebSocket');
    }
  };

  const deadline = Date.now() + 120_000;
  for (;;) {
    if (exited !== null) {
      await stop().catch(() => {});
      throw new Error(`sprited exited with ${exited} before it served`);
    }
    try {
      const r = await fetch(`${url}/v1/sprites`, { headers: { Authorization: `Bearer ${token}` } });
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop().catch(() => {});
      throw new Error('sprited did not come up in 120 s');
    }
    await sleep(100);
  }
  return { url, token, stop, controlMode: CONTROL_MODE };
}

// SPRITED_TEST_CLUSTER=postgres: three hosts share a PostgreSQL database of
// the run's own (../postgres.sh) and one object store, and the suite talks
// to host SPRITED_TEST_CLUSTER_ASK (1, 2 or 3; default 3), cordoned
// (`--cordon`: it takes no sprite), so the sprites are placed on the other
// two and every request about one is forwarded: every sprite lives on
// another host than the one asked.
export const CLUSTER = process.env.SPRITED_TEST_CLUSTER === 'postgres';
const ASKED = Number(process.env.SPRITED_TEST_CLUSTER_ASK || '3');

export async function startDaemon() {
  const token = randomBytes(16).toString('hex');
  if (!CLUSTER) return startOne(token);
  const pgDir = mkdtempSync('/var/tmp/sprited-compat-js-pg-');
  const pgScript = path.join(import.meta.dirname, '..', 'postgres.sh');
  const started = [];
  const stopAll = async () => {
    for (const d of started.reverse()) await d.stop().catch(() => {});
    try {
      execFileSync(pgScript, ['stop', pgDir], { stdio: 'ignore' });
    } finally {
      rmSync(pgDir, { recursive: true, force: true });
    }
  };
  try {
    const dbUrl = execFileSync(pgScript, ['start', pgDir, String(await freePort())]).toString().trim();
    mkdirSync(path.join(pgDir, 'objects'));
    for (const i of [1, 2, 3]) {
      const extra = i === ASKED ? ['--cordon'] : [];
      started.push(await startOne(token, { SPRITED_DATABASE: dbUrl },
        ['--host-id', `h${i}`, '--object-store', `file://${path.join(pgDir, 'objects')}`, ...extra]));
    }
  } catch (e) {
    await stopAll();
    throw e;
  }
  const front = started[ASKED - 1];
  return { url: front.url, hosts: started.map(d => d.url), token, stop: stopAll, controlMode: CONTROL_MODE };
}

// Run fn with a new sprite made by `client`; the sprite is deleted after.
export async function withSprite(client, name, fn) {
  const sprite = await client.createSprite(name);
  try {
    return await fn(sprite);
  } finally {
    await client.deleteSprite(name).catch(() => {});
  }
}
