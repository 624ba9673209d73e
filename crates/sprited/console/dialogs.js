// The page's two modal dialogs (both in index.html): #confirm for
// destructive actions and #fork for naming a sprite made from a
// checkpoint. Focus goes into the dialog and back to where it was.

import { busy } from './dom.js';

let pendingConfirm = null;

/**
 * Ask for confirmation: resolves true when #confirm-yes is chosen, false
 * for #confirm-no, Escape or another confirmation replacing this one.
 */
export function confirmDialog(message, { title = 'Are you sure?', yes = 'Confirm', no = 'Cancel' } = {}) {
  const dialog = document.getElementById('confirm');
  const opener = document.activeElement;
  if (pendingConfirm) pendingConfirm(false);
  if (dialog.open) dialog.close();
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = message;
  document.getElementById('confirm-yes').textContent = yes;
  document.getElementById('confirm-no').textContent = no;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    const done = (answer) => {
      dialog.removeEventListener('close', onClose);
      pendingConfirm = null;
      resolve(answer);
    };
    const onClose = () => {
      done(dialog.returnValue === 'yes');
      if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
    };
    pendingConfirm = done;
    dialog.addEventListener('close', onClose);
    dialog.showModal();
    // The safe choice has the focus: Enter does not destroy anything.
    document.getElementById('confirm-no').focus();
  });
}

/**
 * Ask for a new sprite's name in #fork; `submit(name)` does the work and
 * throws to show its error in the dialog (which then stays open).
 * Resolves to submit's result, or null when cancelled.
 */
export function forkDialog({ text, defaultName = '' }, submit) {
  const dialog = document.getElementById('fork');
  const form = document.getElementById('fork-form');
  const input = document.getElementById('fork-name');
  const error = document.getElementById('fork-error');
  const cancel = document.getElementById('fork-cancel');
  const button = document.getElementById('fork-submit');
  const opener = document.activeElement;
  if (dialog.open) dialog.close();
  document.getElementById('fork-text').textContent = text;
  input.value = defaultName;
  error.textContent = '';
  return new Promise((resolve) => {
    let result = null;
    const cleanup = () => {
      form.removeEventListener('submit', onSubmit);
      cancel.removeEventListener('click', onCancel);
      dialog.removeEventListener('close', onClose);
    };
    const onClose = () => {
      cleanup();
      if (result === null && opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
      resolve(result);
    };
    const onCancel = () => dialog.close();
    const onSubmit = async (ev) => {
      ev.preventDefault();
      const name = input.value.trim();
      if (!name) {
        error.textContent = 'Give the new sprite a name.';
        input.focus();
        return;
      }
      error.textContent = '';
      try {
        result = await busy(button, () => submit(name));
        if (result === null || result === undefined) result = name;
        dialog.close();
      } catch (e) {
        error.textContent = e.message || String(e);
        input.focus();
      }
    };
    form.addEventListener('submit', onSubmit);
    cancel.addEventListener('click', onCancel);
    dialog.addEventListener('close', onClose);
    dialog.showModal();
    input.focus();
    input.select();
  });
}
