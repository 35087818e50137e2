/**
 * Incoming HTTP (http and https servers): wraps Server.prototype.emit so that each 'request'
 * (and 'checkContinue') runs inside a new request context.
 *
 * - The ID is the caller's header when it passes the allowlist, else the trace-id of a valid W3C
 *   traceparent, else a new UUID (an invalid header is counted as errors{kind=invalid_request_id}).
 *   It is written back into req.headers, so the app's own correlation middleware adopts the same ID,
 *   and echoed on the response: by the response wrappers of ./response-header.ts, which write it
 *   without setHeader (the fast path), or with setHeader where they cannot be installed.
 * - The request is timed from the emit to the response's 'close' (which follows 'finish', or comes
 *   alone when the client aborts), with one shared listener: no closure per request.
 * - A pre-handler (src/pre-handler.ts; the hatches plug in there) is offered a request under its
 *   prefix first, inside the request's context; when it declines, the app's handler gets the request
 *   untouched. With none plugged in the only cost is one `undefined` check.
 * - An error the app's handler throws synchronously is reported (hatch:error) from an
 *   'uncaughtExceptionMonitor' listener, not caught and rethrown: a rethrow would make Node's crash
 *   output point at the agent's `throw` line instead of the app's (found by test/reliability).
 * The http and https definitions share the response wrappers and the listener, counted: each is
 * installed by the first definition patched and removed with the last one unpatched, so unpatching
 * one leaves the other working.
 * A server's 'listening' marks the process as a server (src/run.ts): its run sends no end check-in.
 * Servers created by http2 have a patch of their own (patches/http2-server.ts).
 */
import type * as http from 'node:http';
import { storage, finalRoute, type RequestContext } from '../../src/context';
import { isValidRequestId, newRequestId } from '../../src/request-id';
import { traceIdOf, traceparentEnabled } from '../../src/propagation';
import { activeConfig } from '../../src/config';
import { channels, type HttpServerEvent } from '../../src/bus';
import { wrap, unwrap } from '../../src/shim';
import { log } from '../../src/log';
import { fault } from '../../src/fault';
import { reportError, endError } from '../../src/errors';
import type { PatchDefinition } from '../../src/registry';
import { now } from '../../src/clock';
import { markServer } from '../../src/run';
import { preHandler, type PreHandler } from '../../src/pre-handler';
import {
  CTX,
  useResponseWrappers,
  releaseResponseWrappers,
  responseWrappersInstalled,
  type IdHeaderState,
} from './response-header';

type Ctx = RequestContext & IdHeaderState & { method: string; url: string | undefined };
type Res = http.ServerResponse & { [CTX]?: Ctx };

/** The prefix itself, or the prefix followed by `/` or `?`: `/_hatchery` is the app's (the http2 patch shares it). */
export function underPrefix(url: string | undefined, prefix: string): boolean {
  if (url === undefined || !url.startsWith(prefix)) return false;
  const next = url.charCodeAt(prefix.length);
  return Number.isNaN(next) || next === 47 /* / */ || next === 63; /* ? */
}

/** The path without its query string, at most 200 characters (the http2 patch shares it). */
export function pathOf(url: string | undefined): string {
  if (url === undefined) return '';
  const q = url.indexOf('?');
  return (q === -1 ? url : url.slice(0, q)).slice(0, 200);
}

function onClose(this: Res): void {
  const ctx = this[CTX];
  try {
    if (!ctx) return;
    const status = this.statusCode;
    const error = ctx.error !== undefined || status >= 500 ? endError(ctx, status) : undefined;
    if (!channels.httpServer.hasSubscribers) return;
    fault('http-server-close');
    const event: HttpServerEvent = {
      requestId: ctx.id,
      method: ctx.method,
      route: finalRoute(ctx),
      path: pathOf(ctx.url),
      statusCode: status,
      aborted: !this.writableFinished,
      start: ctx.start,
      duration: now() - ctx.start,
      error,
    };
    channels.httpServer.publish(event);
  } catch (err) {
    log.warnOnce('http-close', `http server: recording a request failed: ${(err as Error).message}`);
  } finally {
    // A timer or socket the request left behind keeps its context: not the request with it.
    if (ctx) ctx.req = undefined;
  }
}

