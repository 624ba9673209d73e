// Checks of the console's sources as text: what the Content-Security-
// Policy forbids is absent, every relative import resolves, the pure
// modules stay free of the DOM, and the DOM ids the browser tests use
// are there.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const modules = readdirSync(root).filter((f) => f.endsWith('.js'));
const read = (f) => readFileSync(join(root, f), 'utf8');
const html = read('index.html');

test('index.html has no inline script, handler or style, and carries the nonce meta', () => {
  assert.match(html, /<meta name="csp-nonce" content="\{\{NONCE\}\}">/);
  assert.match(html, /<script type="module" src="\/console\/boot\.js"><\/script>/);
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline <script>');
  assert.doesNotMatch(html, /\son[a-z]+\s*=/i, 'no on*= handlers');
  assert.doesNotMatch(html, /\sstyle\s*=/i, 'no style attributes');
  assert.doesNotMatch(html, /<style/i, 'no <style> blocks');
  assert.doesNotMatch(html, /https?:\/\/(?!www\.w3\.org)/, 'nothing from elsewhere');
  for (const href of html.matchAll(/(?:href|src)="\/console\/([^"]+)"/g)) {
    assert.ok(existsSync(join(root, href[1])), `${href[1]} exists`);
  }
});

test('no eval, innerHTML or style attributes in the modules', () => {
  for (const f of modules) {
    const src = read(f);
    assert.doesNotMatch(src, /\beval\s*\(|new Function\s*\(/, `${f}: no eval`);
    assert.doesNotMatch(src, /\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write/, `${f}: no HTML strings`);
    if (f !== 'csp.js') {
      assert.doesNotMatch(src, /setAttribute\(\s*['"]style['"]/, `${f}: no style attribute`);
    }
    assert.doesNotMatch(src, /localStorage/, `${f}: nothing in localStorage`);
    assert.doesNotMatch(src, /https?:\/\/(?!www\.w3\.org)/, `${f}: nothing from elsewhere`);
  }
});

test('boot.js loads app.js, and only it', () => {
  const imports = [...read('boot.js').matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)|^import\s/gm)];
  assert.deepEqual(imports.map((m) => m[1]), ['./app.js']);
});

test('app.js imports csp.js before anything else', () => {
  const first = read('app.js').match(/^import\s+[^;]*?['"]([^'"]+)['"]/m);
  assert.equal(first[1], './csp.js');
});

test('every relative import resolves', () => {
  for (const f of modules) {
    for (const m of read(f).matchAll(/(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]|import\s+['"](\.[^'"]+)['"]/g)) {
      const spec = m[1] || m[2];
      assert.ok(existsSync(join(root, spec)), `${f} imports ${spec}`);
    }
  }
});

const PURE = ['format.js', 'ndjson.js', 'paths.js', 'url.js', 'metrics.js', 'router.js', 'errors.js',
  'exec_proto.js', 'chart_scale.js', 'usage_series.js', 'bytes.js', 'timeline.js'];

test('the pure modules use no DOM and import only pure modules', () => {
  for (const f of PURE) {
    const src = read(f);
    assert.doesNotMatch(src, /\b(document|window|location|sessionStorage|navigator)\b/, `${f} touches the DOM`);
    for (const m of src.matchAll(/from\s+['"]\.\/([^'"]+)['"]/g)) {
      assert.ok(PURE.includes(m[1]), `${f} imports ${m[1]}, which is not pure`);
    }
  }
});

test('the DOM ids the browser tests rely on are made somewhere', () => {
  const all = html + modules.map(read).join('\n');
  const ids = [
    'signin', 'token', 'signin-submit', 'signin-error', 'nav-sprites', 'nav-usage', 'nav-tokens', 'signout',
    'filter', 'sprites', 'confirm', 'confirm-yes', 'confirm-no', 'create', 'create-name', 'create-image',
    'create-cpus', 'create-ram', 'create-from-sprite', 'create-from-checkpoint', 'create-submit', 'create-error',
    'sprite-status', 'tab-terminal', 'tab-sessions', 'tab-files', 'tab-checkpoints', 'tab-services', 'tab-usage',
    'tab-settings', 'terminal', 'terminal-status', 'terminal-session', 'terminal-new', 'files-path', 'files',
    'file-view', 'upload', 'checkpoints', 'checkpoint-comment', 'checkpoint-create', 'checkpoint-progress',
    'fork', 'fork-name', 'fork-submit', 'service-logs', 'sprite-url', 'url-auth', 'policy-rules', 'policy-save',
    'new-token',
  ];
  for (const id of ids) {
    const made = all.includes(`id="${id}"`) || all.includes(`id: '${id}'`) ||
      all.includes(`'tab-' + tab`) && id.startsWith('tab-');
    assert.ok(made, `#${id} is made`);
  }
  // Chart ids are made as `${prefix}-chart-${key}` from these.
  assert.ok(all.includes('`${prefix}-chart-${r.key}`'));
  assert.ok(all.includes("makeCharts('usage')") && all.includes("makeCharts('host'"));
  for (const k of ['cpu', 'memory', 'hot', 'cold']) assert.ok(all.includes(`key: '${k}'`), `chart ${k}`);
});
