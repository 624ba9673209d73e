// #/tokens (admin): the API tokens, a new one (its secret shown once),
// and revoking one.

import { getJSON, send, call, currentSession } from './api.js';
import { h, field, announce, busy, showError } from './dom.js';
import { confirmDialog } from './dialogs.js';
import { formatTime, relativeTime } from './format.js';

const ACTIONS = ['read', 'exec', 'manage'];

/** A token's scope in words. */
export function describeScope(scope) {
  if (!scope) return 'everything';
  if (scope.admin) return 'admin (everything, and tokens)';
  const which = [];
  if (scope.sprites && scope.sprites.length) which.push('sprites ' + scope.sprites.join(', '));
  if (scope.prefix) which.push(`sprites starting with “${scope.prefix}”`);
  const what = scope.actions && scope.actions.length ? scope.actions.join(', ') : 'every action';
  return `${which.length ? which.join(' or ') : 'every sprite'}: ${what}`;
}

export function mountTokens(container) {
  document.title = 'Tokens · sprited console';
  const ctl = new AbortController();
  const s = currentSession();
  container.append(h('div', { class: 'page-head' }, h('h1', {}, 'API tokens')));
  if (!s || !s.admin) {
    container.append(h('p', { class: 'error', role: 'alert' }, 'Managing tokens needs an admin token.'));
    return {};
  }

  const error = h('p', { id: 'tokens-error', class: 'error', role: 'alert' });
  const tbody = h('tbody');
  const table = h('table', { id: 'tokens', class: 'responsive' },
    h('caption', { class: 'sr-only' }, 'API tokens'),
    h('thead', {}, h('tr', {}, ['Name', 'Id', 'Created', 'Scope', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
    tbody);

  const name = h('input', { id: 'token-name', type: 'text', autocomplete: 'off', required: true });
  const admin = h('input', { id: 'token-admin', type: 'checkbox' });
  const sprites = h('input', { id: 'token-sprites', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'web, db' });
  const prefix = h('input', { id: 'token-prefix', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'ci-' });
  const actionBoxes = ACTIONS.map((a) => h('input', { id: 'token-action-' + a, type: 'checkbox', value: a, checked: true }));
  const submit = h('button', { id: 'token-submit', type: 'submit' }, 'Create token');
  const createError = h('p', { id: 'token-error', class: 'error', role: 'alert' });
  const limits = h('fieldset', { class: 'grid', id: 'token-limits' },
    h('legend', {}, 'What it reaches (empty: every sprite)'),
    field('Sprites by name (comma-separated)', sprites),
    field('Sprites whose name starts with', prefix),
    h('fieldset', { class: 'checks' }, h('legend', {}, 'Actions'),
      actionBoxes.map((b) => h('span', { class: 'field checkbox' }, b, h('label', { for: b.id }, b.value)))));
  const form = h('form', { id: 'token-create' },
    h('div', { class: 'grid' },
      field('Name', name),
      h('div', { class: 'field checkbox' }, admin, h('label', { for: 'token-admin' }, 'Admin (manages tokens, reaches everything)'))),
    limits, createError, h('div', { class: 'actions' }, submit));

  const secret = h('input', { id: 'new-token', type: 'text', readonly: true, spellcheck: 'false', autocomplete: 'off' });
  const copy = h('button', { id: 'new-token-copy', type: 'button', class: 'secondary small' }, 'Copy');
  const copyStatus = h('span', { class: 'muted', role: 'status', 'aria-live': 'polite' });
  const secretBox = h('section', { id: 'new-token-box', class: 'card notice', hidden: true, 'aria-labelledby': 'new-token-title' },
    h('h2', { id: 'new-token-title' }, 'New token'),
    h('p', {}, 'Copy it now: it is not shown again.'),
    h('div', { class: 'inline-form' }, field('Token', secret, { className: 'grow' }), copy, copyStatus));

  container.append(
    secretBox,
    h('section', { class: 'card', 'aria-labelledby': 'tokens-title' },
      h('h2', { id: 'tokens-title' }, 'Tokens'), error, h('div', { class: 'table-wrap' }, table)),
    h('section', { class: 'card', 'aria-labelledby': 'token-new-title' },
      h('h2', { id: 'token-new-title' }, 'New token'), form));

  async function load() {
    try {
      const res = await getJSON('/v1/tokens', { signal: ctl.signal });
      showError(error, '');
      render(res.tokens || []);
    } catch (e) {
      if (e.name !== 'AbortError') showError(error, 'Could not list the tokens: ' + e.message);
    }
  }

  function render(tokens) {
    tbody.replaceChildren();
    if (!tokens.length) {
      tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: '5' }, 'No tokens made yet (the admin token is not listed).')));
      return;
    }
    for (const t of tokens) {
      const revoke = h('button', { type: 'button', class: 'revoke danger small', 'aria-label': `Revoke ${t.name || t.id}` }, 'Revoke');
      const rowError = h('span', { class: 'row-error error', role: 'alert' });
      revoke.addEventListener('click', () => revokeToken(t, revoke, rowError));
      tbody.append(h('tr', { dataset: { token: t.id } },
        h('th', { scope: 'row', 'data-label': 'Name' }, t.name || '—'),
        h('td', { 'data-label': 'Id' }, h('code', {}, t.id)),
        h('td', { 'data-label': 'Created' }, h('time', { datetime: t.created_at, title: formatTime(t.created_at) }, relativeTime(t.created_at))),
        h('td', { 'data-label': 'Scope' }, describeScope(t.scope)),
        h('td', { class: 'actions', 'data-label': 'Actions' }, revoke, rowError)));
    }
  }

  async function revokeToken(t, button, rowError) {
    const ok = await confirmDialog(`Revoke the token “${t.name || t.id}”? Whatever uses it stops working at once.`,
      { title: 'Revoke token', yes: 'Revoke' });
    if (!ok) return;
    try {
      await busy(button, () => send('DELETE', '/v1/tokens/' + encodeURIComponent(t.id)));
      announce(`Token ${t.name || t.id} revoked`);
      load();
    } catch (e) {
      showError(rowError, e);
    }
  }

  function syncAdmin() {
    limits.disabled = admin.checked;
  }

  admin.addEventListener('change', syncAdmin);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showError(createError, '');
    const body = { name: name.value.trim() };
    if (!body.name) return showError(createError, 'Give the token a name.');
    const scope = {};
    if (admin.checked) scope.admin = true;
    else {
      const names = sprites.value.split(',').map((x) => x.trim()).filter(Boolean);
      if (names.length) scope.sprites = names;
      if (prefix.value.trim()) scope.prefix = prefix.value.trim();
      const acts = actionBoxes.filter((b) => b.checked).map((b) => b.value);
      if (!acts.length) return showError(createError, 'Choose at least one action.');
      if (acts.length < ACTIONS.length) scope.actions = acts;
    }
    if (Object.keys(scope).length) body.scope = scope;
    try {
      const made = await busy(submit, () => call('/v1/tokens', { method: 'POST', json: body }));
      secret.value = made.token;
      secretBox.hidden = false;
      copyStatus.textContent = '';
      secret.focus();
      secret.select();
      announce(`Token ${made.name} created; copy it now`);
      form.reset();
      actionBoxes.forEach((b) => (b.checked = true));
      syncAdmin();
      load();
    } catch (e) {
      showError(createError, e);
    }
  });
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(secret.value);
      copyStatus.textContent = 'Copied.';
    } catch {
      // No clipboard permission: leave it selected for Ctrl+C.
      secret.focus();
      secret.select();
      copyStatus.textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
    }
  });

  load();
  return {
    unmount() {
      ctl.abort();
      secret.value = '';
    },
  };
}
