/**
 * Incoming HTTP (http and https servers): each request (the `request` and `checkContinue` events)
 * runs inside a new request context, entered from Node's own `http.server.request.start`
 * diagnostics channel, which Node publishes in its parser callback just before it emits the event:
 * `storage.enterWith(ctx)` makes the context the current one for the rest of that callback, so
 * the app's listeners run in it and no agent function is on their stack. (A wrapper of
 * `Server.prototype.emit` around `storage.run` put three frames under every handler: with Node's
 * 10-frame stacks they pushed Node's own out of a shallow throw's `err.stack`.)
 *
 * - The ID is the caller's header when it passes the allowlist, else the trace-id of a valid W3C
 *   traceparent, else a new UUID (an invalid header is counted as errors{kind=invalid_request_id}).
 *   It is written back into req.headers, so the app's own correlation middleware adopts the same ID,
 *   and echoed on the response: by the response wrappers of ./response-header.ts, which write it
 *   without setHeader (the fast path), or with setHeader where they cannot be installed.
 * - The request is timed from the channel's message to the response's 'close' (which follows
 *   'finish', or comes alone when the client aborts), with one shared listener: no closure per
 *   request.
 * - A pre-handler (src/pre-handler.ts; the hatches plug in there) is offered a request under its
 *   prefix first, inside the request's context: for such a request only, the server's next `emit`
 *   call is diverted once through an own property of the server. With none plugged in the only
 *   cost is one `undefined` check. Every other request is offered to the response watcher of the
 *   same seam (HATCH_DEBUG_ERRORS=on only; again one `undefined` check without it).
 * - An error the app's handler throws synchronously is reported (hatch:error, kind `uncaught`) from
 *   an 'uncaughtExceptionMonitor' listener, which knows it by the store and the executing resource
 *   (Node's parser resource of the request's socket): the error is never caught, it goes on to Node
 *   unchanged. It is also captured as the error the request ends in (src/errors.ts), for an app that
 *   lives on (its own uncaughtException listener) and answers 5xx: that request is then recorded and
 *   counted once more, as errors{kind=handler}.
 * The http and https definitions share the channel subscriber, the listener and the response
 * wrappers, counted: each is installed by the first definition patched and removed with the last one
 * unpatched, so unpatching one leaves the other working.
 * What the context's entry leaves: on Node 20 and 22 (AsyncLocalStorage on async_hooks) the store
 * stays current on the connection's parser resource after the handler returned, so Node's later
 * parser callbacks for that connection (the body's `data` and `end` events) run in the request's
 * context too, until the next request on the connection enters its own (with the emit wrapper they
 * ran in none). On Node 24 and 26 (AsyncContextFrame) the entry lasts for the parser callback it was
 * made in, and later parser callbacks run in the connection's context, as they did with the
 * wrapper. Work the handler started keeps the context it started in, as before.
 * A request's start also marks the process as a server (src/run.ts): its run sends no end check-in.
 * Limitations: a request an app emits itself (`server.emit('request', req, res)`) passes no parser
 * and gets no context. Servers created by http2 have a patch of their own (patches/http2-server.ts);
 * the HTTP/1 requests of an http2 server with `allowHTTP1` pass Node's http parser and get one here.
 */
import type * as http from 'node:http';
import * as dc from 'node:diagnostics_channel';
import { executionAsyncResource } from 'node:async_hooks';
import { storage, finalRoute, endRequest, type RequestContext } from '../../src/context';
import { incomingRequestId } from '../../src/propagation';
import { activeConfig } from '../../src/config';
import { channels, type HttpServerEvent } from '../../src/bus';
import { log } from '../../src/log';
import { fault } from '../../src/fault';
import { reportError, endError, captureError } from '../../src/errors';
import type { PatchDefinition } from '../../src/registry';
import { now } from '../../src/clock';
import { markServer } from '../../src/run';
import { requestStartInFlight } from '../../src/load-hook';
import { preHandler, responseWatcher } from '../../src/pre-handler';
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
  let route: string | undefined;
  try {
    if (!ctx) return;
    const status = this.statusCode;
    const error = endError(ctx, status);
    if (!channels.httpServer.hasSubscribers) return;
    fault('http-server-close');
    route = finalRoute(ctx);
    const event: HttpServerEvent = {
      requestId: ctx.id,
      method: ctx.method,
      route,
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
    if (ctx) endRequest(ctx, route);
  }
}

