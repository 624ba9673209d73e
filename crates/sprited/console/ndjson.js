// Newline-delimited JSON read from a streamed body, line by line as it
// arrives. Pure: works on any ReadableStream of bytes (fetch's body).

/** Splits text arriving in arbitrary chunks into whole lines. */
export class LineSplitter {
  constructor() {
    this.buf = '';
  }

  /** Feed a chunk; returns the lines it completed (without "\n" / "\r\n"). */
  push(chunk) {
    this.buf += chunk;
    const lines = [];
    let i;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      let line = this.buf.slice(0, i);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      lines.push(line);
      this.buf = this.buf.slice(i + 1);
    }
    return lines;
  }

  /** The last line when the stream ended without a newline. */
  end() {
    const rest = this.buf.endsWith('\r') ? this.buf.slice(0, -1) : this.buf;
    this.buf = '';
    return rest === '' ? [] : [rest];
  }
}

/**
 * One line as a value: blank lines are skipped (null); a line that is not
 * JSON is kept as {type: "raw", data} rather than breaking the stream.
 */
export function parseLine(line) {
  if (line.trim() === '') return null;
  try {
    return JSON.parse(line);
  } catch {
    return { type: 'raw', data: line };
  }
}

/** Lines of a byte stream, as they complete. */
export async function* readLines(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const split = new LineSplitter();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      yield* split.push(decoder.decode(value, { stream: true }));
    }
    yield* split.push(decoder.decode());
    yield* split.end();
  } finally {
    reader.releaseLock();
  }
}

/** JSON values of an NDJSON byte stream, as they arrive. */
export async function* readNdjson(body) {
  for await (const line of readLines(body)) {
    const v = parseLine(line);
    if (v !== null) yield v;
  }
}
