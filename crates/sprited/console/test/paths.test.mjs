import test from 'node:test';
import assert from 'node:assert/strict';
import { normalizePath, joinPath, parentPath, baseName } from '../paths.js';

test('normalizePath', () => {
  assert.equal(normalizePath('/'), '/');
  assert.equal(normalizePath(''), '/');
  assert.equal(normalizePath('/a//b/./c/../d/'), '/a/b/d');
  assert.equal(normalizePath('/../..'), '/');
  assert.equal(normalizePath('home/sprite'), '/home/sprite');
});

test('joinPath', () => {
  assert.equal(joinPath('/home/sprite', 'notes.txt'), '/home/sprite/notes.txt');
  assert.equal(joinPath('/', 'etc'), '/etc');
  assert.equal(joinPath('/home/sprite/', '../x'), '/home/x');
  assert.equal(joinPath('/home', '/abs/p'), '/abs/p');
  assert.equal(joinPath('/d', 'a b+c.txt'), '/d/a b+c.txt');
});

test('parentPath and baseName', () => {
  assert.equal(parentPath('/home/sprite'), '/home');
  assert.equal(parentPath('/home'), '/');
  assert.equal(parentPath('/'), '/');
  assert.equal(baseName('/home/sprite/a.txt'), 'a.txt');
  assert.equal(baseName('/'), '');
});
