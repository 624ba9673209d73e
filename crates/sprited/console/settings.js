// The Settings tab: the sprite's URL and who may open it, its network
// policy (egress rules), its memory limit, and destroying it.

import { getJSON, send, call } from './api.js';
import { h, field, announce, busy, showError } from './dom.js';
import { confirmDialog } from './dialogs.js';
import { spritePath } from './url.js';
import { urlLink } from './list.js';
import { formatMB, formatBytes, formatTime } from './format.js';

export function mountSettings(panel, ctx) {
  // --- URL ----------------------------------------------------------------
  const urlBox = h('p', { class: 'url-line' }, 'URL: ', h('span', { id: 'sprite-url-wrap' }));
  const auth = h('select', { id: 'url-auth' },
    h('option', { value: 'sprite' }, 'sprite: a token of the owner is needed'),
    h('option', { value: 'public' }, 'public: anyone with the URL'));
  const authStatus = h('span', { id: 'url-auth-status', class: 'muted', role: 'status', 'aria-live': 'polite' });
  const authError = h('p', { id: 'url-auth-error', class: 'error', role: 'alert' });

  // --- network policy --------------------------------------------------------
  const rulesList = h('ul', { id: 'policy-rules', class: 'rules', 'aria-label': 'Network policy rules' });
  const addRule = h('button', { id: 'policy-add', type: 'button', class: 'secondary small' }, 'Add rule');
  const addDefaults = h('button', { id: 'policy-add-defaults', type: 'button', class: 'secondary small' }, 'Add the default registries');
  const saveRules = h('button', { id: 'policy-save', type: 'submit' }, 'Save policy');
  const policyStatus = h('span', { id: 'policy-status', class: 'muted', role: 'status', 'aria-live': 'polite' });
  const policyError = h('p', { id: 'policy-error', class: 'error', role: 'alert' });
  const policyForm = h('form', { id: 'policy-form' },
    h('p', { class: 'muted small' },
      'No rules: all egress is open. A domain is exact (github.com), a wildcard (*.github.com) or * for every name; ',
      'the most specific rule wins, and deny wins a tie. Deny * to allow only the names listed.'),
    rulesList,
    h('div', { class: 'actions' }, addRule, addDefaults, saveRules, policyStatus),
    policyError);

  // --- resources --------------------------------------------------------------
  const config = h('dl', { id: 'sprite-config', class: 'props' });
  const memLimit = h('input', { id: 'resources-memory', type: 'number', min: '1', step: '1', inputmode: 'numeric' });
  const autoscale = h('input', { id: 'resources-autoscale', type: 'checkbox' });
  const saveResources = h('button', { id: 'resources-save', type: 'submit' }, 'Save memory limit');
  const resetResources = h('button', { id: 'resources-reset', type: 'button', class: 'secondary' }, 'Back to the configured memory');
  const resourcesStatus = h('span', { id: 'resources-status', class: 'muted', role: 'status', 'aria-live': 'polite' });
  const resourcesError = h('p', { id: 'resources-error', class: 'error', role: 'alert' });
  const resourcesForm = h('form', { id: 'resources-form' },
    h('div', { class: 'grid' },
      field('Memory limit (MB)', memLimit, { hint: 'applies at the next start' }),
      h('div', { class: 'field checkbox' }, autoscale, h('label', { for: 'resources-autoscale' }, 'Autoscale memory'))),
    h('div', { class: 'actions' }, saveResources, resetResources, resourcesStatus), resourcesError);

  // --- destroy ------------------------------------------------------------------
  const destroy = h('button', { id: 'sprite-destroy', type: 'button', class: 'danger' }, `Destroy ${ctx.name}`);
  const destroyError = h('p', { id: 'sprite-destroy-error', class: 'error', role: 'alert' });

  panel.append(
    h('h2', { class: 'sr-only' }, 'Settings'),
    h('section', { class: 'card', 'aria-labelledby': 'settings-url-title' },
      h('h3', { id: 'settings-url-title' }, 'URL'), urlBox,
      h('div', { class: 'inline-form' }, field('Who may open the URL', auth), authStatus), authError),
    h('section', { class: 'card', 'aria-labelledby': 'settings-policy-title' },
      h('h3', { id: 'settings-policy-title' }, 'Network policy'), policyForm),
    h('section', { class: 'card', 'aria-labelledby': 'settings-resources-title' },
      h('h3', { id: 'settings-resources-title' }, 'Resources'), config, resourcesForm),
    h('section', { class: 'card danger-zone', 'aria-labelledby': 'settings-destroy-title' },
      h('h3', { id: 'settings-destroy-title' }, 'Destroy'), destroy, destroyError),
  );

  function paintSprite(sp) {
    document.getElementById('sprite-url-wrap').replaceChildren(urlLink(sp.url, { id: 'sprite-url' }));
    auth.value = (sp.url_settings && sp.url_settings.auth) || 'sprite';
    const c = sp.config || {};
    const st = sp.storage;
    const rows = [
      ['Image', sp.image || '—'],
      ['CPUs', c.cpus ?? '—'],
      ['RAM', c.ram_mb != null ? formatMB(c.ram_mb) : '—'],
      ['Disk', c.storage_gb != null ? c.storage_gb + ' GB' : '—'],
      ['Isolation', c.isolation || '—'],
      ['Region', c.region || sp.primary_region || '—'],
      ['Created', formatTime(sp.created_at)],
    ];
    if (st) {
      rows.push(['Data', `${st.location}: ${formatBytes(st.local_bytes)} local, ${formatBytes(st.object_bytes)} in the object store`]);
    }
    config.replaceChildren(...rows.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, String(v)))));
  }

  // One rule row: action (allow, deny, or the defaults include) and domain.
  let ruleSeq = 0;
  function ruleRow(rule = { action: 'allow', domain: '' }) {
    const n = ++ruleSeq;
    const kind = rule.include ? 'include' : (rule.action || 'allow');
    const action = h('select', { id: `rule-action-${n}`, class: 'rule-action' },
      h('option', { value: 'allow' }, 'allow'),
      h('option', { value: 'deny' }, 'deny'),
      h('option', { value: 'include' }, 'include defaults'));
    action.value = kind;
    const domain = h('input', { id: `rule-domain-${n}`, class: 'rule-domain', type: 'text', autocomplete: 'off',
      spellcheck: 'false', placeholder: '*.example.com', value: rule.include ? '' : (rule.domain || '') });
    const remove = h('button', { type: 'button', class: 'rule-remove secondary small', 'aria-label': `Remove rule ${n}` }, 'Remove');
    const li = h('li', { class: 'policy-rule' },
      field('Action', action, { className: 'compact' }),
      field('Domain', domain, { className: 'compact grow' }),
      remove);
    const sync = () => {
      domain.disabled = action.value === 'include';
      if (domain.disabled) domain.value = '';
    };
    action.addEventListener('change', sync);
    sync();
    remove.addEventListener('click', () => {
      const next = li.nextElementSibling || li.previousElementSibling;
      li.remove();
      (next ? next.querySelector('select') : addRule).focus();
    });
    return li;
  }

  function readRules() {
    const rules = [];
    for (const li of rulesList.querySelectorAll('li.policy-rule')) {
      const action = li.querySelector('.rule-action').value;
      const domain = li.querySelector('.rule-domain').value.trim();
      if (action === 'include') rules.push({ include: 'defaults' });
      else if (domain) rules.push({ domain, action });
      else throw new Error('Every allow or deny rule needs a domain (or remove the rule).');
    }
    return rules;
  }

  async function loadPolicy() {
    try {
      const p = await getJSON(spritePath(ctx.name, '/policy/network'), { signal: ctx.signal });
      rulesList.replaceChildren(...(p.rules || []).map((r) => ruleRow(r)));
      showError(policyError, '');
    } catch (e) {
      if (e.name !== 'AbortError') showError(policyError, 'Could not read the policy: ' + e.message);
    }
  }

  async function loadResources() {
    try {
      const r = await getJSON(spritePath(ctx.name, '/policy/resources'), { signal: ctx.signal });
      memLimit.value = r.memory ? String(r.memory.limit_mb) : '';
      autoscale.checked = !!(r.memory && r.memory.autoscale);
      showError(resourcesError, '');
    } catch (e) {
      if (e.name !== 'AbortError') showError(resourcesError, 'Could not read the resources: ' + e.message);
    }
  }

  auth.addEventListener('change', async () => {
    showError(authError, '');
    authStatus.textContent = 'Saving…';
    try {
      const sp = await call(spritePath(ctx.name), { method: 'PUT', json: { url_settings: { auth: auth.value } } });
      if (sp && typeof sp === 'object') {
        ctx.sprite = sp;
        paintSprite(sp);
      }
      authStatus.textContent = `Saved: ${auth.value}`;
    } catch (e) {
      authStatus.textContent = '';
      showError(authError, e);
      if (ctx.sprite) auth.value = (ctx.sprite.url_settings && ctx.sprite.url_settings.auth) || 'sprite';
    }
  });

  addRule.addEventListener('click', () => {
    const li = ruleRow();
    rulesList.append(li);
    li.querySelector('.rule-domain').focus();
  });
  addDefaults.addEventListener('click', () => {
    const li = ruleRow({ include: 'defaults' });
    rulesList.append(li);
    li.querySelector('.rule-action').focus();
  });
  policyForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showError(policyError, '');
    let rules;
    try {
      rules = readRules();
    } catch (e) {
      return showError(policyError, e);
    }
    try {
      await busy(saveRules, () => send('POST', spritePath(ctx.name, '/policy/network'), { rules }));
      policyStatus.textContent = `Saved ${rules.length} rule${rules.length === 1 ? '' : 's'}.`;
      announce('Network policy saved');
    } catch (e) {
      policyStatus.textContent = '';
      showError(policyError, e);
    }
  });

  resourcesForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showError(resourcesError, '');
    const mb = Number(memLimit.value);
    if (!Number.isInteger(mb) || mb < 1) return showError(resourcesError, 'The limit is a whole number of MB.');
    try {
      await busy(saveResources, () => send('POST', spritePath(ctx.name, '/policy/resources'),
        { memory: { limit_mb: mb, autoscale: autoscale.checked } }));
      resourcesStatus.textContent = 'Saved; it applies at the next start.';
    } catch (e) {
      resourcesStatus.textContent = '';
      showError(resourcesError, e);
    }
  });
  resetResources.addEventListener('click', async () => {
    showError(resourcesError, '');
    try {
      await busy(resetResources, () => send('DELETE', spritePath(ctx.name, '/policy/resources')));
      resourcesStatus.textContent = 'Back to the configured memory at the next start.';
      loadResources();
    } catch (e) {
      showError(resourcesError, e);
    }
  });

  destroy.addEventListener('click', async () => {
    const ok = await confirmDialog(
      `Destroy the sprite “${ctx.name}”? Its files, checkpoints and sessions are deleted. This cannot be undone.`,
      { title: 'Destroy sprite', yes: 'Destroy' });
    if (!ok) return;
    try {
      await busy(destroy, () => send('DELETE', spritePath(ctx.name)));
      announce(`Sprite ${ctx.name} destroyed`);
      location.hash = '#/';
    } catch (e) {
      showError(destroyError, e);
    }
  });

  let loaded = false;
  return {
    async show() {
      if (ctx.sprite) paintSprite(ctx.sprite);
      if (loaded) return;
      loaded = true;
      loadPolicy();
      loadResources();
      try {
        paintSprite(await ctx.reloadSprite());
      } catch {
        // The header already says what is wrong.
      }
    },
  };
}
