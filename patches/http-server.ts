/**
 * Incoming HTTP (http and https servers): wraps Server.prototype.emit so that each 'request'
 * (and 'checkContinue') runs inside a new request context.
 *
 * - The ID is the caller's header when it passes the allowlist, else the trace-id of a valid W3C
 *   traceparent, else a new UUID (an invalid header is counted as errors{kind=invalid_request_id}). It is written back into req.headers, so the app's
 *   own correlation middleware adopts the same ID, and echoed on the response before the app runs.
 * - The request is timed from the emit to the response's 'close' (which follows 'finish', or comes
 *   alone when the client aborts), with one shared listener: no closure per request.
 * - With the hatches on (HATCH_TOKEN), a request under their prefix is offered to them first,
 *   inside its request context; they serve it only with a valid token, and otherwise the app's
 *   handler gets it untouched. Without hatches the only cost is one `undefined` check.
 * - An error the app's handler throws synchronously is reported (hatch:error) from an
 *   'uncaughtExceptionMonitor' listener, not caught and rethrown: a rethrow would make Node's crash
 *   output point at the agent's `throw` line instead of the app's (found by test/reliability).
 * Limitation: servers created by http2 are not covered.
 */
import type * as http from 'node:http';
import { storage, finalRoute, type RequestContext } from '../src/context';
import { isValidRequestId, newRequestId } from '../src/request-id';
import { traceIdOf, traceparentEnabled } from '../src/propagation';
import { channels, type HttpServerEvent } from '../src/bus';
import { wrap, unwrap } from '../src/shim';
import { log } from '../src/log';
import { fault } from '../src/fault';
import { reportError } from '../src/errors';
import type { Config } from '../src/config';
import type { PatchDefinition } from '../src/hook';
import { now } from '../src/clock';

const CTX = Symbol('hatch-agent.request');
type Res = http.ServerResponse & { [CTX]?: RequestContext & { method: string; url: string | undefined } };

let headerName = 'x-request-id';

/** What the hatches (src/hatches) give this patch: their prefix and a handler that says whether it served. */
export interface HatchHandler {
  prefix: string;
  /** Serves the request and returns true, or returns false (and touches nothing) to let the app have it. */
  handle(req: http.IncomingMessage, res: http.ServerResponse): boolean;
}
let hatches: HatchHandler | undefined;

export function setHatches(h: HatchHandler | undefined): void {
  hatches = h;
}

/** The prefix itself, or the prefix followed by `/` or `?`: `/_hatchery` is the app's. */
function underPrefix(url: string | undefined, prefix: string): boolean {
  if (url === undefined || !url.startsWith(prefix)) return false;
  const next = url.charCodeAt(prefix.length);
  return Number.isNaN(next) || next === 47 /* / */ || next === 63 /* ? */;
}

function pathOf(url: string | undefined): string {
  if (url === undefined) return '';
  const q = url.indexOf('?');
  return (q === -1 ? url : url.slice(0, q)).slice(0, 200);
}

function onClose(this: Res): void {
  try {
    const ctx = this[CTX];
    if (!ctx || !channels.httpServer.hasSubscribers) return;
    fault('http-server-close');
    const event: HttpServerEvent = {
      requestId: ctx.id,
      method: ctx.method,
      route: finalRoute(ctx),
      path: pathOf(ctx.url),
      statusCode: this.statusCode,
      aborted: !this.writableFinished,
      start: ctx.start,
      duration: now() - ctx.start,
    };
    channels.httpServer.publish(event);
  } catch (err) {
    log.warnOnce('http-close', `http server: recording a request failed: ${(err as Error).message}`);
  }
}

function begin(req: http.IncomingMessage, res: Res): RequestContext {
  const start = now();
  fault('http-server');
  const raw = req.headers[headerName];
  let id: string | undefined;
  if (raw !== undefined) {
    if (isValidRequestId(raw)) id = raw;
    else if (channels.error.hasSubscribers) channels.error.publish({ kind: 'invalid_request_id' });
  }
  // No usable ID: a traced caller's trace-id joins this request to its trace.
  if (id === undefined && traceparentEnabled()) id = traceIdOf(req.headers.traceparent);
  if (id === undefined) id = newRequestId();
  if (raw !== id) req.headers[headerName] = id;
  if (!res.headersSent) res.setHeader(headerName, id);
  const ctx = { id, start, route: undefined, method: req.method ?? 'OTHER', url: req.url };
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

function callEmit(original: Function, server: unknown, event: string, req: unknown, res: unknown): unknown {
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

function hatchOrEmit(original: Function, server: unknown, event: string, req: http.IncomingMessage, res: Res): unknown {
  let served = false;
  try {
    served = hatches !== undefined && hatches.handle(req, res);
  } catch (err) {
    log.warnOnce('hatch-handle', `hatches: handling a request failed: ${(err as Error).message}`);
  }
  return served ? true : callEmit(original, server, event, req, res);
}

function wrapEmit(original: (...args: any[]) => boolean) {
  return function emit(this: unknown, event: string | symbol, req: http.IncomingMessage, res: Res) {
    if ((event !== 'request' && event !== 'checkContinue') || res === undefined || res[CTX] !== undefined) {
      return original.apply(this, arguments as any);
    }
    let ctx: RequestContext;
    try {
      ctx = begin(req, res);
    } catch (err) {
      log.warnOnce('http-begin', `http server: could not start a request context: ${(err as Error).message}`);
      return original.apply(this, arguments as any);
    }
    if (hatches !== undefined && event === 'request' && underPrefix(req.url, hatches.prefix)) {
      return storage.run(ctx, hatchOrEmit, original, this, event, req, res);
    }
    return storage.run(ctx, callEmit, original, this, event, req, res);
  };
}

function serverDefinition(module: 'http' | 'https'): PatchDefinition<typeof http> {
  return {
    module,
    feature: 'http',
    versions: ['20.0.0', '100.0.0'], // Node's own version
    patch(exports, config: Config) {
      headerName = config.requestIdHeader;
      wrap(exports.Server.prototype, 'emit', wrapEmit);
      if (process.listeners('uncaughtExceptionMonitor').indexOf(onUncaught) === -1) process.on('uncaughtExceptionMonitor', onUncaught);
    },
    unpatch(exports) {
      unwrap(exports.Server.prototype, 'emit');
      process.removeListener('uncaughtExceptionMonitor', onUncaught);
    },
  };
}

export const httpServer = serverDefinition('http');
export const httpsServer = serverDefinition('https');
