/**
 * What every hatch shares: what it is given (HatchDeps), what it answers (Reply, as JSON and
 * optionally HTML), and how an answer is written on the response (with headers that keep a browser
 * from running or framing anything in it). The format is chosen by `?format=` or the Accept header.
 * A hatch may answer a file to download instead of JSON (Reply.download: a CPU profile, a heap
 * snapshot), whose body it writes itself, so that it can stream it.
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
  /** A file, sent with Content-Disposition: attachment instead of the JSON (the HTML view, if any, still wins). */
  download?: Download;
}

export interface Download {
  filename: string;
  type: string;
  /** Writes the body and ends the response; not called for HEAD. */
  write(res: http.ServerResponse): void;
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
  if (reply.download !== undefined && !asHtml) return sendDownload(req, res, reply, reply.download);
  const body = asHtml ? reply.html! : JSON.stringify(reply.json, null, 2) + '\n';
  res.statusCode = reply.status;
  pageHeaders(res, asHtml, body);
  if (reply.headers !== undefined)
    for (const [name, value] of Object.entries(reply.headers)) res.setHeader(name, value);
  res.end(req.method === 'HEAD' ? undefined : body);
}

function sendDownload(req: http.IncomingMessage, res: http.ServerResponse, reply: Reply, d: Download): void {
  res.statusCode = reply.status;
  res.setHeader('content-type', d.type);
  res.setHeader('content-disposition', `attachment; filename="${d.filename.replace(/[^A-Za-z0-9._-]/g, '_')}"`);
  res.setHeader('cache-control', 'no-store');
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('content-security-policy', CSP);
  if (reply.headers !== undefined)
    for (const [name, value] of Object.entries(reply.headers)) res.setHeader(name, value);
  if (req.method === 'HEAD') res.end();
  else d.write(res);
}
