// The live state of the sprites: GET /v1/sprites as NDJSON (the current
// state of each sprite, then a line per change, heartbeats every 15 s),
// kept open while signed in and reopened with backoff when it ends.

import { request } from './api.js';
import { readNdjson } from './ndjson.js';

const STALL_MS = 45_000; // three missed heartbeats: the stream is dead
const MAX_BACKOFF_MS = 30_000;

class SpriteWatch {
  constructor() {
    this.statuses = new Map(); // name → last state line
    this.org = null; // {running, warm, cold, ...}
    this.listeners = new Set();
    this.running = false;
    this.abort = null;
    this.connected = false;
    this.gen = 0; // a stop-then-start must not leave two loops running
  }

  /** fn(event): {kind: "sprite", name, status, line} | {kind: "org", org} | {kind: "connected"} | {kind: "disconnected"}. */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  statusOf(name) {
    const line = this.statuses.get(name);
    return line ? line.status : undefined;
  }

  emit(ev) {
    for (const fn of [...this.listeners]) {
      try {
        fn(ev);
      } catch (e) {
        console.error('sprite watch listener', e);
      }
    }
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.loop(++this.gen);
  }

  stop() {
    this.running = false;
    this.gen++;
    if (this.abort) this.abort.abort();
    this.abort = null;
    this.statuses.clear();
    this.org = null;
    this.connected = false;
  }

  async loop(gen) {
    let backoff = 1000;
    const live = () => this.running && this.gen === gen;
    while (live()) {
      const ctl = new AbortController();
      this.abort = ctl;
      let timer = null;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => ctl.abort(), STALL_MS);
      };
      try {
        arm();
        const res = await request('/v1/sprites', { accept: 'application/x-ndjson', signal: ctl.signal });
        if (!live()) break;
        this.connected = true;
        // A fresh stream starts with every sprite's state: listeners
        // reload what they show, as sprites may have gone meanwhile.
        this.emit({ kind: 'connected' });
        for await (const line of readNdjson(res.body)) {
          if (!live()) break;
          arm();
          backoff = 1000;
          this.handle(line);
        }
      } catch (e) {
        if (e && e.status === 401) {
          if (live()) this.running = false; // api.js has ended the session
        }
      } finally {
        clearTimeout(timer);
        if (!live()) ctl.abort();
      }
      if (!live()) break;
      if (this.connected) {
        this.connected = false;
        this.emit({ kind: 'disconnected' });
      }
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }

  handle(line) {
    if (!line || typeof line !== 'object') return;
    if (line.org) {
      this.org = line.org;
      this.emit({ kind: 'org', org: line.org });
    }
    if (line.type === 'heartbeat' || !line.name || !line.status) return;
    if (line.status === 'destroyed') this.statuses.delete(line.name);
    else this.statuses.set(line.name, line);
    this.emit({ kind: 'sprite', name: line.name, status: line.status, line });
  }
}

export const spriteWatch = new SpriteWatch();