function begin(req: http.IncomingMessage, res: Res): Ctx {
  const start = now();
  fault('http-server');
  const header = activeConfig().requestIdHeader;
  const raw = req.headers[header];
  let id: string | undefined;
  if (raw !== undefined) {
    if (isValidRequestId(raw)) id = raw;
    else if (channels.error.hasSubscribers) channels.error.publish({ kind: 'invalid_request_id' });
  }
  // No usable ID: a traced caller's trace-id joins this request to its trace.
  if (id === undefined && traceparentEnabled()) id = traceIdOf(req.headers.traceparent);
  if (id === undefined) id = newRequestId();
  if (raw !== id) req.headers[header] = id;
  const idHeaderPending = !res.headersSent;
  if (idHeaderPending && !responseWrappersInstalled()) res.setHeader(header, id);
  // Every field a request's context gets is set here, so each has one shape (the Koa patch fills
  // routeSource and routeResolver later; the Express patch reads req when the request ends).
  const ctx: Ctx = {
    id,
    start,
    route: undefined,
    routeSource: undefined,
    routeResolver: undefined,
    req,
    error: undefined,
    method: req.method ?? 'OTHER',
    url: req.url,
    idHeaderPending,
  };
  res[CTX] = ctx;
  res.on('close', onClose);
  return ctx;
}

// The request whose handler just threw, until the exception reaches Node's uncaught handling (which
// happens before any microtask runs) or someone up the stack caught it (the microtask clears it).
let thrownIn: RequestContext | undefined;
const clearThrown = () => {
  thrownIn = undefined;
};

function onUncaught(err: unknown): void {
  const ctx = thrownIn;
  thrownIn = undefined;
  if (ctx !== undefined) storage.run(ctx, reportError, 'uncaught', err);
}

/** Server.prototype.emit, as the wrapper passes its arguments on. */
type Emit = (...args: unknown[]) => boolean;

/** How many server definitions are patched: the uncaught-error listener stays while one is. */
let listenerUsers = 0;

function callEmit(original: Emit, server: unknown, event: string, req: unknown, res: unknown): unknown {
  // try/finally, not catch + rethrow: the exception leaves unchanged, with its own source position.
  let threw = true;
  try {
    const result = original.call(server, event, req, res);
    threw = false;
    return result;
  } finally {
    if (threw) {
      thrownIn = storage.getStore();
      queueMicrotask(clearThrown);
    }
  }
}

function preHandleOrEmit(
  pre: PreHandler,
  original: Emit,
  server: unknown,
  event: string,
  req: http.IncomingMessage,
  res: Res,
): unknown {
  let served = false;
  try {
    served = pre.handle(req, res);
  } catch (err) {
    log.warnOnce('pre-handler', `http server: the pre-handler failed: ${(err as Error).message}`);
  }
  return served ? true : callEmit(original, server, event, req, res);
}

function wrapEmit(original: Emit) {
  return function emit(this: unknown, event: string | symbol, req: http.IncomingMessage, res: Res) {
    if ((event !== 'request' && event !== 'checkContinue') || res === undefined || res[CTX] !== undefined) {
      // A process that listens is a server, not a job (src/checkin.ts): told here, off the request path.
      if (event === 'listening') markServer();
      return original.apply(this, arguments as unknown as unknown[]);
    }
    let ctx: Ctx;
    try {
      ctx = begin(req, res);
    } catch (err) {
      log.warnOnce('http-begin', `http server: could not start a request context: ${(err as Error).message}`);
      return original.apply(this, arguments as unknown as unknown[]);
    }
    const pre = preHandler();
    if (pre !== undefined && event === 'request' && underPrefix(req.url, pre.prefix)) {
      return storage.run(ctx, preHandleOrEmit, pre, original, this, event, req, res);
    }
    return storage.run(ctx, callEmit, original, this, event, req, res);
  };
}

function serverDefinition(module: 'http' | 'https'): PatchDefinition<typeof http> {
  // What this definition holds of the shared parts, so that its unpatch (also called after a patch
  // that threw halfway) releases exactly that.
  let holdsWrappers = false;
  let holdsListener = false;
  return {
    module,
    feature: 'http',
    versions: ['20.0.0', '100.0.0'], // Node's own version
    patch(exports) {
      wrap(exports.Server.prototype, 'emit', wrapEmit);
      if (!holdsWrappers) holdsWrappers = useResponseWrappers();
      if (!holdsListener) {
        holdsListener = true;
        if (listenerUsers++ === 0) process.on('uncaughtExceptionMonitor', onUncaught);
      }
    },
    unpatch(exports) {
      unwrap(exports.Server.prototype, 'emit');
      if (holdsWrappers) {
        holdsWrappers = false;
        releaseResponseWrappers();
      }
      if (holdsListener) {
        holdsListener = false;
        if (--listenerUsers === 0) process.removeListener('uncaughtExceptionMonitor', onUncaught);
      }
    },
  };
}

export const httpServer = serverDefinition('http');
export const httpsServer = serverDefinition('https');
