/**
 * Incoming HTTP/2 (`http2.createServer`, `http2.createSecureServer`): each stream runs inside a new
 * request context, whether the app answers on the `stream` event or on the compatibility `request`
 * event (which Node emits from its own `stream` listener, so it runs inside the same context).
 *
 * - The ID is chosen as for http (patches/http-server/index.ts): the caller's header when it passes
 *   the allowlist, else the trace-id of a valid traceparent, else a new UUID (an invalid header is
 *   counted as errors{kind=invalid_request_id}). It is written into the stream's headers object,
 *   which is also the compatibility request's `req.headers`.
 * - Echo: on the compatibility API with `res.setHeader` when the `request` event is emitted (so the
 *   app can read, replace or remove it as any header); on the stream API by the wrappers of
 *   `ServerHttp2Stream.prototype.respond`, `respondWithFD` and `respondWithFile`, which add it to a
 *   copy of the headers the app passes, unless the app named that header itself.
 * - Timing: `hatch:http.server` when the stream closes: method and path from the pseudo-headers,
 *   the status sent (`:status`), aborted when the stream was reset before its end or nothing was
 *   answered; the route is `unmatched` unless a framework set one (Fastify with `http2: true` does).
 * - Hatches: a compatibility request under the hatch prefix is offered to the pre-handler
 *   (src/pre-handler.ts) first, as on http; Http2ServerRequest/Response have the members the
 *   hatches use. The raw `stream` event is not offered (it has no request/response pair).
 *
 * How the prototypes are reached: Node exports neither server class nor ServerHttp2Stream. The two
 * factories are wrapped; the first server each one makes shows its class's prototype, whose `emit`
 * is then wrapped once (a throw-away secure server at patch time would build a TLS context, a few
 * ms, in every process that loads http2 only for a client, gRPC's for one). The stream prototype is
 * taken from the first stream. Both are remembered across stop/start and wrapped again at once.
 * Limitations: a `stream` listener on a session itself (not the server) gets no context of its own;
 * a server made through a factory reference taken before the agent started is not seen; a
 * compatibility handler that answers through `res.stream.respond()` gets no echo (the ID is on `res`);
 * an error the handler throws synchronously is not reported (the http patch's uncaught-error path
 * is not shared).
 */
import type * as http2 from 'node:http2';
import type * as http from 'node:http';
import { storage, finalRoute, endRequest, type RequestContext } from '../src/context';
import { hasHeaderNamed, incomingRequestId } from '../src/propagation';
import { activeConfig } from '../src/config';
import { channels, type HttpServerEvent } from '../src/bus';
import { wrap, unwrap, type Fn } from '../src/shim';
import { log } from '../src/log';
import { fault } from '../src/fault';
import { now } from '../src/clock';
import { endError } from '../src/errors';
import { preHandler } from '../src/pre-handler';
import type { PatchDefinition } from '../src/registry';
import { underPrefix, pathOf } from './http-server/index';

const CTX = Symbol('hatch-agent.http2-request');

type Ctx = RequestContext & {
  method: string;
  path: string | undefined;
  /** The stream API's respond still has to add the ID header (false once done, or on the compat API). */
  idHeaderPending: boolean;
};
type Headers = Record<string | symbol, unknown>;
type Stream = http2.ServerHttp2Stream & { [CTX]?: Ctx };

function onStreamClose(this: Stream): void {
  const ctx = this[CTX];
  let route: string | undefined;
  try {
    if (ctx === undefined) return;
    const sent = (this.sentHeaders as Headers | undefined)?.[':status'];
    const statusCode = Number(sent) || 0;
    const error = endError(ctx, statusCode);
    if (!channels.httpServer.hasSubscribers) return;
    fault('http2-server-close');
    route = finalRoute(ctx);
    const event: HttpServerEvent = {
      requestId: ctx.id,
      method: ctx.method,
      route,
      path: pathOf(ctx.path),
      statusCode,
      // Reset before its end (Node's own `aborted`), or closed without any answer.
      aborted: this.aborted === true || statusCode === 0,
      start: ctx.start,
      duration: now() - ctx.start,
      error,
    };
    channels.httpServer.publish(event);
  } catch (err) {
    log.warnOnce('http2-close', `http2 server: recording a request failed: ${(err as Error).message}`);
  } finally {
    // The session outlives the stream, and work the stream started keeps its context: not the
    // framework's request objects with it.
    if (ctx !== undefined) endRequest(ctx, route);
  }
}

