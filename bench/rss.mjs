#!/usr/bin/env node
// RSS under a longer load: the same app and variants as bench/overhead.mjs, one fresh process per
// variant, route and round, loaded for --seconds (default 60) while its RSS is read every second.
// Reported per route and variant: the median over rounds of the RSS at a few points in time (5 s is
// what the overhead benchmark's window sees) and its peak, each against no agent at the same time.
//
// Why: in the overhead runs most of hatch-agent's extra RSS was V8's young generation (new space),
// which V8 enlarges once enough bytes have survived scavenges since it last grew it. An app
// without an agent gets there too, later: this shows whether an RSS difference lasts or is only
// reached sooner.
// --semi-space MB: V8's young generation fixed at that size (each of its two semi-spaces) in every
// variant, from the start: the steady state of a server under load, which V8 reaches by growing the
// young generation up to its maximum once enough bytes have survived scavenges since its last
// growth. Any survival gets there in the end; an agent's (a request context per keep-alive
// connection, the requests store's recent IDs) gets there within seconds, an app without one after
// many minutes, so without this option a window of a minute or two mostly measures how soon. Give
// the line's own maximum (64 on Node 24, 32 on Node 20: what a loop keeping many objects alive grows
// v8.getHeapSpaceStatistics()'s new_space to) to measure what the agent
// itself keeps.
//   node bench/rss.mjs [--seconds 60] [--rounds 2] [--routes /hello,/db] [--only none,hatch-agent]
//                      [--connections 50] [--node /path/to/node] [--semi-space MB] [--section NAME] [--no-write]
// Not part of `npm test`.
import {
  variants,
  stopApp,
  startApp,
  startDownstream,
  rssMb,
  median,
  benchRequire,
  statsdValueCount,
  opt,
} from './variants.mjs';
import { writeSection } from './results-file.mjs';
import { startPostgres } from '../test/support/postgres.mjs';
import { spawnSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as os from 'node:os';

const autocannon = benchRequire('autocannon');
const argv = process.argv;
const SECONDS = Number(opt('seconds', 60));
const ROUNDS = Number(opt('rounds', 2));
const ROUTES = opt('routes', '/hello,/db').split(',');
const CONNECTIONS = Number(opt('connections', 50));
const NODE = opt('node', process.execPath);
const SEMI = opt('semi-space', null);
const NODE_FLAGS =
  SEMI === null ? [] : [`--min-semi-space-size=${Number(SEMI)}`, `--max-semi-space-size=${Number(SEMI)}`];
const nodeVersion = spawnSync(NODE, ['--version'], { encoding: 'utf8' }).stdout.trim();
const ALL = await variants();
const VARIANTS = opt('only', 'none,hatch-agent').split(',');
if (VARIANTS[0] !== 'none') throw new Error('--only must start with none: deltas are against it');
// The points in time reported (seconds into the load), within --seconds.
const AT = [5, 15, 30, 60, 120, 300].filter((s) => s < SECONDS).concat([SECONDS]);

const pg = await startPostgres();
const sink = dgram.createSocket('udp4');
let received = 0;
sink.on('message', (m) => (received += statsdValueCount(m)));
await new Promise((r) => sink.bind(0, '127.0.0.1', r));
const downstream = await startDownstream();
const env = { DATABASE_URL: pg.url, HATCH_STATSD_PORT: String(sink.address().port), DOWNSTREAM_URL: downstream.url };

/** One process, one route: RSS (MB) at each point of AT and the peak, and the requests served. */
async function measure(variant, route) {
  const { child, port } = await startApp(NODE, variant, ALL[variant], env, undefined, NODE_FLAGS);
  const at = [];
  let peak = 0;
  const t0 = Date.now();
  const timer = setInterval(() => {
    const rss = rssMb(child.pid);
    peak = Math.max(peak, rss);
    const s = (Date.now() - t0) / 1000;
    while (at.length < AT.length && s >= AT[at.length] - 0.5) at.push(rss);
  }, 1000);
  const r = await autocannon({ url: `http://127.0.0.1:${port}${route}`, connections: CONNECTIONS, duration: SECONDS });
  clearInterval(timer);
  while (at.length < AT.length) at.push(rssMb(child.pid));
  await stopApp(child);
  return { at, peak, requests: r.requests.total, failed: r.errors + r.timeouts + r.non2xx };
}

const results = Object.fromEntries(ROUTES.map((r) => [r, Object.fromEntries(VARIANTS.map((v) => [v, []]))]));
const t0 = Date.now();
for (let round = 1; round <= ROUNDS; round++) {
  for (const route of ROUTES) {
    for (const v of round % 2 ? VARIANTS : [...VARIANTS].reverse()) {
      const m = await measure(v, route);
      results[route][v].push(m);
      process.stderr.write(
        `[${((Date.now() - t0) / 1000).toFixed(0)}s] round ${round} ${v.padEnd(12)} ${route.padEnd(7)} RSS ${AT.map((s, i) => `${s}s ${m.at[i].toFixed(0)}`).join(', ')}; peak ${m.peak.toFixed(0)} MB; ${m.requests} requests, ${m.failed} failed\n`,
      );
    }
  }
}
await pg.stop();
sink.close();
downstream.child.kill(); // its stdout pipe would keep this process alive

const sign = (x) => (x >= 0 ? '+' : '') + x.toFixed(0);
const rows = [];
for (const route of ROUTES) {
  const base = results[route].none;
  for (const v of VARIANTS) {
    const own = results[route][v];
    const cells = AT.map((_, i) => {
      const mine = median(own.map((m) => m.at[i]));
      return v === 'none' ? mine.toFixed(0) : `${mine.toFixed(0)} (${sign(mine - median(base.map((m) => m.at[i])))})`;
    });
    const peak = median(own.map((m) => m.peak));
    const peakCell =
      v === 'none' ? peak.toFixed(0) : `${peak.toFixed(0)} (${sign(peak - median(base.map((m) => m.peak)))})`;
    rows.push(
      `| \`${route}\` | ${v.startsWith('hatch-agent') ? `**${v}**` : v} | ${cells.join(' | ')} | ${peakCell} |`,
    );
  }
}
const failed = Object.values(results)
  .flatMap((byV) => Object.values(byV).flat())
  .reduce((n, m) => n + m.failed, 0);
const section = `## RSS under a longer load: does the difference last?

- date: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; ${os.cpus().length} × ${os.cpus()[0].model}, shared VM; the apps on Node ${nodeVersion}
- command: \`node bench/rss.mjs --seconds ${SECONDS} --rounds ${ROUNDS} --routes ${ROUTES.join(',')} --only ${VARIANTS.join(',')}${NODE === process.execPath ? '' : ' --node <node>'}${SEMI === null ? '' : ` --semi-space ${SEMI}`}\`
- per route, variant and round one fresh app process (bench/app.js), loaded by autocannon (${CONNECTIONS} connections) for
  ${SECONDS} s, its RSS (VmRSS) read every second; variants interleaved (A B, then B A). hatch-agent with every feature on,
  as in the overhead benchmark (StatsD: ${received} values received). ${failed} failed responses.
- young generation: ${SEMI === null ? "V8's own sizing (it grows as bytes survive scavenges)" : `fixed at ${SEMI} MB per semi-space in every variant (node ${NODE_FLAGS.join(' ')}): the size a loaded server's grows to in the end`}
- cell: median over ${ROUNDS} rounds of the RSS in MB at that many seconds into the load (in brackets: against no agent at the
  same time); last column: the peak over the whole run.

| route | variant | ${AT.map((s) => `${s} s`).join(' | ')} | peak |
|---|---|${AT.map(() => '---|').join('')}---|
${rows.join('\n')}
`;
console.log(section);
if (!argv.includes('--no-write'))
  writeSection(
    opt('section', null) ??
      (NODE === process.execPath ? 'rss' : `rss-node${nodeVersion.slice(1).split('.')[0]}`) +
        (SEMI === null ? '' : '-young-fixed'),
    section,
  );
