// Every public call of the installed @fly/sprites, and where each is held.
//
// publicNames() reads the package itself: the prototypes (inherited members
// too, under the exported class that offers them) and static members of
// every class the package exports, its exported functions, and the methods
// of the interfaces it declares (Stats, Dirent), as `Class.member` or
// `function`; members its .d.ts files declare private or protected are not
// public. surface.test.mjs fails when that set and the lists below disagree,
// in either direction. Each test file calls recordCalls() and, after its
// tests, assertCalled(file): every call listed for that file must have been
// made (the wrappers call the SDK's own functions, unchanged).

import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import * as sdk from '@fly/sprites';

const DIST = path.join(import.meta.dirname, 'node_modules', '@fly', 'sprites', 'dist');

// Calls whose server side is another change's: tested in that file.
// createToken posts to https://api.sprites.dev whatever baseURL says.
export const ELSEWHERE = {
  'SpritesClient.watchSprites': 'watch.test.mjs',
  'SpriteListStream.next': 'watch.test.mjs',
  'SpriteListStream.processAll': 'watch.test.mjs',
  'SpriteListStream.close': 'watch.test.mjs',
  'SpriteFilesystem.watch': 'watch.test.mjs',
  'FilesystemWatcher.connect': 'watch.test.mjs',
  'FilesystemWatcher.next': 'watch.test.mjs',
  'FilesystemWatcher.close': 'watch.test.mjs',
  'FilesystemWatcher.isClosed': 'watch.test.mjs',
  'SpritesClient.createToken': 'tokens.test.mjs',
};

// Every other public call, by the file that makes it and checks its result.
export const TESTED = {
  'control.test.mjs': [
    'Sprite.getControlConnection', 'Sprite.closeControlConnection', 'Sprite.hasControlConnection',
    ...['isActive', 'setActive', 'clearOpConn', 'connect', 'startOp', 'sendData', 'close', 'isClosed']
      .map(m => `ControlConnection.${m}`),
    ...['write', 'sendEOF', 'resize', 'signal', 'handleData', 'handleText', 'complete', 'close',
      'isClosed', 'getExitCode', 'wait'].map(m => `OpConn.${m}`),
  ],
  'sprites.test.mjs': [
    'SpritesClient.createSprite', 'SpritesClient.getSprite', 'SpritesClient.listSprites',
    'SpritesClient.listAllSprites', 'SpritesClient.updateSprite', 'SpritesClient.deleteSprite',
    'SpritesClient.restartSprite',
    'Sprite.execFileHTTP', 'Sprite.execFile', 'Sprite.exec', 'Sprite.spawn',
    'Sprite.createSession', 'Sprite.listSessions', 'Sprite.attachSession', 'Sprite.killSession',
    'Sprite.createCheckpoint', 'Sprite.listCheckpoints', 'Sprite.getCheckpoint',
    'Sprite.restoreCheckpoint', 'Sprite.restart',
    'Sprite.createService', 'Sprite.listServices', 'Sprite.getService', 'Sprite.signalService',
    'Sprite.getServiceLogs', 'Sprite.stopService', 'Sprite.startService', 'Sprite.deleteService',
    'Sprite.getNetworkPolicy', 'Sprite.updateNetworkPolicy',
    'Sprite.getResourcesPolicy', 'Sprite.updateResourcesPolicy', 'Sprite.deleteResourcesPolicy',
    'SpriteCommand.wait', 'SessionKillStream.next', 'CheckpointStream.next', 'RestoreStream.next',
    'ServiceLogStream.next', 'ExecError.exitCode', 'ExecError.stdout',
  ],
  'filesystem.test.mjs': [
    'Sprite.filesystem',
    ...['readFile', 'writeFile', 'readdir', 'mkdir', 'rm', 'stat', 'rename', 'copyFile', 'chmod',
      'exists', 'chown', 'appendFile', 'readJSON', 'writeJSON'].map(m => `SpriteFilesystem.${m}`),
    'Stats.isFile', 'Stats.isDirectory', 'Dirent.isDirectory', 'Dirent.isFile',
  ],
  'sweep.test.mjs': [
    'SpritesClient.sprite', 'SpritesClient.upgradeSprite', 'SpritesClient.updateURLSettings',
    'Sprite.delete', 'Sprite.destroy', 'Sprite.upgrade', 'Sprite.updateURLSettings', 'Sprite.update',
    'Sprite.useControlMode', 'Sprite.watchPorts', 'Sprite.proxyPort', 'Sprite.proxyPorts',
    'Sprite.restartService', 'SpritesClient.checkSprite', 'Sprite.check',
    'SpriteCommand.start', 'SpriteCommand.kill', 'SpriteCommand.signal', 'SpriteCommand.resize',
    'SpriteCommand.exitCode',
    'SessionKillStream.processAll', 'SessionKillStream.close',
    'CheckpointStream.processAll', 'CheckpointStream.close',
    'RestoreStream.processAll', 'RestoreStream.close',
    'ServiceLogStream.processAll', 'ServiceLogStream.close',
    'PortWatcher.connect', 'PortWatcher.next', 'PortWatcher.close', 'PortWatcher.isClosed',
    'ProxySession.start', 'ProxySession.localAddr', 'ProxySession.close', 'ProxySession.wait',
    'ProxyManager.addSession', 'ProxyManager.closeAll', 'ProxyManager.waitAll',
    'proxyPort', 'proxyPorts', 'parseAPIError',
    'APIError.isRateLimitError', 'APIError.isCreationRateLimited',
    'APIError.isConcurrentLimitExceeded', 'APIError.getRetryAfterSeconds',
    'ExecError.stderr',
    'Stats.isSymbolicLink', 'Dirent.isSymbolicLink',
    'Sprite.getPrivilegesPolicy', 'Sprite.updatePrivilegesPolicy', 'Sprite.deletePrivilegesPolicy',
  ],
};

