// A server's log file read back by the tests (PostgreSQL's statement log, MariaDB's general log):
// its size now, its text from a byte offset, and a poll until a pattern matches.
//   const from = sizeOf(file); ...; await waitForLog(file, /statement: SELECT 1/, { from, what: 'postgres log' })
// Limitation: the whole file is read at each poll (test logs are small).
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Byte size of the file now (0 when it does not exist yet). */
export function sizeOf(file) {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

/** The file's text after byte offset `from` ('' when it does not exist yet). */
export function readFrom(file, from = 0) {
  let buf;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    if (e.code === 'ENOENT') return '';
    throw e;
  }
  return buf.subarray(from).toString('utf8');
}

/**
 * Polls the file until `pattern` (RegExp, string, or fn(text) => boolean) matches the text after
 * byte offset `from`; resolves with that text, or rejects after `timeoutMs` with the last lines.
 */
export async function waitForLog(file, pattern, { from = 0, timeoutMs = 5000, what = 'log' } = {}) {
  const test =
    typeof pattern === 'function'
      ? pattern
      : pattern instanceof RegExp
        ? (t) => pattern.test(t)
        : (t) => t.includes(pattern);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = readFrom(file, from);
    if (test(text)) return text;
    if (Date.now() > deadline) {
      throw new Error(
        `${what} ${file} did not match ${pattern} within ${timeoutMs} ms; last lines:\n${text.split('\n').slice(-20).join('\n')}`,
      );
    }
    await sleep(25);
  }
}
