/**
 * The hatches that look inside the live process, each one at a time and bounded, its cost said on
 * its line of the index (`cost`):
 * - report: Node's diagnostic report (process.report.getReport: JS and native stacks, heap, libuv
 *   handles, resource usage), with the environment redacted as the config hatch redacts it, the
 *   values of the redacted variables (and the token) taken out wherever else they appear, and no
 *   network lookups (process.report.excludeNetwork, set for the call and put back after).
 * - profile: a CPU profile of `?seconds=N` (default 10, 1 to 60) through node:inspector's
 *   in-process Session (Profiler.*; no debugger port is opened), sampled every millisecond. A
 *   `.cpuprofile` download (Chrome DevTools, speedscope) for JSON or `?download`; the HTML view lists
 *   the top functions by self time. A client that goes away ends the profile early.
 * - heap: a heap snapshot (v8.getHeapSnapshot) streamed as a `.heapsnapshot` download. Refused (503,
 *   with the numbers) when the used heap is over half its limit or when free memory (the cgroup's
 *   limit minus its usage, v2 or v1, at every level up from the process's cgroup, and os.freemem) is
 *   under twice the used heap: a snapshot needs about that much more, and blocks the event loop.
 *   HATCH_HEAP_SNAPSHOT=off turns it off (403).
 * node:inspector and node:v8 are loaded at the first use of their hatch. Where Node has no inspector
 * (built without it) the profile hatch answers 501 saying so; the report and heap hatches need none.
 * HEAD answers what GET would (400, 409, 501, 503) without taking anything.
 * Limitations: a long loop running in on-stack-replaced code compiled before the profile started
 * may have its samples counted for its caller (seen on Node 20: a timer's busy loop showed as
 * listOnTimeout); the report still names the process's sockets' numeric addresses; a snapshot's
 * serialisation is not bounded in time (about a second per 100 MB of heap); the cgroup reading knows
 * only the unified (v2) and the memory controller's (v1) files.
 */
import type * as http from 'node:http';
import * as fs from 'node:fs';
import { escapeHtml, jsonPage, page } from './pages';
import { redactEnv, redactValue } from './redact';
import { now } from '../clock';
import type { HatchDeps, Reply } from './reply';

const MB = 1024 * 1024;
const mb = (n: number) => `${(n / MB).toFixed(1)} MB`;
const stamp = () => new Date().toISOString().replace(/[:.]/g, '-');

// ------------------------------------------------------------------ report

let lastReportMs: number | undefined;

export function reportCost(): string {
  const last = lastReportMs === undefined ? '' : `; the last one took ${Math.round(lastReportMs)} ms`;
  return `blocks the event loop while Node writes it (tens of ms, more with many handles or threads)${last}`;
}

type Report = Record<string, unknown> & {
  header?: Record<string, unknown>;
  environmentVariables?: Record<string, string>;
};

/** `value` with every occurrence of `needle` (as JSON text holds it) replaced. */
function replaceInJson(text: string, needle: string, by: string): string {
  const escaped = JSON.stringify(needle).slice(1, -1);
  return text.split(escaped).join(JSON.stringify(by).slice(1, -1));
}

