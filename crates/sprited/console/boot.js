// Loads the console's modules. Chromium fails the requests it has in
// flight when its host's addresses change (ERR_NETWORK_CHANGED): a browser
// on the daemon's own host meets it when something there adds or removes
// an address (sprite starts do not: their host links have none). A module
// that fails to load is remembered as failed for the life of the page, so
// the page is loaded again, a few times, before it gives up and says why.
// Each such reload is counted under RETRIED for the session's life (the
// browser tests expect none).

const KEY = 'console:boot-retries';
const MAX_RETRIES = 3;
const RETRIED = 'console:network-retries';

function retries() {
  try {
    return Number(sessionStorage.getItem(KEY) || 0);
  } catch {
    return MAX_RETRIES;
  }
}

function setRetries(n) {
  try {
    if (n) sessionStorage.setItem(KEY, String(n));
    else sessionStorage.removeItem(KEY);
  } catch {
    // Storage refused: no retries, the error shows at once.
  }
}

import('./app.js')
  .then(() => setRetries(0))
  .catch((e) => {
    const n = retries();
    if (n < MAX_RETRIES) {
      setRetries(n + 1);
      try {
        sessionStorage.setItem(RETRIED, String(Number(sessionStorage.getItem(RETRIED) || 0) + 1));
      } catch {
        // Not counted.
      }
      setTimeout(() => location.reload(), 250 * (n + 1));
      return;
    }
    setRetries(0);
    const p = document.getElementById('loading');
    if (p) {
      p.textContent = `The console failed to load (${e && e.message ? e.message : e}). Reload the page to try again.`;
      p.setAttribute('role', 'alert');
    }
  });
