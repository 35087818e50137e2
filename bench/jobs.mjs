#!/usr/bin/env node
// Jobs per second through a no-op BullMQ worker, without the agent and with it (every feature on:
// StatsD to a local UDP socket, the requests store), as a ratio, in one interleaved run; and
// `als-floor`, each job in AsyncLocalStorage.run and nothing else, what any context-carrying agent pays.
//   node bench/jobs.mjs [--rounds 5] [--jobs 3000] [--concurrency 20] [--node /path/to/node] [--write]
// How: one real Redis (Debian's redis-server, test/support/redis.mjs) for the run. Each round runs
// every variant, A B C then C B A in the next round, each in a fresh process: the process adds --jobs
// jobs to a queue of its own (addBulk, before its clock starts), then starts a Worker with a no-op
// processor and times from the Worker's start to its last 'completed' event. Per round the ratio is
// agent jobs/s over plain jobs/s; the result is their median with the range. Redis and the worker
// share the machine's CPUs: on a shared machine a difference within the per-round range is noise.
// `--write` writes the table as the `jobs` section of bench/RESULTS.md. Needs `npm run build` and
// the root devDependencies (bullmq) installed.
import { spawn } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startRedis, stopRedis } from '../test/support/redis.mjs';
import { writeSection } from './results-file.mjs';
import { benchDir, median, opt } from './variants.mjs';

const root = path.resolve(benchDir, '..');
const ROUNDS = Number(opt('rounds', 5));
const JOBS = Number(opt('jobs', 3000));
const CONCURRENCY = Number(opt('concurrency', 20));
const NODE = opt('node', process.execPath);
const agent = path.join(root, 'dist/src/index.js');
if (!fs.existsSync(agent)) throw new Error('no dist/: run `npm run build` first');

// The worker process: it resolves bullmq from the root's node_modules.
const script = path.join(root, 'node_modules', '.bench-jobs-worker.js');
fs.writeFileSync(
  script,
  `
const { Queue, Worker } = require('bullmq');
const connection = { host: '127.0.0.1', port: Number(process.env.REDIS_PORT) };
const N = Number(process.env.JOBS);
(async () => {
  const queue = new Queue(process.env.QUEUE, { connection });
  for (let i = 0; i < N; i += 500)
    await queue.addBulk(Array.from({ length: Math.min(500, N - i) }, (_, k) => ({ name: 'noop', data: { i: i + k }, opts: { removeOnComplete: true } })));
  let done = 0;
  const start = performance.now();
  const worker = new Worker(queue.name, async () => undefined, { connection, concurrency: Number(process.env.CONCURRENCY) });
  worker.on('completed', async () => {
    if (++done !== N) return;
    const ms = performance.now() - start;
    console.log(JSON.stringify({ ms, perSecond: (N / ms) * 1000 }));
    await worker.close();
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
  });
})();
`,
);

// The floor: each job's processor called in AsyncLocalStorage.run, nothing else. On Node 20 and 22
// that alone turns on an async hook at every promise of the process (BullMQ's and ioredis's too).
const floor = path.join(root, 'node_modules', '.bench-jobs-floor.js');
fs.writeFileSync(
  floor,
  `
const { AsyncLocalStorage } = require('node:async_hooks');
const { Worker } = require('bullmq');
const als = new AsyncLocalStorage();
const call = Worker.prototype.callProcessJob;
Worker.prototype.callProcessJob = function () { return als.run({ id: '' }, Reflect.apply, call, this, arguments); };
`,
);

const udp = dgram.createSocket('udp4');
await new Promise((r) => udp.bind(0, '127.0.0.1', r));
udp.on('message', () => {}); // the agent's StatsD lines are received and dropped
const statsdPort = udp.address().port;

const VARIANTS = {
  none: { preload: null, env: {} },
  'als-floor': { preload: floor, env: {} },
  'hatch-agent': {
    preload: agent,
    env: { HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(statsdPort), HATCH_TOKEN: 'bench-token-0123456789abcdef' },
  },
};

function once(variant, redisPort, round) {
  const v = VARIANTS[variant];
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, [...(v.preload ? ['-r', v.preload] : []), script], {
      cwd: root,
      env: {
        ...process.env,
        ...v.env,
        REDIS_PORT: String(redisPort),
        QUEUE: `bench-${variant.replace(/\W/g, '')}-${round}-${process.pid}`,
        JOBS: String(JOBS),
        CONCURRENCY: String(CONCURRENCY),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`${variant} exited ${code}: ${err}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()));
      } catch {
        reject(new Error(`${variant}: no result: ${out}${err}`));
      }
    });
  });
}

const redis = await startRedis();
const results = { none: [], 'als-floor': [], 'hatch-agent': [] };
const ratios = [];
const overFloor = [];
try {
  for (let round = 0; round < ROUNDS; round++) {
    const names = Object.keys(VARIANTS);
    const order = round % 2 === 0 ? names : [...names].reverse();
    const got = {};
    for (const name of order) got[name] = await once(name, redis.port, round);
    for (const name of names) results[name].push(got[name].perSecond);
    ratios.push(got['hatch-agent'].perSecond / got.none.perSecond);
    overFloor.push(got['hatch-agent'].perSecond / got['als-floor'].perSecond);
    console.log(
      `round ${round + 1}: ${names.map((n) => `${n} ${got[n].perSecond.toFixed(0)} jobs/s`).join(', ')}; hatch-agent/none ${ratios.at(-1).toFixed(3)}`,
    );
  }
} finally {
  await stopRedis();
  udp.close();
  fs.rmSync(script, { force: true });
  fs.rmSync(floor, { force: true });
}

const bullmqVersion = JSON.parse(fs.readFileSync(path.join(root, 'node_modules/bullmq/package.json'), 'utf8')).version;
const nodeVersion = (await import('node:child_process'))
  .spawnSync(NODE, ['--version'], { encoding: 'utf8' })
  .stdout.trim();
const r3 = (x) => x.toFixed(3);
const table = [
  `Command: \`node bench/jobs.mjs --rounds ${ROUNDS} --jobs ${JOBS} --concurrency ${CONCURRENCY}\` (Node ${nodeVersion}, bullmq ${bullmqVersion}, ${os.cpus().length} CPUs shared with other work, Redis on the same machine).`,
  '',
  '| variant | jobs/s (median) | per round |',
  '|---|---|---|',
  ...Object.entries(results).map(
    ([name, xs]) => `| ${name} | ${median(xs).toFixed(0)} | ${xs.map((x) => x.toFixed(0)).join(', ')} |`,
  ),
  '',
  `hatch-agent over none: **${r3(median(ratios))}** (median of the per-round ratios; range ${r3(Math.min(...ratios))} to ${r3(Math.max(...ratios))}); over als-floor: ${r3(median(overFloor))} (range ${r3(Math.min(...overFloor))} to ${r3(Math.max(...overFloor))}).`,
].join('\n');
console.log(`\n${table}`);
if (process.argv.includes('--write'))
  writeSection('jobs', `## Jobs per second through a no-op BullMQ worker (Node ${nodeVersion})\n\n${table}\n`);