export function reportHatch(deps: HatchDeps): Reply {
  const report = process.report as
    (NodeJS.ProcessReport & { excludeNetwork?: boolean; getReport(err?: Error): object | string }) | undefined;
  if (report === undefined || typeof report.getReport !== 'function')
    return { status: 501, json: { error: 'this Node has no diagnostic report (process.report)' } };
  const token = deps.config.hatchToken;
  // Before Node 20.13 there is no excludeNetwork: the report then looks up its sockets' peers.
  const canExclude = 'excludeNetwork' in report;
  const before = canExclude ? report.excludeNetwork : undefined;
  let raw: object | string;
  const t0 = now();
  try {
    if (canExclude) report.excludeNetwork = true;
    raw = report.getReport();
  } catch (err) {
    return { status: 500, json: { error: `the diagnostic report failed: ${(err as Error)?.message}` } };
  } finally {
    if (canExclude) report.excludeNetwork = before;
    lastReportMs = now() - t0;
  }
  const rep = (typeof raw === 'string' ? JSON.parse(raw) : raw) as Report;
  const env = rep.environmentVariables ?? {};
  const redacted = redactEnv(env, token);
  rep.environmentVariables = redacted;
  const header = rep.header;
  if (header !== undefined && Array.isArray(header.commandLine))
    header.commandLine = header.commandLine.map((a: unknown) => redactValue(String(a), token));
  // A secret can be elsewhere too (an argument, a path, a thread's environment): every value the
  // redaction changed, and the token, are taken out of the whole text. Short values are left (8+).
  let text = JSON.stringify(rep);
  const secrets = new Map<string, string>();
  for (const [name, value] of Object.entries(env)) {
    // PWD and OLDPWD match the password pattern (`pwd`) but hold the working directory, which the
    // report names in its header: redacted in the list, not swept out of the paths.
    if (name === 'PWD' || name === 'OLDPWD') continue;
    if (typeof value === 'string' && value.length >= 8 && redacted[name] !== value)
      secrets.set(value, redacted[name] ?? '[redacted]');
  }
  for (const [value, by] of [...secrets].sort((a, b) => b[0].length - a[0].length))
    text = replaceInJson(text, value, by);
  if (token !== undefined) text = replaceInJson(text, token, '[redacted]');
  const json = JSON.parse(text) as Report;
  (json as Record<string, unknown>).hatch = {
    networkLookups: canExclude
      ? 'skipped (process.report.excludeNetwork)'
      : 'this Node has no process.report.excludeNetwork (before 20.13): the report looked up its sockets’ peers',
    environment: 'redacted as /_hatch/config redacts it',
    tookMs: Math.round(lastReportMs),
  };
  return { status: 200, json, html: reportHtml(json) };
}

