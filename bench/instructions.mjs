#!/usr/bin/env node
// The server's CPU cost per request in instructions, counted by valgrind's callgrind: the one
// overhead figure a shared, stolen-from VM cannot disturb (wall and even CPU time on this machine
// vary 10-60x between identical windows; see bench/RESULTS.md). For each variant (no agent,
// hatch-agent, OpenTelemetry, dd-trace, Elastic APM) one app process runs under callgrind with
// instrumentation off; per route, a warm-up load runs uncounted, then counting is switched on
// (callgrind_control) for exactly --requests requests and off again. The count covers the app
// process only, not the load generator, which is another process. The headline per request is the
// main thread's count without V8's compilation, net of the idle rate (see below); the all-threads
// count is reported beside it. For a CPU-bound server, the throughput ratio to no agent is about
// none's headline count / the variant's.
// The JIT stays on (--smc-check=all-non-file), so the code measured is the optimised code.
//   node bench/instructions.mjs [--requests 150] [--warmup 3000] [--connections 2] [--idle 20] [--windows 3]
//                               [--routes /hello,/db,/fetch,/render,/redis] [--only none,hatch-agent] [--no-write]
//                               [--node-flags '--no-concurrent-recompilation --single-threaded-gc'] [--section NAME]
// Needs valgrind (apt-get install valgrind). Not part of `npm test`.
import { listeningPort } from './child.mjs';
import { variants, stopApp, versionOf, median, benchDir, benchRequire, opt } from './variants.mjs';
import { writeSection } from './results-file.mjs';
import { startPostgres } from '../test/support/postgres.mjs';
import { startRedis } from '../test/support/redis.mjs';
import * as cg from './callgrind.mjs';
import { spawn } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const autocannon = benchRequire('autocannon');
const argv = process.argv;
const REQUESTS = Number(opt('requests', 150));
const WARMUP = Number(opt('warmup', 3000)); // V8 still compiles at 3,000 requests, less each time (callgrind.mjs)
const CONNECTIONS = Number(opt('connections', 2));
const ROUTES = opt('routes', '/hello,/db,/fetch,/render').split(',');
const IDLE = Number(opt('idle', 20)); // seconds of idle counting, in 5 windows (the lowest rate is used)
const WINDOWS = Number(opt('windows', 3)); // counted windows per route (the median is reported)
// V8 flags for every variant's app. By default V8 optimises and collects garbage on helper threads,
// which valgrind runs one at a time with the main thread: how far the JIT has got then depends on
// thread scheduling, and counts kept falling from window to window (none's /hello, main thread: 209 k,
// 136 k, 117 k after 1,500 warm-up requests). With both on the main thread, a function is optimised
// after the same number of calls every run, the warm-up pays for it, and the windows measure the
// optimised code. --node-flags '' gives V8's defaults back.
const NODE_FLAGS = opt('node-flags', '--no-concurrent-recompilation --single-threaded-gc').split(' ').filter(Boolean);
const ALL = await variants();
const VARIANTS = argv.includes('--only') ? opt('only', '').split(',') : Object.keys(ALL).filter((v) => !ALL[v].extra);
if (VARIANTS[0] !== 'none') throw new Error('--only must start with none: ratios are against it');

