// The agents every overhead benchmark compares, with their settings, shared by bench/overhead.mjs,
// bench/rss.mjs and bench/instructions.mjs, and what those scripts share to run the app under each
// (its start and stop, the /fetch route's downstream, RSS). Each peer's preload is resolved from
// bench/node_modules.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { listeningPort } from './child.mjs';

export const benchDir = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(benchDir, '..');
/** require() from bench/node_modules: the peers, autocannon, pg and ejs of the benchmarks. */
export const benchRequire = createRequire(path.join(benchDir, 'package.json'));
/** How many values a StatsD datagram carries: plain StatsD lines are `name:v1|ms:v2|ms…`, one `:` per value. */
export const statsdValueCount = (packet) => packet.toString().split(':').length - 1;
/** `--name value` from the command line, or the default. */
export const opt = (name, d) =>
  process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : d;

/** A loopback port nothing listens on: the peers' exporters are pointed there, so nothing leaves the machine. */
async function closedPort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

export async function variants() {
  const dead = `http://127.0.0.1:${await closedPort()}`;

  const agent = path.join(root, 'dist/src/index.js');
  // Every feature on: request IDs, SQL comments, propagation, StatsD (port set below), and the
  // recent-requests store, which is on when HATCH_TOKEN is set.
  const everything = { HATCH_STATSD: 'on', HATCH_TOKEN: 'bench-token-0123456789abcdef' };
  // Each variant: what is preloaded, and its settings. Every peer is resolved from bench/node_modules.
  return {
    none: { preload: null, env: {} },
    // The floor: AsyncLocalStorage.run per request and nothing else (bench/floor.js), what any agent
    // that carries a request ID through async context pays before doing anything of its own.
    'als-floor': { preload: path.join(benchDir, 'floor.js'), env: {} },
    // Not in the default set: the floor and an echoed ID header (bench/floor-echo.js), to tell the
    // echo's cost (its bytes, on the server and the load client) from the agent's own work.
    'als-floor/echo': { extra: true, preload: path.join(benchDir, 'floor-echo.js'), env: {} },
    'hatch-agent': { preload: agent, env: everything },
    // Not in the default set (`--only` names them): what each part of hatch-agent costs.
    // Request IDs, SQL comments, propagation and the timings' events, with no sink listening.
    'hatch-agent/core': { extra: true, preload: agent, env: { HATCH_STATSD: 'off' } },
    // Every feature but the W3C traceparent header on outgoing calls (the request ID header still goes).
    'hatch-agent/no-traceparent': { extra: true, preload: agent, env: { ...everything, HATCH_TRACEPARENT: 'off' } },
    // Every feature, but no header propagated: the downstream's host is not on the allowlist.
    'hatch-agent/no-propagation': {
      extra: true,
      preload: agent,
      env: { ...everything, HATCH_PROPAGATE_HOSTS: 'elsewhere.invalid' },
    },
    // Every feature but outgoing calls through undici and global fetch: no header added, no call timed,
    // and no subscriber on undici's channels, so /fetch's cost of the outgoing path is counted apart.
    'hatch-agent/no-undici': { extra: true, preload: agent, env: { ...everything, HATCH_DISABLE: 'undici' } },
    // Every feature but the SQL comment: the statement goes as the app wrote it, so the database
    // parses (and the socket carries) the app's own bytes, not ~40 more per statement.
    'hatch-agent/no-sql-comment': { extra: true, preload: agent, env: { ...everything, HATCH_SQL_COMMENT: 'off' } },
    // Every feature but the recent-requests store (no HATCH_TOKEN): StatsD is the one sink.
    'hatch-agent/no-store': { extra: true, preload: agent, env: { HATCH_STATSD: 'on' } },
    // Every feature but the runtime metrics (their GC observer: Node builds an entry object per GC).
    'hatch-agent/no-runtime': {
      extra: true,
      preload: agent,
      env: { ...everything, HATCH_RUNTIME_METRICS_MS: '0' },
    },
    // Every feature, and the flight recorder's ring (written when the process ends).
    'hatch-agent+recorder': {
      extra: true,
      preload: agent,
      env: { ...everything, HATCH_FLIGHT_RECORDER: path.join(benchDir, 'node_modules', '.flight-recorder.jsonl') },
    },
    // HATCH_BENCH_BASE=<another build's dist/src/index.js>: that build with every feature on, to
    // compare two builds in one interleaved run (`--only none,hatch-agent@base,hatch-agent`).
    ...(process.env.HATCH_BENCH_BASE
      ? { 'hatch-agent@base': { extra: true, preload: path.resolve(process.env.HATCH_BENCH_BASE), env: everything } }
      : {}),
    otel: {
      preload: '@opentelemetry/auto-instrumentations-node/register',
      env: {
        OTEL_SERVICE_NAME: 'bench',
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
        OTEL_EXPORTER_OTLP_ENDPOINT: dead,
        OTEL_METRICS_EXPORTER: 'none',
        OTEL_LOGS_EXPORTER: 'none',
        OTEL_LOG_LEVEL: 'none',
        // Only local detectors: the cloud ones query metadata endpoints off the machine.
        OTEL_NODE_RESOURCE_DETECTORS: 'env,host,os,process',
      },
    },
    'dd-trace': {
      preload: 'dd-trace/init',
      env: {
        DD_SERVICE: 'bench',
        DD_TRACE_AGENT_URL: dead,
        DD_INSTRUMENTATION_TELEMETRY_ENABLED: 'false',
        DD_REMOTE_CONFIGURATION_ENABLED: 'false',
        DD_TRACE_STARTUP_LOGS: 'false',
        DD_PROFILING_ENABLED: 'false',
        DD_RUNTIME_METRICS_ENABLED: 'false',
        DD_DOGSTATSD_URL: `udp://127.0.0.1:${dead.split(':').pop()}`,
      },
    },
    elastic: {
      preload: 'elastic-apm-node/start',
      env: {
        ELASTIC_APM_SERVICE_NAME: 'bench',
        ELASTIC_APM_SERVER_URL: dead,
        ELASTIC_APM_CENTRAL_CONFIG: 'false',
        ELASTIC_APM_CLOUD_PROVIDER: 'none',
        ELASTIC_APM_LOG_LEVEL: 'off',
        ELASTIC_APM_METRICS_INTERVAL: '0s',
      },
    },
  };
}

