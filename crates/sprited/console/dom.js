// Building DOM nodes without HTML strings: API data only ever becomes
// text nodes or attribute values, never markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

function setProps(el, props) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'style') throw new Error('no style attributes (CSP): use a class');
    if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'text') el.textContent = String(v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' && 'value' in el && el.namespaceURI !== SVG_NS) el.value = String(v);
    else if (k === 'checked' || k === 'selected') el[k] = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

/** h('button', {class: 'x', onclick: f}, 'text', child) → element. */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

/** The same for SVG elements. */
export function s(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setProps(el, props);
  append(el, children);
  return el;
}

/** Replace an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Say something to screen readers (and show it in the status line). */
export function announce(text) {
  const el = document.getElementById('announcer');
  if (!el) return;
  // Emptied first so that the same text twice is announced twice.
  el.textContent = '';
  setTimeout(() => {
    el.textContent = text;
  }, 30);
}

/** Show an error (or clear it with ''), near what caused it. */
export function showError(el, err) {
  if (!el) return;
  el.textContent = err ? (err.message || String(err)) : '';
}

/** A <label> and its control, in a wrapper div. */
export function field(labelText, control, { hint, className } = {}) {
  const wrap = h('div', { class: ['field', className] });
  wrap.append(h('label', { for: control.id }, labelText), control);
  if (hint) {
    const hid = control.id + '-hint';
    control.setAttribute('aria-describedby', hid);
    wrap.append(h('small', { id: hid, class: 'hint' }, hint));
  }
  return wrap;
}

/** Disable a button while `fn` runs; returns what `fn` returns. */
export async function busy(button, fn) {
  const was = button.disabled;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await fn();
  } finally {
    button.disabled = was;
    button.removeAttribute('aria-busy');
  }
}
