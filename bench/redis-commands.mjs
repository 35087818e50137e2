#!/usr/bin/env node
// The agent's own cost per Redis command, in one process per variant against one real Redis
// (Debian's redis-server, test/support/redis.mjs), variants interleaved (A B C, then C B A).
//   node bench/redis-commands.mjs [--lib ioredis|redis] [--rounds 3] [--requests 20000]
//                                 [--concurrency 20] [--warmup <requests>] [--instructions]
//                                 [--only none,als-floor,hatch-agent/no-redis,hatch-agent,hatch-agent+recorder,base]
//                                 [--base <another build's dist/src/index.js>]
// Each pseudo-request is what bench/app.js's /redis does (a SET then a GET through one client),
// run in the agent's request context (its AsyncLocalStorage, when the agent is loaded) and ended
// by a `hatch:http.server` event, so the requests store files each one as it does behind a server;
// --concurrency of them run at once. Per variant: CPU µs per command (process.cpuUsage over the
// measured window, after a warm-up of as many, by default), or with --instructions the instructions
// per command of the main thread, without V8's compilation (reported apart), counted by valgrind's
// callgrind (bench/callgrind.mjs), which noise does not move.
// Variants: `none` (no agent), `als-floor` (no agent, each pseudo-request in an AsyncLocalStorage
// of its own), `hatch-agent` (every feature on: StatsD to a local UDP socket, the
// requests store), `hatch-agent/no-redis` (the same, HATCH_DISABLE=redis: the context and the
// http.server event cost the same, so the difference to hatch-agent is what the Redis patch and its
// events cost), `hatch-agent/statsd-only` and `hatch-agent/store-only` (one sink each: with neither
// listening the patch times nothing), `hatch-agent+recorder` (and the flight recorder).
// The library comes from the root's node_modules (its devDependencies: ioredis 6, redis 6).
// Not part of `npm test`: timings belong here.
import { spawn } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startRedis, stopRedis } from '../test/support/redis.mjs';
import * as cg from './callgrind.mjs';
import { benchDir, median, opt } from './variants.mjs';

const root = path.resolve(benchDir, '..');
const LIB = opt('lib', 'ioredis');
const ROUNDS = Number(opt('rounds', 3));
const REQUESTS = Number(opt('requests', 20000));
const CONCURRENCY = Number(opt('concurrency', 20));
const WARMUP = Number(opt('warmup', REQUESTS));
const INSTRUCTIONS = process.argv.includes('--instructions');
const agent = path.join(root, 'dist/src/index.js');
if (!fs.existsSync(agent)) throw new Error('no dist/: run `npm run build` first');

const everything = { HATCH_STATSD: 'on', HATCH_TOKEN: 'bench-token-0123456789abcdef' };
const ALL = {
  none: { preload: null, env: {} },
  'als-floor': { preload: null, env: { BENCH_ALS: '1' } },
  'hatch-agent': { preload: agent, env: everything },
  'hatch-agent/no-redis': { preload: agent, env: { ...everything, HATCH_DISABLE: 'redis' } },
  // Each sink alone: what each costs per event.
  'hatch-agent/statsd-only': { preload: agent, env: { HATCH_STATSD: 'on' } },
  'hatch-agent/store-only': { preload: agent, env: { HATCH_STATSD: 'off', HATCH_TOKEN: everything.HATCH_TOKEN } },
  'hatch-agent+recorder': {
    preload: agent,
    env: { ...everything, HATCH_FLIGHT_RECORDER: path.join(root, 'node_modules', '.bench-redis-recorder.jsonl') },
  },
};
// --base <dist/src/index.js of another build>: that build with every feature on, as `base`, to
// compare two builds of the agent in one interleaved run.
const BASE = opt('base', undefined);
if (BASE) ALL.base = { preload: path.resolve(BASE), env: everything };
const VARIANTS = opt('only', 'none,hatch-agent/no-redis,hatch-agent').split(',');