const isClass = v => typeof v === 'function' && /^class\b/.test(Function.prototype.toString.call(v));

// Per class (or interface) of the .d.ts files: its private or protected
// members, and its method signatures.
function declarations() {
  const hidden = new Map();
  const methods = new Map();
  for (const file of readdirSync(DIST).filter(f => f.endsWith('.d.ts'))) {
    const text = readFileSync(path.join(DIST, file), 'utf8');
    const blocks = text.matchAll(/(?:declare class|export interface) (\w+)[^{]*\{([\s\S]*?)\n\}/g);
    for (const [whole, name, body] of blocks) {
      if (whole.includes('declare class')) {
        const names = [...body.matchAll(/^\s+(?:private|protected)\s+(?:readonly\s+)?(\w+)/gm)].map(m => m[1]);
        hidden.set(name, new Set(names));
      } else {
        const names = [...body.matchAll(/^\s+(\w+)\(\)\s*:/gm)].map(m => m[1]);
        if (names.length) methods.set(name, names);
      }
    }
  }
  return { hidden, methods };
}

// [name, holder, key, descriptor] for each public member of an exported class.
function members() {
  const { hidden, methods } = declarations();
  const out = [];
  for (const [exported, value] of Object.entries(sdk)) {
    if (!isClass(value)) continue;
    const seen = new Set();
    for (let proto = value.prototype; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
      const owner = proto.constructor;
      // Node's own classes (EventEmitter, Error) are not the SDK's surface.
      if (owner === Error || owner.name === 'EventEmitter') break;
      for (const key of Object.getOwnPropertyNames(proto)) {
        if (key === 'constructor' || seen.has(key)) continue;
        seen.add(key);
        if (hidden.get(owner.name)?.has(key)) continue;
        out.push([`${exported}.${key}`, value.prototype, key, Object.getOwnPropertyDescriptor(proto, key)]);
      }
    }
    for (const key of Object.getOwnPropertyNames(value)) {
      if (['length', 'name', 'prototype'].includes(key)) continue;
      out.push([`${exported}.${key}`, value, key, Object.getOwnPropertyDescriptor(value, key)]);
    }
  }
  return { out, methods };
}

export function publicNames() {
  const { out, methods } = members();
  const names = new Set(out.map(([name]) => name));
  for (const [value, key] of Object.entries(sdk).map(([k, v]) => [v, k])) {
    if (typeof value === 'function' && !isClass(value)) names.add(key);
  }
  for (const [iface, ms] of methods) for (const m of ms) names.add(`${iface}.${m}`);
  return names;
}

export const called = new Set();

function wrap(name, fn, after) {
  return function (...args) {
    called.add(name);
    const result = fn.apply(this, args);
    return after ? after(result) : result;
  };
}

// The objects `stat` and `readdir` answer are of classes the package does
// not export: their methods are recorded under the interface names.
function recordInstances(iface) {
  const { methods } = declarations();
  const patched = new WeakSet();
  const patch = obj => {
    const proto = obj && Object.getPrototypeOf(obj);
    if (!proto || patched.has(proto)) return;
    patched.add(proto);
    for (const m of methods.get(iface) ?? []) {
      if (typeof proto[m] === 'function') proto[m] = wrap(`${iface}.${m}`, proto[m]);
    }
  };
  return result => Promise.resolve(result).then(v => {
    for (const item of Array.isArray(v) ? v : [v]) if (item && typeof item === 'object') patch(item);
    return v;
  });
}

const AFTER = {
  'SpriteFilesystem.stat': recordInstances('Stats'),
  'SpriteFilesystem.readdir': recordInstances('Dirent'),
};

let recording = false;

// Wrap every public member so that calling it notes its name in `called`.
export function recordCalls() {
  if (recording) return;
  recording = true;
  for (const [name, holder, key, desc] of members().out) {
    if (desc.get) {
      Object.defineProperty(holder, key, { ...desc, get: wrap(name, desc.get) });
    } else if (typeof desc.value === 'function') {
      Object.defineProperty(holder, key, { ...desc, value: wrap(name, desc.value, AFTER[name]) });
    }
  }
}

// The exported functions, recorded (an ES module's bindings cannot be
// replaced from outside, so tests call them through this object).
export const fns = Object.fromEntries(
  Object.entries(sdk)
    .filter(([, v]) => typeof v === 'function' && !isClass(v))
    .map(([k, v]) => [k, wrap(k, v)]),
);

// A run narrowed to some tests (by name, or to `.only` ones) makes only
// some calls: no check then.
const narrowed = process.execArgv.some(a => /^--test-(name-pattern|skip-pattern|only)\b/.test(a));

export function assertCalled(file) {
  if (narrowed) return;
  const missing = TESTED[file].filter(n => !called.has(n));
  if (missing.length) {
    throw new Error(`${file}: public calls listed as tested here were never made: ${missing.join(', ')}`);
  }
}
