// Runs before anything else (app.js imports it first): the page's
// Content-Security-Policy allows only <style> elements carrying the nonce
// the server put in <meta name="csp-nonce">, and xterm.js makes <style>
// elements at run time. Every style element created from now on gets the
// nonce.

const meta = document.querySelector('meta[name="csp-nonce"]');
const nonce = meta ? meta.getAttribute('content') : '';

if (nonce) {
  const create = Document.prototype.createElement;
  document.createElement = function createElement(tagName, options) {
    const el = create.call(this, tagName, options);
    if (String(tagName).toLowerCase() === 'style') el.nonce = nonce;
    return el;
  };
}

// xterm.js colours true-colour cells with setAttribute('style', ...), which
// the policy refuses (no 'unsafe-inline'); the same declarations set
// through the CSSOM are allowed. Only our code and xterm's call this.
const setAttribute = Element.prototype.setAttribute;
Element.prototype.setAttribute = function patchedSetAttribute(name, value) {
  if (String(name).toLowerCase() === 'style' && this.style) {
    this.style.cssText = String(value);
    return;
  }
  return setAttribute.call(this, name, value);
};

export const cspNonce = nonce;
