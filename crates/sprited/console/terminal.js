// The Terminal tab: an xterm.js terminal on a TTY exec WebSocket. The
// session id is kept in sessionStorage (term:<name>) so that a reload
// re-attaches to the same shell (scrollback, then live) while it runs.

import { Terminal } from './vendor/xterm/xterm.mjs';
import { FitAddon } from './vendor/xterm/addon-fit.mjs';
import { getJSON, request } from './api.js';
import { h } from './dom.js';
import { spritePath, wsUrl } from './url.js';
import {
  shellExecPath, attachPath, resizeMessage, parseTextFrame,
  decodeFrame, encodeStdin, toTerminalNewlines,
} from './exec_proto.js';

const encoder = new TextEncoder();

function storageGet(key) {
  try {
    return sessionStorage.getItem(key);
  } catch {
    return null;
  }
}

function storageSet(key, value) {
  try {
    if (value == null) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, value);
  } catch {
    // Storage refused (private mode): no re-attach after a reload.
  }
}

export function mountTerminal(panel, ctx) {
  const key = 'term:' + ctx.name;
  const status = h('span', { id: 'terminal-status', class: 'conn', role: 'status', 'aria-live': 'polite' }, 'connecting');
  const sessionEl = h('code', { id: 'terminal-session' }, '—');
  const newButton = h('button', { id: 'terminal-new', type: 'button', class: 'secondary small' }, 'New shell');
  const reconnectButton = h('button', { id: 'terminal-reconnect', type: 'button', class: 'secondary small', hidden: true }, 'Reconnect');
  const portsEl = h('span', { id: 'terminal-ports', class: 'muted', 'aria-live': 'polite' });
  const host = h('div', { id: 'terminal', class: 'terminal-host' });
  panel.append(
    h('h2', { class: 'sr-only' }, 'Terminal'),
    h('div', { class: 'toolbar terminal-bar' },
      h('span', {}, 'Connection: ', status),
      h('span', {}, 'Session: ', sessionEl),
      portsEl, reconnectButton, newButton,
      h('small', { class: 'muted hint' }, 'F6 moves the focus out of the terminal.')),
    host,
  );

  const term = new Terminal({
    cursorBlink: true,
    scrollback: 5000,
    fontSize: 14,
    fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace',
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(host);

  let ws = null;
  let exited = false;
  let tty = true; // false when attached to a non-TTY session (framed output)
  let prevCR = false;
  let started = false;
  let disposed = false;
  const ports = new Set();

  function setStatus(text) {
    status.textContent = text;
    status.className = 'conn conn-' + text.split(' ')[0];
    reconnectButton.hidden = text !== 'disconnected';
  }

  function doFit() {
    if (disposed || panel.hidden) return;
    try {
      fit.fit();
    } catch {
      // Not laid out yet (hidden): the next resize fits it.
    }
  }

  function send(data) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(data);
  }

  function sendInput(bytes) {
    send(tty ? bytes : encodeStdin(bytes));
  }

  term.onData((data) => sendInput(encoder.encode(data)));
  term.onBinary((data) => {
    const bytes = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 0xff;
    sendInput(bytes);
  });
  term.onResize(({ cols, rows }) => send(resizeMessage(cols, rows)));
  // F6 leaves the terminal (Tab is the shell's); everything else is typed.
  term.attachCustomKeyEventHandler((ev) => {
    if (ev.type === 'keydown' && ev.key === 'F6' && !ev.ctrlKey && !ev.altKey && !ev.metaKey) {
      newButton.focus();
      return false;
    }
    return true;
  });

  function onText(text) {
    const msg = parseTextFrame(text);
    if (!msg) return;
    if (msg.type === 'session_info') {
      tty = msg.tty !== false;
      sessionEl.textContent = String(msg.session_id);
      storageSet(key, String(msg.session_id));
    } else if (msg.type === 'exit') {
      finish(msg.exit_code);
    } else if (msg.type === 'port_opened' || msg.type === 'port_closed') {
      // The session's processes listen on these (the sprite URL serves 8080).
      if (msg.type === 'port_opened') ports.add(msg.port);
      else ports.delete(msg.port);
      portsEl.textContent = ports.size ? 'Listening: ' + [...ports].sort((a, b) => a - b).join(', ') : '';
    }
  }

  function finish(code) {
    exited = true;
    setStatus('exited ' + code);
    storageSet(key, null);
    term.write(`\r\n\x1b[2m[exited with status ${code}]\x1b[0m\r\n`);
  }

  function onBinary(u8) {
    if (tty) {
      term.write(u8);
      return;
    }
    const f = decodeFrame(u8);
    if (!f) return;
    if (f.stream === 'exit') finish(f.code);
    else {
      term.write(toTerminalNewlines(f.data, prevCR));
      prevCR = f.data.length > 0 && f.data[f.data.length - 1] === 0x0d;
    }
  }

  function closeSocket() {
    if (ws) {
      const old = ws;
      ws = null;
      try {
        old.close(1000, 'detached');
      } catch {
        // already closing
      }
    }
  }

  function connect(path) {
    closeSocket();
    exited = false;
    tty = true;
    prevCR = false;
    ports.clear();
    portsEl.textContent = '';
    setStatus('connecting');
    const sock = new WebSocket(wsUrl(location.protocol, location.host, path));
    sock.binaryType = 'arraybuffer';
    ws = sock;
    let opened = false;
    sock.onopen = () => {
      if (ws !== sock) return;
      opened = true;
      setStatus('connected');
      doFit();
      send(resizeMessage(term.cols, term.rows));
      if (ctx.isActive('terminal')) {
        const a = document.activeElement;
        if (!a || a === document.body || a.tagName === 'H1') term.focus();
      }
    };
    sock.onmessage = (ev) => {
      if (ws !== sock) return;
      if (typeof ev.data === 'string') onText(ev.data);
      else onBinary(new Uint8Array(ev.data));
    };
    sock.onclose = () => {
      if (ws !== sock) return;
      ws = null;
      if (exited) return;
      setStatus('disconnected');
      // A refused upgrade says nothing: an API call tells why (a 401
      // ends the session in api.js).
      if (!opened) {
        request(spritePath(ctx.name)).catch((e) => {
          if (e.status === 404) term.write('\r\n[the sprite is gone]\r\n');
        });
      }
    };
  }

  function newShell() {
    storageSet(key, null);
    sessionEl.textContent = '—';
    term.reset();
    doFit();
    connect(shellExecPath(ctx.name, { cols: term.cols, rows: term.rows }));
  }

  function attach(id) {
    sessionEl.textContent = String(id);
    // The scrollback is replayed on a clean screen.
    term.reset();
    doFit();
    connect(attachPath(ctx.name, id));
  }

  /** Whether session `id` still runs (is listed). */
  async function stillListed(id) {
    try {
      const list = await getJSON(spritePath(ctx.name, '/exec'), { signal: ctx.signal });
      return (list.sessions || []).some((s) => String(s.id) === String(id));
    } catch {
      return false;
    }
  }

  async function start() {
    const stored = storageGet(key);
    if (stored && (await stillListed(stored))) {
      if (!disposed) attach(stored);
      return;
    }
    if (!disposed) newShell();
  }

  newButton.addEventListener('click', () => {
    newShell();
    term.focus();
  });
  reconnectButton.addEventListener('click', async () => {
    const stored = storageGet(key);
    if (stored && (await stillListed(stored))) attach(stored);
    else newShell();
    term.focus();
  });

  // Fit to the box whenever it changes size (window, layout, tab shown).
  let frame = 0;
  const ro = new ResizeObserver(() => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(doFit);
  });
  ro.observe(host);

  return {
    show() {
      doFit();
      if (ctx.pendingAttach) {
        const id = ctx.pendingAttach;
        ctx.pendingAttach = null;
        started = true;
        attach(id);
        term.focus();
      } else if (!started) {
        started = true;
        start();
      }
    },
    unmount() {
      disposed = true;
      ro.disconnect();
      cancelAnimationFrame(frame);
      // Detach only: the shell keeps running for a later re-attach.
      closeSocket();
      term.dispose();
    },
  };
}
