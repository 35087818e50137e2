/**
 * Every HATCH_* variable, in one place. A bad value never stops the app: it yields one line naming
 * the variable, the value and what is used instead (README has the same table).
 */
import { statSync } from 'node:fs';
import { resolve as resolvePath, sep } from 'node:path';
import type { LogLevel } from './log';
import { isValidRequestId, newRequestId } from './request-id';

export type TagMode = 'none' | 'dogstatsd' | 'telegraf';

/** Where the flight record goes (HATCH_FLIGHT_RECORDER). */
export type RecorderTarget =
  /** One file, rewritten at each ending. */
  | { kind: 'file'; path: string }
  /** One file per run in this directory: `<job>-<UTC timestamp>-<run-id>.jsonl`. */
  | { kind: 'directory'; path: string }
  /** The JSON lines sent there with HATCH_FLIGHT_RECORDER_METHOD. */
  | { kind: 'url'; url: string };

export interface Config {
  log: LogLevel;
  disable: string[];
  requestIdHeader: string;
  sqlComment: boolean;
  /** HATCH_SQL_COMMENT's format when on: `prefix` (`on`: /* <id> … *\/ first) or `sqlcommenter` (src/sql-comment.ts). */
  sqlCommentFormat: 'prefix' | 'sqlcommenter';
  /** Host patterns that receive the request ID; undefined: every host. */
  propagateHosts: string[] | undefined;
  traceparent: boolean;
  statsd: boolean;
  statsdHost: string;
  statsdPort: number;
  statsdPrefix: string;
  statsdTags: TagMode;
  statsdFlushMs: number;
  /** requestId added to pino and winston records. */
  logInjection: boolean;
  /** Events kept in the flight recorder's ring; 0: no ring. */
  flightRecorderSize: number;
  /** Bytes (estimated as the JSON lines' length) the ring keeps at most. */
  flightRecorderBytes: number;
  /** Where the ring goes when the process ends; undefined: no flight recorder. */
  flightRecorder: RecorderTarget | undefined;
  /** PUT or POST, for a URL target. */
  flightRecorderMethod: 'PUT' | 'POST';
  /** How long the upload to a URL target may take, ms. */
  flightRecorderTimeoutMs: number;
  /** How often runtime gauges are sampled; 0: never. */
  runtimeMetricsMs: number;
  /** Bearer token of the /_hatch URLs; undefined: hatches off. */
  hatchToken: string | undefined;
  hatchPrefix: string;
  /** The health summary (pass/fail only) answers without a token. */
  hatchHealthPublic: boolean;
  /** URLs the health hatch calls; each must answer below 500. */
  hatchHealthUrls: string[];
  /** Per-check timeout of the health hatch, ms. */
  hatchHealthTimeoutMs: number;
  /** Absolute paths the health hatch checks: directories must be writable, files readable. */
  hatchHealthPaths: string[];
  /** Who the mail hatch may send to: addresses and `@domain`s (domains lower-cased); empty: no one. */
  hatchMailTo: string[];
  /** How many recent and how many slowest requests the requests hatch keeps. */
  hatchRecentRequests: number;
  hatchSlowRequests: number;
  /** How many requests that ended in a 5xx the requests hatch keeps apart from the recent and slow ones. */
  hatchErrorRequests: number;
  /** A token holder's request that ends in a 5xx is answered with a debug page (src/hatches/debug.ts). */
  hatchDebugErrors: boolean;
  /** The heap hatch may take a snapshot (HATCH_HEAP_SNAPSHOT; a bad value turns it off). */
  hatchHeapSnapshot: boolean;
  /** The run's ID from HATCH_RUN_ID (allowlisted); undefined: a new UUID (src/run.ts). */
  runId: string | undefined;
  /** The run's job name from HATCH_JOB_NAME (metric-safe); undefined: the main script's name (src/run.ts). */
  jobName: string | undefined;
  /** `/* job:<name> run:<id> *\/` on SQL sent outside requests. */
  runComment: boolean;
  /** The check-in URL (healthchecks.io convention), without a trailing slash; undefined: no check-ins. */
  checkinUrl: string | undefined;
  /** Each check-in's timeout, ms. */
  checkinTimeoutMs: number;
}

