/**
 * Outgoing calls through undici: Node's global fetch (undici bundled in Node, which
 * `require('undici')` never sees) and the undici package (request, stream, pipeline, fetch and
 * anything dispatched through its Client/Pool/Agent). Nothing is patched: both publish on the
 * `undici:request:*` diagnostics channels, and this subscribes.
 *
 * - create: inside a request context, add X-Request-ID (and traceparent) unless the caller set it,
 *   with `request.addHeader`, or for undici without it by appending to `request.headers` (a raw
 *   string before undici 6, an array after); the call begins, with undici's `request.path` (less its
 *   query string) as its path;
 * - headers: the response status; trailers (the response is complete) or error: publish the
 *   timing on `hatch:http.client`.
 * A call's state lives on undici's request object, under a symbol of ours, so a response never
 * consumed leaks nothing: it goes with the request. (A WeakMap keyed by the requests cost /fetch
 * about 3% of its CPU: every scavenge has to walk a WeakMap's churning entries.)
 * Supported: undici 5.x to 8.x (bundled or installed). HATCH_DISABLE takes `undici` or `fetch`.
 */
import * as dc from 'node:diagnostics_channel';
import { storage } from '../src/context';
import { channels } from '../src/bus';
import { newCall, endCall, callPath, type ClientCall } from '../src/client-call';
import { outgoingHeaders, hasHeaderNamed } from '../src/propagation';
import { log } from '../src/log';
import { fault } from '../src/fault';
import type { SubscriberDefinition } from '../src/registry';

interface UndiciRequest {
  origin?: string | URL;
  method?: string;
  /** The request target: path and query string. */
  path?: string;
  headers: string | string[] | unknown;
  addHeader?: (name: string, value: string) => unknown;
}

const CALL = Symbol('hatch-agent.call');
type Tracked = { [CALL]?: ClientCall | undefined };

function hasHeader(headers: unknown, name: string): boolean {
  if (typeof headers === 'string') {
    // raw `name: value\r\n` lines (undici 5)
    const lower = headers.toLowerCase();
    return lower.startsWith(name + ':') || lower.includes('\n' + name + ':');
  }
  return Array.isArray(headers) && hasHeaderNamed(headers, name);
}

function addHeader(request: UndiciRequest, name: string, value: string): void {
  if (typeof request.addHeader === 'function') {
    request.addHeader(name, value);
  } else if (typeof request.headers === 'string') {
    request.headers += `${name}: ${value}\r\n`;
  } else if (Array.isArray(request.headers)) {
    request.headers.push(name, value);
  }
}

interface Origin {
  hostname: string;
  port: string;
}
const portOf = (url: URL): string => url.port || (url.protocol === 'https:' ? '443' : '80');
// Parsed once per origin string, not once per request: an app calls few origins. Bounded: past 256
// distinct origins the rest are parsed each time.
const origins = new Map<string, Origin>();
function originOf(origin: UndiciRequest['origin']): Origin | undefined {
  if (origin == null) return undefined;
  if (typeof origin !== 'string') return { hostname: origin.hostname, port: portOf(origin) };
  let parsed = origins.get(origin);
  if (parsed === undefined) {
    const url = new URL(origin);
    parsed = { hostname: url.hostname, port: portOf(url) };
    if (origins.size < 256) origins.set(origin, parsed);
  }
  return parsed;
}

function onCreate(message: unknown): void {
  try {
    fault('undici-create');
    const request = (message as { request: UndiciRequest }).request;
    const origin = originOf(request.origin);
    const store = storage.getStore();
    if (store !== undefined && origin !== undefined) {
      const extra = outgoingHeaders(store.id, origin.hostname, origin.port);
      if (extra)
        for (const [name, value] of extra) if (!hasHeader(request.headers, name)) addHeader(request, name, value);
    }
    if (channels.httpClient.hasSubscribers) {
      (request as Tracked)[CALL] = newCall(
        store?.id,
        request.method ?? 'GET',
        origin?.hostname ?? 'unknown',
        callPath(request.path),
      );
    }
  } catch (err) {
    log.warnOnce(
      'undici-create',
      `undici: instrumenting an outgoing request failed (${(err as Error).message}); it goes out unchanged`,
    );
  }
}

function onHeaders(message: unknown): void {
  try {
    fault('undici-headers');
    const { request, response } = message as { request: Tracked; response: { statusCode: number } };
    const call = request[CALL];
    if (call) call.status = response.statusCode;
  } catch (err) {
    // A subscriber that throws would surface as an uncaughtException (diagnostics_channel rethrows
    // on nextTick): log once, the call is simply recorded without a status.
    log.warnOnce('undici-headers', `undici: reading a response status failed: ${(err as Error).message}`);
  }
}

function finish(message: unknown, failed: boolean): void {
  try {
    fault('undici-end');
    const request = (message as { request: Tracked }).request;
    const call = request[CALL];
    if (!call) return;
    request[CALL] = undefined; // not `delete`: that would turn the object into a slow dictionary
    endCall(call, failed);
  } catch (err) {
    // Unguarded, this would reach the app as an uncaughtException (see onHeaders).
    log.warnOnce('undici-end', `undici: recording an outgoing call failed: ${(err as Error).message}`);
  }
}

const onTrailers = (message: unknown) => finish(message, false);
const onError = (message: unknown) => finish(message, true);

const SUBSCRIPTIONS: Array<[string, (m: unknown) => void]> = [
  ['undici:request:create', onCreate],
  ['undici:request:headers', onHeaders],
  ['undici:request:trailers', onTrailers],
  ['undici:request:error', onError],
];

/**
 * A subscriber, not a patch: global fetch is undici bundled in Node, which no `require` ever hands
 * the registry, and the channels are the same for the bundled and the installed undici.
 * patches/index.ts declares it by its channels and loads this file at the first message.
 */
export const undici: SubscriberDefinition & { handlers: Record<string, (m: unknown) => void> } = {
  kind: 'channels',
  feature: 'undici',
  aliases: ['fetch'],
  channels: SUBSCRIPTIONS.map(([name]) => name),
  handlers: Object.fromEntries(SUBSCRIPTIONS),
  subscribe(): void {
    for (const [name, fn] of SUBSCRIPTIONS) dc.subscribe(name, fn);
  },
  unsubscribe(): void {
    for (const [name, fn] of SUBSCRIPTIONS) dc.unsubscribe(name, fn);
  },
};
