/**
 * The agent's own log: one line per event worth telling, on stderr, never per call.
 * Levels come from HATCH_LOG; `once` keeps a repeating fault (a socket error on every flush,
 * a wrapper that throws on every query) down to a single line.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'silent';

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, silent: 100 };
let threshold = RANK.warn;
const said = new Set<string>();

export function setLogLevel(level: LogLevel): void {
  threshold = RANK[level];
}

function write(level: 'debug' | 'info' | 'warn', message: string): void {
  if (RANK[level] < threshold) return;
  try {
    process.stderr.write(`hatch-agent ${level}: ${message}\n`);
  } catch {
    // stderr closed: nothing sensible left to do, and the app must not notice.
  }
}

export const log = {
  debug: (m: string) => write('debug', m),
  info: (m: string) => write('info', m),
  warn: (m: string) => write('warn', m),
  /** Warn once per key for the life of the process. */
  warnOnce(key: string, m: string): void {
    if (said.has(key)) return;
    said.add(key);
    write('warn', m);
  },
};
