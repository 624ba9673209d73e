// The Services tab: the sprite's services and their state; start, stop,
// restart, delete; create one; and the log of a selected service, read
// again every few seconds while it is shown.

import { getJSON, send, stream } from './api.js';
import { h, field, announce, busy, showError } from './dom.js';
import { confirmDialog } from './dialogs.js';
import { spritePath, withQuery } from './url.js';
import { relativeTime } from './format.js';
import { statusClass } from './list.js';

const LOG_POLL_MS = 2500;
const LOG_LINES = 1000;

export function mountServices(panel, ctx) {
  const svcPath = (svc, rest = '') => spritePath(ctx.name, '/services/' + encodeURIComponent(svc) + rest);
  let selected = null;
  let visible = false;
  let pollTimer = null;
  let logsCtl = null;

  const refresh = h('button', { id: 'services-refresh', type: 'button', class: 'secondary small' }, 'Refresh');
  const listError = h('p', { id: 'services-list-error', class: 'error', role: 'alert' });
  const error = h('p', { id: 'services-error', class: 'error', role: 'alert' });
  const statusLine = h('p', { id: 'services-status', class: 'muted', role: 'status', 'aria-live': 'polite' });
  const tbody = h('tbody');
  const table = h('table', { id: 'services', class: 'responsive' },
    h('caption', { class: 'sr-only' }, 'Services'),
    h('thead', {}, h('tr', {}, ['Name', 'Command', 'State', 'PID', 'Restarts', 'HTTP port', 'Actions']
      .map((t) => h('th', { scope: 'col' }, t)))),
    tbody);

  const logsTitle = h('h3', { id: 'service-logs-title' }, 'Logs');
  const follow = h('input', { id: 'service-logs-follow', type: 'checkbox', checked: true });
  const logs = h('pre', { id: 'service-logs', class: 'logs', tabindex: '0', 'aria-labelledby': 'service-logs-title' });
  const logsError = h('p', { id: 'service-logs-error', class: 'error', role: 'alert' });
  const logsSection = h('section', { class: 'card', hidden: true, 'aria-labelledby': 'service-logs-title' },
    h('div', { class: 'toolbar' }, logsTitle,
      h('div', { class: 'field checkbox' }, follow, h('label', { for: 'service-logs-follow' }, 'Follow'))),
    logsError, logs);

  const nameIn = h('input', { id: 'service-name', type: 'text', required: true, autocomplete: 'off', spellcheck: 'false' });
  const cmdIn = h('input', { id: 'service-cmd', type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'python3' });
  const argsIn = h('input', { id: 'service-args', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: '-m http.server 8080' });
  const portIn = h('input', { id: 'service-port', type: 'number', min: '1', max: '65535', step: '1' });
  const createButton = h('button', { id: 'service-create', type: 'submit' }, 'Create and start');
  const createError = h('p', { id: 'service-create-error', class: 'error', role: 'alert' });
  const createForm = h('form', { id: 'service-form' },
    h('div', { class: 'grid' },
      field('Name', nameIn), field('Command', cmdIn),
      field('Arguments', argsIn, { hint: 'separated by spaces' }),
      field('HTTP port (optional)', portIn, { hint: 'the sprite URL goes to it' })),
    createError, h('div', { class: 'actions' }, createButton));

  panel.append(
    h('div', { class: 'toolbar' }, h('h2', {}, 'Services'), refresh),
    listError, error, h('div', { class: 'table-wrap' }, table), statusLine,
    logsSection,
    h('section', { class: 'card', 'aria-labelledby': 'service-new-title' }, h('h3', { id: 'service-new-title' }, 'New service'), createForm));

  async function load() {
    try {
      const list = await getJSON(spritePath(ctx.name, '/services'), { signal: ctx.signal });
      showError(listError, '');
      render(Array.isArray(list) ? list : []);
    } catch (e) {
      if (e.name !== 'AbortError') showError(listError, 'Could not list the services: ' + e.message);
    }
  }

  function render(list) {
    tbody.replaceChildren();
    if (!list.length) {
      tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: '7' }, 'No services.')));
      return;
    }
    for (const svc of list) {
      const st = svc.state || {};
      const status = st.status || 'unknown';
      const button = (cls, label, fn, kind = 'small') => {
        const b = h('button', { type: 'button', class: [cls, kind], 'aria-label': `${label} ${svc.name}` }, label);
        b.addEventListener('click', () => fn(svc, b));
        return b;
      };
      const stateCell = h('td', { class: ['service-state', statusClass(status)], 'data-label': 'State' }, status);
      if (st.error) stateCell.append(h('span', { class: 'muted' }, ` (${st.error})`));
      if (st.started_at && status === 'running') stateCell.title = 'since ' + relativeTime(st.started_at);
      tbody.append(h('tr', { dataset: { service: svc.name }, class: selected === svc.name ? 'selected' : null },
        h('th', { scope: 'row', 'data-label': 'Name' }, svc.name),
        h('td', { 'data-label': 'Command', class: 'command' }, h('code', {}, [svc.cmd, ...(svc.args || [])].join(' '))),
        stateCell,
        h('td', { 'data-label': 'PID' }, st.pid != null ? String(st.pid) : '—'),
        h('td', { 'data-label': 'Restarts' }, String(st.restart_count ?? 0)),
        h('td', { 'data-label': 'HTTP port' }, svc.http_port != null ? String(svc.http_port) : '—'),
        h('td', { class: 'actions', 'data-label': 'Actions' },
          button('start', 'Start', (s, b) => act(s, b, 'start')),
          button('stop', 'Stop', (s, b) => act(s, b, 'stop'), 'secondary small'),
          button('restart', 'Restart', (s, b) => act(s, b, 'restart'), 'secondary small'),
          button('logs', 'Logs', (s) => selectLogs(s.name), 'secondary small'),
          button('delete', 'Delete', removeService, 'danger small'))));
    }
  }

  /** start | stop | restart: NDJSON events until the action is done. */
  async function act(svc, button, action) {
    showError(error, '');
    statusLine.textContent = `${action} ${svc.name}…`;
    let failed = null;
    try {
      await busy(button, () => stream(svcPath(svc.name, '/' + action), { method: 'POST', signal: ctx.signal }, (ev) => {
        if (ev.type === 'error') failed = ev.data || 'failed';
        statusLine.textContent = `${svc.name}: ${ev.type}${ev.data ? ' ' + String(ev.data).trim() : ''}`;
      }));
      if (failed) showError(error, `${action} ${svc.name}: ${failed}`);
      else announce(`${svc.name}: ${action} done`);
    } catch (e) {
      if (e.name !== 'AbortError') showError(error, `${action} ${svc.name}: ${e.message}`);
    }
    load();
    if (selected === svc.name) loadLogs();
  }

  async function removeService(svc, button) {
    const ok = await confirmDialog(`Delete the service ${svc.name}? It is stopped first.`, { title: 'Delete service', yes: 'Delete' });
    if (!ok) return;
    showError(error, '');
    try {
      await busy(button, () => send('DELETE', svcPath(svc.name)));
      announce(`Service ${svc.name} deleted`);
      if (selected === svc.name) {
        selected = null;
        logsSection.hidden = true;
        stopPolling();
      }
    } catch (e) {
      showError(error, `Delete ${svc.name}: ${e.message}`);
    }
    load();
  }

  function selectLogs(name) {
    selected = name;
    logsTitle.textContent = `Logs of ${name}`;
    logs.textContent = '';
    logsSection.hidden = false;
    for (const tr of tbody.querySelectorAll('tr[data-service]')) tr.classList.toggle('selected', tr.dataset.service === name);
    loadLogs();
    logs.focus();
  }

  async function loadLogs() {
    clearTimeout(pollTimer);
    if (!selected || !visible) return;
    const name = selected;
    if (logsCtl) logsCtl.abort();
    const ctl = new AbortController();
    logsCtl = ctl;
    const onAbort = () => ctl.abort();
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    // Stay at the bottom if the reader was there.
    const atBottom = logs.scrollHeight - logs.scrollTop - logs.clientHeight < 24;
    let text = '';
    try {
      await stream(withQuery(svcPath(name, '/logs'), { lines: LOG_LINES }), { signal: ctl.signal }, (ev) => {
        if ((ev.type === 'stdout' || ev.type === 'stderr') && typeof ev.data === 'string') text += ev.data;
        else if (ev.type === 'raw') text += ev.data + '\n';
      });
      if (selected !== name) return;
      showError(logsError, '');
      if (logs.textContent !== text) {
        logs.textContent = text || '(empty log)';
        if (atBottom) logs.scrollTop = logs.scrollHeight;
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
      showError(logsError, `Could not read the log of ${name}: ${e.message}`);
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
    }
    if (follow.checked && visible && selected === name) pollTimer = setTimeout(loadLogs, LOG_POLL_MS);
  }

  function stopPolling() {
    clearTimeout(pollTimer);
    if (logsCtl) logsCtl.abort();
  }

  createForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showError(createError, '');
    const name = nameIn.value.trim();
    const body = { cmd: cmdIn.value.trim(), args: argsIn.value.trim() ? argsIn.value.trim().split(/\s+/) : [] };
    if (portIn.value.trim()) {
      const port = Number(portIn.value);
      if (!Number.isInteger(port) || port < 1 || port > 65535) return showError(createError, 'The port is a number from 1 to 65535.');
      body.http_port = port;
    }
    let failed = null;
    try {
      await busy(createButton, () => stream(svcPath(name), { method: 'PUT', json: body, signal: ctx.signal }, (ev) => {
        if (ev.type === 'error') failed = ev.data || 'failed';
        statusLine.textContent = `${name}: ${ev.type}${ev.data ? ' ' + String(ev.data).trim() : ''}`;
      }));
      if (failed) showError(createError, failed);
      else {
        announce(`Service ${name} created`);
        nameIn.value = cmdIn.value = argsIn.value = portIn.value = '';
      }
    } catch (e) {
      if (e.name !== 'AbortError') showError(createError, e);
    }
    load();
  });
  refresh.addEventListener('click', load);
  follow.addEventListener('change', () => (follow.checked ? loadLogs() : clearTimeout(pollTimer)));

  return {
    show() {
      visible = true;
      load();
      if (selected) loadLogs();
    },
    hide() {
      visible = false;
      stopPolling();
    },
    unmount() {
      visible = false;
      stopPolling();
    },
  };
}
