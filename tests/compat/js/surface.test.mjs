// Nothing of @fly/sprites's public surface goes untested: the installed
// package's public calls are exactly those surface.mjs lists.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { publicNames, ELSEWHERE, TESTED } from './surface.mjs';

test('every public call of @fly/sprites is listed, once', () => {
  const installed = publicNames();
  const tested = Object.values(TESTED).flat();
  const all = [...tested, ...Object.keys(ELSEWHERE)];
  assert.deepEqual(all.filter((n, i) => all.indexOf(n) !== i), [], 'listed twice');
  const listed = new Set(all);
  assert.deepEqual([...installed].filter(n => !listed.has(n)).sort(), [], 'public calls no test lists');
  assert.deepEqual([...listed].filter(n => !installed.has(n)).sort(), [], 'listed calls the SDK no longer has');
  assert.ok(installed.size >= 140, String(installed.size));
  // Each file named holds its own check.
  for (const file of Object.keys(TESTED)) {
    assert.match(readFileSync(path.join(import.meta.dirname, file), 'utf8'), new RegExp(`assertCalled\\('${file.replace('.', '\\.')}'\\)`));
  }
});

test('calls tested elsewhere are called there', () => {
  for (const [name, file] of Object.entries(ELSEWHERE)) {
    const p = path.join(import.meta.dirname, file);
    // The endpoints land with those files (fs watch, watchSprites, org tokens).
    if (!existsSync(p)) continue;
    const member = name.split('.').at(-1);
    const text = readFileSync(p, 'utf8');
    assert.ok(text.includes(member) || ['next', 'close', 'isClosed', 'processAll', 'connect'].includes(member),
      `${file} does not call ${name}`);
  }
});
