/**
 * Incoming HTTP (http and https servers): wraps Server.prototype.emit so that each 'request'
 * (and 'checkContinue') runs inside a new request context.
 *
 * - The ID is the caller's header when it passes the allowlist, else the trace-id of a valid W3C
 *   traceparent, else a new UUID (an invalid header is counted as errors{kind=invalid_request_id}). It is written back into req.headers, so the app's
 *   own correlation middleware adopts the same ID, and echoed on the response.
 * - The echo is a header the response has from the start without being stored with setHeader:
 *   its line is added when Node writes the header block (ServerResponse's `_storeHeader`), unless
 *   the app set, passed to writeHead or removed that header itself, and getHeader, hasHeader,
 *   getHeaders, getHeaderNames and getRawHeaderNames show it as if it had been set. A stored header
 *   takes Node off its path for a response without headers: setHeader cost 0.5 us per /hello
 *   request on Node 24 and 1.8 us on Node 20 (bench/RESULTS.md). Where `_storeHeader` is missing
 *   (a future Node), the ID is set with setHeader as before.
 * - The request is timed from the emit to the response's 'close' (which follows 'finish', or comes
 *   alone when the client aborts), with one shared listener: no closure per request.
 * - A pre-handler (src/pre-handler.ts; the hatches plug in there) is offered a request under its
 *   prefix first, inside the request's context; when it declines, the app's handler gets the request
 *   untouched. With none plugged in the only cost is one `undefined` check.
 * - An error the app's handler throws synchronously is reported (hatch:error) from an
 *   'uncaughtExceptionMonitor' listener, not caught and rethrown: a rethrow would make Node's crash
 *   output point at the agent's `throw` line instead of the app's (found by test/reliability).
 * Limitation: servers created by http2 are not covered.
 */
import type * as http from 'node:http';
import { storage, finalRoute, type RequestContext } from '../src/context';
import { isValidRequestId, newRequestId } from '../src/request-id';
import { traceIdOf, traceparentEnabled, hasHeaderNamed } from '../src/propagation';
import { channels, type HttpServerEvent } from '../src/bus';
import { wrap, unwrap } from '../src/shim';
import { log } from '../src/log';
import { fault } from '../src/fault';
import { reportError } from '../src/errors';
import type { Config } from '../src/config';
import type { PatchDefinition } from '../src/registry';
import { now } from '../src/clock';
import { preHandler, type PreHandler } from '../src/pre-handler';

const CTX = Symbol('hatch-agent.request');
/** `echo`: the ID header is still to be written (the app has not removed it). */
type Ctx = RequestContext & { method: string; url: string | undefined; echo: boolean };
type Res = http.ServerResponse & { [CTX]?: Ctx };

let headerName = 'x-request-id';


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