/** What a job name may hold: a metric name segment (src/sinks/statsd/series.ts) that no SQL comment can end. */
export const JOB_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** Any text as a job name: separators become `_`, trimmed at both ends, at most 64 characters. */
export function safeJobName(raw: string): string {
  const s = raw
    .replace(/^[^A-Za-z0-9_-]+|[^A-Za-z0-9_-]+$/g, '')
    .replace(/[^A-Za-z0-9_-]+/g, '_')
    .slice(0, 64);
  return s === '' ? 'node' : s;
}

export const DEFAULTS: Config = {
  log: 'warn',
  disable: [],
  requestIdHeader: 'x-request-id',
  sqlComment: true,
  sqlCommentFormat: 'prefix',
  propagateHosts: undefined,
  traceparent: true,
  statsd: true,
  statsdHost: '127.0.0.1',
  statsdPort: 8125,
  statsdPrefix: 'hatch.',
  statsdTags: 'none',
  statsdFlushMs: 1000,
  logInjection: true,
  flightRecorderSize: 10_000,
  flightRecorderBytes: 4 * 1024 * 1024,
  flightRecorder: undefined,
  flightRecorderMethod: 'PUT',
  flightRecorderTimeoutMs: 2000,
  runtimeMetricsMs: 10_000,
  hatchToken: undefined,
  hatchPrefix: '/_hatch',
  hatchHealthPublic: false,
  hatchHealthUrls: [],
  hatchHealthTimeoutMs: 2000,
  hatchHealthPaths: [],
  hatchMailTo: [],
  hatchRecentRequests: 200,
  hatchSlowRequests: 50,
  hatchErrorRequests: 50,
  hatchDebugErrors: false,
  hatchHeapSnapshot: true,
  runId: undefined,
  jobName: undefined,
  runComment: true,
  checkinUrl: undefined,
  checkinTimeoutMs: 3000,
};

let active: Config = DEFAULTS;

/**
 * The configuration the agent started with (DEFAULTS until it starts): the one place patches and
 * sinks read a setting from, at the time they need it, instead of keeping a copy of their own.
 */
export function activeConfig(): Config {
  return active;
}

/** Set once by src/register.ts, after loadConfig. */
export function setActiveConfig(c: Config): void {
  active = c;
}

