// Whether file bytes can be shown as text. Pure: no DOM.

/** Files above this are offered for download rather than shown. */
export const MAX_VIEW_BYTES = 1024 * 1024;

/**
 * The text of `bytes` if it reads as UTF-8 text, else null (a NUL byte
 * or invalid UTF-8 means binary).
 */
export function textOf(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (u8.includes(0)) return null;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(u8);
  } catch {
    return null;
  }
}
