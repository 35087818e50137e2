/**
 * The echoed request ID as a header the response has from the start without being stored with
 * setHeader: its line is added when Node writes the header block (ServerResponse's `_storeHeader`),
 * unless the app set, passed to writeHead or removed that header itself, and getHeader, hasHeader,
 * getHeaders, getHeaderNames and getRawHeaderNames show it as if it had been set.
 *
 * Why: a stored header takes Node off its path for a response without headers: setHeader cost
 * 0.5 us per /hello request on Node 24 and 1.8 us on Node 20 (bench/RESULTS.md).
 * How: seven wrappers on `http.ServerResponse.prototype`, shared by the http and https server
 * patches (https answers with http's ServerResponse) and counted: installed by the first, removed
 * with the last. They read the request's state the server patch keeps on the response (`CTX`).
 * Limitation: where `_storeHeader` is missing (a future Node), nothing is installed and the server
 * patch sets the ID with setHeader.
 */
import type * as http from 'node:http';
import { activeConfig } from '../../src/config';
import { hasHeaderNamed } from '../../src/propagation';
import { wrap, unwrap, type AnyFunction, type Fn } from '../../src/shim';
import { log } from '../../src/log';
import { fault } from '../../src/fault';

/** Where the server patch keeps a request's state on its response. */
export const CTX = Symbol('hatch-agent.request');

export interface IdHeaderState {
  readonly id: string;
  /** The ID header is still to be written: the response's headers were not sent, the app did not remove it. */
  idHeaderPending: boolean;
}
type Res = http.ServerResponse & { [CTX]?: IdHeaderState };

/** The ID header's name, in any case. */
function isIdHeader(name: unknown): boolean {
  const header = activeConfig().requestIdHeader;
  return typeof name === 'string' && name.length === header.length && name.toLowerCase() === header;
}

/** Whether the header block Node is about to write already has the ID header: then the app's wins. */
function namesIdHeader(headers: unknown, header: string): boolean {
  if (headers === null || typeof headers !== 'object') return false;
  if (Array.isArray(headers)) {
    // writeHead also takes [[name, value], ...] (the flat form is hasHeaderNamed's).
    if (headers.length > 0 && Array.isArray(headers[0])) return headers.some((pair: unknown[]) => isIdHeader(pair[0]));
  } else {
    if ((headers as Record<string, unknown>)[header] !== undefined) return true;
    // Node's own store (null prototype) has lower-case names; an object given to writeHead may not.
    if (Object.getPrototypeOf(headers) === null) return false;
  }
  return hasHeaderNamed(headers, header);
}

/** The request whose ID header is still to be written on this response, if any. */
function pendingIdHeader(res: Res): IdHeaderState | undefined {
  const state = res[CTX];
  return state !== undefined && state.idHeaderPending ? state : undefined;
}

/**
 * `<header>: `, built once per configured header name rather than once per response (one string
 * fewer on every request's path).
 */
let prefixFor: string | undefined;
let prefix = '';
function idLinePrefix(header: string): string {
  if (header !== prefixFor) {
    prefixFor = header;
    prefix = header + ': ';
  }
  return prefix;
}

const RESPONSE_WRAPPERS: Record<string, (original: Fn) => AnyFunction> = {
  _storeHeader: (original) =>
    function _storeHeader(this: Res, firstLine: string, headers: unknown) {
      const state = pendingIdHeader(this);
      if (state !== undefined) {
        try {
          fault('http-server-echo');
          const header = activeConfig().requestIdHeader;
          // Right after the status line, where setHeader's first header would have been.
          if (!namesIdHeader(headers, header)) arguments[0] = firstLine + idLinePrefix(header) + state.id + '\r\n';
        } catch (err) {
          log.warnOnce('http-echo', `http server: could not echo the request ID: ${(err as Error).message}`);
        }
      }
      return original.apply(this, arguments as unknown as unknown[]);
    },
  getHeader: (original) =>
    function getHeader(this: Res, name: string) {
      const value = original.apply(this, arguments as unknown as unknown[]);
      if (value !== undefined) return value;
      const state = pendingIdHeader(this);
      return state !== undefined && isIdHeader(name) ? state.id : value;
    },
  hasHeader: (original) =>
    function hasHeader(this: Res, name: string) {
      return (
        original.apply(this, arguments as unknown as unknown[]) ||
        (pendingIdHeader(this) !== undefined && isIdHeader(name))
      );
    },
  getHeaders: (original) =>
    function getHeaders(this: Res) {
      const headers = original.apply(this, arguments as unknown as unknown[]) as http.OutgoingHttpHeaders;
      const state = pendingIdHeader(this);
      if (state !== undefined && headers !== null && typeof headers === 'object') {
        const header = activeConfig().requestIdHeader;
        if (headers[header] === undefined) headers[header] = state.id;
      }
      return headers;
    },
  getHeaderNames: (original) =>
    function getHeaderNames(this: Res) {
      const names = original.apply(this, arguments as unknown as unknown[]);
      if (pendingIdHeader(this) !== undefined && Array.isArray(names)) {
        const header = activeConfig().requestIdHeader;
        if (!names.includes(header)) names.push(header);
      }
      return names;
    },
  getRawHeaderNames: (original) =>
    function getRawHeaderNames(this: Res) {
      const names = original.apply(this, arguments as unknown as unknown[]);
      if (pendingIdHeader(this) !== undefined && Array.isArray(names) && !names.some(isIdHeader))
        names.push(activeConfig().requestIdHeader);
      return names;
    },
  removeHeader: (original) =>
    function removeHeader(this: Res, name: string) {
      const result = original.apply(this, arguments as unknown as unknown[]);
      const state = this[CTX];
      if (state !== undefined && isIdHeader(name)) state.idHeaderPending = false;
      return result;
    },
};

/** How many server patches (http, https) use the wrappers: 0 means the ID is set with setHeader. */
let responseWrapperUsers = 0;

function responsePrototype(): Record<string, unknown> {
  return (require('node:http') as typeof http).ServerResponse.prototype as unknown as Record<string, unknown>;
}

/** Installs the wrappers (or counts one more user of them); false when they cannot be installed. */
export function useResponseWrappers(): boolean {
  if (responseWrapperUsers === 0) {
    const proto = responsePrototype();
    if (typeof proto._storeHeader !== 'function') {
      log.debug('http server: no ServerResponse._storeHeader; the request ID is echoed with setHeader');
      return false;
    }
    for (const [name, makeWrapper] of Object.entries(RESPONSE_WRAPPERS)) wrap(proto, name, makeWrapper);
  }
  responseWrapperUsers++;
  return true;
}

/** One user fewer; the last one removes the wrappers. */
export function releaseResponseWrappers(): void {
  if (responseWrapperUsers === 0 || --responseWrapperUsers > 0) return;
  const proto = responsePrototype();
  for (const name of Object.keys(RESPONSE_WRAPPERS)) unwrap(proto, name);
}

/** Whether the wrappers write the ID header (else the server patch stores it with setHeader). */
export function responseWrappersInstalled(): boolean {
  return responseWrapperUsers > 0;
}
