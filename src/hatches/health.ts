/**
 * The health hatch: runs the checks, each under HATCH_HEALTH_TIMEOUT_MS, and answers 200 when all
 * pass, 503 naming the failing ones. Two rounds, listed in this order:
 * 1. the end-to-end checks: each HATCH_HEALTH_URLS URL (the ones that go through the reverse proxy),
 *    which must answer below 500 (redirects are not followed), all at once;
 * 2. then the parts, all at once: each resource the app's libraries announced (src/instances.ts:
 *    pg Pools and Clients, mail transports, ...), through the probe its own patch implements (this
 *    file knows no library); StatsD, with a probe line (./statsd.ts); each HATCH_HEALTH_PATHS path
 *    (./paths.ts). The parts run after the end-to-end checks, so that their probes do not compete
 *    with the end-to-end request for the app's pools, and they run whatever the end-to-end checks
 *    answered: when one fails, the parts say which one is guilty.
 * Every result is kept for `?history=1`: the last HISTORY results of each check, with their times,
 * in memory (at most MAX_CHECKS checks: the one updated longest ago goes first).
 * The summary (`detailed` false: pass or fail only) is what HATCH_HEALTH_PUBLIC opens to everyone.
 * Limitations: a check that times out is reported failed while its work may still run; a round
 * takes up to twice the timeout (the end-to-end round, then the parts).
 */
import { resources } from '../instances';
import { escapeHtml, healthHtml, page, type CheckResult } from './pages';
import { pathProbe } from './paths';
import { statsdProbe, STATSD_NOTE } from './statsd';
import type { HatchDeps, Reply } from './reply';

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

async function timed(
  name: string,
  layer: CheckResult['layer'],
  ms: number,
  fn: () => Promise<string>,
): Promise<CheckResult> {
  const start = performance.now();
  let status: 'pass' | 'fail' = 'pass';
  let detail: string;
  try {
    detail = await withTimeout(Promise.resolve().then(fn), ms);
  } catch (err) {
    status = 'fail';
    detail = (err as Error)?.message ?? String(err);
  }
  return { name, layer, status, latencyMs: Math.round((performance.now() - start) * 1000) / 1000, detail };
}

/** A URL's name in a check: without its credentials and query. */
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

async function urlProbe(u: string, ms: number): Promise<string> {
  const res = await fetch(u, { redirect: 'manual', signal: AbortSignal.timeout(ms) });
  await res.body?.cancel().catch(() => {});
  if (res.status >= 500) throw new Error(`answered ${res.status}`);
  return `answered ${res.status}`;
}

export async function runChecks(deps: HatchDeps): Promise<CheckResult[]> {
  const ms = deps.config.hatchHealthTimeoutMs;
  const ends = await Promise.all(
    deps.config.hatchHealthUrls.map((u) => timed(`url ${urlName(u)}`, 'end-to-end', ms, () => urlProbe(u, ms))),
  );
  const parts: Array<Promise<CheckResult>> = [];
  for (const r of resources()) parts.push(timed(r.name, 'part', ms, () => r.probe(ms)));
  const statsd = deps.statsd;
  if (statsd) parts.push(timed('statsd', 'part', ms, () => statsdProbe(statsd, deps.config.statsdPrefix)));
  for (const p of deps.config.hatchHealthPaths) parts.push(timed(`path ${p}`, 'part', ms, () => pathProbe(p)));
  const checks = [...ends, ...(await Promise.all(parts))];
  remember(checks);
  return checks;
}

/** How many results of each check `?history=1` keeps, and of how many checks. */
export const HISTORY = 20;
const MAX_CHECKS = 200;

interface Past {
  at: string;
  status: CheckResult['status'];
  latencyMs: number;
  detail: string;
}

/** By check name, in order of first appearance (the end-to-end checks come first in every round). */
const history = new Map<string, { layer: CheckResult['layer']; results: Past[]; last: number }>();

function remember(checks: CheckResult[]): void {
  const now = Date.now();
  const at = new Date(now).toISOString();
  for (const c of checks) {
    let h = history.get(c.name);
    if (h === undefined) {
      if (history.size >= MAX_CHECKS) {
        // Checks come and go (a pg Client per job): the one not seen for longest makes room.
        let oldest: string | undefined;
        let when = Infinity;
        for (const [name, e] of history) if (e.last < when) [oldest, when] = [name, e.last];
        if (oldest !== undefined) history.delete(oldest);
      }
      history.set(c.name, (h = { layer: c.layer, results: [], last: now }));
    }
    h.last = now;
    h.results.push({ at, status: c.status, latencyMs: c.latencyMs, detail: c.detail });
    if (h.results.length > HISTORY) h.results.splice(0, h.results.length - HISTORY);
  }
}

/** `?history=1`: what the rounds so far saw, oldest first within each check; runs no new round. */
function historyReply(): Reply {
  const checks = [...history].map(([name, h]) => ({ name, layer: h.layer, results: h.results }));
  const sections = checks
    .map(
      (c) =>
        `<section class="history" data-check="${escapeHtml(c.name)}"><h2>${escapeHtml(c.name)} <small>(${escapeHtml(c.layer ?? '')})</small></h2><table><tr><th>at</th><th>status</th><th>latency</th><th>detail</th></tr>${c.results
          .map(
            (r) =>
              `<tr class="result"><td>${escapeHtml(r.at)}</td><td class="${r.status}">${r.status}</td><td>${r.latencyMs} ms</td><td>${escapeHtml(r.detail)}</td></tr>`,
          )
          .join('')}</table></section>`,
    )
    .join('');
  return {
    status: 200,
    json: { kept: HISTORY, checks },
    html: page(
      'health: history',
      `<p>The last ${HISTORY} results of each check, oldest first. Only rounds that ran are shown: this page runs none.</p>${sections || '<p>No round has run yet.</p>'}`,
    ),
  };
}

export async function healthHatch(deps: HatchDeps, detailed: boolean, query?: URLSearchParams): Promise<Reply> {
  if (detailed && query?.get('history') === '1') return historyReply();
  const checks = await runChecks(deps);
  const failing = checks.filter((c) => c.status === 'fail').map((c) => c.name);
  const status = failing.length === 0 ? 'pass' : 'fail';
  const code = status === 'pass' ? 200 : 503;
  if (!detailed)
    return { status: code, json: { status }, html: page(`health: ${status}`, `<p class="${status}">${status}</p>`) };
  return {
    status: code,
    json: { status, failing, checks, note: STATSD_NOTE },
    html: healthHtml(status, checks, STATSD_NOTE),
  };
}
