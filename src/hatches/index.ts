/**
 * The maintenance hatches: token-protected URLs under HATCH_PREFIX (default `/_hatch`), served by
 * the http server patch on the app's own servers, before the app's handler, inside the request's
 * context (so a hatch request has its ID, and its health queries are commented and recorded).
 *
 * - Off unless HATCH_TOKEN is set (24 characters or more). A request needs
 *   `Authorization: Bearer <token>`, compared in constant time (SHA-256 digests of both, so the
 *   lengths are equal, then crypto.timingSafeEqual).
 * - Without a valid token the hatches touch nothing: the app's handler answers as if they did not
 *   exist, and the attempt is counted (errors{kind=hatch_auth}). HATCH_HEALTH_PUBLIC opens the
 *   health summary (pass or fail, no details) to everyone.
 * - This module is loaded only when the hatches are on; it loads node:crypto then.
 */
import type * as http from 'node:http';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Config } from '../config';
import type { PatchOutcome } from '../registry';
import type { StatsdSink } from '../sinks/statsd';
import type { RecentRequests } from '../sinks/recent';
import type { PreHandler } from '../pre-handler';
import { storage } from '../context';
import { channels } from '../bus';
import { log } from '../log';
import { reportError } from '../errors';
import { instances } from '../instances';
import { escapeHtml, healthHtml, indexHtml, jsonPage, page, requestHtml, requestsHtml, type CheckResult, type HatchInfo } from './pages';

export interface HatchDeps {
  config: Config;
  statsd: StatsdSink | undefined;
  recent: RecentRequests;
  patches: PatchOutcome[];
}

const HATCHES: HatchInfo[] = [
  { path: '', description: 'this index: every hatch and what it does' },
  { path: '/health', description: 'live checks, each with its own timeout and latency: every pg Pool and Client the app uses answers SELECT 1 (through its own pool or client), StatsD gets a probe, each HATCH_HEALTH_URLS URL answers below 500; 200 when all pass, 503 naming the failing checks' },
  { path: '/error?msg=…', description: 'raises a test error inside this request, through the path app errors take (hatch:error, errors counter, stderr with the request ID, the request record); answers 500' },
  { path: '/statsd?msg=…', description: 'sends a test counter to StatsD and answers with the exact line sent' },
  { path: '/config', description: 'effective configuration, agent and Node versions, every patch with the module version it patched (or why not); secrets redacted' },
  { path: '/requests', description: 'recent and slowest requests, each with its timeline of queries, outgoing calls and renders (a waterfall in HTML; ?format=json for scripts)' },
  { path: '/requests/<id>', description: 'one request of the requests hatch' },
];

const STATSD_NOTE = 'StatsD is UDP: its check passes when the host resolves and the probe left without a socket error; receipt cannot be confirmed.';

/** Printable ASCII only, at most 200 characters: the msg parameter reaches logs and metric names. */
function cleanMsg(v: string | null, fallback: string): string {
  const s = (v ?? '').replace(/[^\x20-\x7e]/g, '').trim().slice(0, 200);
  return s === '' ? fallback : s;
}

// ---- secrets ----------------------------------------------------------------------------------

const SECRET_NAME = /secret|passw|pwd|token|key|credential|auth|cookie|session|private|signature|salt/i;

/** Passwords in URLs (`//user:pw@`, `?password=`) and the token itself, wherever they appear. */
function redactValue(v: string, token: string | undefined): string {
  let s = v.replace(/(\/\/[^\s:@/]*):[^\s@/]*@/g, '$1:[redacted]@');
  s = s.replace(/([?&;](?:password|passwd|pass|pwd|secret|token|key|sslkey|sslpassword|api_key|apikey|access_token)=)[^&;\s]*/gi, '$1[redacted]');
  if (token !== undefined && token !== '') s = s.split(token).join('[redacted]');
  return s;
}

export function redactEnv(env: Record<string, string | undefined>, token: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of Object.keys(env).sort()) {
    const v = env[name];
    if (v === undefined) continue;
    out[name] = SECRET_NAME.test(name) ? '[redacted]' : redactValue(v, token);
  }
  return out;
}

