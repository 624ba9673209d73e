// Loads the console's modules. A browser on the daemon's own host sees the
// host's network change whenever a sprite starts (its link gets an
// address), and Chromium then fails the requests in flight
// (ERR_NETWORK_CHANGED). A module that fails to load is remembered as
// failed for the life of the page, so the page is loaded again, a few
// times, before it gives up and says why.

const KEY = 'console:boot-retries';
const MAX_RETRIES = 3;

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
