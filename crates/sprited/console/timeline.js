// The order of a checkpoint timeline. Pure: no DOM.

function idNumber(id) {
  const n = Number(String(id).replace(/^v/, ''));
  return Number.isFinite(n) ? n : -1;
}

/** Newest first: by creation time, then by the number of "vN". */
export function sortCheckpoints(list) {
  return [...list].sort((a, b) =>
    (Date.parse(b.create_time) || 0) - (Date.parse(a.create_time) || 0) || idNumber(b.id) - idNumber(a.id));
}
