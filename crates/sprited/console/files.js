// The Files tab: browse the sprite's filesystem, view small text files,
// download, upload into the current directory, make directories, delete.

import { getJSON, request, send } from './api.js';
import { h, field, announce, busy, showError } from './dom.js';
import { confirmDialog } from './dialogs.js';
import { spritePath, withQuery } from './url.js';
import { normalizePath, joinPath, parentPath, baseName } from './paths.js';
import { formatBytes, formatTime, relativeTime } from './format.js';
import { MAX_VIEW_BYTES, textOf } from './bytes.js';

const HOME = '/home/sprite';

export function mountFiles(panel, ctx) {
  let dir = null; // the directory shown
  let loaded = false;
  let viewing = null; // path of the file in the viewer

  const fsPath = (rest, params) => withQuery(spritePath(ctx.name, '/fs/' + rest), params);
  const readUrl = (path) => fsPath('read', { path });

  const pathInput = h('input', { id: 'files-path', type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const go = h('button', { id: 'files-go', type: 'submit', class: 'secondary small' }, 'Open');
  const refresh = h('button', { id: 'files-refresh', type: 'button', class: 'secondary small' }, 'Refresh');
  const pathForm = h('form', { id: 'files-path-form', class: 'inline-form' },
    field('Directory', pathInput), go, refresh);
  const upload = h('input', { id: 'upload', type: 'file', multiple: true });
  const mkdirName = h('input', { id: 'mkdir-name', type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const mkdirButton = h('button', { id: 'mkdir-submit', type: 'submit', class: 'secondary small' }, 'Make directory');
  const mkdirForm = h('form', { id: 'mkdir', class: 'inline-form' }, field('New directory', mkdirName), mkdirButton);
  const error = h('p', { id: 'files-error', class: 'error', role: 'alert' });
  const statusLine = h('p', { id: 'files-status', class: 'muted', role: 'status', 'aria-live': 'polite' });
  const tbody = h('tbody');
  const table = h('table', { id: 'files', class: 'files responsive' },
    h('caption', { class: 'sr-only', id: 'files-caption' }, 'Directory contents'),
    h('thead', {}, h('tr', {}, ['Name', 'Size', 'Mode', 'Modified', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
    tbody);

  const viewTitle = h('h3', { id: 'file-view-title' }, 'File');
  const viewNote = h('p', { id: 'file-view-note', class: 'muted' });
  const viewPre = h('pre', { id: 'file-view', class: 'file-view', tabindex: '0', 'aria-labelledby': 'file-view-title' });
  const viewClose = h('button', { id: 'file-view-close', type: 'button', class: 'secondary small' }, 'Close');
  const viewer = h('section', { id: 'file-viewer', class: 'card viewer', hidden: true, 'aria-labelledby': 'file-view-title' },
    h('div', { class: 'toolbar' }, viewTitle, viewClose), viewNote, viewPre);

  panel.append(
    h('h2', { class: 'sr-only' }, 'Files'),
    h('div', { class: 'toolbar wrap' }, pathForm),
    h('div', { class: 'toolbar wrap' },
      h('div', { class: 'field' }, h('label', { for: 'upload' }, 'Upload files here'), upload),
      mkdirForm),
    error, statusLine,
    h('div', { class: 'table-wrap' }, table),
    viewer,
  );

  async function list(path) {
    return getJSON(fsPath('list', { path }), { signal: ctx.signal });
  }

  /**
   * Show directory `path`; false (and the error shown) when it cannot be.
   * `keepError`: a refresh after an action, whose error stays shown.
   */
  async function navigate(path, { quiet = false, keepError = false } = {}) {
    const target = normalizePath(path);
    try {
      const res = await list(target);
      if (!keepError) showError(error, '');
      dir = target;
      // Not over what the user is typing meanwhile (a slow first listing).
      if (document.activeElement !== pathInput || normalizePath(pathInput.value) === target) {
        pathInput.value = dir;
      }
      render(res.entries || []);
      return true;
    } catch (e) {
      if (e.name === 'AbortError') return false;
      if (!quiet) showError(error, `Cannot open ${target}: ${e.message}`);
      if (dir) pathInput.value = dir;
      return false;
    }
  }

  function render(entries) {
    const sorted = [...entries].sort((a, b) =>
      (b.isDir === true) - (a.isDir === true) || a.name.localeCompare(b.name));
    tbody.replaceChildren();
    if (dir !== '/') {
      const up = parentPath(dir);
      const b = h('button', { type: 'button', class: 'link entry dir', 'aria-label': 'Parent directory ' + up }, '..');
      b.addEventListener('click', () => navigate(up));
      tbody.append(h('tr', { class: 'up', dataset: { path: up } },
        h('td', { 'data-label': 'Name' }, b), h('td'), h('td'), h('td'), h('td')));
    }
    for (const e of sorted) tbody.append(row(e));
    if (!sorted.length) tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: '5' }, 'Empty directory.')));
    statusLine.textContent = `${dir}: ${sorted.length} entr${sorted.length === 1 ? 'y' : 'ies'}`;
  }

  function row(e) {
    const path = joinPath(dir, e.name);
    const isDir = e.isDir === true || e.type === 'directory';
    const open = h('button', { type: 'button', class: ['link', 'entry', isDir ? 'dir' : 'file'] },
      isDir ? e.name + '/' : e.name);
    open.addEventListener('click', () => (isDir ? navigate(path) : openFile(path, e.size)));
    const actions = h('td', { class: 'actions', 'data-label': 'Actions' });
    if (!isDir) {
      actions.append(h('a', { class: 'download button-link small', href: readUrl(path), download: e.name,
        'aria-label': 'Download ' + e.name }, 'Download'));
    }
    const del = h('button', { type: 'button', class: 'delete danger small', 'aria-label': 'Delete ' + e.name }, 'Delete');
    del.addEventListener('click', () => remove(path, isDir, del));
    actions.append(del);
    return h('tr', { dataset: { path }, class: isDir ? 'dir' : 'file' },
      h('td', { 'data-label': 'Name', class: 'name' }, open,
        e.type === 'symlink' && e.linkTarget ? h('span', { class: 'muted' }, ' → ' + e.linkTarget) : null),
      h('td', { 'data-label': 'Size', class: 'num' }, isDir ? '—' : formatBytes(e.size)),
      h('td', { 'data-label': 'Mode' }, h('code', {}, e.mode || '')),
      h('td', { 'data-label': 'Modified' },
        e.modTime ? h('time', { datetime: e.modTime, title: formatTime(e.modTime) }, relativeTime(e.modTime)) : '—'),
      actions);
  }

  function showViewer(path) {
    viewer.hidden = false;
    viewing = path;
    viewTitle.textContent = path;
  }

  function refuse(path, why) {
    viewPre.hidden = true;
    viewPre.textContent = '';
    viewNote.replaceChildren(why + ' ',
      h('a', { class: 'download', href: readUrl(path), download: baseName(path) }, 'Download it instead'), '.');
  }

  async function openFile(path, size) {
    showViewer(path);
    if (size != null && size > MAX_VIEW_BYTES) {
      refuse(path, `${baseName(path)} is ${formatBytes(size)}, too large to show here (the limit is 1 MiB).`);
      viewer.scrollIntoView({ block: 'nearest' });
      return;
    }
    viewNote.textContent = 'Loading…';
    viewPre.hidden = true;
    try {
      const res = await request(readUrl(path), { signal: ctx.signal });
      const buf = await res.arrayBuffer();
      if (viewing !== path) return;
      if (buf.byteLength > MAX_VIEW_BYTES) {
        refuse(path, `${baseName(path)} is ${formatBytes(buf.byteLength)}, too large to show here.`);
        return;
      }
      const text = textOf(buf);
      if (text === null) {
        refuse(path, `${baseName(path)} looks binary.`);
        return;
      }
      viewNote.textContent = `${formatBytes(buf.byteLength)}`;
      viewPre.textContent = text;
      viewPre.hidden = false;
      viewer.scrollIntoView({ block: 'nearest' });
    } catch (e) {
      if (e.name !== 'AbortError') viewNote.textContent = `Cannot read ${path}: ${e.message}`;
    }
  }

  function closeViewer() {
    viewer.hidden = true;
    viewing = null;
    viewPre.textContent = '';
  }

  async function remove(path, isDir, button) {
    const ok = await confirmDialog(
      isDir ? `Delete the directory ${path} and everything in it?` : `Delete the file ${path}?`,
      { title: 'Delete', yes: 'Delete' });
    if (!ok) return;
    showError(error, '');
    try {
      await busy(button, () => send('DELETE', fsPath('delete', { path, recursive: isDir ? 'true' : undefined })));
      announce(`Deleted ${path}`);
      if (viewing === path) closeViewer();
    } catch (e) {
      showError(error, `Cannot delete ${path}: ${e.message}`);
    }
    navigate(dir, { keepError: true });
  }

  async function uploadFiles(files) {
    const target = dir;
    const failed = [];
    let i = 0;
    for (const file of files) {
      i++;
      statusLine.textContent = `Uploading ${file.name} (${i} of ${files.length})…`;
      try {
        await request(fsPath('write', { path: joinPath(target, file.name), mkdirParents: 'true' }), {
          method: 'PUT',
          body: file,
          headers: { 'Content-Type': 'application/octet-stream' },
          signal: ctx.signal,
        });
      } catch (e) {
        if (e.name === 'AbortError') return;
        failed.push(`${file.name}: ${e.message}`);
      }
    }
    upload.value = '';
    const okCount = files.length - failed.length;
    showError(error, failed.length ? 'Upload failed for ' + failed.join('; ') : '');
    announce(`Uploaded ${okCount} file${okCount === 1 ? '' : 's'} to ${target}`);
    if (dir === target) await navigate(target, { keepError: true });
    statusLine.textContent = `Uploaded ${okCount} of ${files.length} to ${target}.`;
  }

  pathForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    navigate(pathInput.value.trim() || '/');
  });
  refresh.addEventListener('click', () => navigate(dir || HOME));
  viewClose.addEventListener('click', closeViewer);
  upload.addEventListener('change', () => {
    const files = [...upload.files];
    if (files.length && dir) uploadFiles(files);
  });
  mkdirForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const n = mkdirName.value.trim();
    if (!n) return;
    const path = joinPath(dir, n);
    showError(error, '');
    try {
      await busy(mkdirButton, () => send('POST', spritePath(ctx.name, '/fs/mkdir'), { path, parents: true }));
      mkdirName.value = '';
      announce(`Made ${path}`);
    } catch (e) {
      showError(error, `Cannot make ${path}: ${e.message}`);
    }
    navigate(dir, { keepError: true });
  });
  // A restore replaced the files: what is shown is stale.
  ctx.events.addEventListener('restored', () => {
    if (!loaded) return;
    closeViewer();
    navigate(dir || HOME, { quiet: true });
  });

  return {
    async show() {
      if (loaded) {
        navigate(dir, { quiet: true, keepError: true });
        return;
      }
      loaded = true;
      pathInput.value = HOME;
      if (!(await navigate(HOME, { quiet: true }))) {
        if (!(await navigate('/'))) pathInput.value = HOME;
      }
    },
  };
}