// The child: resolves the library from the root's node_modules.
const script = path.join(root, 'node_modules', '.bench-redis-commands.js');
fs.writeFileSync(
  script,
  `
const dc = require('node:diagnostics_channel');
const LIB = process.env.LIB;
const N = Number(process.env.REQUESTS);
const C = Number(process.env.CONCURRENCY);
// The agent's context (src/context.ts keeps it on globalThis): absent without the agent.
// BENCH_ALS: an AsyncLocalStorage of its own and no agent (the floor any context-carrying agent pays).
const storage = process.env.BENCH_ALS ? new (require('node:async_hooks').AsyncLocalStorage)() : globalThis[Symbol.for('hatch-agent.storage')];
const server = dc.channel('hatch:http.server');
let client;
async function connect() {
  if (LIB === 'ioredis') {
    client = new (require('ioredis'))(process.env.REDIS_URL);
    await client.ping();
  } else {
    client = require('redis').createClient({ url: process.env.REDIS_URL });
    await client.connect();
  }
}
let seq = 0;
async function one() {
  await client.set('bench:key', 'value');
  return client.get('bench:key');
}
function request() {
  const id = 'r' + seq++;
  const start = performance.now();
  const p = storage ? storage.run({ id, start, route: undefined }, one) : one();
  return p.then(() => {
    if (server.hasSubscribers)
      server.publish({ requestId: id, method: 'GET', route: '/redis', path: '/redis', statusCode: 200, aborted: false, start, duration: performance.now() - start });
  });
}
async function run(n) {
  let left = n;
  const worker = async () => { while (left-- > 0) await request(); };
  await Promise.all(Array.from({ length: C }, worker));
}
(async () => {
  await connect();
  await run(Number(process.env.WARMUP));
  let out;
  const cgDir = process.env.${cg.ENV};
  if (cgDir) {
    const { countOutside } = await import(${JSON.stringify(path.join(benchDir, 'callgrind.mjs'))});
    const r = await countOutside(cgDir, process.pid, () => run(N));
    out = { perCommand: (r.main - r.mainCompile) / (N * 2), compile: r.mainCompile / (N * 2) };
  } else {
    const u0 = process.cpuUsage();
    await run(N);
    const u = process.cpuUsage(u0);
    out = { perCommand: (u.user + u.system) / (N * 2) };
  }
  console.log(JSON.stringify(out));
  await client.quit();
})();
`,
);

const redis = await startRedis();
const sink = dgram.createSocket('udp4'); // a local StatsD receiver, so the agent's sends are real
sink.on('message', () => {});
await new Promise((r) => sink.bind(0, '127.0.0.1', r));
const outDir = INSTRUCTIONS ? cg.outputDir() : undefined;

function once(variant) {
  const { preload, env } = ALL[variant];
  const [cmd, args] = cg.wrap(outDir, [
    process.execPath,
    ...(INSTRUCTIONS ? ['--no-concurrent-recompilation', '--single-threaded-gc'] : []),
    ...(preload ? ['-r', preload] : []),
    script,
  ]);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: root,
      env: {
        ...process.env,
        ...env,
        ...cg.env(outDir),
        LIB,
        REQUESTS: String(REQUESTS),
        WARMUP: String(WARMUP),
        CONCURRENCY: String(CONCURRENCY),
        REDIS_URL: redis.url,
        HATCH_STATSD_PORT: String(sink.address().port),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err = (err + d).slice(-4000)));
    child.on('exit', (code) => {
      const line = out.trim().split('\n').pop();
      if (code !== 0 || !line?.startsWith('{')) reject(new Error(`${variant} exited ${code}: ${err}`));
      else resolve(JSON.parse(line));
    });
  });
}

const results = Object.fromEntries(VARIANTS.map((v) => [v, []]));
for (let r = 0; r < ROUNDS; r++) {
  const order = r % 2 ? [...VARIANTS].reverse() : VARIANTS;
  for (const v of order) {
    const res = await once(v);
    results[v].push(res.perCommand);
    process.stderr.write(
      `round ${r + 1} ${v.padEnd(22)} ${INSTRUCTIONS ? `${Math.round(res.perCommand)} instructions (compiling: ${Math.round(res.compile)} more)` : `${res.perCommand.toFixed(2)} µs CPU`}/command\n`,
    );
  }
}
sink.close();
await stopRedis();
if (outDir) fs.rmSync(outDir, { recursive: true, force: true });

const unit = INSTRUCTIONS ? 'instructions (main thread)' : 'µs CPU';
const fmt = (x) => (INSTRUCTIONS ? String(Math.round(x)) : x.toFixed(2));
console.log(`${LIB}, ${REQUESTS} requests of SET+GET, ${CONCURRENCY} at once, ${ROUNDS} rounds; ${unit} per command:`);
const base = median(results[VARIANTS[0]]);
for (const v of VARIANTS) {
  const m = median(results[v]);
  console.log(
    `  ${v.padEnd(22)} ${fmt(m)} [${fmt(Math.min(...results[v]))}-${fmt(Math.max(...results[v]))}]  +${fmt(m - base)} vs ${VARIANTS[0]}`,
  );
}
