/**
 * What every hatch shares: what it is given (HatchDeps), what it answers (Reply, as JSON and
 * optionally HTML), and how an answer is written on the response (with headers that keep a browser
 * from running or framing anything in it). The format is chosen by `?format=` or the Accept header.
 */
import type * as http from 'node:http';
import type { Config } from '../config';
import type { PatchOutcome } from '../registry';
import type { StatsdTransport } from '../sinks/statsd/transport';
import type { RecentRequests } from '../sinks/recent';

export interface HatchDeps {
  config: Config;
  /** The way to StatsD; undefined with HATCH_STATSD=off. */
  statsd: StatsdTransport | undefined;
  recent: RecentRequests;
  patches: PatchOutcome[];
}

export interface Reply {
  status: number;
  json?: unknown;
  html?: string;
  /** Headers set after the usual ones (Set-Cookie, Location, another Content-Security-Policy). */
  headers?: Record<string, string | string[]>;
}

/** No script, no framing, no form posted anywhere: every hatch page, and the debug page. */
export const CSP =
  "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** The headers every page of the agent's is sent with. */
export function pageHeaders(res: http.ServerResponse, asHtml: boolean, body: string): void {
  res.setHeader('content-type', asHtml ? 'text/html; charset=utf-8' : 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.setHeader('cache-control', 'no-store');
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('content-security-policy', CSP);
}

/** Printable ASCII only, at most 200 characters: the msg parameter reaches logs and metric names. */
export function cleanMsg(v: string | null, fallback: string): string {
  const s = (v ?? '')
    .replace(/[^\x20-\x7e]/g, '')
    .trim()
    .slice(0, 200);
  return s === '' ? fallback : s;
}

/** HTML when asked for with `?format=html`, or by a browser's Accept header unless `?format=json`. */
export function wantsHtml(req: http.IncomingMessage, url: URL): boolean {
  const format = url.searchParams.get('format');
  return format === 'html' || (format !== 'json' && /\btext\/html\b/.test(String(req.headers.accept ?? '')));
}

export function send(req: http.IncomingMessage, res: http.ServerResponse, reply: Reply, html: boolean): void {
  if (res.headersSent || res.writableEnded) return;
  const asHtml = html && reply.html !== undefined;
  const body = asHtml ? reply.html! : JSON.stringify(reply.json, null, 2) + '\n';
  res.statusCode = reply.status;
  pageHeaders(res, asHtml, body);
  if (reply.headers !== undefined)
    for (const [name, value] of Object.entries(reply.headers)) res.setHeader(name, value);
  res.end(req.method === 'HEAD' ? undefined : body);
}
