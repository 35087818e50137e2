/**
 * One outgoing call as both client patches (http/https and undici/fetch) record it, and its
 * publication on `hatch:http.client` when it ends. The path is kept for the requests hatch only, without
 * its query string or fragment (either can hold a secret: `?api_key=`), cut to MAX_PATH characters.
 */
import { channels, type HttpClientEvent } from './bus';
import { log } from './log';
import { now } from './clock';

export interface ClientCall {
  start: number;
  requestId: string | undefined;
  method: string;
  host: string;
  /** `/path` without query string, at most MAX_PATH characters; undefined when unknown. */
  path: string | undefined;
  /** The response status once headers arrived; `error` until then. */
  status: number | 'error';
}

export const MAX_PATH = 200;

/** A request target (`/a/b?q=1`) as a call's path: no query string, no fragment, cut to MAX_PATH. */
export function callPath(target: unknown): string | undefined {
  if (typeof target !== 'string' || target === '') return undefined;
  let end = target.length;
  const q = target.indexOf('?');
  if (q !== -1) end = q;
  const h = target.indexOf('#');
  if (h !== -1 && h < end) end = h;
  if (end > MAX_PATH) end = MAX_PATH;
  return end === target.length ? target : target.slice(0, end);
}

export function newCall(
  requestId: string | undefined,
  method: string,
  host: string,
  path: string | undefined,
): ClientCall {
  return { start: now(), requestId, method, host: unbracketed(host), path, status: 'error' };
}

/**
 * The host without an IPv6 literal's brackets (`[::1]` -> `::1`). Only a host that starts with `[` or
 * ends with `]` goes through the replace: a global replace with a regular expression takes V8's
 * runtime path, several times what the rest of a call's record costs, and most hosts are names.
 */
function unbracketed(host: string): string {
  const n = host.length;
  if (n === 0 || (host.charCodeAt(0) !== 91 && host.charCodeAt(n - 1) !== 93)) return host; // '[' and ']'
  return host.replace(/^\[|\]$/g, '');
}

/** Publishes the call's timing; `failed` when it ended in an error whatever status came before. */
export function endCall(call: ClientCall, failed: boolean): void {
  try {
    const event: HttpClientEvent = {
      requestId: call.requestId,
      method: call.method,
      host: call.host,
      path: call.path,
      statusCode: failed ? 'error' : call.status,
      start: call.start,
      duration: now() - call.start,
    };
    channels.httpClient.publish(event);
  } catch (err) {
    log.warnOnce('client-call', `recording an outgoing call failed: ${(err as Error).message}`);
  }
}
