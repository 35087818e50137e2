/**
 * Outgoing http.request / http.get / https.request / https.get, as used directly and by the
 * libraries built on them (axios, got, node-fetch): one timing per request.
 *
 * - request/get are wrapped only to add X-Request-ID (and traceparent) to the options before Node
 *   renders the headers (Node 20's `http.client.request.start` channel comes too late for that).
 *   The caller's options and headers objects are never mutated: copies go to Node. A header the
 *   caller set wins. `get` calls the module's own `request`, not the export, so nothing is counted
 *   twice.
 * - ClientRequest.prototype.emit is wrapped to see 'response' and 'close' without adding
 *   listeners (an added 'response' listener would stop Node dumping unread responses; an added
 *   'error' listener would swallow errors the app does not handle).
 * The call's path (for the requests hatch) is the options' `path` or the URL's, without its query string.
 * The timing runs from the call to the request's 'close'; no response by then means `error`
 * (refused, DNS failure, timeout, abort). Errors reach the app exactly as without the agent.
 * The http and https definitions share the one emit wrapper, counted: it is removed when the last
 * of them is unpatched, so unpatching one leaves the other timing its requests.
 */
import type * as http from 'node:http';
import { storage } from '../src/context';
import { channels } from '../src/bus';
import { newCall, endCall, callPath, type ClientCall } from '../src/client-call';
import { outgoingHeaders, hasHeaderNamed } from '../src/propagation';
import { wrap, unwrap, type Fn } from '../src/shim';
import { log } from '../src/log';
import { fault } from '../src/fault';
import type { PatchDefinition } from '../src/registry';

const CALL = Symbol('hatch-agent.client-call');

type Req = http.ClientRequest & { [CALL]?: ClientCall };

/** Where the options are among (url|options, [options], [callback]), and what they say. */
function target(
  args: unknown[],
  defaultPort: string,
): { index: number; insert: boolean; hostname: string; port: string; method: string; path: unknown } | undefined {
  const a = args[0];
  let url: URL | undefined;
  if (typeof a === 'string') {
    // Not a URL: Node throws its own ERR_INVALID_URL at the app; nothing to add, nothing to say.
    try {
      url = new URL(a);
    } catch {
      return undefined;
    }
  } else if (a instanceof URL) url = a;
  const optsIndex = url ? 1 : 0;
  const opts = args[optsIndex];
  const hasOpts = opts !== null && typeof opts === 'object';
  if (!url && !hasOpts) return undefined;
  const o = (hasOpts ? opts : {}) as http.RequestOptions;
  // Options Node rejects (a hostname or method that is not a string) are left for Node to reject.
  let hostname: unknown =
    o.hostname ??
    (typeof o.host === 'string' ? o.host.replace(/:\d+$/, '') : undefined) ??
    url?.hostname ??
    'localhost';
  if (typeof hostname !== 'string') return undefined;
  hostname = hostname.replace(/^\[|\]$/g, '');
  const port = String(o.port ?? (url && url.port !== '' ? url.port : defaultPort));
  const method: unknown = o.method ?? 'GET';
  if (typeof method !== 'string') return undefined;
  return {
    index: optsIndex,
    insert: !!url && !hasOpts,
    hostname: hostname as string,
    port,
    method: method.toUpperCase(),
    // As Node takes it: the options' path over the URL's; its query string is cut off by newCall's caller.
    path: o.path ?? url?.pathname ?? '/',
  };
}

/** A copy of the options with the extra headers, keeping the caller's object as it was. */
function withHeaders(opts: { headers?: unknown } | undefined, extra: Array<[string, string]>): unknown {
  const headers = opts?.headers;
  const missing = extra.filter(([name]) => !hasHeaderNamed(headers, name));
  if (missing.length === 0) return opts;
  let next: unknown;
  if (Array.isArray(headers)) next = [...headers, ...missing.flat()];
  else next = Object.assign(Object.create(null), headers, Object.fromEntries(missing));
  const copy = opts ? Object.create(Object.getPrototypeOf(opts), Object.getOwnPropertyDescriptors(opts)) : {};
  Object.defineProperty(copy, 'headers', { value: next, writable: true, enumerable: true, configurable: true });
  return copy;
}

function wrapRequest(defaultPort: string) {
  return (original: Fn) =>
    function request(this: unknown, ...args: unknown[]) {
      let call: ClientCall | undefined;
      try {
        const store = storage.getStore();
        const publish = channels.httpClient.hasSubscribers;
        if (store !== undefined || publish) {
          fault('http-client');
          const t = target(args, defaultPort);
          if (t) {
            if (store !== undefined) {
              const extra = outgoingHeaders(store.id, t.hostname, t.port);
              if (extra) {
                if (t.insert) args.splice(1, 0, withHeaders(undefined, extra));
                else args[t.index] = withHeaders(args[t.index] as { headers?: unknown } | undefined, extra);
              }
            }
            if (publish) call = newCall(store?.id, t.method, t.hostname, callPath(t.path));
          }
        }
      } catch (err) {
        log.warnOnce(
          'http-client',
          `http client: instrumenting an outgoing request failed (${(err as Error).message}); it goes out unchanged`,
        );
        call = undefined;
      }
      const req = original.apply(this, args) as Req;
      if (call !== undefined && req !== null && typeof req === 'object') req[CALL] = call;
      return req;
    };
}

function wrapEmit(original: (...args: unknown[]) => boolean) {
  return function emit(this: Req, event: string | symbol, arg?: { statusCode?: number }) {
    const call = this[CALL];
    if (call !== undefined) {
      try {
        fault('http-client-emit');
        if (event === 'response') call.status = arg?.statusCode ?? 'error';
        else if (event === 'close') {
          this[CALL] = undefined;
          endCall(call, false); // no response by now leaves the status at `error`
        }
      } catch (err) {
        log.warnOnce(
          'http-client-emit',
          `http client: recording an outgoing request failed: ${(err as Error).message}`,
        );
      }
    }
    return original.apply(this, arguments as unknown as unknown[]);
  };
}

/** How many client definitions use the ClientRequest.prototype.emit wrapper: removed with the last. */
let emitUsers = 0;

function clientRequestPrototype(): object {
  // Both modules create http.ClientRequest; an https-only app never requires http itself.
  return (require('node:http') as typeof http).ClientRequest.prototype;
}

function clientDefinition(module: 'http' | 'https', defaultPort: string): PatchDefinition<typeof http> {
  // Whether this definition counts among the emit wrapper's users (its unpatch also runs after a
  // patch that threw halfway).
  let holdsEmit = false;
  return {
    module,
    feature: 'http-client',
    versions: ['20.0.0', '100.0.0'],
    patch(exports) {
      wrap(exports, 'request', wrapRequest(defaultPort));
      wrap(exports, 'get', wrapRequest(defaultPort));
      if (!holdsEmit) {
        holdsEmit = true;
        if (emitUsers++ === 0) wrap(clientRequestPrototype(), 'emit', wrapEmit);
      }
    },
    unpatch(exports) {
      unwrap(exports, 'request');
      unwrap(exports, 'get');
      if (holdsEmit) {
        holdsEmit = false;
        if (--emitUsers === 0) unwrap(clientRequestPrototype(), 'emit');
      }
    },
  };
}

export const httpClient = clientDefinition('http', '80');
export const httpsClient = clientDefinition('https', '443');