function begin(stream: Stream, headers: Headers): Ctx {
  const start = now();
  fault('http2-server');
  const header = activeConfig().requestIdHeader;
  const raw = headers[header];
  const id = incomingRequestId(raw, headers.traceparent);
  if (raw !== id) headers[header] = id;
  const method = headers[':method'];
  const path = headers[':path'];
  const ctx: Ctx = {
    id,
    start,
    route: undefined,
    routeSource: undefined,
    routeResolver: undefined,
    error: undefined,
    method: typeof method === 'string' ? method : 'OTHER',
    path: typeof path === 'string' ? path : undefined,
    idHeaderPending: stream.headersSent !== true,
  };
  stream[CTX] = ctx;
  stream.on('close', onStreamClose);
  return ctx;
}

/** On the compatibility `request`: the ID as a header of the response, like any the app sets. */
function compatRequest(ctx: Ctx, res: http2.Http2ServerResponse): void {
  fault('http2-server-echo');
  ctx.idHeaderPending = false;
  if (!res.headersSent) res.setHeader(activeConfig().requestIdHeader, ctx.id);
}

function offerToPreHandler(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): boolean {
  const pre = preHandler();
  if (pre === undefined || !underPrefix(req.url, pre.prefix)) return false;
  try {
    // The hatches use only what both APIs have: url, method, headers; statusCode, setHeader,
    // headersSent, writableEnded, end.
    return pre.handle(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse);
  } catch (err) {
    log.warnOnce('http2-pre-handler', `http2 server: the pre-handler failed: ${(err as Error).message}`);
    return false;
  }
}

let streamProto: object | undefined;
const serverProtos = new Set<object>();
let patched = false;

// `stream` passes (stream, headers); `request` and `checkContinue` pass (request, response).
function wrapEmit(original: (...args: unknown[]) => boolean) {
  return function emit(this: unknown, event: string | symbol, a: unknown, b: unknown) {
    if (event === 'stream') {
      const stream = a as Stream;
      if (
        stream === null ||
        typeof stream !== 'object' ||
        stream[CTX] !== undefined ||
        b === null ||
        typeof b !== 'object'
      ) {
        return original.apply(this, arguments as unknown as unknown[]);
      }
      let ctx: Ctx;
      try {
        if (streamProto === undefined) learnStream(Object.getPrototypeOf(stream));
        ctx = begin(stream, b as Headers);
      } catch (err) {
        log.warnOnce('http2-begin', `http2 server: could not start a request context: ${(err as Error).message}`);
        return original.apply(this, arguments as unknown as unknown[]);
      }
      return storage.run(ctx, Reflect.apply, original, this, arguments);
    }
    if (event === 'request' || event === 'checkContinue') {
      // Emitted by Node's own `stream` listener, inside the stream's context.
      const ctx = ((a as http2.Http2ServerRequest | undefined)?.stream as Stream | undefined)?.[CTX];
      if (ctx !== undefined && b !== undefined) {
        try {
          compatRequest(ctx, b as http2.Http2ServerResponse);
          if (event === 'request' && offerToPreHandler(a as http2.Http2ServerRequest, b as http2.Http2ServerResponse))
            return true;
        } catch (err) {
          log.warnOnce('http2-echo', `http2 server: could not echo the request ID: ${(err as Error).message}`);
        }
      }
    }
    return original.apply(this, arguments as unknown as unknown[]);
  };
}

