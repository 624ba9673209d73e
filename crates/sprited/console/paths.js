// Absolute POSIX paths inside a sprite, as the Files tab walks them.
// Pure: no DOM.

/** "/a//b/./c/../d/" → "/a/b/d"; a relative path is taken from "/". */
export function normalizePath(p) {
  const out = [];
  for (const part of String(p ?? '').split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return '/' + out.join('/');
}

/** A name (or relative path) inside a directory. */
export function joinPath(dir, name) {
  const n = String(name ?? '');
  if (n.startsWith('/')) return normalizePath(n);
  return normalizePath(normalizePath(dir) + '/' + n);
}

/** The directory holding a path; "/" for "/" itself. */
export function parentPath(p) {
  const norm = normalizePath(p);
  if (norm === '/') return '/';
  return norm.slice(0, norm.lastIndexOf('/')) || '/';
}

/** The last part of a path ("" for "/"). */
export function baseName(p) {
  const norm = normalizePath(p);
  return norm.slice(norm.lastIndexOf('/') + 1);
}
