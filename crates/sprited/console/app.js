// The console's entry point. csp.js must come first: it gives the CSP
// nonce to the <style> elements xterm.js creates.
import './csp.js';

import { request, call, setSession, currentSession, onUnauthorized } from './api.js';
import { parseRoute, samePage } from './router.js';
import { spriteWatch } from './watch.js';
import { h, replace, announce } from './dom.js';
import { mountList } from './list.js';
import { mountSprite } from './sprite.js';
import { mountHost } from './host.js';
import { mountTokens } from './tokens.js';

const $ = (id) => document.getElementById(id);

let current = null; // {route, view: {update?, unmount?}}

const VIEWS = {
  list: mountList,
  sprite: mountSprite,
  usage: mountHost,
  tokens: mountTokens,
  notfound: mountNotFound,
};

function mountNotFound(container, route) {
  container.append(
    h('h1', { tabindex: '-1' }, 'Not found'),
    h('p', {}, 'There is no page at ', h('code', {}, '#' + (route.path || '')), '. ', h('a', { href: '#/' }, 'Back to the sprites'), '.'),
  );
  return {};
}

function markNav(route) {
  const active = { list: 'nav-sprites', sprite: 'nav-sprites', usage: 'nav-usage', tokens: 'nav-tokens' }[route.view];
  for (const id of ['nav-sprites', 'nav-usage', 'nav-tokens']) {
    const a = $(id);
    if (id === active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

/** Show the page of the current hash (keeping the page if only its tab changed). */
function route() {
  if (!currentSession()) return;
  const r = parseRoute(location.hash);
  markNav(r);
  if (current && samePage(current.route, r) && current.view.update) {
    current.route = r;
    current.view.update(r);
    return;
  }
  unmountCurrent();
  const container = $('view');
  replace(container);
  let view = {};
  try {
    view = VIEWS[r.view](container, r) || {};
  } catch (e) {
    console.error('view', e);
    container.append(h('p', { class: 'error', role: 'alert' }, 'This page failed to load: ' + e.message));
  }
  current = { route: r, view };
  window.scrollTo(0, 0);
  // Focus moves to the new page's heading, so screen readers start there.
  const heading = container.querySelector('h1');
  if (heading) {
    if (!heading.hasAttribute('tabindex')) heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: true });
  }
}

function unmountCurrent() {
  if (current && current.view.unmount) {
    try {
      current.view.unmount();
    } catch (e) {
      console.error('unmount', e);
    }
  }
  current = null;
}

function showApp(s) {
  setSession(s);
  $('loading').hidden = true;
  $('signin-view').hidden = true;
  $('app-header').hidden = false;
  $('view').hidden = false;
  $('nav-tokens').hidden = !s.admin;
  $('session-scope').textContent = s.scope || (s.admin ? 'admin' : '');
  spriteWatch.start();
  route();
}

function showSignin(message = '') {
  setSession(null);
  spriteWatch.stop();
  unmountCurrent();
  replace($('view'));
  $('loading').hidden = true;
  $('app-header').hidden = true;
  $('view').hidden = true;
  $('signin-view').hidden = false;
  $('signin-error').textContent = message;
  const token = $('token');
  token.value = '';
  token.focus();
  document.title = 'Sign in · sprited console';
}

async function signIn(ev) {
  ev.preventDefault();
  const token = $('token').value.trim();
  const err = $('signin-error');
  const button = $('signin-submit');
  if (!token) {
    err.textContent = 'Enter an API token.';
    return;
  }
  err.textContent = '';
  button.disabled = true;
  try {
    const s = await call('/console/session', { method: 'POST', json: { token } });
    $('token').value = '';
    announce('Signed in');
    showApp(s);
  } catch (e) {
    err.textContent = e.status === 401 ? 'That token was not accepted. ' + (e.message || '') : e.message;
    $('token').focus();
  } finally {
    button.disabled = false;
  }
}

async function signOut() {
  const button = $('signout');
  button.disabled = true;
  try {
    await request('/console/session', { method: 'DELETE' });
  } catch (e) {
    // Signed out either way: a 401 means the session was already gone.
    if (e.status !== 401) console.warn('sign out', e);
  } finally {
    button.disabled = false;
  }
  showSignin();
  announce('Signed out');
}

async function start() {
  $('signin').addEventListener('submit', signIn);
  $('signout').addEventListener('click', signOut);
  window.addEventListener('hashchange', route);
  onUnauthorized(() => {
    if (currentSession()) showSignin('Your session has ended. Sign in again.');
  });
  try {
    const res = await request('/console/session');
    showApp(await res.json());
  } catch (e) {
    showSignin(e.status === 401 ? '' : e.message);
  }
}

start();
