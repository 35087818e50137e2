/**
 * The errors the agent sees.
 *
 * - Errors a request ends in: framework patches hand them to `captureError` as they reach the
 *   framework's error path (the first one is kept on the request's context, nothing else happens on
 *   the request's path). When the request ends with a status of 500 or above, the http server patch
 *   asks `endError` for its record: the captured error, described (`describeError`), or a `status`
 *   record when the app answered 5xx without an error the agent saw. The record travels on the
 *   request's own `hatch:http.server` event, so each failed request is counted once (StatsD
 *   errors{kind=handler|status,route,status_code}) and filed with its record. An error
 *   that ends in a status below 500 (a 404 thrown as an error) is the client's, not counted.
 * - Other errors (the error hatch's test error, an uncaught throw from a request's handler, a bad
 *   request ID): `reportError` publishes them on `hatch:error` (StatsD errors{kind}) and logs them on
 *   stderr with the request's ID. The http server patch sends errors thrown synchronously by the app's
 *   handler through it from an `uncaughtExceptionMonitor` listener: the error is never caught, it
 *   goes on to Node unchanged.
 *
 * Nothing here throws, whatever the app threw (a string, null, an object whose getters throw, a
 * cyclic object); the error object is read once, at the request's end, and not kept.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { storage, type RequestContext } from './context';
import { channels, type ErrorDetail, type ErrorEvent } from './bus';
import { log } from './log';

export const MAX_MESSAGE = 500;
export const MAX_FRAMES = 20;
const MAX_FRAME = 300;

export function reportError(kind: string, err: unknown): void {
  try {
    const requestId = storage.getStore()?.id;
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    if (channels.error.hasSubscribers) {
      const event: ErrorEvent = { kind, requestId, message: message.slice(0, 1000) };
      channels.error.publish(event);
    }
    // An app's own crash is printed by Node as it would be without the agent: no second copy.
    if (kind === 'uncaught') return;
    const where = requestId === undefined ? '' : `request ${requestId}: `;
    const stack = err instanceof Error && err.stack ? err.stack : message;
    log.warn(`${where}${kind}: ${stack}`);
  } catch (e) {
    log.warnOnce('report-error', `reporting an error failed: ${(e as Error).message}`);
  }
}

/**
 * Keeps `err` as the error the current request ends in, unless one is kept already (the first is
 * the cause; frameworks pass one error on through several handlers). Outside a request it does
 * nothing. Cheap and never throws: framework patches call it on the error path.
 */
export function captureError(err: unknown): void {
  const ctx = storage.getStore();
  if (ctx !== undefined && ctx.error === undefined) ctx.error = err === undefined ? UNDEFINED : err;
}

/**
 * captureError for the framework request whose node:http request is `req`: nothing when the current
 * context is another request's (a framework's in-process request, as Fastify's inject, made inside a
 * request). A context that holds no request (an http2 stream's) takes it.
 */
export function captureErrorFor(req: unknown, err: unknown): void {
  const ctx = storage.getStore();
  if (ctx !== undefined && ctx.error === undefined && (ctx.req === undefined || ctx.req === req))
    ctx.error = err === undefined ? UNDEFINED : err;
}

/** Stands for a thrown `undefined`, so that it still counts as captured. */
const UNDEFINED = Symbol('undefined');
/** Left in a context whose request was recorded: an error captured later (timers) is not kept. */
const ENDED = Symbol('ended');

/** The record of the error `ctx`'s request ended in, or undefined when its status is below 500. */
export function endError(ctx: RequestContext, status: number): ErrorDetail | undefined {
  const err = ctx.error;
  if (err === undefined && status < 500) return undefined; // most requests: nothing to record or clear
  ctx.error = ENDED; // not kept past the record: a context can outlive its request (timers)
  if (err === ENDED || !(status >= 500)) return undefined;
  if (err === undefined)
    return { kind: 'status', name: 'none', message: `answered ${status} with no error`, stack: [], status };
  return describeError(err === UNDEFINED ? undefined : err, 'handler', status);
}

/** An error (or anything thrown) as plain strings; never throws. */
export function describeError(err: unknown, kind: ErrorDetail['kind'], status: number): ErrorDetail {
  let name = 'unknown';
  let message = '';
  let stack: string[] = [];
  try {
    if (err === null) name = 'null';
    else if (typeof err === 'object' || typeof err === 'function') {
      const e = err as { name?: unknown; message?: unknown; stack?: unknown };
      name = safeRead(() => (typeof e.name === 'string' && e.name !== '' ? e.name : undefined)) ?? className(err);
      message = safeRead(() => (typeof e.message === 'string' ? e.message : undefined)) ?? safeString(err);
      const text = safeRead(() => (typeof e.stack === 'string' ? e.stack : undefined));
      if (text !== undefined) stack = frames(text);
    } else {
      name = typeof err;
      message = safeString(err);
    }
  } catch {
    // what was read so far is kept
  }
  if (message.length > MAX_MESSAGE) message = message.slice(0, MAX_MESSAGE) + '…';
  if (name.length > 100) name = name.slice(0, 100);
  return { kind, name, message, stack, status };
}

function safeRead<T>(read: () => T | undefined): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

function className(v: object): string {
  try {
    const c = (v as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof c === 'string' && c !== '' ? c : 'object';
  } catch {
    return 'object';
  }
}

function safeString(v: unknown): string {
  try {
    if (typeof v === 'object' && v !== null) {
      const s = String(v);
      if (s !== '[object Object]') return s;
      try {
        return JSON.stringify(v) ?? s; // a cyclic object throws: its tag is used
      } catch {
        return s;
      }
    }
    return String(v);
  } catch {
    return Object.prototype.toString.call(v);
  }
}

/** The first MAX_FRAMES `at …` lines of a stack, trimmed, with the app's directory made relative. */
export function frames(stack: string): string[] {
  const out: string[] = [];
  const root = appDir();
  let from = 0;
  while (out.length < MAX_FRAMES && from < stack.length) {
    let end = stack.indexOf('\n', from);
    if (end === -1) end = stack.length;
    const line = stack.slice(from, end).trim();
    from = end + 1;
    if (!line.startsWith('at ')) continue;
    let f = root === '' ? line : line.split(`file://${root}`).join('').split(root).join('');
    if (f.length > MAX_FRAME) f = f.slice(0, MAX_FRAME) + '…';
    out.push(f);
  }
  return out;
}

let root: string | undefined;
/**
 * The app's directory, with a trailing separator: the nearest folder holding a package.json above the
 * main script, else the working directory at the first error.
 */
export function appDir(): string {
  if (root !== undefined) return root;
  root = '';
  try {
    const main = process.argv[1];
    let dir = main ? path.dirname(path.resolve(main)) : process.cwd();
    for (let d = dir; ;) {
      if (fs.existsSync(path.join(d, 'package.json'))) {
        dir = d;
        break;
      }
      const up = path.dirname(d);
      if (up === d) break;
      d = up;
    }
    root = dir.endsWith(path.sep) ? dir : dir + path.sep;
  } catch {
    root = '';
  }
  return root;
}