/** The headers argument with the ID added, or the argument itself when the app named the header. */
function withId(headers: unknown, id: string, sensitive: symbol | undefined): unknown {
  const header = activeConfig().requestIdHeader;
  if (headers === undefined || headers === null) return { [header]: id };
  if (hasHeaderNamed(headers, header)) return headers;
  if (Array.isArray(headers)) {
    // The raw form [name, value, ...] (newer Node); its sensitive-header list rides on the array.
    const copy = headers.slice() as unknown[] & Headers;
    copy.push(header, id);
    if (sensitive !== undefined && (headers as unknown as Headers)[sensitive] !== undefined)
      copy[sensitive] = (headers as unknown as Headers)[sensitive];
    return copy;
  }
  if (typeof headers !== 'object') return headers;
  // A copy: the app's object (perhaps reused for every response) is never changed.
  return Object.assign({}, headers, { [header]: id });
}

let sensitiveHeaders: symbol | undefined;

/** respond(headers), respondWithFD(fd, headers), respondWithFile(path, headers). */
function wrapRespond(headersAt: number) {
  return (original: Fn) =>
    function respond(this: Stream) {
      const ctx = this[CTX];
      if (ctx !== undefined && ctx.idHeaderPending) {
        try {
          fault('http2-server-echo');
          ctx.idHeaderPending = false;
          const args = Array.prototype.slice.call(arguments);
          args[headersAt] = withId(args[headersAt], ctx.id, sensitiveHeaders);
          return original.apply(this, args);
        } catch (err) {
          log.warnOnce('http2-echo', `http2 server: could not echo the request ID: ${(err as Error).message}`);
        }
      }
      return original.apply(this, arguments as unknown as unknown[]);
    };
}
const RESPOND: Array<[string, number]> = [
  ['respond', 0],
  ['respondWithFD', 1],
  ['respondWithFile', 1],
];

function learnStream(proto: object | null): void {
  if (proto === null || typeof (proto as { respond?: unknown }).respond !== 'function') return;
  streamProto = proto;
  if (patched) for (const [name, at] of RESPOND) wrap(proto, name, wrapRespond(at));
}

function learnServer(server: unknown): void {
  const proto = server !== null && typeof server === 'object' ? Object.getPrototypeOf(server) : null;
  if (proto === null || serverProtos.has(proto) || typeof proto.emit !== 'function') return;
  serverProtos.add(proto);
  if (patched) wrap(proto, 'emit', wrapEmit);
}

function wrapFactory(original: Fn) {
  return function createServer(this: unknown) {
    const server = original.apply(this, arguments as unknown as unknown[]);
    try {
      learnServer(server);
    } catch (err) {
      log.warnOnce('http2-factory', `http2 server: could not instrument the server: ${(err as Error).message}`);
    }
    return server;
  };
}

export const http2Server: PatchDefinition<typeof http2> = {
  module: 'http2',
  feature: 'http2',
  versions: ['20.0.0', '100.0.0'], // Node's own version
  patch(exports) {
    if (typeof exports.createServer !== 'function' || typeof exports.createSecureServer !== 'function') {
      throw new Error('createServer/createSecureServer not found');
    }
    patched = true;
    sensitiveHeaders = typeof exports.sensitiveHeaders === 'symbol' ? exports.sensitiveHeaders : undefined;
    wrap(exports, 'createServer', wrapFactory);
    wrap(exports, 'createSecureServer', wrapFactory);
    // Known from before a stop: servers and streams made then are instrumented again at once.
    for (const proto of serverProtos) wrap(proto, 'emit', wrapEmit);
    if (streamProto !== undefined) for (const [name, at] of RESPOND) wrap(streamProto, name, wrapRespond(at));
  },
  unpatch(exports) {
    patched = false;
    unwrap(exports, 'createServer');
    unwrap(exports, 'createSecureServer');
    for (const proto of serverProtos) unwrap(proto, 'emit');
    if (streamProto !== undefined) for (const [name] of RESPOND) unwrap(streamProto, name);
  },
};
