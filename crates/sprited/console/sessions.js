// The Sessions tab: the sprite's running exec sessions, to attach to (in
// the terminal tab) or kill.

import { getJSON, stream } from './api.js';
import { h, announce, busy, showError } from './dom.js';
import { confirmDialog } from './dialogs.js';
import { spritePath, withQuery } from './url.js';
import { relativeTime, formatTime } from './format.js';

export function mountSessions(panel, ctx) {
  const listError = h('p', { id: 'sessions-list-error', class: 'error', role: 'alert' });
  const error = h('p', { id: 'sessions-error', class: 'error', role: 'alert' });
  const statusLine = h('p', { id: 'sessions-status', class: 'muted', role: 'status', 'aria-live': 'polite' });
  const refresh = h('button', { id: 'sessions-refresh', type: 'button', class: 'secondary small' }, 'Refresh');
  const tbody = h('tbody');
  const table = h('table', { id: 'sessions', class: 'responsive' },
    h('caption', { class: 'sr-only' }, 'Exec sessions'),
    h('thead', {}, h('tr', {}, ['Id', 'Command', 'Created', 'Attached', 'TTY', 'Last activity', 'Actions']
      .map((t) => h('th', { scope: 'col' }, t)))),
    tbody);
  panel.append(
    h('div', { class: 'toolbar' }, h('h2', {}, 'Sessions'), refresh),
    listError, error, h('div', { class: 'table-wrap' }, table), statusLine);

  async function load() {
    try {
      const list = await getJSON(spritePath(ctx.name, '/exec'), { signal: ctx.signal });
      showError(listError, '');
      render(list.sessions || []);
    } catch (e) {
      if (e.name !== 'AbortError') showError(listError, 'Could not list the sessions: ' + e.message);
    }
  }

  function render(sessions) {
    tbody.replaceChildren();
    if (!sessions.length) {
      tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: '7' }, 'No running sessions.')));
      return;
    }
    for (const s of sessions) {
      const attach = h('button', { type: 'button', class: 'attach small', 'aria-label': `Attach to session ${s.id}` }, 'Attach');
      attach.addEventListener('click', () => ctx.attach(s.id));
      const kill = h('button', { type: 'button', class: 'kill danger small', 'aria-label': `Kill session ${s.id}` }, 'Kill');
      kill.addEventListener('click', () => killSession(s, kill));
      tbody.append(h('tr', { dataset: { session: s.id } },
        h('td', { 'data-label': 'Id' }, h('code', {}, s.id)),
        h('td', { 'data-label': 'Command', class: 'command' }, h('code', {}, s.command || '')),
        h('td', { 'data-label': 'Created' }, h('time', { datetime: s.created, title: formatTime(s.created) }, relativeTime(s.created))),
        h('td', { 'data-label': 'Attached' }, s.is_active ? 'yes' : 'no'),
        h('td', { 'data-label': 'TTY' }, s.tty ? 'yes' : 'no'),
        h('td', { 'data-label': 'Last activity' }, s.last_activity ? relativeTime(s.last_activity) : '—'),
        h('td', { 'data-label': 'Actions', class: 'actions' }, attach, kill)));
    }
  }

  async function killSession(s, button) {
    const ok = await confirmDialog(`Kill session ${s.id} (${s.command})? It gets SIGTERM, then SIGKILL after 10 s.`,
      { title: 'Kill session', yes: 'Kill' });
    if (!ok) return;
    showError(error, '');
    try {
      await busy(button, () => stream(
        withQuery(spritePath(ctx.name, `/exec/${encodeURIComponent(s.id)}/kill`), { signal: 'SIGTERM', timeout: '10s' }),
        { method: 'POST', signal: ctx.signal },
        (ev) => {
          const text = ev.type === 'error' ? `error: ${ev.error || ev.message}` :
            ev.type === 'complete' || ev.type === 'exited' ? `${ev.type} (status ${ev.exit_code ?? '?'})` :
              `${ev.type}${ev.message ? ': ' + ev.message : ''}`;
          statusLine.textContent = `Session ${s.id}: ${text}`;
        }));
      announce(`Session ${s.id} killed`);
    } catch (e) {
      // 410: it had ended already, which is what was wanted.
      if (e.status !== 410) showError(error, e);
    }
    load();
  }

  refresh.addEventListener('click', load);

  return {
    show: load,
  };
}
