/**
 * The debug pages (HATCH_DEBUG_ERRORS=on): a request that carries the hatch token (the Authorization
 * header, or the `hatch_debug` cookie of a login, ./auth.ts) and ends in a 5xx is answered with a
 * page of the agent's instead of the app's error body: the error (class, message, stack frames), the
 * request's timeline so far, its headers (redacted as /_hatch/config redacts) and the same status.
 * Every other request is never touched.
 *
 * How: src/register.ts offers each request outside the prefix that has an Authorization header of the
 * token's length or this cookie to `watch` (src/pre-handler.ts's watcher seam, loading this module at
 * the first one). For a token holder, three methods of that one response object are wrapped
 * (writeHead, write, end), own properties of the instance, never of the prototype:
 * - at the first of them the status decides: below 500 (or headers already sent) they pass
 *   everything through from then on;
 * - 500 or above: writeHead and the body are held (up to MAX_HELD bytes; a held write's callback is
 *   called at once); at `end` the held response is dropped and the debug page sent with the same
 *   status. A body written in pieces (hapi pipes every payload) is held as well, up to the bound.
 * The wrappers never leave (a middleware such as `compression` may have wrapped them in turn): they
 * become pass-through.
 * Limitations (all of them for token holders only; nobody else's response is touched):
 * - a body longer than MAX_HELD (a large or streamed 5xx) is let through as the app wrote it, with no
 *   debug page; a 5xx streamed slowly shows nothing until it ends or passes MAX_HELD;
 * - while held, `res.headersSent` stays false, and an exception Node would have thrown from the app's
 *   `writeHead` (a bad header) surfaces from its `end`;
 * - the app's own response headers are dropped with its body (the request ID echo stays);
 * - http2 requests get no debug page.
 */
import type * as http from 'node:http';
import { activeConfig, type Config } from '../config';
import type { RequestContext } from '../context';
import { finalRoute } from '../context';
import { describeError } from '../errors';
import type { ErrorDetail } from '../bus';
import { now } from '../clock';
import { log } from '../log';
import type { RecentRequests, RequestRecord } from '../sinks/recent';
import { DEBUG_COOKIE, tokenCheck } from './auth';
import { escapeHtml, page, waterfall } from './pages';
import { redactEnv } from './redact';
import { pageHeaders } from './reply';

export const MAX_HELD = 256 * 1024;

type Fn = (...args: unknown[]) => unknown;
type Held = [chunk: unknown, encoding: unknown];

const UNDECIDED = 0;
const HOLD = 1;
const PASS = 2;

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

function byteLength(chunk: unknown, encoding: unknown): number {
  if (typeof chunk === 'string')
    return Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  if (chunk instanceof Uint8Array) return chunk.byteLength;
  return 0;
}

/** The request's headers as the config hatch shows the environment: secrets by name, URL passwords, the token. */
export function redactHeaders(headers: http.IncomingHttpHeaders, token: string | undefined): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [name, v] of Object.entries(headers))
    if (v !== undefined) flat[name] = Array.isArray(v) ? v.join(', ') : v;
  return redactEnv(flat, token);
}

/** The `hatch_debug` cookie taken out of the request's headers: the app never had it. */
export function stripCookie(req: http.IncomingMessage): void {
  const strip = (v: string) =>
    v
      .split(';')
      .filter((p) => p.trim().split('=', 1)[0] !== DEBUG_COOKIE)
      .join(';')
      .trim();
  const c = req.headers.cookie;
  if (typeof c === 'string') {
    const rest = strip(c);
    if (rest === '') delete req.headers.cookie;
    else req.headers.cookie = rest;
  }
  const raw = req.rawHeaders;
  for (let i = raw.length - 2; i >= 0; i -= 2) {
    if (raw[i]!.toLowerCase() !== 'cookie') continue;
    const rest = strip(raw[i + 1]!);
    if (rest === '') raw.splice(i, 2);
    else raw[i + 1] = rest;
  }
}

export interface DebugDeps {
  config: Config;
  recent: RecentRequests;
}

export function createDebugPages(deps: DebugDeps): {
  watch(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    ctx: RequestContext,
    hasCookie: boolean,
  ): ((req: http.IncomingMessage) => void) | undefined;
} {
  const auth = tokenCheck(deps.config.hatchToken);
  return {
    watch(req, res, ctx, hasCookie) {
      const ok = auth.debug(req);
      if (ok && !res.headersSent) hold(req, res, ctx, deps);
      // Taken out once Node has read the request's headers, before the app sees them.
      return hasCookie ? stripCookie : undefined;
    },
  };
}

/** The record of the error the request is ending in, read without taking it off the context. */
function errorNow(ctx: RequestContext, status: number): ErrorDetail {
  const err = ctx.error;
  if (err === undefined)
    return { kind: 'status', name: 'none', message: `answered ${status} with no error`, stack: [], status };
  return describeError(typeof err === 'symbol' ? undefined : err, 'handler', status);
}