/** One address (`ops@example.com`) or a whole domain (`@example.com`): what HATCH_MAIL_TO lists. */
export const MAIL_TO_ENTRY =
  /^([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+)?@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$/;

/** The shortest HATCH_TOKEN accepted: shorter ones are guessable and leave the hatches off. */
export const MIN_TOKEN_LENGTH = 24;

export interface ConfigResult {
  config: Config;
  /** One line per rejected setting. */
  problems: string[];
}

type Env = Record<string, string | undefined>;

export function loadConfig(env: Env = process.env): ConfigResult {
  const problems: string[] = [];
  const c: Config = { ...DEFAULTS, disable: [], hatchHealthUrls: [] };

  const reject = (name: string, value: string, why: string, used: unknown) => {
    problems.push(`${name}=${JSON.stringify(value)} ${why}; using ${JSON.stringify(used)}`);
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[], fallback: T): T => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const v = raw.trim().toLowerCase();
    if ((allowed as readonly string[]).includes(v)) return v as T;
    reject(name, raw, `is not one of ${allowed.join('|')}`, fallback);
    return fallback;
  };
  const onOff = (name: string, fallback: boolean): boolean => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const v = raw.trim().toLowerCase();
    if (['on', 'true', '1', 'yes'].includes(v)) return true;
    if (['off', 'false', '0', 'no'].includes(v)) return false;
    reject(name, raw, 'is not on|off', fallback ? 'on' : 'off');
    return fallback;
  };
  const integer = (name: string, min: number, max: number, fallback: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const v = raw.trim();
    if (/^\d+$/.test(v) && Number(v) >= min && Number(v) <= max) return Number(v);
    reject(name, raw, `is not a whole number from ${min} to ${max}`, fallback);
    return fallback;
  };
  const matching = (name: string, pattern: RegExp, what: string, fallback: string): string => {
    const raw = env[name];
    if (raw === undefined) return fallback;
    const v = raw.trim();
    if (pattern.test(v)) return v;
    reject(name, raw, `is not ${what}`, fallback);
    return fallback;
  };

  c.log = oneOf<LogLevel>('HATCH_LOG', ['debug', 'info', 'warn', 'silent'], DEFAULTS.log);
  c.disable = (env.HATCH_DISABLE ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  c.requestIdHeader = matching(
    'HATCH_REQUEST_ID_HEADER',
    /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/,
    'a valid HTTP header name',
    DEFAULTS.requestIdHeader,
  ).toLowerCase();
  const sqlComment = env.HATCH_SQL_COMMENT;
  if (sqlComment !== undefined && sqlComment.trim().toLowerCase() === 'sqlcommenter') {
    c.sqlCommentFormat = 'sqlcommenter';
  } else if (sqlComment !== undefined && sqlComment !== '') {
    const v = sqlComment.trim().toLowerCase();
    if (['on', 'true', '1', 'yes'].includes(v)) c.sqlComment = true;
    else if (['off', 'false', '0', 'no'].includes(v)) c.sqlComment = false;
    else reject('HATCH_SQL_COMMENT', sqlComment, 'is not on|off|sqlcommenter', 'on');
  }
  c.traceparent = onOff('HATCH_TRACEPARENT', DEFAULTS.traceparent);
  const hosts = env.HATCH_PROPAGATE_HOSTS;
  if (hosts !== undefined && hosts.trim() !== '') {
    const list = hosts
      .split(',')
      .map((h) => h.trim())
      .filter(Boolean);
    const bad = list.filter((h) => !/^(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?$/.test(h));
    // A bad allowlist must not widen propagation: the bad entries are dropped, never "all hosts".
    if (bad.length > 0)
      reject(
        'HATCH_PROPAGATE_HOSTS',
        hosts,
        `has entries that are no host pattern (${bad.join(', ')})`,
        list.filter((h) => !bad.includes(h)).join(','),
      );
    c.propagateHosts = list.filter((h) => !bad.includes(h));
  }
  c.statsd = onOff('HATCH_STATSD', DEFAULTS.statsd);
  c.statsdHost = matching(
    'HATCH_STATSD_HOST',
    /^[A-Za-z0-9.:_-]{1,253}$/,
    'a hostname or IP address',
    DEFAULTS.statsdHost,
  );
  c.statsdPort = integer('HATCH_STATSD_PORT', 1, 65535, DEFAULTS.statsdPort);
  c.statsdPrefix = matching(
    'HATCH_STATSD_PREFIX',
    /^([A-Za-z0-9_-]+\.)*$/,
    'empty or dot-separated [A-Za-z0-9_-] words ending in a dot',
    DEFAULTS.statsdPrefix,
  );
  c.statsdTags = oneOf<TagMode>('HATCH_STATSD_TAGS', ['none', 'dogstatsd', 'telegraf'], DEFAULTS.statsdTags);
  c.statsdFlushMs = integer('HATCH_STATSD_FLUSH_MS', 100, 60000, DEFAULTS.statsdFlushMs);
  c.logInjection = onOff('HATCH_LOG_INJECTION', DEFAULTS.logInjection);
  c.flightRecorderSize = integer('HATCH_FLIGHT_RECORDER_SIZE', 0, 1_000_000, DEFAULTS.flightRecorderSize);
  c.flightRecorderBytes = integer('HATCH_FLIGHT_RECORDER_BYTES', 65536, 1024 ** 3, DEFAULTS.flightRecorderBytes);
  c.flightRecorder = recorderTarget(env.HATCH_FLIGHT_RECORDER, reject);
  if (c.flightRecorder !== undefined && c.flightRecorderSize === 0) {
    reject(
      'HATCH_FLIGHT_RECORDER_SIZE',
      env.HATCH_FLIGHT_RECORDER_SIZE ?? '',
      'is 0 while HATCH_FLIGHT_RECORDER names a destination',
      DEFAULTS.flightRecorderSize,
    );
    c.flightRecorderSize = DEFAULTS.flightRecorderSize;
  }
  c.flightRecorderMethod = oneOf('HATCH_FLIGHT_RECORDER_METHOD', ['put', 'post'], 'put').toUpperCase() as
    'PUT' | 'POST';
  c.flightRecorderTimeoutMs = integer('HATCH_FLIGHT_RECORDER_TIMEOUT_MS', 100, 60000, DEFAULTS.flightRecorderTimeoutMs);
  c.runtimeMetricsMs = integer('HATCH_RUNTIME_METRICS_MS', 0, 3_600_000, DEFAULTS.runtimeMetricsMs);
  if (c.runtimeMetricsMs > 0 && c.runtimeMetricsMs < 100) {
    reject('HATCH_RUNTIME_METRICS_MS', env.HATCH_RUNTIME_METRICS_MS!, 'is neither 0 (off) nor at least 100', 100);
    c.runtimeMetricsMs = 100;
  }

  // The token's value is never printed, only its length.
  const token = env.HATCH_TOKEN;
  if (token !== undefined && token !== '') {
    if (token.length < MIN_TOKEN_LENGTH) {
      problems.push(
        `HATCH_TOKEN is ${token.length} characters, shorter than ${MIN_TOKEN_LENGTH}; the /_hatch URLs stay off`,
      );
    } else if (!/^[\x21-\x7e]+$/.test(token)) {
      problems.push(
        'HATCH_TOKEN holds blanks, control or non-ASCII characters, which an Authorization header cannot carry; the /_hatch URLs stay off',
      );
    } else {
      c.hatchToken = token;
    }
  }
  c.hatchPrefix = matching(
    'HATCH_PREFIX',
    /^(\/[A-Za-z0-9._~-]+)+$/,
    'a path such as /_hatch (slash-separated [A-Za-z0-9._~-] segments, no trailing slash)',
    DEFAULTS.hatchPrefix,
  );
  c.hatchHealthPublic = onOff('HATCH_HEALTH_PUBLIC', DEFAULTS.hatchHealthPublic);
  const urls = env.HATCH_HEALTH_URLS;
  if (urls !== undefined && urls.trim() !== '') {
    const list = urls
      .split(',')
      .map((u) => u.trim())
      .filter(Boolean);
    const bad = list.filter((u) => {
      try {
        return !/^https?:$/.test(new URL(u).protocol);
      } catch {
        return true;
      }
    });
    if (bad.length > 0)
      reject(
        'HATCH_HEALTH_URLS',
        urls,
        `has entries that are no http(s) URL (${bad.join(', ')})`,
        list.filter((u) => !bad.includes(u)).join(','),
      );
    c.hatchHealthUrls = list.filter((u) => !bad.includes(u));
  }
  c.hatchHealthTimeoutMs = integer('HATCH_HEALTH_TIMEOUT_MS', 100, 60000, DEFAULTS.hatchHealthTimeoutMs);
  // Comma lists whose bad entries are dropped with one line (the good ones are used).
  const entries = (name: string, good: (v: string) => boolean, what: string): string[] => {
    const raw = env[name];
    if (raw === undefined || raw.trim() === '') return [];
    const list = raw
      .split(',')
      .map((v) => v.trim())
      .filter(Boolean);
    const bad = list.filter((v) => !good(v));
    const kept = list.filter((v) => good(v));
    if (bad.length > 0) reject(name, raw, `has entries that are no ${what} (${bad.join(', ')})`, kept.join(','));
    return kept;
  };
  c.hatchHealthPaths = entries('HATCH_HEALTH_PATHS', (v) => v.startsWith('/') && !v.includes('\0'), 'absolute path');
  c.hatchMailTo = entries('HATCH_MAIL_TO', (v) => MAIL_TO_ENTRY.test(v), 'address or @domain').map((v) => {
    const at = v.lastIndexOf('@');
    return v.slice(0, at) + v.slice(at).toLowerCase();
  });
  c.hatchRecentRequests = integer('HATCH_RECENT_REQUESTS', 0, 10000, DEFAULTS.hatchRecentRequests);
  c.hatchSlowRequests = integer('HATCH_SLOW_REQUESTS', 0, 1000, DEFAULTS.hatchSlowRequests);
  c.hatchErrorRequests = integer('HATCH_ERROR_REQUESTS', 0, 1000, DEFAULTS.hatchErrorRequests);
  c.hatchDebugErrors = onOff('HATCH_DEBUG_ERRORS', DEFAULTS.hatchDebugErrors);
  if (c.hatchDebugErrors && c.hatchToken === undefined) {
    // The pages are for the token's holder: with no (valid) token there is nobody to show them to.
    problems.push('HATCH_DEBUG_ERRORS=on needs a valid HATCH_TOKEN; using "off"');
    c.hatchDebugErrors = false;
  }
  // A snapshot can take the process down (about twice the heap in memory): a value not understood turns it off.
  const heap = env.HATCH_HEAP_SNAPSHOT;
  if (heap !== undefined && heap.trim() !== '') {
    const v = heap.trim().toLowerCase();
    if (['on', 'true', '1', 'yes'].includes(v)) c.hatchHeapSnapshot = true;
    else {
      c.hatchHeapSnapshot = false;
      if (!['off', 'false', '0', 'no'].includes(v)) reject('HATCH_HEAP_SNAPSHOT', heap, 'is not on|off', 'off');
    }
  }

  // The run (src/run.ts). Its ID reaches SQL comments and check-in URLs: the request-ID allowlist.
  const runId = env.HATCH_RUN_ID;
  if (runId !== undefined && runId !== '') {
    if (isValidRequestId(runId)) c.runId = runId;
    else {
      c.runId = newRequestId();
      reject('HATCH_RUN_ID', runId, 'is outside the request-ID allowlist [A-Za-z0-9._:-]{1,128}', c.runId);
    }
  }
  const job = env.HATCH_JOB_NAME;
  if (job !== undefined && job.trim() !== '') {
    c.jobName = safeJobName(job.trim());
    if (c.jobName !== job.trim()) reject('HATCH_JOB_NAME', job, 'is not 1 to 64 of [A-Za-z0-9_-]', c.jobName);
  }
  c.runComment = onOff('HATCH_RUN_COMMENT', DEFAULTS.runComment);
  const checkin = env.HATCH_CHECKIN_URL;
  if (checkin !== undefined && checkin.trim() !== '') {
    let ok = false;
    try {
      const u = new URL(checkin.trim());
      ok = /^https?:$/.test(u.protocol) && u.search === '' && u.hash === '';
    } catch {
      // not a URL: rejected below
    }
    // The URL is a secret of sorts (anyone holding it can ping): only its length is printed.
    if (ok) c.checkinUrl = checkin.trim().replace(/\/+$/, '');
    else
      problems.push(
        `HATCH_CHECKIN_URL (${checkin.length} characters) is no http(s) URL without a query or fragment; no check-ins are sent`,
      );
  }
  c.checkinTimeoutMs = integer('HATCH_CHECKIN_TIMEOUT_MS', 100, 60000, DEFAULTS.checkinTimeoutMs);
  return { config: c, problems };
}

/**
 * HATCH_FLIGHT_RECORDER: an http(s) URL, a directory (an existing one, or a path ending in `/`), or a
 * file. Paths are resolved now: the app may chdir before it ends.
 */
function recorderTarget(
  raw: string | undefined,
  reject: (name: string, value: string, why: string, used: unknown) => void,
): RecorderTarget | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  const v = raw.trim();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) {
    try {
      const u = new URL(v);
      if (u.protocol === 'http:' || u.protocol === 'https:') return { kind: 'url', url: u.href };
    } catch {
      // told below
    }
    // The value may be a pre-signed URL: only its scheme and host are repeated.
    reject(
      'HATCH_FLIGHT_RECORDER',
      v.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/?#]*).*$/i, '$1/…'),
      'is no http(s) URL',
      'no flight recorder',
    );
    return undefined;
  }
  const resolved = resolvePath(v);
  if (v.endsWith('/') || v.endsWith(sep)) return { kind: 'directory', path: resolved };
  try {
    if (statSync(resolved).isDirectory()) return { kind: 'directory', path: resolved };
  } catch {
    // not there yet: a file to be
  }
  return { kind: 'file', path: resolved };
}
