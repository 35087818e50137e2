// The PostgreSQL statement log of the test server (log_min_duration_statement=0), which
// `npm test` passes as HATCH_TEST_PG_LOG. The logging collector writes it a little later than
// the query returns, so readers poll.
import * as fs from 'node:fs';
import { StringDecoder } from 'node:string_decoder';

export const logFile = process.env.HATCH_TEST_PG_LOG;

export function readLog() {
  if (!logFile) throw new Error('HATCH_TEST_PG_LOG is not set: the statement log is needed (run `npm test`)');
  return fs.readFileSync(logFile, 'utf8');
}

// One whole test run shares the log, so late in a run it holds every statement of every earlier
// file (tens of MB). Polls read only what was appended since the last read: re-reading and
// splitting the whole file every 50 ms made each wait take seconds on a slow machine.
const seen = { offset: 0, partial: '', lines: [], decoder: new StringDecoder('utf8') };
function readNewLines() {
  if (!logFile) throw new Error('HATCH_TEST_PG_LOG is not set: the statement log is needed (run `npm test`)');
  const fd = fs.openSync(logFile, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    if (size < seen.offset)
      Object.assign(seen, { offset: 0, partial: '', lines: [], decoder: new StringDecoder('utf8') }); // rotated or truncated
    const buf = Buffer.allocUnsafe(1 << 20);
    while (seen.offset < size) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, size - seen.offset), seen.offset);
      if (n <= 0) break;
      seen.offset += n;
      const parts = (seen.partial + seen.decoder.write(buf.subarray(0, n))).split('\n');
      seen.partial = parts.pop();
      for (const l of parts) seen.lines.push(l);
    }
  } finally {
    fs.closeSync(fd);
  }
  return seen.lines;
}

/** The log lines containing `needle` (a string, or a RegExp they match), once there are at least `count`. */
export async function waitForLog(needle, { count = 1, timeout = 10000 } = {}) {
  const until = Date.now() + timeout;
  const hit = typeof needle === 'string' ? (l) => l.includes(needle) : (l) => needle.test(l);
  const found = [];
  let scanned = 0;
  for (;;) {
    const lines = readNewLines();
    if (scanned > lines.length) {
      scanned = 0;
      found.length = 0;
    } // the log started over
    for (; scanned < lines.length; scanned++) if (hit(lines[scanned])) found.push(lines[scanned]);
    if (found.length >= count) return found;
    if (Date.now() > until)
      throw new Error(
        `statement log: ${found.length} of ${count} lines with ${JSON.stringify(needle)} after ${timeout} ms`,
      );
    await new Promise((r) => setTimeout(r, 50));
  }
}