function begin(req: http.IncomingMessage, res: Res): Ctx {
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
  const echo = !res.headersSent;
  if (echo && echoes === 0) res.setHeader(headerName, id);
  const ctx: Ctx = { id, start, route: undefined, method: req.method ?? 'OTHER', url: req.url, echo };
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

function preHandleOrEmit(pre: PreHandler, original: Function, server: unknown, event: string, req: http.IncomingMessage, res: Res): unknown {
  let served = false;
  try {
    served = pre.handle(req, res);
  } catch (err) {
    log.warnOnce('pre-handler', `http server: the pre-handler failed: ${(err as Error).message}`);
  }
  return served ? true : callEmit(original, server, event, req, res);
}

function wrapEmit(original: (...args: any[]) => boolean) {
  return function emit(this: unknown, event: string | symbol, req: http.IncomingMessage, res: Res) {
    if ((event !== 'request' && event !== 'checkContinue') || res === undefined || res[CTX] !== undefined) {
      return original.apply(this, arguments as any);
    }
    let ctx: Ctx;
    try {
      ctx = begin(req, res);
    } catch (err) {
      log.warnOnce('http-begin', `http server: could not start a request context: ${(err as Error).message}`);
      return original.apply(this, arguments as any);
    }
    const pre = preHandler();
    if (pre !== undefined && event === 'request' && underPrefix(req.url, pre.prefix)) {
      return storage.run(ctx, preHandleOrEmit, pre, original, this, event, req, res);
    }
    return storage.run(ctx, callEmit, original, this, event, req, res);
  };
}

// ---- The echoed ID as a header the response has without storing it ----

/** The ID header's name, in any case. */
function isIdHeader(name: unknown): boolean {
  return typeof name === 'string' && name.length === headerName.length && name.toLowerCase() === headerName;
}

/** Whether the header block Node is about to write already has the ID header: then the app's wins. */
function namesIdHeader(headers: unknown): boolean {
  if (headers === null || typeof headers !== 'object') return false;
  if (Array.isArray(headers)) {
    // writeHead also takes [[name, value], ...] (the flat form is hasHeaderNamed's).
    if (headers.length > 0 && Array.isArray(headers[0])) return headers.some((pair: unknown[]) => isIdHeader(pair[0]));
  } else {
    if ((headers as Record<string, unknown>)[headerName] !== undefined) return true;
    // Node's own store (null prototype) has lower-case names; an object given to writeHead may not.
    if (Object.getPrototypeOf(headers) === null) return false;
  }
  return hasHeaderNamed(headers, headerName);
}

/** The request whose ID is still to be echoed on this response, if any. */
function echoing(res: Res): Ctx | undefined {
  const ctx = res[CTX];
  return ctx !== undefined && ctx.echo ? ctx : undefined;
}

type Fn = (...args: any[]) => any;
const RESPONSE_WRAPPERS: Record<string, (original: Fn) => Fn> = {
  _storeHeader: (original) =>
    function _storeHeader(this: Res, firstLine: string, headers: unknown) {
      const ctx = echoing(this);
      if (ctx !== undefined) {
        try {
          fault('http-server-echo');
          // Right after the status line, where setHeader's first header would have been.
          if (!namesIdHeader(headers)) arguments[0] = firstLine + headerName + ': ' + ctx.id + '\r\n';
        } catch (err) {
          log.warnOnce('http-echo', `http server: could not echo the request ID: ${(err as Error).message}`);
        }
      }
      return original.apply(this, arguments as any);
    },
  getHeader: (original) =>
    function getHeader(this: Res, name: string) {
      const value = original.apply(this, arguments as any);
      if (value !== undefined) return value;
      const ctx = echoing(this);
      return ctx !== undefined && isIdHeader(name) ? ctx.id : value;
    },
  hasHeader: (original) =>
    function hasHeader(this: Res, name: string) {
      return original.apply(this, arguments as any) || (echoing(this) !== undefined && isIdHeader(name));
    },
  getHeaders: (original) =>
    function getHeaders(this: Res) {
      const headers = original.apply(this, arguments as any);
      const ctx = echoing(this);
      if (ctx !== undefined && headers !== null && typeof headers === 'object' && headers[headerName] === undefined) headers[headerName] = ctx.id;
      return headers;
    },
  getHeaderNames: (original) =>
    function getHeaderNames(this: Res) {
      const names = original.apply(this, arguments as any);
      if (echoing(this) !== undefined && Array.isArray(names) && !names.includes(headerName)) names.push(headerName);
      return names;
    },
  getRawHeaderNames: (original) =>
    function getRawHeaderNames(this: Res) {
      const names = original.apply(this, arguments as any);
      if (echoing(this) !== undefined && Array.isArray(names) && !names.some(isIdHeader)) names.push(headerName);
      return names;
    },
  removeHeader: (original) =>
    function removeHeader(this: Res, name: string) {
      const result = original.apply(this, arguments as any);
      const ctx = this[CTX];
      if (ctx !== undefined && isIdHeader(name)) ctx.echo = false;
      return result;
    },
};

/** How many server patches (http, https) use the response wrappers: 0 means setHeader is used. */
let echoes = 0;

/** Installs the wrappers (or counts one more user of them); false when they cannot be installed. */
function installEcho(): boolean {
  // https servers answer with http's ServerResponse too, so both patches share these wrappers.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const proto = (require('node:http') as typeof http).ServerResponse.prototype as unknown as Record<string, unknown>;
  if (echoes === 0) {
    if (typeof proto._storeHeader !== 'function') {
      log.debug('http server: no ServerResponse._storeHeader; the request ID is echoed with setHeader');
      return false;
    }
    for (const [name, makeWrapper] of Object.entries(RESPONSE_WRAPPERS)) wrap(proto, name, makeWrapper);
  }
  echoes++;
  return true;
}

function uninstallEcho(): void {
  if (echoes === 0 || --echoes > 0) return;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const proto = (require('node:http') as typeof http).ServerResponse.prototype;
  for (const name of Object.keys(RESPONSE_WRAPPERS)) unwrap(proto, name);
}

function serverDefinition(module: 'http' | 'https'): PatchDefinition<typeof http> {
  let echoInstalled = false;
  return {
    module,
    feature: 'http',
    versions: ['20.0.0', '100.0.0'], // Node's own version
    patch(exports, config: Config) {
      headerName = config.requestIdHeader;
      wrap(exports.Server.prototype, 'emit', wrapEmit);
      if (!echoInstalled) echoInstalled = installEcho();
      if (process.listeners('uncaughtExceptionMonitor').indexOf(onUncaught) === -1) process.on('uncaughtExceptionMonitor', onUncaught);
    },
    unpatch(exports) {
      unwrap(exports.Server.prototype, 'emit');
      if (echoInstalled) {
        echoInstalled = false;
        uninstallEcho();
      }
      process.removeListener('uncaughtExceptionMonitor', onUncaught);
    },
  };
}

export const httpServer = serverDefinition('http');
export const httpsServer = serverDefinition('https');