/** The preload's file (null: none): hatch-agent from this repository's build, each peer from bench/node_modules. */
export const preloadFile = (preload) =>
  preload === null || path.isAbsolute(preload) ? preload : benchRequire.resolve(preload);

/**
 * bench/app.js under `node` with a variant's preload and settings; resolves once it listens.
 * `cpu`: run it on that CPU alone (taskset execs node, so the child's pid is the app's).
 * `nodeFlags`: node's (and V8's) flags for the app, before the preload.
 */
export async function startApp(node, name, variant, env, cpu, nodeFlags = []) {
  const preload = preloadFile(variant.preload);
  const app = path.join(benchDir, 'app.js');
  const args = [...nodeFlags, ...(preload ? ['-r', preload, app] : [app])];
  const [file, argv] = cpu === undefined ? [node, args] : ['taskset', ['-c', String(cpu), node, ...args]];
  const child = spawn(file, argv, {
    cwd: benchDir,
    env: { ...process.env, ...env, ...variant.env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await listeningPort(child, name);
  return { child, port };
}

/** The /fetch route's downstream: a plain server in a process of its own, never under an agent (killed when this process exits). */
export async function startDownstream() {
  const child = spawn(
    process.execPath,
    [
      '-e',
      "const s = require('http').createServer((q, r) => r.end('downstream')).listen(0, '127.0.0.1', () => console.log(s.address().port))",
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  process.on('exit', () => child.kill());
  const port = await new Promise((r) => child.stdout.once('data', (d) => r(Number(String(d).trim()))));
  return { child, url: `http://127.0.0.1:${port}/` };
}

/** The median of some numbers (of the two middle ones, their mean). */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A process's resident set size (VmRSS), MB. */
export function rssMb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Stops an app: SIGTERM, then SIGKILL after 10 s (OpenTelemetry's register replaces SIGTERM's default exit with an SDK shutdown that leaves the process running). */
export async function stopApp(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

/** The installed version of a bench dependency (read from its folder: not every package exports its package.json). */
export function versionOf(name) {
  try {
    return JSON.parse(fs.readFileSync(path.join(benchDir, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return null;
  }
}

export const HZ = 100; // USER_HZ on Linux: the unit of /proc/<pid>/stat's CPU times

/** A process's CPU time so far (utime + stime), in ticks of 1/HZ s. */
export function cpuTicks(pid) {
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

/**
 * One load window on a route with autocannon: for `seconds`, or (`requests` > 0) for that many responses (a
 * warm-up: a quarter of them). Resolves with autocannon's result plus `elapsed` (s) and `p50`/`p99` (ms) from each
 * response's own time: autocannon's summary histogram keeps whole milliseconds, too coarse for a 0.3 ms response.
 */
export function loadRoute(autocannon, { port, route, seconds, connections, requests = 0, warmup = false }) {
  const fixed = requests > 0 ? { amount: warmup ? Math.ceil(requests / 4) : requests } : { duration: seconds };
  const t = performance.now();
  const times = [];
  return new Promise((resolve, reject) => {
    const run = autocannon(
      { url: `http://127.0.0.1:${port}${route}`, connections, pipelining: 1, timeout: 30, ...fixed },
      (err, r) => {
        if (err) return reject(err);
        r.elapsed = (performance.now() - t) / 1000;
        times.sort((a, b) => a - b);
        const pct = (q) => (times.length ? times[Math.min(times.length - 1, Math.floor(q * times.length))] : NaN);
        r.p50 = pct(0.5);
        r.p99 = pct(0.99);
        resolve(r);
      },
    );
    run.on('response', (_client, status, _bytes, ms) => {
      if (status >= 200 && status < 300) times.push(ms);
    });
  });
}