/** The debug page (HTML, or JSON unless the client accepts text/html). */
export function debugPage(
  req: http.IncomingMessage,
  ctx: RequestContext,
  status: number,
  deps: DebugDeps,
): { body: string; html: boolean } {
  const duration = now() - ctx.start;
  const so = deps.recent.soFar(ctx.id, ctx.start);
  const url = req.url ?? '';
  const q = url.indexOf('?');
  const record: RequestRecord = {
    id: ctx.id,
    method: req.method ?? 'OTHER',
    route: finalRoute(ctx),
    path: (q === -1 ? url : url.slice(0, q)).slice(0, 200),
    status,
    aborted: false,
    at: new Date(Date.now() - duration).toISOString(),
    duration: round(duration),
    timeline: so.timeline,
    dropped: so.dropped,
    errors: so.errors,
    error: errorNow(ctx, status),
  };
  const headers = redactHeaders(req.headers, deps.config.hatchToken);
  const prefix = deps.config.hatchPrefix;
  if (!/\btext\/html\b/.test(String(req.headers.accept ?? ''))) {
    return { body: JSON.stringify({ debug: true, ...record, headers }, null, 2) + '\n', html: false };
  }
  const rows = Object.entries(headers)
    .map(([n, v]) => `<tr><td><code>${escapeHtml(n)}</code></td><td><code>${escapeHtml(v)}</code></td></tr>`)
    .join('');
  const body = page(
    `${status} · ${record.error!.name}: ${record.error!.message}`.slice(0, 300),
    `<p class="debug-note">hatch-agent's debug page (HATCH_DEBUG_ERRORS=on), shown to the holder of the hatch token instead of the app's own ${status} response; everyone else gets the app's. The request's record: <a href="${escapeHtml(prefix)}/requests/${encodeURIComponent(ctx.id)}?format=html">${escapeHtml(prefix)}/requests/${escapeHtml(ctx.id)}</a>.</p>` +
      `<div class="debug">${waterfall(record, prefix, true)}</div>` +
      `<h2>Request headers (redacted)</h2><table class="headers"><tr><th>header</th><th>value</th></tr>${rows}</table>`,
  );
  return { body, html: true };
}

function hold(req: http.IncomingMessage, res: http.ServerResponse, ctx: RequestContext, deps: DebugDeps): void {
  const r = res as unknown as Record<string, Fn>;
  const writeHead = r.writeHead!;
  const write = r.write!;
  const end = r.end!;
  let mode = UNDECIDED;
  let status = 0;
  let head: unknown[] | undefined;
  const held: Held[] = [];
  let size = 0;

  const decide = (self: http.ServerResponse, code: unknown): boolean => {
    if (mode === UNDECIDED) {
      if (!self.headersSent && typeof code === 'number' && code >= 500 && code <= 599) {
        mode = HOLD;
        status = code;
      } else mode = PASS;
    }
    return mode === HOLD;
  };
  /** The app's response as it wrote it, late: the held writeHead and writes, in order. */
  const release = (self: http.ServerResponse): void => {
    mode = PASS;
    if (head !== undefined) writeHead.apply(self, head);
    for (const [chunk, encoding] of held) write.call(self, chunk, encoding);
    held.length = 0;
  };

  r.writeHead = function (this: http.ServerResponse, code: unknown) {
    if (!decide(this, code)) return writeHead.apply(this, arguments as unknown as unknown[]);
    if (head === undefined) {
      head = Array.prototype.slice.call(arguments);
      this.statusCode = code as number; // as writeHead does: the app may read it back
    }
    return this;
  };
  r.write = function (this: http.ServerResponse, chunk: unknown, encoding: unknown, cb: unknown) {
    if (!decide(this, this.statusCode)) return write.apply(this, arguments as unknown as unknown[]);
    if (typeof encoding === 'function') [encoding, cb] = [undefined, encoding];
    held.push([chunk, encoding]);
    // Called at once, as if written: an app that waits for it before its next write or its end
    // must not wait for the end we are waiting for.
    if (typeof cb === 'function') process.nextTick(cb as Fn);
    size += byteLength(chunk, encoding);
    if (size > MAX_HELD) {
      release(this);
      return !this.writableNeedDrain;
    }
    return true;
  };
  r.end = function (this: http.ServerResponse, chunk: unknown, encoding: unknown, cb: unknown) {
    if (!decide(this, this.statusCode)) return end.apply(this, arguments as unknown as unknown[]);
    mode = PASS;
    let pageOut: { body: string; html: boolean } | undefined;
    try {
      pageOut = debugPage(req, ctx, status, deps);
    } catch (err) {
      log.warnOnce(
        'debug-page',
        `debug page: could not be written (${(err as Error).message}); the app's response goes out`,
      );
    }
    if (pageOut === undefined) {
      release(this);
      return end.apply(this, arguments as unknown as unknown[]);
    }
    if (typeof chunk === 'function') cb = chunk;
    else if (typeof encoding === 'function') cb = encoding;
    held.length = 0;
    head = undefined;
    try {
      // The app's headers go with its body; the echoed request ID (not stored: pending) stays.
      const idHeader = activeConfig().requestIdHeader;
      for (const name of this.getHeaderNames()) if (name !== idHeader) this.removeHeader(name);
      this.statusCode = status;
      pageHeaders(this, pageOut.html, pageOut.body);
    } catch (err) {
      log.warnOnce('debug-page', `debug page: could not set its headers (${(err as Error).message})`);
    }
    return end.call(this, pageOut.body, 'utf8', cb);
  };
}
