// The message of a failed API call. Pure: no DOM.
//
// Sprites errors are {"error": "<code>", "message": "..."}; the fs
// endpoints answer {"error": "<message>", "code": "ENOENT", "path"}.

export function errorMessage(status, statusText, bodyText) {
  let body = null;
  if (bodyText) {
    try {
      body = JSON.parse(bodyText);
    } catch {
      body = null;
    }
  }
  if (body && typeof body === 'object') {
    if (typeof body.message === 'string' && body.message) return body.message;
    if (typeof body.error === 'string' && body.error) {
      return body.code && body.code !== body.error ? `${body.error} (${body.code})` : body.error;
    }
  }
  if (typeof bodyText === 'string') {
    const t = bodyText.trim();
    // A short plain-text answer says more than the status line.
    if (t && t.length <= 300 && !t.startsWith('<')) return t;
  }
  const line = `${status} ${statusText || ''}`.trim();
  return line || 'the request failed';
}
