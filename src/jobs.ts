/**
 * Work that is not a request but is run like one: a BullMQ job's attempt (patches/bullmq) and a
 * node-cron or cron tick (patches/node-cron.ts, patches/cron.ts). `runJob` enters a context of its
 * own for it (the same AsyncLocalStorage store kind a request gets, so the SQL comment, the log
 * field, the outgoing header and the recorders read it unchanged), times it, and publishes one
 * `hatch:job` event when it ends: StatsD, the requests store and the flight recorder take it from
 * there.
 *
 * - The function's return value is handed back as it is: a value, or the same promise. A promise is
 *   observed with `then(onOk, onFail)`, which marks it handled; every library that calls through
 *   here handles that promise itself (node-cron and cron 4 catch the tick's), so no unhandled
 *   rejection is hidden. A synchronous throw is recorded and rethrown. The BullMQ patch does not
 *   observe the processor's promise: it enters the context with `jobContext` and records the end
 *   with `finish` when BullMQ itself moves the job on.
 * - Queue and job names are the app's strings: each is cut to MAX_NAME characters, and once
 *   MAX_NAMES distinct names were seen, a new one is `other` (as routes are bounded by the series
 *   cap), so metrics and records stay bounded.
 * Limitations: a thenable that is not a native promise is observed through Promise.resolve (its
 * `then` is called once more).
 */
import { storage, type RequestContext } from './context';
import { channels, type ErrorDetail, type JobEvent } from './bus';
import { describeError } from './errors';
import { log } from './log';
import { now } from './clock';
import { safeJobName } from './config';

export const MAX_NAME = 100;
export const MAX_NAMES = 200;

/** What a job's context holds besides a request's fields. */
export interface JobContext extends RequestContext {
  job: JobInfo;
}

export interface JobInfo {
  system: string;
  queue: string;
  name: string;
  jobId: string;
  attempt: number;
  /** ms from enqueueing to start, when known (a BullMQ job's first attempt). */
  wait: number | undefined;
}

/** Names seen, by kind (`queue`, `job`, `schedule`): a map per kind, so a lookup builds no key string. */
const names = new Map<string, Map<string, string>>();
let nameCount = 0;

/** An app-chosen name, cut and bounded (see the header); '' stays ''. */
export function boundedName(kind: string, raw: unknown): string {
  const s = typeof raw === 'string' ? raw : raw === undefined || raw === null ? '' : String(raw);
  if (s === '') return '';
  const cut = s.length > MAX_NAME ? s.slice(0, MAX_NAME) : s;
  let seen = names.get(kind);
  if (seen === undefined) names.set(kind, (seen = new Map()));
  const known = seen.get(cut);
  if (known !== undefined) return known;
  if (nameCount >= MAX_NAMES) return 'other';
  seen.set(cut, cut);
  nameCount++;
  return cut;
}

/**
 * Records the end of `ctx`'s run: one `hatch:job` event, when anything listens. For a caller that
 * learns the end itself (the BullMQ patch, from BullMQ's own moveToCompleted and moveToFailed).
 * Never throws.
 */
export function finish(ctx: JobContext, failed: boolean, err: unknown): void {
  try {
    if (!channels.job.hasSubscribers) return;
    const j = ctx.job;
    let error: ErrorDetail | undefined;
    if (failed) error = describeError(err, 'handler', 500);
    const event: JobEvent = {
      requestId: ctx.id,
      system: j.system,
      queue: j.queue,
      name: j.name,
      jobId: j.jobId,
      attempt: j.attempt,
      outcome: failed ? 'failed' : 'completed',
      wait: j.wait,
      start: ctx.start,
      duration: now() - ctx.start,
      error,
    };
    channels.job.publish(event);
  } catch (e) {
    log.warnOnce('job-record', `recording a job failed: ${(e as Error).message}`);
  }
}

/** A new job context with ID `id` (allowlisted by the caller), begun now. */
export function jobContext(id: string, job: JobInfo): JobContext {
  return { id, start: now(), route: undefined, error: undefined, job };
}

/**
 * Records the end of `ctx`'s run from what its function returned: at once for a value, when it
 * settles for a promise (observed, see the header). Never throws; the result is the caller's to return.
 */
function settle(ctx: JobContext, result: unknown): void {
  try {
    if (result !== null && (typeof result === 'object' || typeof result === 'function') && isThenable(result)) {
      const done = () => finish(ctx, false, undefined);
      const failed = (err: unknown) => finish(ctx, true, err);
      if (result instanceof Promise) result.then(done, failed);
      else Promise.resolve(result).then(done, failed);
    } else {
      finish(ctx, false, undefined);
    }
  } catch (e) {
    log.warnOnce('job-settle', `recording a job failed: ${(e as Error).message}`);
  }
}

/** Records a run whose function threw synchronously (the caller rethrows). */
export function threw(ctx: JobContext, err: unknown): void {
  finish(ctx, true, err);
}

/**
 * Calls `fn` with `self` and `args` in a new job context and records its end. Returns exactly what
 * `fn` returns, throws exactly what it throws. Between the app's function and its caller it puts two
 * frames, this function's and AsyncLocalStorage's `run`.
 */
export function runJob(
  id: string,
  job: JobInfo,
  fn: (...a: never[]) => unknown,
  self: unknown,
  args: ArrayLike<unknown>,
): unknown {
  const ctx = jobContext(id, job);
  let result: unknown;
  try {
    result = storage.run(ctx, Reflect.apply, fn, self, args);
  } catch (err) {
    threw(ctx, err);
    throw err;
  }
  settle(ctx, result);
  return result;
}

function isThenable(v: object): boolean {
  try {
    return typeof (v as { then?: unknown }).then === 'function';
  } catch {
    return false;
  }
}

/**
 * A schedule's name for its `job.run` metric and its records: its own name (metric-safe), else its
 * expression made metric-safe (`*` x, `/` s, `,` c, `?` q, `#` h, blanks `_`: `*\/5 * * * *` is
 * `xs5_x_x_x_x`), bounded like other job names.
 */
export function scheduleName(name: unknown, expression: unknown): string {
  let s = '';
  if (typeof name === 'string' && name.trim() !== '') s = safeJobName(name.trim());
  else if (typeof expression === 'string')
    s = expression
      .trim()
      .replace(/\*/g, 'x')
      .replace(/\//g, 's')
      .replace(/,/g, 'c')
      .replace(/\?/g, 'q')
      .replace(/#/g, 'h')
      .replace(/\s+/g, '_')
      .replace(/[^A-Za-z0-9_-]+/g, '_')
      .slice(0, 64);
  else if (expression instanceof Date || (expression !== null && typeof expression === 'object')) s = 'date';
  return boundedName('schedule', s === '' ? 'schedule' : s);
}
