// #/ : the sprites, their live status (from the watch stream), cost so
// far, destroy, and the create form.

import { getJSON, send, call, currentSession, mapLimit } from './api.js';
import { h, field, announce, busy, showError } from './dom.js';
import { confirmDialog } from './dialogs.js';
import { spriteWatch } from './watch.js';
import { spriteHash } from './router.js';
import { spritePath, withQuery } from './url.js';
import { formatMB, formatMoney, relativeTime, formatTime, latestTime } from './format.js';
import { costBySprite, oldestCreation } from './usage_series.js';

const COST_REFRESH_MS = 60_000;
const CLOCK_REFRESH_MS = 30_000;

/** All sprites, page by page. */
export async function listAllSprites(signal) {
  const sprites = [];
  let token;
  let org = null;
  for (let page = 0; page < 1000; page++) {
    const res = await getJSON(withQuery('/v1/sprites', { max_results: 100, continuation_token: token }), { signal });
    sprites.push(...(res.sprites || []));
    org = res.org || org;
    if (!res.has_more || !res.next_continuation_token) break;
    token = res.next_continuation_token;
  }
  return { sprites, org };
}

/** A link to a sprite's URL, only for http(s) URLs. */
export function urlLink(url, props = {}) {
  if (typeof url !== 'string' || !/^https?:\/\//i.test(url)) return h('span', { class: 'muted' }, '—');
  return h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', ...props }, url);
}

export function statusClass(status) {
  return 'status-' + String(status || 'unknown').replace(/[^a-z0-9_-]/gi, '');
}

function sizeText(sp) {
  const c = sp.config || {};
  const parts = [];
  if (c.cpus != null) parts.push(c.cpus + (c.cpus === 1 ? ' CPU' : ' CPUs'));
  if (c.ram_mb != null) parts.push(formatMB(c.ram_mb) + ' RAM');
  return parts.length ? parts.join(' · ') : '—';
}

export function mountList(container) {
  document.title = 'Sprites · sprited console';
  const ctl = new AbortController();
  const rows = new Map(); // name → {tr, sprite, cells, lastActive}
  const fetching = new Set();
  let costs = null; // Map name → cost
  let currency = 'USD';
  let sawDisconnect = false;
  let loaded = false; // before the first list, the stream's lines only set statuses
  const timers = [];

  // --- the page -----------------------------------------------------
  const counts = h('p', { id: 'org-counts', class: 'counts', 'aria-live': 'polite' }, '');
  const filter = h('input', { id: 'filter', type: 'search', autocomplete: 'off', spellcheck: 'false', placeholder: 'name contains…' });
  const filterCount = h('span', { id: 'filter-count', class: 'muted', 'aria-live': 'polite' });
  const listError = h('p', { id: 'list-error', class: 'error', role: 'alert' });
  const tbody = h('tbody');
  const table = h('table', { id: 'sprites', class: 'sprites responsive' },
    h('caption', { class: 'sr-only' }, 'Sprites'),
    h('thead', {}, h('tr', {},
      ['Name', 'Status', 'Image', 'Size', 'URL', 'Last active', 'Cost so far', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
    tbody);
  const costNote = h('p', { id: 'cost-note', class: 'muted small' });

  const createForm = buildCreateForm();

  container.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Sprites'), counts),
    h('section', { class: 'card', 'aria-labelledby': 'sprites-title' },
      h('h2', { id: 'sprites-title', class: 'sr-only' }, 'All sprites'),
      h('div', { class: 'toolbar' }, field('Filter by name', filter), filterCount),
      listError,
      h('div', { class: 'table-wrap' }, table),
      costNote),
    createForm.section,
  );

  // --- rows ----------------------------------------------------------
  function lastActiveOf(sp, line) {
    const t = latestTime(sp.last_active_at, sp.last_running_at, line && line.last_running_at,
      line && line.status === 'running' ? line.timestamp : null);
    return t;
  }

  function renderRow(sp) {
    const name = sp.name;
    const status = spriteWatch.statusOf(name) || sp.status;
    const cells = {
      status: h('td', { class: ['status', statusClass(status)], 'data-label': 'Status' }, status),
      active: h('td', { class: 'last-active', 'data-label': 'Last active' }),
      cost: h('td', { class: 'cost num', 'data-label': 'Cost so far' }, '—'),
      error: h('span', { class: 'row-error error', role: 'alert' }),
    };
    const destroy = h('button', { type: 'button', class: 'destroy danger small', 'aria-label': 'Destroy ' + name }, 'Destroy');
    destroy.addEventListener('click', () => destroySprite(name, destroy, cells.error));
    const tr = h('tr', { dataset: { sprite: name } },
      h('th', { scope: 'row', class: 'name', 'data-label': 'Name' }, h('a', { href: spriteHash(name) }, name)),
      cells.status,
      h('td', { class: 'image', 'data-label': 'Image' }, sp.image || '—'),
      h('td', { class: 'size', 'data-label': 'Size' }, sizeText(sp)),
      h('td', { class: 'url', 'data-label': 'URL' }, urlLink(sp.url)),
      cells.active,
      cells.cost,
      h('td', { class: 'actions', 'data-label': 'Actions' }, destroy, cells.error),
    );
    const row = { tr, sprite: sp, cells, lastActive: lastActiveOf(sp, spriteWatch.statuses.get(name)) };
    rows.set(name, row);
    paintActive(row);
    paintCost(row);
    return row;
  }

  function paintActive(row) {
    const t = row.lastActive;
    row.cells.active.replaceChildren(
      t ? h('time', { datetime: t.toISOString(), title: formatTime(t) }, relativeTime(t)) : 'never');
  }

  function paintCost(row) {
    const c = costs ? costs.get(row.sprite.name) : undefined;
    row.cells.cost.textContent = costs ? formatMoney(c || 0, currency) : '—';
  }

  function paintStatus(row, status) {
    row.cells.status.textContent = status;
    row.cells.status.className = 'status ' + statusClass(status);
  }

  function sortRows() {
    const names = [...rows.keys()].sort();
    const frag = document.createDocumentFragment();
    for (const n of names) frag.append(rows.get(n).tr);
    tbody.replaceChildren(frag);
    if (!names.length) {
      tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: '8' }, 'No sprites yet. Create one below.')));
    }
    applyFilter();
  }

  function applyFilter() {
    const q = filter.value.trim().toLowerCase();
    let shown = 0;
    for (const [name, row] of rows) {
      const match = !q || name.toLowerCase().includes(q);
      row.tr.hidden = !match;
      if (match) shown++;
    }
    filterCount.textContent = q ? `${shown} of ${rows.size} shown` : `${rows.size} sprite${rows.size === 1 ? '' : 's'}`;
  }

  function paintCounts(org) {
    if (!org) return;
    counts.replaceChildren(
      h('span', { class: 'count status-running' }, `${org.running ?? 0} running`), ' · ',
      h('span', { class: 'count status-warm' }, `${org.warm ?? 0} warm`), ' · ',
      h('span', { class: 'count status-cold' }, `${org.cold ?? 0} cold`),
    );
  }

  async function load() {
    try {
      const { sprites, org } = await listAllSprites(ctl.signal);
      showError(listError, '');
      rows.clear();
      for (const sp of sprites) renderRow(sp);
      loaded = true;
      sortRows();
      paintCounts(spriteWatch.org || org);
      fillSpriteNames(sprites.map((s) => s.name));
      loadCosts();
    } catch (e) {
      if (e.name !== 'AbortError') showError(listError, 'Could not list the sprites: ' + e.message);
    }
  }

  async function addByName(name) {
    if (rows.has(name) || fetching.has(name)) return;
    fetching.add(name);
    try {
      const sp = await getJSON(spritePath(name), { signal: ctl.signal });
      if (!rows.has(name) && spriteWatch.statusOf(name) !== undefined) {
        renderRow(sp);
        sortRows();
      }
    } catch {
      // Gone again, or not ours to see: nothing to show.
    } finally {
      fetching.delete(name);
    }
  }

  function onWatch(ev) {
    if (ev.kind === 'org') paintCounts(ev.org);
    else if (ev.kind === 'disconnected') sawDisconnect = true;
    else if (ev.kind === 'connected' && sawDisconnect) {
      sawDisconnect = false;
      load();
    } else if (ev.kind === 'sprite') {
      const row = rows.get(ev.name);
      if (ev.status === 'destroyed') {
        if (row) {
          rows.delete(ev.name);
          row.tr.remove();
          sortRows();
        }
      } else if (row) {
        paintStatus(row, ev.status);
        const t = latestTime(row.lastActive, lastActiveOf(row.sprite, ev.line));
        if (t) row.lastActive = t;
        paintActive(row);
      } else if (loaded) {
        addByName(ev.name);
      }
    }
  }

  async function destroySprite(name, button, errEl) {
    const ok = await confirmDialog(
      `Destroy the sprite “${name}”? Its files, checkpoints and sessions are deleted. This cannot be undone.`,
      { title: 'Destroy sprite', yes: 'Destroy' });
    if (!ok) return;
    showError(errEl, '');
    try {
      await busy(button, () => send('DELETE', spritePath(name)));
      const row = rows.get(name);
      // The focus was on the removed row: it goes to the next one's button.
      const next = row && (row.tr.nextElementSibling || row.tr.previousElementSibling);
      if (row) {
        rows.delete(name);
        row.tr.remove();
        sortRows();
      }
      const target = next && next.isConnected && next.querySelector('button.destroy');
      (target || filter).focus();
      announce(`Sprite ${name} destroyed`);
    } catch (e) {
      showError(errEl, e);
    }
  }

  // --- cost so far ----------------------------------------------------
  async function loadCosts() {
    const sprites = [...rows.values()].map((r) => r.sprite);
    if (!sprites.length) {
      costs = new Map();
      costNote.textContent = '';
      return;
    }
    const from = new Date(oldestCreation(sprites, Date.now() - 30 * 86400000));
    const s = currentSession();
    let map = null;
    if (s && s.admin) {
      try {
        const rep = await getJSON(withQuery('/v1/usage', { from: from.toISOString() }), { signal: ctl.signal });
        map = costBySprite(rep);
        currency = rep.currency || currency;
      } catch (e) {
        if (e.name === 'AbortError') return;
      }
    }
    if (!map) {
      // A scoped token may not read the host's usage: ask each sprite.
      map = new Map();
      const { results } = await mapLimit(sprites, 4, (sp) =>
        getJSON(withQuery(spritePath(sp.name, '/usage'), { from: sp.created_at }), { signal: ctl.signal }));
      results.forEach((rep, i) => {
        if (rep) {
          map.set(sprites[i].name, rep.cost ? rep.cost.total : 0);
          currency = rep.currency || currency;
        }
      });
    }
    if (ctl.signal.aborted) return;
    costs = map;
    for (const row of rows.values()) paintCost(row);
    costNote.textContent = `Costs since ${formatTime(from)}, updated ${formatTime(new Date())}.`;
  }

  // --- the create form ---------------------------------------------------
  const spriteNames = h('datalist', { id: 'create-sprite-names' });
  const checkpointOptions = h('datalist', { id: 'create-checkpoint-options' });
  container.append(spriteNames, checkpointOptions);

  function fillSpriteNames(names) {
    spriteNames.replaceChildren(...names.map((n) => h('option', { value: n })));
  }

  function buildCreateForm() {
    const name = h('input', { id: 'create-name', name: 'name', required: true, autocomplete: 'off', spellcheck: 'false' });
    const image = h('input', { id: 'create-image', name: 'image', list: 'create-image-options', autocomplete: 'off', placeholder: 'default' });
    const images = h('datalist', { id: 'create-image-options' }, h('option', { value: 'tiny' }), h('option', { value: 'standard' }));
    const cpus = h('input', { id: 'create-cpus', name: 'cpus', type: 'number', min: '1', step: '1', inputmode: 'numeric', placeholder: 'default' });
    const ram = h('input', { id: 'create-ram', name: 'ram', type: 'number', min: '1', step: '1', inputmode: 'numeric', placeholder: 'default' });
    const fromSprite = h('input', { id: 'create-from-sprite', name: 'from-sprite', list: 'create-sprite-names', autocomplete: 'off', spellcheck: 'false' });
    const fromCheckpoint = h('input', { id: 'create-from-checkpoint', name: 'from-checkpoint', list: 'create-checkpoint-options', autocomplete: 'off', spellcheck: 'false', placeholder: 'v1' });
    const error = h('p', { id: 'create-error', class: 'error', role: 'alert' });
    const submit = h('button', { id: 'create-submit', type: 'submit' }, 'Create sprite');
    const form = h('form', { id: 'create', class: 'create-form', 'aria-labelledby': 'create-title' },
      h('div', { class: 'grid' },
        field('Name', name),
        field('Image (optional)', image, { hint: 'tiny or standard; empty for the default' }),
        field('CPUs (optional)', cpus),
        field('RAM in MB (optional)', ram),
      ),
      h('fieldset', { class: 'grid' },
        h('legend', {}, 'Start from a checkpoint of another sprite (optional)'),
        field('Source sprite', fromSprite),
        field('Checkpoint', fromCheckpoint, { hint: 'e.g. v2' }),
      ),
      images, error, h('div', { class: 'actions' }, submit));

    fromSprite.addEventListener('change', async () => {
      const src = fromSprite.value.trim();
      checkpointOptions.replaceChildren();
      if (!src) return;
      try {
        const list = await getJSON(spritePath(src, '/checkpoints'), { signal: ctl.signal });
        checkpointOptions.replaceChildren(...(list || []).map((c) =>
          h('option', { value: c.id }, c.comment ? `${c.id} — ${c.comment}` : c.id)));
      } catch {
        // Only suggestions: the create call reports a bad source.
      }
    });

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      showError(error, '');
      const body = { name: name.value.trim() };
      if (!body.name) return showError(error, 'Give the sprite a name.');
      if (image.value.trim()) body.image = image.value.trim();
      const config = {};
      if (cpus.value.trim()) {
        const n = Number(cpus.value);
        if (!Number.isInteger(n) || n < 1) return showError(error, 'CPUs must be a whole number, 1 or more.');
        config.cpus = n;
      }
      if (ram.value.trim()) {
        const n = Number(ram.value);
        if (!Number.isInteger(n) || n < 1) return showError(error, 'RAM must be a whole number of MB.');
        config.ram_mb = n;
      }
      if (Object.keys(config).length) body.config = config;
      const src = fromSprite.value.trim();
      const cp = fromCheckpoint.value.trim();
      if (src || cp) {
        if (!src) return showError(error, 'Name the sprite whose checkpoint to start from.');
        if (!cp) return showError(error, `Name a checkpoint of ${src} (e.g. v1).`);
        body.source = { sprite: src, checkpoint: cp };
      }
      try {
        const created = await busy(submit, () => {
          submit.textContent = 'Creating…';
          return call('/v1/sprites', { method: 'POST', json: body });
        });
        announce(`Sprite ${body.name} created`);
        location.hash = spriteHash((created && created.name) || body.name);
      } catch (e) {
        showError(error, e);
        name.focus();
      } finally {
        submit.textContent = 'Create sprite';
      }
    });

    const section = h('section', { class: 'card', 'aria-labelledby': 'create-title' },
      h('h2', { id: 'create-title' }, 'New sprite'), form);
    return { section };
  }

  // --- wiring -------------------------------------------------------------
  filter.addEventListener('input', applyFilter);
  const unsubscribe = spriteWatch.subscribe(onWatch);
  if (spriteWatch.org) paintCounts(spriteWatch.org);
  load();
  timers.push(setInterval(loadCosts, COST_REFRESH_MS));
  timers.push(setInterval(() => rows.forEach(paintActive), CLOCK_REFRESH_MS));

  return {
    unmount() {
      ctl.abort();
      unsubscribe();
      timers.forEach(clearInterval);
    },
  };
}
