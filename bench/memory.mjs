#!/usr/bin/env node
// Memory over a long run: 500,000 requests through /db of bench/app.js with hatch-agent preloaded
// and every feature on (request IDs, SQL comments, StatsD to a local receiver, flight recorder,
// recent-requests store). After a warm-up, and after every batch, the app forces a full GC
// (node --expose-gc, its /_bench/gc route) and reports its heap; the heap must stay within 5 MB of
// the value after warm-up.
//   node bench/memory.mjs [--requests 500000] [--batch 50000] [--warmup 20000] [--connections 50] [--no-write]
import { listeningPort } from './child.mjs';
import { stopApp, benchDir, benchRequire, statsdValueCount } from './variants.mjs';
import { spawn } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as os from 'node:os';
import * as path from 'node:path';
import { startPostgres } from '../test/support/postgres.mjs';

const root = path.resolve(benchDir, '..');
const autocannon = benchRequire('autocannon');
const argv = process.argv;
const opt = (name, d) => Number(argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1] : d);
const REQUESTS = opt('requests', 500_000);
const BATCH = opt('batch', 50_000);
const WARMUP = opt('warmup', 20_000);
const CONNECTIONS = opt('connections', 50);

const pg = await startPostgres();
const sink = dgram.createSocket('udp4');
let values = 0;
sink.on('message', (m) => (values += statsdValueCount(m)));
await new Promise((r) => sink.bind(0, '127.0.0.1', r));
const child = spawn(
  process.execPath,
  ['--expose-gc', '-r', path.join(root, 'dist/src/index.js'), path.join(benchDir, 'app.js')],
  {
    cwd: benchDir,
    env: {
      ...process.env,
      DATABASE_URL: pg.url,
      BENCH_GC_ROUTE: '1',
      HATCH_STATSD: 'on',
      HATCH_STATSD_PORT: String(sink.address().port),
      HATCH_TOKEN: 'bench-token-0123456789abcdef',
      HATCH_FLIGHT_RECORDER: path.join(os.tmpdir(), `hatch-bench-memory-${process.pid}.jsonl`),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  },
);
const port = await listeningPort(child, 'app');
const url = `http://127.0.0.1:${port}`;
const run = (amount) => autocannon({ url: `${url}/db`, connections: CONNECTIONS, amount });
const gcHeap = async () => await (await fetch(`${url}/_bench/gc`)).json();

const mb = (b) => (b / 2 ** 20).toFixed(2);
function report(finished) {
  const maxDelta = Math.max(...series.map((s) => Math.abs(s.heapUsed - base.heapUsed)));
  const rows = series.map(
    (s) =>
      `| ${s.done} | ${mb(s.heapUsed)} | ${s.heapUsed >= base.heapUsed ? '+' : ''}${mb(s.heapUsed - base.heapUsed)} | ${mb(s.heapTotal)} | ${(s.rss / 2 ** 20).toFixed(1)} |`,
  );
  return `## Memory over a long run: ${REQUESTS} requests through /db

- date: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; ${os.cpus().length} × ${os.cpus()[0].model}, shared VM; Node ${process.version}
- command: \`node bench/memory.mjs --requests ${REQUESTS} --batch ${BATCH} --warmup ${WARMUP} --connections ${CONNECTIONS}\`
- app: bench/app.js under \`node --expose-gc -r hatch-agent\`, every feature on (StatsD: ${values} values received; flight
  recorder; recent-requests store); load: autocannon, ${CONNECTIONS} connections, ${WARMUP} warm-up requests, then batches of ${BATCH};
  after each batch the app runs \`gc()\` twice and reports \`process.memoryUsage()\`. ${failed} failed/non-2xx responses;
  mean ${(rpsSum / Math.max(1, series.length - 1)).toFixed(0)} req/s; ${((Date.now() - t0) / 60000).toFixed(1)} min.
- ${finished ? 'finished' : `**in progress: ${series[series.length - 1].done} of ${REQUESTS} requests so far**`}
- result: the largest distance of heapUsed from its value after warm-up is **${mb(maxDelta)} MB** (target: within 5 MB) — ${maxDelta <= 5 * 2 ** 20 ? 'met' : 'MISSED'}.

| requests after warm-up | heapUsed after GC, MB | vs after warm-up | heapTotal MB | RSS MB |
|---|---|---|---|---|
${rows.join('\n')}
`;
}
const write = async (finished) => {
  if (!argv.includes('--no-write')) (await import('./results-file.mjs')).writeSection('memory', report(finished));
};

const t0 = Date.now();
let failed = 0;
const w = await run(WARMUP);
failed += w.errors + w.timeouts + w.non2xx;
await new Promise((r) => setTimeout(r, 1500)); // let a StatsD flush and the timers run
const base = await gcHeap();
const series = [{ done: 0, ...base }];
process.stderr.write(
  `after warm-up: heap ${(base.heapUsed / 2 ** 20).toFixed(2)} MB rss ${(base.rss / 2 ** 20).toFixed(1)} MB\n`,
);
let done = 0;
let rpsSum = 0;
while (done < REQUESTS) {
  const n = Math.min(BATCH, REQUESTS - done);
  const r = await run(n);
  failed += r.errors + r.timeouts + r.non2xx;
  done += n;
  rpsSum += r.requests.average;
  const m = await gcHeap();
  series.push({ done, ...m });
  await write(false); // after every batch, so a run cut short still leaves its series
  process.stderr.write(
    `[${((Date.now() - t0) / 1000).toFixed(0)}s] ${done} requests: heap ${(m.heapUsed / 2 ** 20).toFixed(2)} MB rss ${(m.rss / 2 ** 20).toFixed(1)} MB (${r.requests.average.toFixed(0)} req/s)\n`,
  );
}
await stopApp(child);
sink.close();
await pg.stop();
await write(true);
console.log(report(true));