let agentVersion: string | undefined;
function ownVersion(): string {
  if (agentVersion === undefined) {
    try {
      // dist/src/hatches/index.js -> the package root
      agentVersion = String(JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')).version);
    } catch {
      agentVersion = 'unknown';
    }
  }
  return agentVersion;
}

// ---- health -----------------------------------------------------------------------------------

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    t.unref();
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

async function timed(name: string, ms: number, fn: () => Promise<string>): Promise<CheckResult> {
  const start = performance.now();
  let status: 'pass' | 'fail' = 'pass';
  let detail: string;
  try {
    detail = await withTimeout(Promise.resolve().then(fn), ms);
  } catch (err) {
    status = 'fail';
    detail = (err as Error)?.message ?? String(err);
  }
  return { name, status, latencyMs: Math.round((performance.now() - start) * 1000) / 1000, detail };
}

/** The probe for a pool or an idle client: through the app's own object, no new connection. */
async function selectOne(instance: { query(text: string): Promise<unknown> }): Promise<string> {
  await instance.query('SELECT 1');
  return 'SELECT 1 answered';
}

function pgTarget(o: any): string {
  if (!o || typeof o !== 'object') return '';
  const host = o.host ?? 'localhost';
  return ` (${host}:${o.port ?? 5432}/${o.database ?? ''})`;
}

function urlName(u: string): string {
  try {
    const url = new URL(u);
    url.username = '';
    url.password = '';
    url.search = '';
    return url.toString();
  } catch {
    return 'url';
  }
}

async function runChecks(deps: HatchDeps): Promise<CheckResult[]> {
  const ms = deps.config.hatchHealthTimeoutMs;
  const checks: Array<Promise<CheckResult>> = [];
  const all = instances();
  // Clients a pool made are checked through their pool, not one by one.
  const pooled = new Set<object>();
  for (const { kind, instance } of all) if (kind === 'pool' && Array.isArray(instance._clients)) for (const c of instance._clients) pooled.add(c);
  for (const { kind, n, instance } of all) {
    if (kind === 'pool') {
      if (instance.ending || instance.ended) continue;
      const opts = instance.options;
      checks.push(timed(`pg pool ${n}${pgTarget(opts?.host || opts?.database ? opts : parseConn(opts?.connectionString))}`, ms, () => selectOne(instance)));
    } else {
      if (pooled.has(instance) || typeof instance.release === 'function' || instance._ending || instance._ended || !instance._connected) continue;
      // A client runs one query at a time. While the app's query runs, a probe would wait behind it
      // (failing the check on a long report query), and would put the app's next query behind a
      // queued one, which pg >= 8.19 answers with a DeprecationWarning on the app's stderr.
      // So a busy client is reported as connected, and not probed.
      const name = `pg client ${n}${pgTarget(instance)}`;
      const queue = instance._queryQueue ?? instance.queryQueue;
      const queued = Array.isArray(queue) ? queue.length : 0;
      if (instance.readyForQuery === false || queued > 0) {
        checks.push(timed(name, ms, async () => {
          if (instance._queryable === false) throw new Error('connection lost');
          return `busy with the app's query${queued ? ` (${queued} queued)` : ''}; connected, not probed`;
        }));
      } else {
        checks.push(timed(name, ms, () => selectOne(instance)));
      }
    }
  }
  const statsd = deps.statsd;
  if (statsd) {
    checks.push(timed('statsd', ms, async () => {
      const r = await statsd.sendNow(statsd.hatchLine('probe'));
      if (!r.ok) throw new Error(r.detail);
      return r.detail;
    }));
  }
  for (const u of deps.config.hatchHealthUrls) {
    checks.push(timed(`url ${urlName(u)}`, ms, async () => {
      const res = await fetch(u, { redirect: 'manual', signal: AbortSignal.timeout(ms) });
      await res.body?.cancel().catch(() => {});
      if (res.status >= 500) throw new Error(`answered ${res.status}`);
      return `answered ${res.status}`;
    }));
  }
  return Promise.all(checks);
}

function parseConn(s: unknown): object | undefined {
  if (typeof s !== 'string') return undefined;
  try {
    const u = new URL(s);
    return { host: u.hostname, port: u.port || 5432, database: u.pathname.slice(1) };
  } catch {
    return undefined;
  }
}

// ---- the handler ------------------------------------------------------------------------------

interface Reply {
  status: number;
  json?: unknown;
  html?: string;
}

function send(req: http.IncomingMessage, res: http.ServerResponse, reply: Reply, html: boolean): void {
  if (res.headersSent || res.writableEnded) return;
  const asHtml = html && reply.html !== undefined;
  const body = asHtml ? reply.html! : JSON.stringify(reply.json, null, 2) + '\n';
  res.statusCode = reply.status;
  res.setHeader('content-type', asHtml ? 'text/html; charset=utf-8' : 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.setHeader('cache-control', 'no-store');
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
  res.end(req.method === 'HEAD' ? undefined : body);
}

export function createHatches(deps: HatchDeps): PreHandler {
  const { config } = deps;
  const prefix = config.hatchPrefix;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const crypto = require('node:crypto') as typeof import('node:crypto');
  const digest = (s: string) => crypto.createHash('sha256').update(s).digest();
  const want = digest(config.hatchToken ?? crypto.randomBytes(32).toString('hex'));

  function authorized(req: http.IncomingMessage): boolean {
    const h = req.headers.authorization;
    if (typeof h !== 'string' || h.length > 1024) return false;
    const m = /^Bearer[ ]+(\S+)[ ]*$/i.exec(h);
    if (m === null) return false;
    return crypto.timingSafeEqual(digest(m[1]!), want);
  }

  async function health(detailed: boolean): Promise<Reply> {
    const checks = await runChecks(deps);
    const failing = checks.filter((c) => c.status === 'fail').map((c) => c.name);
    const status = failing.length === 0 ? 'pass' : 'fail';
    const code = status === 'pass' ? 200 : 503;
    if (!detailed) return { status: code, json: { status }, html: page(`health: ${status}`, `<p class="${status}">${status}</p>`) };
    return { status: code, json: { status, failing, checks, note: STATSD_NOTE }, html: healthHtml(status, checks, STATSD_NOTE) };
  }

  async function serve(sub: string, q: URLSearchParams): Promise<Reply> {
    if (sub === '' || sub === '/') {
      const list = HATCHES.map((h) => ({ path: prefix + h.path, description: h.description }));
      return { status: 200, json: { hatches: list }, html: indexHtml(list) };
    }
    if (sub === '/health') return health(true);
    if (sub === '/error') {
      const msg = cleanMsg(q.get('msg'), 'test error from the error hatch');
      const err = new Error(msg);
      err.name = 'HatchTestError';
      reportError('hatch_test', err);
      const json = { error: `${err.name}: ${msg}`, requestId: storage.getStore()?.id, reported: 'hatch:error (errors counter kind hatch_test), stderr, this request\'s record' };
      return { status: 500, json, html: jsonPage('error hatch: test error raised', json) };
    }
    if (sub === '/statsd') {
      const statsd = deps.statsd;
      if (!statsd) {
        const json = { error: 'the StatsD sink is off (HATCH_STATSD=off)' };
        return { status: 503, json, html: jsonPage('statsd hatch', json) };
      }
      const line = statsd.hatchLine('test.' + cleanMsg(q.get('msg'), 'ping'));
      const r = await statsd.sendNow(line);
      const json = { line, sent: r.ok, detail: r.detail };
      return { status: r.ok ? 200 : 502, json, html: jsonPage('statsd hatch', json) };
    }
    if (sub === '/config') {
      const token = config.hatchToken;
      const json = {
        agent: { name: 'hatch-agent', version: ownVersion() },
        node: process.version,
        pid: process.pid,
        config: {
          ...config,
          hatchToken: token === undefined ? undefined : '[redacted]',
          hatchHealthUrls: config.hatchHealthUrls.map((u) => redactValue(u, token)),
        },
        patches: deps.patches,
        env: redactEnv(process.env, token),
      };
      return { status: 200, json, html: jsonPage('effective configuration', json) };
    }
    if (sub === '/requests') {
      const recent = deps.recent.recentRequests();
      const slowest = deps.recent.slowest();
      return {
        status: 200,
        json: { recent, slowest, inFlight: deps.recent.inFlight, evicted: deps.recent.evicted },
        html: requestsHtml(recent, slowest, prefix),
      };
    }
    if (sub.startsWith('/requests/')) {
      let id = sub.slice('/requests/'.length);
      try {
        id = decodeURIComponent(id);
      } catch {
        // kept as it came
      }
      const r = deps.recent.find(id);
      if (!r) {
        const json = { error: 'no such request among those kept', id };
        return { status: 404, json, html: page('request not found', `<p>No request <code>${escapeHtml(id)}</code> among those kept.</p>`) };
      }
      return { status: 200, json: r, html: requestHtml(r, prefix) };
    }
    const json = { error: 'no such hatch', hatches: HATCHES.map((h) => prefix + h.path) };
    return { status: 404, json, html: jsonPage('no such hatch', json) };
  }

  return {
    prefix,
    handle(req, res) {
      const ok = authorized(req);
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://hatch.invalid');
      } catch {
        return false;
      }
      // The raw URL is under the prefix; its normalized path (`/_hatch/../x` is `/x`) must be too.
      if (!url.pathname.startsWith(prefix)) return false;
      const sub = url.pathname.slice(prefix.length);
      const method = req.method ?? 'GET';
      if (!ok) {
        if (config.hatchHealthPublic && sub === '/health' && (method === 'GET' || method === 'HEAD')) {
          respond(req, res, health(false), url);
          return true;
        }
        // No doorbell: the app answers, as if the hatches were not there.
        if (channels.error.hasSubscribers) channels.error.publish({ kind: 'hatch_auth', requestId: storage.getStore()?.id, message: 'a request to the hatches without a valid token' });
        return false;
      }
      if (method !== 'GET' && method !== 'HEAD') {
        res.setHeader('allow', 'GET, HEAD');
        respond(req, res, Promise.resolve({ status: 405, json: { error: 'hatches answer GET only' } }), url);
        return true;
      }
      respond(req, res, serve(sub, url.searchParams), url);
      return true;
    },
  };

  function respond(req: http.IncomingMessage, res: http.ServerResponse, reply: Promise<Reply>, url: URL): void {
    const format = url.searchParams.get('format');
    const html = format === 'html' || (format !== 'json' && /\btext\/html\b/.test(String(req.headers.accept ?? '')));
    reply.then(
      (r) => send(req, res, r, html),
      (err) => {
        log.warnOnce('hatch-serve', `hatches: serving ${url.pathname} failed: ${(err as Error)?.message}`);
        send(req, res, { status: 500, json: { error: 'the hatch failed; see the agent log' } }, false);
      },
    );
  }
}
