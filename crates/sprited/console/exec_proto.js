// The exec WebSocket's protocol, as the terminal speaks it. Pure: no DOM.

import { withQuery, spritePath } from './url.js';

/** A login shell: bash if the sprite has it, else sh. */
export const LOGIN_SCRIPT =
  'if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi';

/** The path (with query) of a new TTY login shell of the given size. */
export function shellExecPath(name, { cols, rows }) {
  return withQuery(spritePath(name, '/exec'), {
    cmd: ['/bin/sh', '-c', LOGIN_SCRIPT],
    tty: 'true',
    stdin: 'true',
    cols: Math.max(1, cols | 0),
    rows: Math.max(1, rows | 0),
    env: 'TERM=xterm-256color',
  });
}

/** The path that re-attaches to session `id`. */
export function attachPath(name, id) {
  return spritePath(name, '/exec/' + encodeURIComponent(id));
}

export function resizeMessage(cols, rows) {
  return JSON.stringify({ type: 'resize', cols: cols | 0, rows: rows | 0 });
}

/** A server text frame as an object, or null if it is not one. */
export function parseTextFrame(text) {
  try {
    const v = JSON.parse(text);
    return v && typeof v === 'object' && typeof v.type === 'string' ? v : null;
  } catch {
    return null;
  }
}

// Non-TTY framing: the first byte of each binary frame is its stream.
export const STREAM_STDIN = 0x00;
export const STREAM_STDOUT = 0x01;
export const STREAM_STDERR = 0x02;
export const STREAM_EXIT = 0x03;
export const STDIN_EOF = 0x04;

/**
 * A non-TTY server frame: {stream: "stdout"|"stderr", data: Uint8Array},
 * {stream: "exit", code}, or null for an empty or unknown one.
 */
export function decodeFrame(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (u8.length === 0) return null;
  switch (u8[0]) {
    case STREAM_STDOUT:
      return { stream: 'stdout', data: u8.subarray(1) };
    case STREAM_STDERR:
      return { stream: 'stderr', data: u8.subarray(1) };
    case STREAM_EXIT:
      return { stream: 'exit', code: u8.length > 1 ? u8[1] : 0 };
    default:
      return null;
  }
}

/** A non-TTY stdin frame carrying `data`. */
export function encodeStdin(data) {
  const out = new Uint8Array(data.length + 1);
  out[0] = STREAM_STDIN;
  out.set(data, 1);
  return out;
}

/**
 * Output of a non-TTY stream for a terminal: bare "\n" become "\r\n" (no
 * pty translates them). `prevCR` says whether the last chunk ended in "\r".
 */
export function toTerminalNewlines(u8, prevCR = false) {
  let extra = 0;
  for (let i = 0; i < u8.length; i++) {
    if (u8[i] === 0x0a && !(i === 0 ? prevCR : u8[i - 1] === 0x0d)) extra++;
  }
  if (extra === 0) return u8;
  const out = new Uint8Array(u8.length + extra);
  let j = 0;
  for (let i = 0; i < u8.length; i++) {
    if (u8[i] === 0x0a && !(i === 0 ? prevCR : u8[i - 1] === 0x0d)) out[j++] = 0x0d;
    out[j++] = u8[i];
  }
  return out;
}