function begin(req: http.IncomingMessage, res: Res): Ctx {
  const start = now();
  fault('http-server');
  const header = activeConfig().requestIdHeader;
  // Read once: `headers` is a getter on Node's IncomingMessage.
  const headers = req.headers;
  const raw = headers[header];
  const id = incomingRequestId(raw, headers.traceparent);
  if (raw !== id) headers[header] = id;
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

/**
 * An exception the app's handler throws synchronously, which Node turns into its crash or the app's
 * 'uncaughtException', reported with that request's ID. Node emits the monitor before it unwinds
 * the async context: the request's store is still current, and the executing resource is still
 * Node's parser resource for the request's connection (it holds the socket). A throw from a timer
 * or a promise the handler started is not the handler's synchronous throw and is not reported here.
 */
function onUncaught(err: unknown): void {
  const ctx = storage.getStore() as Ctx | undefined;
  const socket = (ctx?.req as http.IncomingMessage | undefined)?.socket;
  if (socket == null) return;
  if ((executionAsyncResource() as { socket?: unknown } | undefined)?.socket !== socket) return;
  // Also the error the request ends in: an app that lives on (an uncaughtException listener) and
  // answers 5xx gets it in the request's record.
  captureError(err);
  reportError('uncaught', err);
}

const START = 'http.server.request.start';
let servedOne = false;
/** How many server definitions are patched: the request-start subscriber and the uncaught-error listener stay while one is. */
let users = 0;

/**
 * Node publishes on `http.server.request.start` in its parser callback, just before it emits the
 * server's `request` (or `checkContinue`) event, for every http and https server. `enterWith`
 * makes the request's store the current one for the rest of that callback: the app's listeners run
 * in it, and nothing of the agent's is on their stack.
 */
function onRequestStart(message: unknown): void {
  try {
    const {
      request: req,
      response: res,
      server,
    } = message as {
      request: http.IncomingMessage;
      response: Res;
      server: http.Server;
    };
    if (res[CTX] !== undefined) return;
    if (!servedOne) {
      // A process that serves requests is a server, not a job (src/checkin.ts).
      servedOne = true;
      markServer();
    }
    const ctx = begin(req, res);
    storage.enterWith(ctx);
    const pre = preHandler();
    if (pre !== undefined && underPrefix(req.url, pre.prefix)) divertOnce(server, res, offerTo(pre));
    else {
      const watch = responseWatcher();
      if (watch !== undefined) {
        const atEmit = watchResponse(watch, req, res, ctx);
        if (atEmit !== undefined) divertOnce(server, res, atEmit);
      }
    }
  } catch (err) {
    log.warnOnce('http-begin', `http server: could not start a request context: ${(err as Error).message}`);
  }
}

/**
 * The pre-handler as an offer. A function of its own: a closure written in onRequestStart over its
 * block-scoped `pre` made every request allocate a block context for it (a runtime call in
 * unoptimised code), though only requests under the prefix create the closure.
 */
function offerTo(pre: NonNullable<ReturnType<typeof preHandler>>): Offer {
  return (r, s) => pre.handle(r, s);
}

/**
 * The debug pages' watcher (HATCH_DEBUG_ERRORS=on), offered every request outside the prefix; what
 * it hands back runs at the server's emit, once Node has read the request (the debug cookie's
 * removal: Node 26 still reads `rawHeaders` after the request-start channel).
 */
function watchResponse(
  watch: NonNullable<ReturnType<typeof responseWatcher>>,
  req: http.IncomingMessage,
  res: Res,
  ctx: Ctx,
): Offer | undefined {
  try {
    const atEmit = watch(req, res, ctx);
    return atEmit === undefined ? undefined : (r) => (atEmit(r), false);
  } catch (err) {
    log.warnOnce('response-watcher', `http server: the debug pages failed: ${(err as Error).message}`);
    return undefined;
  }
}

/** Offered the request at the server's emit, before the app's listeners; true: it answered it. */
type Offer = (req: http.IncomingMessage, res: Res) => boolean;

/**
 * A request under the pre-handler's prefix (the hatches), or one the debug pages watch with their
 * cookie: Node's next call of this server's `emit` is diverted, once, so that `offer` gets the
 * request before the app's listeners. The server gets an own `emit` for that one synchronous call
 * (the prototype's, or its own, is put back at that call, or at the next microtask if Node made
 * none). Only these requests pass an agent frame.
 */
function divertOnce(server: http.Server, res: Res, offer: Offer): void {
  const own = Object.getOwnPropertyDescriptor(server, 'emit');
  const through = server.emit as Emit;
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    if (own !== undefined) Object.defineProperty(server, 'emit', own);
    else delete (server as { emit?: unknown }).emit;
  };
  Object.defineProperty(server, 'emit', {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function emit(this: unknown, event: unknown, req: http.IncomingMessage, r: Res): unknown {
      restore();
      if (event === 'request' && r === res) {
        let served = false;
        try {
          served = offer(req, r);
        } catch (err) {
          log.warnOnce('pre-handler', `http server: the pre-handler failed: ${(err as Error).message}`);
        }
        if (served) return true;
      }
      return Reflect.apply(through, this, arguments);
    },
  });
  queueMicrotask(restore);
}

/** Server.prototype.emit, as Node calls it. */
type Emit = (...args: unknown[]) => boolean;

function serverDefinition(module: 'http' | 'https'): PatchDefinition<typeof http> {
  // What this definition holds of the shared parts, so that its unpatch (also called after a patch
  // that threw halfway) releases exactly that.
  let holdsWrappers = false;
  let holdsListener = false;
  return {
    module,
    feature: 'http',
    versions: ['20.0.0', '100.0.0'], // Node's own version
    patch() {
      if (!holdsWrappers) holdsWrappers = useResponseWrappers();
      if (!holdsListener) {
        holdsListener = true;
        if (users++ === 0) {
          dc.subscribe(START, onRequestStart);
          process.on('uncaughtExceptionMonitor', onUncaught);
          // Patched at an ES-module app's first request (src/load-hook.ts): that request too.
          const inFlight = requestStartInFlight();
          if (inFlight !== undefined) onRequestStart(inFlight);
        }
      }
    },
    unpatch() {
      if (holdsWrappers) {
        holdsWrappers = false;
        releaseResponseWrappers();
      }
      if (holdsListener) {
        holdsListener = false;
        if (--users === 0) {
          dc.unsubscribe(START, onRequestStart);
          process.removeListener('uncaughtExceptionMonitor', onUncaught);
        }
      }
    },
  };
}

export const httpServer = serverDefinition('http');
export const httpsServer = serverDefinition('https');
