// The PostgreSQL statement log of the test server (log_min_duration_statement=0), which
// `npm test` passes as HATCH_TEST_PG_LOG. The logging collector writes it a little later than
// the query returns, so readers poll.
import * as fs from 'node:fs';

export const logFile = process.env.HATCH_TEST_PG_LOG;

export function readLog() {
  if (!logFile) throw new Error('HATCH_TEST_PG_LOG is not set: the statement log is needed (run `npm test`)');
  return fs.readFileSync(logFile, 'utf8');
}

/** The log lines containing `needle` (a string, or a RegExp they match), once there are at least `count`. */
export async function waitForLog(needle, { count = 1, timeout = 10000 } = {}) {
  const until = Date.now() + timeout;
  const hit = typeof needle === 'string' ? (l) => l.includes(needle) : (l) => needle.test(l);
  for (;;) {
    const lines = readLog().split('\n').filter(hit);
    if (lines.length >= count) return lines;
    if (Date.now() > until) throw new Error(`statement log: ${lines.length} of ${count} lines with ${JSON.stringify(needle)} after ${timeout} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