function reportHtml(r: Report): string {
  const h = (r.header ?? {}) as Record<string, unknown>;
  const heap = (r.javascriptHeap ?? {}) as Record<string, unknown>;
  const usage = (r.resourceUsage ?? {}) as Record<string, unknown>;
  const handles = Array.isArray(r.libuv) ? (r.libuv as Array<{ type?: string; is_active?: boolean }>) : [];
  const byType = new Map<string, number>();
  for (const x of handles) byType.set(String(x.type), (byType.get(String(x.type)) ?? 0) + 1);
  const js = (r.javascriptStack ?? {}) as { message?: string; stack?: string[] };
  const native = Array.isArray(r.nativeStack) ? (r.nativeStack as Array<{ symbol?: string }>) : [];
  const rows = (pairs: Array<[string, unknown]>) =>
    `<table>${pairs
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`)
      .join('')}</table>`;
  const num = (v: unknown) => (typeof v === 'number' ? mb(v) : undefined);
  const body =
    `<p>${escapeHtml((r.hatch as { networkLookups?: string } | undefined)?.networkLookups ?? '')}; took ${escapeHtml((r.hatch as { tookMs?: number } | undefined)?.tookMs ?? '?')} ms. The whole report: <code>?format=json</code> (the environment redacted).</p>` +
    '<h2>Process</h2>' +
    rows([
      ['Node', h.nodejsVersion],
      ['pid', h.processId],
      ['threads (workers)', Array.isArray(r.workers) ? r.workers.length : undefined],
      ['command line', Array.isArray(h.commandLine) ? h.commandLine.join(' ') : undefined],
      ['cwd', h.cwd],
      ['host', h.host],
      ['time', h.dumpEventTime],
      ['environment variables', Object.keys(r.environmentVariables ?? {}).length],
    ]) +
    '<h2>Memory and CPU</h2>' +
    rows([
      ['heap used', num(heap.usedMemory)],
      ['heap total', num(heap.totalMemory)],
      ['heap limit', num(heap.memoryLimit)],
      ['rss', num(usage.rss)],
      ['free memory', num(usage.free_memory)],
      ['CPU user (s)', usage.userCpuSeconds],
      ['CPU kernel (s)', usage.kernelCpuSeconds],
      ['CPU consumption (%)', usage.cpuConsumptionPercent],
    ]) +
    `<h2>libuv handles (${handles.length})</h2>` +
    rows([...byType].sort((a, b) => b[1] - a[1]).map(([t, n]) => [t, n] as [string, unknown])) +
    '<h2>JavaScript stack</h2>' +
    `<pre>${escapeHtml([js.message ?? '', ...(js.stack ?? [])].join('\n'))}</pre>` +
    `<h2>Native stack (${native.length} frames)</h2>` +
    `<pre>${escapeHtml(
      native
        .slice(0, 40)
        .map((f) => f.symbol ?? '')
        .join('\n'),
    )}</pre>`;
  return page('diagnostic report', body);
}

// ------------------------------------------------------------------ profile

const DEFAULT_SECONDS = 10;
const MAX_SECONDS = 60;
const SAMPLE_US = 1000;
let profiling: { until: number } | undefined;
let lastProfile: { seconds: number; samples: number } | undefined;

export function profileCost(): string {
  const last =
    lastProfile === undefined ? '' : `; the last ran ${lastProfile.seconds} s and took ${lastProfile.samples} samples`;
  return `runs for ?seconds=N (default ${DEFAULT_SECONDS} s, at most ${MAX_SECONDS} s), samples every ${SAMPLE_US / 1000} ms: a few percent of one CPU while it runs, the profile held in memory until sent; one at a time${last}`;
}

type InspectorModule = typeof import('node:inspector');
let inspector: InspectorModule | undefined;

/** node:inspector, or why there is none (a Node built without the inspector throws at its require). */
function loadInspector(): InspectorModule | string {
  if (inspector !== undefined) return inspector;
  try {
    const m = require('node:inspector') as InspectorModule;
    if (typeof m?.Session !== 'function') return 'node:inspector has no Session';
    return (inspector = m);
  } catch (err) {
    return `node:inspector cannot be loaded: ${(err as Error)?.message}`;
  }
}

/** `?seconds=`: the number, or why it is refused. */
export function parseSeconds(raw: string | null): number | string {
  if (raw === null || raw === '') return DEFAULT_SECONDS;
  const v = raw.trim();
  if (/^\d{1,3}$/.test(v) && Number(v) >= 1 && Number(v) <= MAX_SECONDS) return Number(v);
  return `seconds must be a whole number from 1 to ${MAX_SECONDS} (got ${JSON.stringify(raw.slice(0, 20))})`;
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface TopFunction {
  functionName: string;
  url: string;
  line: number;
  selfMs: number;
  percent: number;
}

/** Self time per function (name, file, line), from the samples: each sample counts until the next. */
export function topFunctions(p: Profile, n = 30): TopFunction[] {
  const nodes = new Map(p.nodes.map((x) => [x.id, x]));
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  const self = new Map<string, TopFunction & { us: number }>();
  let t = p.startTime;
  for (let i = 0; i < samples.length; i++) {
    t += deltas[i] ?? 0;
    const next = i + 1 < samples.length ? t + (deltas[i + 1] ?? 0) : p.endTime;
    const node = nodes.get(samples[i]!);
    if (node === undefined) continue;
    const f = node.callFrame;
    const key = `${f.functionName}\u0000${f.url}\u0000${f.lineNumber}`;
    let e = self.get(key);
    if (e === undefined)
      self.set(
        key,
        (e = {
          functionName: f.functionName || '(anonymous)',
          url: f.url,
          line: f.lineNumber + 1,
          selfMs: 0,
          percent: 0,
          us: 0,
        }),
      );
    e.us += Math.max(0, next - t);
  }
  const total = Math.max(1, p.endTime - p.startTime);
  return [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, n)
    .map(({ us, ...f }) => ({
      ...f,
      selfMs: Math.round(us / 100) / 10,
      percent: Math.round((us / total) * 1000) / 10,
    }));
}

function profileHtml(top: TopFunction[], seconds: number, samples: number): string {
  const rows = top
    .map(
      (f) =>
        `<tr class="function"><td>${f.selfMs} ms</td><td>${f.percent}%</td><td><code class="name">${escapeHtml(f.functionName)}</code></td><td><code>${escapeHtml(f.url === '' ? '' : `${f.url}:${f.line}`)}</code></td></tr>`,
    )
    .join('');
  return page(
    `CPU profile: ${seconds} s`,
    `<p>${samples} samples, one every ${SAMPLE_US / 1000} ms. The profile itself: <code>?download</code> (a <code>.cpuprofile</code> for Chrome DevTools or speedscope; it is a new profile).</p><h2>Top functions by self time</h2><table><tr><th>self</th><th>share</th><th>function</th><th>where</th></tr>${rows}</table>`,
  );
}

function post<T = unknown>(session: import('node:inspector').Session, method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) => {
    session.post(method, params ?? {}, (err: Error | null, result?: unknown) =>
      err ? reject(err) : resolve(result as T),
    );
  });
}

/** Waits `ms`, or less when the client goes away. */
function wait(ms: number, req: http.IncomingMessage): Promise<void> {
  return new Promise((resolve) => {
    // On http2's compatibility request the socket is a proxy that refuses some calls: never fatal.
    const socket = req.socket as NodeJS.EventEmitter | undefined;
    const listen = (on: boolean) => {
      try {
        if (on) socket?.once('close', done);
        else socket?.removeListener('close', done);
      } catch {
        // the profile then runs its whole time
      }
    };
    const done = () => {
      clearTimeout(timer);
      listen(false);
      resolve();
    };
    const timer = setTimeout(done, ms);
    listen(true);
  });
}

export async function profileHatch(query: URLSearchParams, req: http.IncomingMessage): Promise<Reply> {
  const seconds = parseSeconds(query.get('seconds'));
  if (typeof seconds === 'string') return { status: 400, json: { error: seconds } };
  const mod = loadInspector();
  if (typeof mod === 'string')
    return {
      status: 501,
      json: { error: `no CPU profile: this Node has no inspector (${mod})` },
    };
  if (profiling !== undefined)
    return {
      status: 409,
      json: {
        error: 'a CPU profile is being taken; one at a time',
        endsInSeconds: Math.max(0, Math.ceil((profiling.until - Date.now()) / 1000)),
      },
    };
  if (req.method === 'HEAD') return { status: 200, json: { seconds } };
  profiling = { until: Date.now() + seconds * 1000 };
  const session = new mod.Session();
  try {
    session.connect();
    await post(session, 'Profiler.enable');
    await post(session, 'Profiler.setSamplingInterval', { interval: SAMPLE_US });
    await post(session, 'Profiler.start');
    await wait(seconds * 1000, req);
    const { profile } = await post<{ profile: Profile }>(session, 'Profiler.stop');
    const samples = profile.samples?.length ?? 0;
    lastProfile = { seconds, samples };
    const text = JSON.stringify(profile);
    return {
      status: 200,
      html: query.has('download') ? undefined : profileHtml(topFunctions(profile), seconds, samples),
      download: {
        filename: `hatch-${process.pid}-${stamp()}.cpuprofile`,
        type: 'application/json',
        write(res) {
          res.setHeader('content-length', Buffer.byteLength(text));
          res.end(text);
        },
      },
    };
  } catch (err) {
    return { status: 500, json: { error: `the CPU profile failed: ${(err as Error)?.message}` } };
  } finally {
    try {
      session.post('Profiler.disable');
      session.disconnect();
    } catch {
      // the session is gone already
    }
    profiling = undefined;
  }
}

// ------------------------------------------------------------------ heap

let snapshotting = false;
let lastHeap: { tookMs: number; bytes: number } | undefined;

export function heapCost(deps: HatchDeps): string {
  if (!deps.config.hatchHeapSnapshot) return 'off (HATCH_HEAP_SNAPSHOT=off)';
  const last =
    lastHeap === undefined ? '' : `; the last took ${Math.round(lastHeap.tookMs)} ms and was ${mb(lastHeap.bytes)}`;
  return `blocks the event loop for the whole snapshot (about a second per 100 MB of heap) and needs about twice the used heap in memory: refused when the heap is over half its limit or free memory is under twice the heap; one at a time${last}`;
}

function readNumber(file: string): number | 'max' | undefined {
  try {
    const s = fs.readFileSync(file, 'utf8').trim();
    if (s === 'max') return 'max';
    return /^\d+$/.test(s) ? Number(s) : undefined;
  } catch {
    return undefined;
  }
}

/** The cgroup path of `controller` ('' for v2's unified line) from /proc/self/cgroup. */
function cgroupPath(v2: boolean): string | undefined {
  try {
    for (const line of fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
      const [id, controllers, p] = line.split(':');
      if (p === undefined) continue;
      if (v2 ? id === '0' && controllers === '' : controllers!.split(',').includes('memory')) return p;
    }
  } catch {
    // not Linux, or no /proc
  }
  return undefined;
}

/** The least room left under any limit of the process's cgroup and its parents (v2 or v1), or undefined. */
function cgroupRoom(): { bytes: number; source: string } | undefined {
  const tries: Array<{ root: string; limit: string; usage: string; v2: boolean; name: string }> = [
    { root: '/sys/fs/cgroup', limit: 'memory.max', usage: 'memory.current', v2: true, name: 'cgroup v2' },
    {
      root: '/sys/fs/cgroup/memory',
      limit: 'memory.limit_in_bytes',
      usage: 'memory.usage_in_bytes',
      v2: false,
      name: 'cgroup v1',
    },
  ];
  for (const t of tries) {
    const own = cgroupPath(t.v2) ?? '/';
    // From the process's own cgroup up to the root (a limit may sit on a parent), then the mount's
    // root itself (inside a container, the container's cgroup).
    const dirs: string[] = [];
    for (let p = own; ; p = p.slice(0, p.lastIndexOf('/')) || '/') {
      dirs.push(t.root + (p === '/' ? '' : p));
      if (p === '/') break;
    }
    let best: { bytes: number; source: string } | undefined;
    let seen = false;
    for (const dir of dirs) {
      const limit = readNumber(`${dir}/${t.limit}`);
      const usage = readNumber(`${dir}/${t.usage}`);
      if (limit === undefined || typeof usage !== 'number') continue;
      seen = true;
      // v1 says "no limit" with a huge number (a page-rounded 2^63).
      if (limit === 'max' || limit >= 2 ** 60) continue;
      const room = Math.max(0, limit - usage);
      if (best === undefined || room < best.bytes)
        best = { bytes: room, source: `${t.name}: ${dir}/${t.limit} − ${t.usage}` };
    }
    if (seen) return best;
  }
  return undefined;
}

export interface HeapNumbers {
  usedHeap: number;
  heapLimit: number;
  freeMemory: number;
  freeMemoryFrom: string;
}

export function heapNumbers(): HeapNumbers {
  const v8 = require('node:v8') as typeof import('node:v8');
  const os = require('node:os') as typeof import('node:os');
  const s = v8.getHeapStatistics();
  const osFree = os.freemem();
  const cg = cgroupRoom();
  const free =
    cg !== undefined && cg.bytes < osFree
      ? { bytes: cg.bytes, from: cg.source }
      : { bytes: osFree, from: 'os.freemem()' };
  return {
    usedHeap: s.used_heap_size,
    heapLimit: s.heap_size_limit,
    freeMemory: free.bytes,
    freeMemoryFrom: free.from,
  };
}

/** Why a snapshot is refused now, or undefined. */
function refusal(n: HeapNumbers): string | undefined {
  if (n.usedHeap > n.heapLimit / 2)
    return `the used heap (${mb(n.usedHeap)}) is over half its limit (${mb(n.heapLimit)}): a snapshot needs about twice the heap, and could take the process down`;
  if (n.freeMemory < 2 * n.usedHeap)
    return `free memory (${mb(n.freeMemory)}, ${n.freeMemoryFrom}) is under twice the used heap (${mb(n.usedHeap)}): a snapshot needs about that much more`;
  return undefined;
}

const BUSY = 'a heap snapshot is being taken; one at a time';

export function heapHatch(deps: HatchDeps, req: http.IncomingMessage): Reply {
  if (!deps.config.hatchHeapSnapshot)
    return { status: 403, json: { error: 'heap snapshots are off (HATCH_HEAP_SNAPSHOT=off)' } };
  if (snapshotting) return { status: 409, json: { error: BUSY } };
  const n = heapNumbers();
  const why = refusal(n);
  if (why !== undefined) {
    const json = { error: `heap snapshot refused: ${why}`, ...n };
    return { status: 503, json, html: jsonPage('heap snapshot refused', json) };
  }
  if (req.method === 'HEAD') return { status: 200, json: n };
  return {
    status: 200,
    download: {
      filename: `hatch-${process.pid}-${stamp()}.heapsnapshot`,
      type: 'application/json',
      write(res) {
        // Checked again: another request may have started one since this one was answered.
        if (snapshotting) return plainError(res, 409, BUSY);
        snapshotting = true;
        const v8 = require('node:v8') as typeof import('node:v8');
        const t0 = now();
        let stream: import('node:stream').Readable;
        try {
          stream = v8.getHeapSnapshot();
        } catch (err) {
          snapshotting = false;
          return plainError(res, 500, `the heap snapshot failed: ${(err as Error)?.message}`);
        }
        let bytes = 0;
        stream.on('data', (d: Buffer) => (bytes += d.length));
        const finish = () => {
          if (!snapshotting) return;
          snapshotting = false;
          lastHeap = { tookMs: now() - t0, bytes };
        };
        stream.on('error', (err) => {
          finish();
          res.destroy(err);
        });
        stream.on('end', finish);
        res.on('close', () => {
          stream.destroy();
          finish();
        });
        stream.pipe(res);
      },
    },
  };
}

/** An error answered in place of a download whose headers are set but not sent. */
function plainError(res: http.ServerResponse, status: number, error: string): void {
  const body = JSON.stringify({ error }, null, 2) + '\n';
  res.statusCode = status;
  res.removeHeader('content-disposition');
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.end(body);
}
