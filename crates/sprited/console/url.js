// Query strings for the API. Pure: no DOM.
//
// Always percent-encoded with encodeURIComponent (space is %20, "+" is
// %2B): the fs endpoints decode their paths as raw percent-encoded bytes
// and would take a "+" (URLSearchParams' space) literally.

/**
 * {cmd: ["a", "b"], tty: true, skip: undefined} → "cmd=a&cmd=b&tty=true".
 * Arrays repeat the key; null and undefined are left out.
 */
export function queryString(params) {
  const parts = [];
  for (const [key, value] of Object.entries(params || {})) {
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) {
      if (v === undefined || v === null) continue;
      parts.push(encodeURIComponent(key) + '=' + encodeURIComponent(String(v)));
    }
  }
  return parts.join('&');
}

/** A path with its query ("?" only when there is one). */
export function withQuery(path, params) {
  const q = queryString(params);
  return q ? path + '?' + q : path;
}

/** The API path of a sprite, with the rest of the path appended. */
export function spritePath(name, rest = '') {
  return '/v1/sprites/' + encodeURIComponent(name) + rest;
}

/** The WebSocket URL of an API path on this page's host. */
export function wsUrl(pageProtocol, host, path) {
  return (pageProtocol === 'https:' ? 'wss://' : 'ws://') + host + path;
}
