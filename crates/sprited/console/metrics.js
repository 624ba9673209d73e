// The Prometheus / OpenMetrics text format, read for a few gauges.
// Pure: no DOM.

function parseLabels(text) {
  const labels = {};
  let i = 0;
  while (i < text.length) {
    while (i < text.length && (text[i] === ',' || text[i] === ' ')) i++;
    if (i >= text.length) break;
    const eq = text.indexOf('=', i);
    if (eq < 0) break;
    const key = text.slice(i, eq).trim();
    i = eq + 1;
    if (text[i] !== '"') break;
    i++;
    let value = '';
    while (i < text.length && text[i] !== '"') {
      if (text[i] === '\\' && i + 1 < text.length) {
        const c = text[i + 1];
        value += c === 'n' ? '\n' : c;
        i += 2;
      } else {
        value += text[i++];
      }
    }
    i++; // the closing quote
    labels[key] = value;
  }
  return labels;
}

function parseValue(s) {
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  return Number(s);
}

/** Every sample line: [{name, labels, value}]. Comments are skipped. */
export function parseMetrics(text) {
  const samples = [];
  for (const raw of String(text).split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    let name, labels = {}, rest;
    const brace = line.indexOf('{');
    const space = line.indexOf(' ');
    if (brace >= 0 && (space < 0 || brace < space)) {
      name = line.slice(0, brace);
      // The closing brace is the last one outside quotes.
      let i = brace + 1, inQuote = false;
      for (; i < line.length; i++) {
        const c = line[i];
        if (c === '\\' && inQuote) { i++; continue; }
        if (c === '"') inQuote = !inQuote;
        else if (c === '}' && !inQuote) break;
      }
      labels = parseLabels(line.slice(brace + 1, i));
      rest = line.slice(i + 1).trim();
    } else {
      if (space < 0) continue;
      name = line.slice(0, space);
      rest = line.slice(space + 1).trim();
    }
    const value = parseValue(rest.split(/\s+/)[0]);
    samples.push({ name, labels, value });
  }
  return samples;
}

/** The value of the first sample named `name` whose labels include `labels`. */
export function metricValue(samples, name, labels = {}) {
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) return s.value;
  }
  return undefined;
}

/** {labelValue: value} of the samples named `name`, keyed by one label. */
export function metricsByLabel(samples, name, label) {
  const out = {};
  for (const s of samples) {
    if (s.name === name && label in s.labels) out[s.labels[label]] = s.value;
  }
  return out;
}
