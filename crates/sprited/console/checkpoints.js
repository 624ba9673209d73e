// The Checkpoints tab: the timeline (newest first), create and restore
// with their NDJSON progress, delete, and fork into a new sprite.

import { getJSON, send, stream, call } from './api.js';
import { h, field, announce, busy, showError } from './dom.js';
import { confirmDialog, forkDialog } from './dialogs.js';
import { spritePath, withQuery } from './url.js';
import { spriteHash } from './router.js';
import { formatTime, relativeTime } from './format.js';
import { sortCheckpoints } from './timeline.js';

function eventText(ev) {
  const data = ev.data == null ? '' : typeof ev.data === 'string' ? ev.data : JSON.stringify(ev.data);
  const detail = ev.error || ev.message || data;
  const when = ev.time ? formatTime(ev.time, { seconds: true }) + ' ' : '';
  return `${when}${ev.type}${detail ? ': ' + detail : ''}`;
}

export function mountCheckpoints(panel, ctx) {
  const comment = h('input', { id: 'checkpoint-comment', type: 'text', autocomplete: 'off', maxlength: '1000' });
  const create = h('button', { id: 'checkpoint-create', type: 'submit' }, 'Create checkpoint');
  const form = h('form', { id: 'checkpoint-form', class: 'inline-form' }, field('Comment (optional)', comment), create);
  const showAuto = h('input', { id: 'checkpoints-auto', type: 'checkbox' });
  const error = h('p', { id: 'checkpoints-error', class: 'error', role: 'alert' });
  const progress = h('ol', { id: 'checkpoint-progress', class: 'progress-log', role: 'log', 'aria-live': 'polite', 'aria-label': 'Checkpoint progress' });
  const timeline = h('ol', { id: 'checkpoints', class: 'timeline', 'aria-label': 'Checkpoints, newest first' });
  let working = false;

  panel.append(
    h('h2', {}, 'Checkpoints'),
    form,
    h('div', { class: 'field checkbox' }, showAuto, h('label', { for: 'checkpoints-auto' }, 'Show automatic checkpoints')),
    error, progress, timeline);

  function log(text, cls) {
    progress.append(h('li', { class: cls }, text));
    progress.scrollTop = progress.scrollHeight;
  }

  async function load() {
    try {
      const list = await getJSON(withQuery(spritePath(ctx.name, '/checkpoints'),
        { includeAuto: showAuto.checked ? 'true' : undefined }), { signal: ctx.signal });
      showError(error, '');
      render(sortCheckpoints(Array.isArray(list) ? list : []));
    } catch (e) {
      if (e.name !== 'AbortError') showError(error, 'Could not list the checkpoints: ' + e.message);
    }
  }

  function render(list) {
    timeline.replaceChildren();
    if (!list.length) {
      timeline.append(h('li', { class: 'empty muted' }, 'No checkpoints yet.'));
      return;
    }
    for (const c of list) {
      const restore = h('button', { type: 'button', class: 'restore small', 'aria-label': `Restore ${c.id}` }, 'Restore');
      const fork = h('button', { type: 'button', class: 'fork secondary small', 'aria-label': `Fork ${c.id} into a new sprite` }, 'Fork');
      const del = h('button', { type: 'button', class: 'delete danger small', 'aria-label': `Delete ${c.id}` }, 'Delete');
      const itemError = h('span', { class: 'row-error error', role: 'alert' });
      restore.addEventListener('click', () => restoreCheckpoint(c, restore));
      fork.addEventListener('click', () => forkCheckpoint(c));
      del.addEventListener('click', () => deleteCheckpoint(c, del, itemError));
      timeline.append(h('li', { class: ['checkpoint', c.is_current ? 'current' : null], dataset: { checkpoint: c.id } },
        h('div', { class: 'checkpoint-head' },
          h('strong', { class: 'checkpoint-id' }, c.id),
          c.is_current ? h('span', { class: 'badge' }, 'current') : null,
          c.is_auto ? h('span', { class: 'badge muted' }, 'auto') : null,
          h('time', { datetime: c.create_time, title: relativeTime(c.create_time) }, formatTime(c.create_time))),
        h('p', { class: ['comment', c.comment ? null : 'muted'] }, c.comment || 'no comment'),
        h('div', { class: 'actions' }, restore, fork, del, itemError)));
    }
  }

  /** Run an NDJSON operation, logging each event; true if it completed. */
  async function runStream(path, body, label) {
    progress.replaceChildren();
    log(`${label}…`, 'start');
    let failed = false;
    try {
      const events = await stream(path, { method: 'POST', json: body, signal: ctx.signal }, (ev) => {
        if (ev.type === 'error') failed = true;
        log(eventText(ev), ev.type);
      });
      if (!events.some((e) => e.type === 'complete') && !failed) log('the stream ended without completing', 'error');
      return !failed;
    } catch (e) {
      if (e.name === 'AbortError') return false;
      log(`error: ${e.message}`, 'error');
      return false;
    }
  }

  async function restoreCheckpoint(c, button) {
    if (working) return;
    const ok = await confirmDialog(
      `Restore ${ctx.name} to checkpoint ${c.id}${c.comment ? ` (“${c.comment}”)` : ''}? Its files go back to that point, its processes restart and its sessions end.`,
      { title: 'Restore checkpoint', yes: 'Restore' });
    if (!ok) return;
    working = true;
    try {
      const done = await busy(button, () =>
        runStream(spritePath(ctx.name, `/checkpoints/${encodeURIComponent(c.id)}/restore`), undefined, `Restoring ${c.id}`));
      announce(done ? `Restored ${c.id}` : `Restoring ${c.id} failed`);
    } finally {
      working = false;
    }
    ctx.events.dispatchEvent(new CustomEvent('restored', { detail: c.id }));
    load();
  }

  async function deleteCheckpoint(c, button, itemError) {
    const ok = await confirmDialog(`Delete checkpoint ${c.id} of ${ctx.name}?`, { title: 'Delete checkpoint', yes: 'Delete' });
    if (!ok) return;
    try {
      await busy(button, () => send('DELETE', spritePath(ctx.name, `/checkpoints/${encodeURIComponent(c.id)}`)));
      announce(`Deleted ${c.id}`);
      load();
    } catch (e) {
      showError(itemError, e);
    }
  }

  async function forkCheckpoint(c) {
    const made = await forkDialog(
      { text: `Make a new sprite from checkpoint ${c.id} of ${ctx.name}.`, defaultName: `${ctx.name}-${c.id}` },
      async (name) => {
        const sp = await call('/v1/sprites', { method: 'POST', json: { name, source: { sprite: ctx.name, checkpoint: c.id } } });
        return (sp && sp.name) || name;
      });
    if (made) {
      announce(`Sprite ${made} created from ${c.id}`);
      location.hash = spriteHash(made);
    }
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (working) return;
    working = true;
    const text = comment.value.trim();
    try {
      const done = await busy(create, () =>
        runStream(spritePath(ctx.name, '/checkpoint'), text ? { comment: text } : {}, 'Creating a checkpoint'));
      if (done) comment.value = '';
      announce(done ? 'Checkpoint created' : 'Creating the checkpoint failed');
    } finally {
      working = false;
    }
    load();
  });
  showAuto.addEventListener('change', load);

  return { show: load };
}
