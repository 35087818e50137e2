/**
 * The health hatch: runs every check at once, each under HATCH_HEALTH_TIMEOUT_MS, and answers 200
 * when all pass, 503 naming the failing ones. The checks:
 * - each resource the app's libraries announced (src/instances.ts: pg Pools and Clients today),
 *   through the probe its own patch implements: this file knows no library;
 * - StatsD, with a probe line (./statsd.ts);
 * - each HATCH_HEALTH_URLS URL, which must answer below 500 (redirects are not followed).
 * The summary (`detailed` false: pass or fail only) is what HATCH_HEALTH_PUBLIC opens to everyone.
 * Limitations: a check that times out is reported failed while its work may still run.
 */
import { resources } from '../instances';
import { healthHtml, page, type CheckResult } from './pages';
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

export function runChecks(deps: HatchDeps): Promise<CheckResult[]> {
  const ms = deps.config.hatchHealthTimeoutMs;
  const checks: Array<Promise<CheckResult>> = [];
  for (const r of resources()) checks.push(timed(r.name, ms, () => r.probe(ms)));
  const statsd = deps.statsd;
  if (statsd) checks.push(timed('statsd', ms, () => statsdProbe(statsd, deps.config.statsdPrefix)));
  for (const u of deps.config.hatchHealthUrls) checks.push(timed(`url ${urlName(u)}`, ms, () => urlProbe(u, ms)));
  return Promise.all(checks);
}

export async function healthHatch(deps: HatchDeps, detailed: boolean): Promise<Reply> {
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
