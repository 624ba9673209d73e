// Hash routes: #/ (list), #/sprites/<name>[/<tab>], #/usage, #/tokens.
// Pure: parsing and building only; app.js listens to hashchange.

export const TABS = ['terminal', 'sessions', 'files', 'checkpoints', 'services', 'usage', 'settings'];

function decode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** A page hash ("#/sprites/web/files") → {view, name?, tab?}. */
export function parseRoute(hash) {
  let h = String(hash || '');
  if (h.startsWith('#')) h = h.slice(1);
  // A query after the path is not used; drop it.
  const q = h.indexOf('?');
  if (q >= 0) h = h.slice(0, q);
  const parts = h.split('/').filter((p) => p !== '');
  if (parts.length === 0) return { view: 'list' };
  if (parts[0] === 'sprites' && parts.length >= 2) {
    const name = decode(parts[1]);
    const tab = parts.length >= 3 && TABS.includes(parts[2]) ? parts[2] : 'terminal';
    return { view: 'sprite', name, tab };
  }
  if (parts[0] === 'sprites' && parts.length === 1) return { view: 'list' };
  if (parts.length === 1 && (parts[0] === 'usage' || parts[0] === 'tokens')) return { view: parts[0] };
  return { view: 'notfound', path: h };
}

/** The hash of a sprite's page (the terminal tab is the bare page). */
export function spriteHash(name, tab = 'terminal') {
  const base = '#/sprites/' + encodeURIComponent(name);
  return tab && tab !== 'terminal' ? base + '/' + tab : base;
}

/** Whether two routes show the same page (only the tab may differ). */
export function samePage(a, b) {
  if (!a || !b || a.view !== b.view) return false;
  return a.view !== 'sprite' || a.name === b.name;
}