const pg = await startPostgres();
// Debian's redis-server, for /redis only (bench/app.js answers 503 without REDIS_URL).
const redis = ROUTES.includes('/redis') ? await startRedis() : null;
const sink = dgram.createSocket('udp4');
let received = 0;
sink.on('message', (m) => (received += m.toString().split('\n').length));
await new Promise((r) => sink.bind(0, '127.0.0.1', r));
const downstream = spawn(
  process.execPath,
  [
    '-e',
    "const s = require('http').createServer((q, r) => r.end('downstream')); s.keepAliveTimeout = 600000; s.listen(0, '127.0.0.1', () => console.log(s.address().port))",
  ],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
process.on('exit', () => downstream.kill()); // also when a run fails
const downstreamPort = await listeningPortPlain(downstream);
const env = {
  BENCH_KEEPALIVE_MS: '600000',
  DATABASE_URL: pg.url,
  ...(redis ? { REDIS_URL: redis.url } : {}),
  HATCH_STATSD_PORT: String(sink.address().port),
  DOWNSTREAM_URL: `http://127.0.0.1:${downstreamPort}/`,
};

function listeningPortPlain(child) {
  return new Promise((r) => child.stdout.once('data', (d) => r(Number(String(d).trim()))));
}

let failed = 0;
const outDir = cg.outputDir();
async function load(port, route, amount) {
  const r = await autocannon({
    url: `http://127.0.0.1:${port}${route}`,
    connections: CONNECTIONS,
    amount,
    timeout: 120,
  });
  const bad = r.errors + r.timeouts + r.non2xx;
  // The switch of instrumentation stalls the process for a moment, and a connection can drop then:
  // a few failures are tolerated (and counted in the report); the count is per completed response.
  failed += bad;
  if (bad > amount / 50)
    throw new Error(
      `${route}: ${bad} failed responses (errors ${r.errors}, timeouts ${r.timeouts}, non-2xx ${r.non2xx})`,
    );
  return r.requests.total;
}
// Per variant and route, per counted window: instructions per request. The headline is the main
// thread's (the event loop bounds a Node server's throughput) without V8's compilation, net of the
// idle rate. Compilation is left out of it because which functions V8 optimises, and when, follows
// call counts: the apps compile for thousands of requests after they start (see callgrind.mjs), each
// TurboFan job costing millions of instructions, and whether a window of a few hundred requests holds
// two jobs or twelve is chance (none's /hello, 300-request windows after 1,000 warm-up requests: 60%
// of the main thread's count was compilation). It is reported apart, per request.
// Under valgrind a request takes tens of times longer than natively, so work driven by the clock
// rather than by requests (an agent's timers: flushes, samplers, the event-loop-delay histogram)
// would weigh tens of times more per request than it does natively. Each variant's idle rate is
// measured once, after its first warm-up, and what it predicts for a window's wall time is taken
// off that window's count.
const perWindow = {}; // variant -> route -> [{ steady, compile, all, wallMs }]
const idleRate = {}; // variant -> { all, steady } instructions per second with no request
const t0 = Date.now();
for (const variant of VARIANTS) {
  const { preload, env: own } = ALL[variant];
  const file = preload === null || path.isAbsolute(preload) ? preload : benchRequire.resolve(preload);
  const [cmd, args] = cg.wrap(outDir, [
    process.execPath,
    ...NODE_FLAGS,
    ...(file ? ['-r', file] : []),
    path.join(benchDir, 'app.js'),
  ]);
  const child = spawn(cmd, args, {
    cwd: benchDir,
    env: { ...process.env, ...env, ...own },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const port = await listeningPort(child, variant).catch((e) => {
    throw new Error(`${e.message}\n${stderr}`);
  });
  perWindow[variant] = {};
  for (const route of ROUTES) {
    await load(port, route, WARMUP);
    if (idleRate[variant] === undefined) {
      // The lowest rate of 5 short windows: a few seconds after load stops, V8's memory reducer runs
      // a full GC, a one-off that a window under load never holds (none's idle rate read 2 k/s in one
      // 10 s window and 5.5 M/s in another).
      for (let i = 0; i < 5; i++) {
        const idle = await cg.countOutside(
          outDir,
          child.pid,
          () => new Promise((r) => setTimeout(r, (IDLE * 1000) / 5)),
        );
        const rate = { all: idle.instructions / idle.seconds, steady: (idle.main - idle.mainCompile) / idle.seconds };
        if (idleRate[variant] === undefined || rate.steady < idleRate[variant].steady) idleRate[variant] = rate;
      }
      process.stderr.write(
        `[${((Date.now() - t0) / 1000).toFixed(0)}s] ${variant.padEnd(12)} idle     ${(idleRate[variant].all / 1000).toFixed(0)} k instructions/s (main thread without compilation ${(idleRate[variant].steady / 1000).toFixed(0)} k)\n`,
      );
    }
    perWindow[variant][route] = [];
    // One more window than reported, the first not kept: on every variant, even after 8,000 warm-up
    // requests or an uncounted load right before it, the first counted window of a route read about
    // 10-30 k instructions per request above the next ones (Node 20 and 26, /hello), and the median
    // of three then took the higher of the two steady windows.
    for (let w = 0; w <= WINDOWS; w++) {
      const {
        instructions,
        main,
        mainCompile,
        mainGc,
        result: n,
        seconds,
      } = await cg.countOutside(outDir, child.pid, () => load(port, route, REQUESTS));
      const win = {
        steady: Math.max(0, main - mainCompile - idleRate[variant].steady * seconds) / n,
        compile: mainCompile / n,
        gc: mainGc / n,
        all: instructions / n,
        wallMs: (seconds / n) * 1000,
      };
      if (w > 0) perWindow[variant][route].push(win);
      process.stderr.write(
        `[${((Date.now() - t0) / 1000).toFixed(0)}s] ${variant.padEnd(12)} ${route.padEnd(8)} ${(win.steady / 1000).toFixed(0)} k instructions/request (main thread, no compilation, net of idle); compilation ${(win.compile / 1000).toFixed(0)} k; GC ${(win.gc / 1000).toFixed(0)} k; all threads as counted ${(win.all / 1000).toFixed(0)} k; ${win.wallMs.toFixed(0)} ms wall each${w === 0 ? ' (the settling window, not kept)' : ''}\n`,
      );
    }
  }
  await stopApp(child);
}
sink.close();
downstream.kill();
await pg.stop();
await redis?.destroy();
fs.rmSync(outDir, { recursive: true, force: true });

const k = (x) => `${(x / 1000).toFixed(0)} k`;
const med = (v, route, key) => median(perWindow[v][route].map((w) => w[key]));
/** Per variant, the median of `of(window)` over a route's windows, its range, and that median. */
const spread = (v, route, of) => {
  const xs = perWindow[v][route].map(of);
  const m = median(xs);
  return { m, cell: `${k(m)} [${k(Math.min(...xs))}-${k(Math.max(...xs))}]` };
};
const rows = ROUTES.map((route) => {
  const base = med('none', route, 'steady');
  const cells = VARIANTS.map((v) => {
    const { m, cell } = spread(v, route, (w) => w.steady);
    return v === 'none' ? cell : `${cell}: ${(m / base).toFixed(2)}x → **${(base / m).toFixed(2)}**`;
  });
  return `| \`${route}\` | ${cells.join(' | ')} |`;
});
const otherRows = ROUTES.map(
  (route) =>
    `| \`${route}\` | ${VARIANTS.map((v) => `${k(med(v, route, 'compile'))} / ${k(med(v, route, 'all'))}`).join(' | ')} |`,
);
// The main thread's count less its GC too: the agent's own work, steadier from window to window than
// the headline (see GC in callgrind.mjs). The GC an agent's allocations cause is left out with it, so
// this is a lower bound of what the agent costs, never the headline.
const restRows = ROUTES.map((route) => {
  const rest = (w) => Math.max(0, w.steady - w.gc);
  const base = median(perWindow.none[route].map(rest));
  const floor = perWindow['als-floor'] ? median(perWindow['als-floor'][route].map(rest)) : undefined;
  const cells = VARIANTS.map((v) => {
    const { m, cell } = spread(v, route, rest);
    if (v === 'none') return cell;
    const vsFloor = floor !== undefined && v !== 'als-floor' ? `, ${(m / floor).toFixed(2)}x of als-floor` : '';
    return `${cell}: ${(m / base).toFixed(2)}x${vsFloor}`;
  });
  return `| \`${route}\` | ${cells.join(' | ')} |`;
});
const versions = ['@opentelemetry/auto-instrumentations-node', 'dd-trace', 'elastic-apm-node', 'pg', 'ejs']
  .map((p) => `${p} ${versionOf(p)}`)
  .join(', ');
const command = `node bench/instructions.mjs${argv
  .slice(2)
  .filter((a) => a !== '--no-write')
  .map((a) => ` ${a}`)
  .join('')}`;
const report = `## Server CPU per request in instructions (callgrind): hatch-agent and its peers against no agent

- date: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; Node ${process.version}; ${os.cpus()[0].model}; versions: ${versions}
- command: \`${command}\` (valgrind callgrind, JIT on; counting switched on only while the measured requests run;
  node flags for the apps: \`${NODE_FLAGS.join(' ') || '(none)'}\`)
- per route and variant: ${WARMUP} warm-up requests not counted, then one settling window counted and not kept, then ${WINDOWS} windows of ${REQUESTS} requests counted, ${CONNECTIONS} connections,
  one app process per variant; the count covers every thread of the app process and nothing else.
  hatch-agent with every feature on (request IDs, SQL comments, propagation, StatsD to a local receiver: ${received}
  lines received, the recent-requests store). Peers as in the load benchmark, exporters at a closed port.
- failed responses (dropped connections while counting was switched): ${failed}, of ${VARIANTS.length * ROUTES.length * (REQUESTS + WARMUP)}
- idle (no request, the lowest of 5 windows of ${IDLE / 5} s, instructions per second, all threads / main thread without compilation): ${VARIANTS.map((v) => `${v} ${k(idleRate[v].all)} / ${k(idleRate[v].steady)}`).join(', ')};
  what that rate predicts for each counted window's wall time is taken off its count (under valgrind a request lasts
  tens of times longer than natively, so timer-driven work would otherwise weigh tens of times more per request)
- cell: median over the windows of the **main thread's** instructions per request (the event loop, which bounds a Node
  server's throughput), **without V8's compilation** (a warm-up cost whose share of a short window is chance; next
  table), net of the idle rate [lowest-highest window]: the ratio to no agent → **the throughput ratio it implies for a
  CPU-bound server**

| route | ${VARIANTS.join(' | ')} |
|---|${VARIANTS.map(() => '---').join('|')}|
${rows.join('\n')}

Left out of the table above, median per request: the main thread's compilation / all threads as counted (no correction)

| route | ${VARIANTS.join(' | ')} |
|---|${VARIANTS.map(() => '---').join('|')}|
${otherRows.join('\n')}

The main thread without compilation and without garbage collection either (net of the idle rate, median
[lowest-highest window]; the ratio to no agent, and to als-floor): the code's own work, which moves less
between windows than the headline, whose GC share swings with V8's pretenuring. A lower bound: the GC an
agent's allocations cause is left out with everyone else's.

| route | ${VARIANTS.join(' | ')} |
|---|${VARIANTS.map(() => '---').join('|')}|
${restRows.join('\n')}
`;
if (!argv.includes('--no-write')) writeSection(opt('section', 'instructions'), report);
console.log(report);
