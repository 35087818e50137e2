#!/usr/bin/env node
// Jobs per second through a no-op BullMQ worker, without the agent and with it (every feature on:
// StatsD to a local UDP socket, the requests store), as a ratio, in one interleaved run; and
// `als-floor`, each job in AsyncLocalStorage.run and nothing else, what any context-carrying agent pays.
//   node bench/jobs.mjs [--rounds 5] [--jobs 10000] [--concurrency 20] [--node /path/to/node] [--write]
//     [--instructions] [--alloc] [--variants a,b] [--base other/dist/src/index.js] [--warm 0.1] [--section NAME] [--pin] [--idle 5]
// How: one real Redis (Debian's redis-server, test/support/redis.mjs) for the run. Each round runs
// every variant, A B C then C B A in the next round, each in a fresh process: the process adds --jobs
// jobs to a queue of its own (addBulk, before its clock starts), then starts a Worker with a no-op
// processor. The first WARM_SHARE of the jobs warm it up (connections, BullMQ's Lua scripts loaded,
// the JIT) and are not counted: the clock and the process's CPU time (process.cpuUsage(), user +
// system of every thread) are read at that job's 'completed' event and at the last one. Per round
// the ratio is agent jobs/s over plain jobs/s; the result is their median with the range, and the
// worker process's CPU microseconds per job beside it. Redis and the worker share the machine's
// CPUs, so jobs/s moves with whatever else runs; CPU per job is the worker's own cost and moves
// less. On a shared machine a difference within the per-round range is noise. Redis's own CPU per
// job (INFO cpu, read by the worker at the same two points) is beside it: when the machine is
// stolen from, Redis's and the worker's CPU per job rise together, whatever the variant.
// --instructions: each worker runs under valgrind callgrind instead, and the figure is its
// instructions per counted job (every thread; and the main thread with V8's compiling left out,
// the steady state's cost: under callgrind the compiler threads are still busy for thousands of
// jobs, and what they do in the window moves with when TurboFan picks each function up); and every
// thread with all compiling left out, the steady state's cost with its garbage collection; and the
// main thread with its compiling and its GC left out (callgrind.mjs's GC), the code's own work: a
// window of 1,600 jobs holds a major GC or not by chance (on Node 26 its concurrent marking is some
// 30 k instructions a job over such a window, in whichever variant it falls), so the figures with
// GC in swing by more than the agent costs, and this one does not. It leaves out the GC the agent's
// allocations cause (see --alloc for those). And that own work net of idle: after its window the
// worker is counted again for --idle seconds (5) with its queue drained, and what that rate predicts
// for the window's wall time is taken off (as bench/instructions.mjs does): under valgrind a job takes
// ~50 times longer than natively, so work driven by the clock (the agent's event-loop-delay
// histogram every 10 ms, its flush and sampler every second; BullMQ's lock and stalled-job timers)
// weighs ~50 times more per job than it does natively. What a flush costs for the values it packs
// is not idle work, and stays in.
// --alloc: beside jobs/s, the bytes the worker's JS heap allocated per counted job (v8.GCProfiler's
// heap size before each GC in the window, less its size after the one before, plus the growth since
// the last), with the young generation fixed at 16 MB so every variant collects on the same terms.
// What an agent allocates on the job path is garbage the GC's helper threads must keep up with; this
// is the figure to compare when jobs/s is too noisy to decide (use --jobs 30000: 1000 jobs move it
// by about 100 bytes, 20000 by about 30).
// Limitations: on Node 20 and 22 als-floor is not free (AsyncLocalStorage turns on promise hooks
// for every promise of the process), so a worker that is short of CPU loses jobs/s to it whatever
// the agent does on top.
// `--write` writes the table as the `jobs` (or `jobs-instructions`) section of bench/RESULTS.md, or
// as the section named by --section (one per Node line: `jobs-instructions-node26`).
// Needs `npm run build` and the root devDependencies (bullmq) installed.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startRedis, stopRedis } from '../test/support/redis.mjs';
import { writeSection } from './results-file.mjs';
import { benchDir, median, opt } from './variants.mjs';
import { pinSelf } from './child.mjs';
import * as cg from './callgrind.mjs';

const root = path.resolve(benchDir, '..');
const ROUNDS = Number(opt('rounds', 5));
const INSTRUCTIONS = process.argv.includes('--instructions');
const ALLOC = process.argv.includes('--alloc') && !INSTRUCTIONS;
const JOBS = Number(opt('jobs', INSTRUCTIONS ? 3000 : 10000));
// Under callgrind V8 compiles for longer (each job is ~50 times slower, the compiler threads too).
const WARM_SHARE = Number(opt('warm', INSTRUCTIONS ? 0.3 : 0.1));

const CONCURRENCY = Number(opt('concurrency', 20));
// --idle S (with --instructions): seconds the worker is counted idle after its window, for "net of idle".
const IDLE_MS = Number(opt('idle', 5)) * 1000;
const NODE = opt('node', process.execPath);
// --pin: the worker gets the last CPU to itself; this script (the producer), Redis and the StatsD
// socket share the others (taskset, from util-linux; on 2 cores, one each). Unpinned, Redis and the
// worker compete for both CPUs, and a round's jobs/s also moves with how the scheduler placed them.
// It takes out that one source of noise, not the machine's: on a shared VM whole rounds still ran
// 1.4x faster than the ones beside them, whatever the variant (bench/RESULTS.md).
const PIN = process.argv.includes('--pin');
const { cpu: WORKER_CPU } = PIN ? pinSelf('the worker') : {};
const agent = path.join(root, 'dist/src/index.js');
if (!fs.existsSync(agent)) throw new Error('no dist/: run `npm run build` first');

// The worker process: it resolves bullmq from the root's node_modules. Under callgrind
// (--instructions) it processes the warm-up jobs, pauses its Worker, adds the counted jobs, and
// counts the instructions from its resume to the last one's 'completed' event: the switches of
// callgrind_control happen while the Worker is idle, so the window holds exactly the counted jobs.
const script = path.join(root, 'node_modules', '.bench-jobs-worker.js');
fs.writeFileSync(
  script,
  `
const { Queue, Worker } = require('bullmq');
const connection = { host: '127.0.0.1', port: Number(process.env.REDIS_PORT) };
const N = Number(process.env.JOBS);
const WARM = Math.floor(N * Number(process.env.WARM_SHARE));
const IDLE_MS = Number(process.env.IDLE_MS);
async function add(queue, from, to) {
  for (let i = from; i < to; i += 500)
    await queue.addBulk(Array.from({ length: Math.min(500, to - i) }, (_, k) => ({ name: 'noop', data: { i: i + k }, opts: { removeOnComplete: true } })));
}
(async () => {
  const queue = new Queue(process.env.QUEUE, { connection });
  const callgrind = process.env.${cg.ENV} ? await import(${JSON.stringify(path.join(benchDir, 'callgrind.mjs'))}) : null;
  await add(queue, 0, callgrind ? WARM : N);
  let done = 0;
  let start = 0;
  let cpu;
  let waiting = () => {};
  const worker = new Worker(queue.name, async () => undefined, { connection, concurrency: Number(process.env.CONCURRENCY) });
  let gc, heapAtStart, redisAtStart;
  // Redis's own CPU seconds (user + system), read over the queue's connection: the worker's jobs/s
  // also moves with how busy the Redis it shares the machine with is.
  const redisCpu = async () => {
    const info = await (await queue.client).info('cpu');
    const read = (k) => Number(new RegExp(k + ':([0-9.]+)').exec(info)?.[1] ?? NaN);
    return read('used_cpu_user') + read('used_cpu_sys');
  };
  worker.on('completed', () => {
    if (++done === WARM) {
      redisAtStart = redisCpu();
      if (process.env.ALLOC) {
        const v8 = require('node:v8');
        heapAtStart = v8.getHeapStatistics().used_heap_size;
        gc = new v8.GCProfiler();
        gc.start();
      }
      start = performance.now();
      cpu = process.cpuUsage();
    }
    if (done === WARM || done === N) waiting();
  });
  await new Promise((r) => (waiting = r));
  const counted = N - WARM;
  let instructions = null;
  let idle = null;
  if (callgrind) {
    await worker.pause();
    await add(queue, WARM, N);
    instructions = await callgrind.countOutside(process.env.${cg.ENV}, process.pid, async () => {
      const last = new Promise((r) => (waiting = r));
      worker.resume();
      await last;
    });
    // The worker idle (its queue drained) for IDLE_MS: what its timers cost per second.
    idle = await callgrind.countOutside(process.env.${cg.ENV}, process.pid, () => new Promise((r) => setTimeout(r, IDLE_MS)));
  } else {
    await new Promise((r) => (waiting = r));
  }
  const ms = performance.now() - start;
  const used = process.cpuUsage(cpu);
  const redisUsed = (await redisCpu()) - (await redisAtStart);
  let allocated = null;
  if (gc) {
    const heapAtEnd = require('node:v8').getHeapStatistics().used_heap_size;
    let after = heapAtStart;
    allocated = 0;
    for (const s of gc.stop().statistics) {
      allocated += s.beforeGC.heapStatistics.usedHeapSize - after;
      after = s.afterGC.heapStatistics.usedHeapSize;
    }
    allocated += heapAtEnd - after;
  }
  console.log(JSON.stringify({ ms, perSecond: (counted / ms) * 1000, cpuPerJob: (used.user + used.system) / counted, sysPerJob: used.system / counted, redisCpuPerJob: (redisUsed * 1e6) / counted, instructionsPerJob: instructions && instructions.instructions / counted, mainPerJob: instructions && (instructions.main - instructions.mainCompile) / counted, ownPerJob: instructions && (instructions.main - instructions.mainCompile - instructions.mainGc) / counted, ownNetPerJob: instructions && (instructions.main - instructions.mainCompile - instructions.mainGc - ((idle.main - idle.mainCompile - idle.mainGc) / idle.seconds) * instructions.seconds) / counted, steadyPerJob: instructions && (instructions.instructions - instructions.compile) / counted, bytesPerJob: allocated === null ? null : allocated / counted }));
  await worker.close();
  await queue.obliterate({ force: true }).catch(() => {});
  await queue.close();
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

// The floor with the option the agent adds to each job (patches/bullmq's FIELD, read from the build;
// a run's ID when no request is in flight): what carrying the ID costs BullMQ itself, which stores,
// reads and parses it.
const { FIELD } = createRequire(import.meta.url)(path.join(root, 'dist/patches/bullmq/probe.js'));
const floorCarry = path.join(root, 'node_modules', '.bench-jobs-floor-carry.js');
fs.writeFileSync(
  floorCarry,
  `
require(${JSON.stringify(floor)});
const { Queue } = require('bullmq');
const id = require('node:crypto').randomUUID();
const addBulk = Queue.prototype.addBulk;
Queue.prototype.addBulk = function (jobs) { return addBulk.call(this, jobs.map((j) => ({ ...j, opts: { ...j.opts, [${JSON.stringify(FIELD)}]: id } }))); };
`,
);

const udp = dgram.createSocket('udp4');
await new Promise((r) => udp.bind(0, '127.0.0.1', r));
udp.on('message', () => {}); // the agent's StatsD lines are received and dropped
const statsdPort = udp.address().port;

const everything = {
  HATCH_STATSD: 'on',
  HATCH_STATSD_PORT: String(statsdPort),
  HATCH_TOKEN: 'bench-token-0123456789abcdef',
};
const ALL_VARIANTS = {
  none: { preload: null, env: {} },
  'als-floor': { preload: floor, env: {} },
  // Not run unless named with --variants: the floor, and each job carrying the agent's option.
  'als-floor/carry': { preload: floorCarry, env: {} },
  'hatch-agent': { preload: agent, env: everything },
  // Not run unless named with --variants: what each part of hatch-agent costs.
  // Job contexts and the bus's events with no sink listening (no StatsD, no requests store).
  'hatch-agent/core': { preload: agent, env: { HATCH_STATSD: 'off' } },
  // The core without the BullMQ and Redis patches: the agent loaded, no job context, nothing timed.
  'hatch-agent/no-bullmq': { preload: agent, env: { HATCH_STATSD: 'off', HATCH_DISABLE: 'bullmq,redis' } },
  // The core without the Redis clients' patches: job contexts, no command wrapper.
  'hatch-agent/core-no-redis': { preload: agent, env: { HATCH_STATSD: 'off', HATCH_DISABLE: 'redis' } },
  'hatch-agent/statsd': { preload: agent, env: { HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(statsdPort) } },
  'hatch-agent/store': { preload: agent, env: { HATCH_STATSD: 'off', HATCH_TOKEN: everything.HATCH_TOKEN } },
  // Every feature but the Redis clients' patches (BullMQ's own connections are not timed anyway).
  'hatch-agent/no-redis': { preload: agent, env: { ...everything, HATCH_DISABLE: 'redis' } },
  // Every feature but the runtime metrics (their GC observer and event-loop delay histogram).
  'hatch-agent/no-runtime': { preload: agent, env: { ...everything, HATCH_RUNTIME_METRICS_MS: '0' } },
};
// --base path/to/dist/src/index.js: another build of the agent (an earlier commit's) with every
// feature on, as variant `base`, in the same interleaved rounds: before and after in one run.
const BASE = opt('base', null);
if (BASE) ALL_VARIANTS.base = { preload: path.resolve(BASE), env: everything };
// --variants a,b,…: which to run (none, als-floor and hatch-agent are always among them: the ratios need them).
const chosen = opt('variants', 'none,als-floor,hatch-agent').split(',');
if (BASE && !chosen.includes('base')) chosen.push('base');
for (const n of ['none', 'als-floor', 'hatch-agent']) if (!chosen.includes(n)) chosen.push(n);
for (const n of chosen)
  if (!ALL_VARIANTS[n]) throw new Error(`unknown variant ${n}; known: ${Object.keys(ALL_VARIANTS).join(', ')}`);
const VARIANTS = Object.fromEntries(chosen.map((n) => [n, ALL_VARIANTS[n]]));

function once(variant, redisPort, round) {
  const v = VARIANTS[variant];
  const dir = INSTRUCTIONS ? cg.outputDir() : null;
  const young = ALLOC ? ['--max-semi-space-size=16', '--min-semi-space-size=16'] : [];
  const [wrapped, ...rest] = cg.wrap(dir, [NODE, ...young, ...(v.preload ? ['-r', v.preload] : []), script]).flat();
  // taskset execs what it runs, so the child is still the worker (or its valgrind).
  const [cmd, args] = PIN ? ['taskset', ['-c', String(WORKER_CPU), wrapped, ...rest]] : [wrapped, rest];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: root,
      env: {
        ...process.env,
        ...cg.env(dir),
        ...v.env,
        REDIS_PORT: String(redisPort),
        // The same length for every variant: BullMQ puts the queue's name in every key of every
        // command, so a longer name costs the worker more per job (encoding each key, ~300
        // instructions a job per character on Node 26) whatever the variant does.
        QUEUE: `bench-${String(chosen.indexOf(variant)).padStart(2, '0')}-${String(round).padStart(3, '0')}-${process.pid}`,
        JOBS: String(JOBS),
        WARM_SHARE: String(WARM_SHARE),
        CONCURRENCY: String(CONCURRENCY),
        IDLE_MS: String(IDLE_MS),
        ...(ALLOC ? { ALLOC: '1' } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
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
const results = Object.fromEntries(chosen.map((n) => [n, []]));
const cpu = Object.fromEntries(chosen.map((n) => [n, []]));
const ratios = [];
const overFloor = [];
const cpuRatios = [];
const instr = Object.fromEntries(chosen.map((n) => [n, []]));
const mainInstr = Object.fromEntries(chosen.map((n) => [n, []]));
const steadyInstr = Object.fromEntries(chosen.map((n) => [n, []]));
// The main thread with its compiling and its garbage collection left out: the code's own work.
const ownInstr = Object.fromEntries(chosen.map((n) => [n, []]));
// The same, less what the worker's idle rate predicts for the window's wall time (see the header).
const ownNetInstr = Object.fromEntries(chosen.map((n) => [n, []]));
const redisCpu = Object.fromEntries(chosen.map((n) => [n, []]));
const bytes = Object.fromEntries(chosen.map((n) => [n, []]));
// Each variant over none, round by round: jobs/s, CPU per job, instructions per job.
const over = Object.fromEntries(
  chosen.map((n) => [n, { perSecond: [], cpu: [], instructions: [], main: [], own: [], ownNet: [] }]),
);
try {
  for (let round = 0; round < ROUNDS; round++) {
    const names = Object.keys(VARIANTS);
    const order = round % 2 === 0 ? names : [...names].reverse();
    const got = {};
    for (const name of order) got[name] = await once(name, redis.port, round);
    for (const name of names) {
      results[name].push(got[name].perSecond);
      cpu[name].push(got[name].cpuPerJob);
      instr[name].push(got[name].instructionsPerJob);
      mainInstr[name].push(got[name].mainPerJob);
      steadyInstr[name].push(got[name].steadyPerJob);
      ownInstr[name].push(got[name].ownPerJob);
      ownNetInstr[name].push(got[name].ownNetPerJob);
      redisCpu[name].push(got[name].redisCpuPerJob);
      bytes[name].push(got[name].bytesPerJob);
      const o = over[name];
      o.perSecond.push(got[name].perSecond / got.none.perSecond);
      o.cpu.push(got[name].cpuPerJob / got.none.cpuPerJob);
      if (INSTRUCTIONS) {
        o.instructions.push(got[name].instructionsPerJob / got.none.instructionsPerJob);
        o.main.push(got[name].mainPerJob / got.none.mainPerJob);
        o.own.push(got[name].ownPerJob / got.none.ownPerJob);
        o.ownNet.push(got[name].ownNetPerJob / got.none.ownNetPerJob);
      }
    }
    ratios.push(got['hatch-agent'].perSecond / got.none.perSecond);
    overFloor.push(got['hatch-agent'].perSecond / got['als-floor'].perSecond);
    cpuRatios.push(got['hatch-agent'].cpuPerJob / got.none.cpuPerJob);
    console.log(
      INSTRUCTIONS
        ? `round ${round + 1}: ${names.map((n) => `${n} ${got[n].instructionsPerJob.toFixed(0)} (without compiling ${got[n].steadyPerJob.toFixed(0)}, main thread ${got[n].mainPerJob.toFixed(0)}, its own work ${got[n].ownPerJob.toFixed(0)}, net of idle ${got[n].ownNetPerJob.toFixed(0)})`).join(', ')} instructions/job; hatch-agent/none ${(got['hatch-agent'].instructionsPerJob / got.none.instructionsPerJob).toFixed(3)} (main ${(got['hatch-agent'].mainPerJob / got.none.mainPerJob).toFixed(3)})`
        : `round ${round + 1}: ${names.map((n) => `${n} ${got[n].perSecond.toFixed(0)} jobs/s ${got[n].cpuPerJob.toFixed(0)} µs CPU/job (kernel ${got[n].sysPerJob.toFixed(0)}; Redis ${got[n].redisCpuPerJob.toFixed(0)})${ALLOC ? ` ${got[n].bytesPerJob.toFixed(0)} B/job` : ''}`).join(', ')}; hatch-agent/none ${ratios.at(-1).toFixed(3)}, CPU ${cpuRatios.at(-1).toFixed(3)}`,
    );
  }
} finally {
  await stopRedis();
  udp.close();
  fs.rmSync(script, { force: true });
  fs.rmSync(floor, { force: true });
  fs.rmSync(floorCarry, { force: true });
}

const bullmqVersion = JSON.parse(fs.readFileSync(path.join(root, 'node_modules/bullmq/package.json'), 'utf8')).version;
const nodeVersion = spawnSync(NODE, ['--version'], { encoding: 'utf8' }).stdout.trim();
const r3 = (x) => x.toFixed(3);
/** hatch-agent's median of a per-variant figure over another variant's. */
const agentOver = (byVariant, ref) => r3(median(byVariant['hatch-agent']) / median(byVariant[ref]));
// The options that change what is measured, as given, so the command in the section reruns it.
const flagsSaid = [
  opt('warm', null) === null ? '' : ` --warm ${WARM_SHARE}`,
  INSTRUCTIONS && opt('idle', null) !== null ? ` --idle ${IDLE_MS / 1000}` : '',
  opt('variants', null) === null ? '' : ` --variants ${chosen.join(',')}`,
  PIN ? ' --pin' : '',
  ALLOC ? ' --alloc' : '',
  NODE === process.execPath ? '' : ' --node <node>',
].join('');
const setting = `(Node ${nodeVersion}, bullmq ${bullmqVersion}, ${os.cpus().length} CPUs shared with other work, Redis on the same machine; the first ${Math.round(WARM_SHARE * 100)}% of each process's jobs not counted)`;
const table = INSTRUCTIONS
  ? [
      `Command: \`node bench/jobs.mjs --instructions --rounds ${ROUNDS} --jobs ${JOBS} --concurrency ${CONCURRENCY}${flagsSaid}\` ${setting}: the worker process's instructions (valgrind callgrind, every thread, V8's JIT on) per counted job.`,
      '',
      '| variant | instructions/job (median) | per round | every thread, compiling left out (median) | per round | main thread, compiling left out (median) | per round | main thread, compiling and GC left out (median) | per round | the same, net of idle (median) | per round |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
      ...Object.entries(instr).map(
        ([name, xs]) =>
          `| ${name} | ${median(xs).toFixed(0)} | ${xs.map((x) => x.toFixed(0)).join(', ')} | ${median(steadyInstr[name]).toFixed(0)} | ${steadyInstr[name].map((x) => x.toFixed(0)).join(', ')} | ${median(mainInstr[name]).toFixed(0)} | ${mainInstr[name].map((x) => x.toFixed(0)).join(', ')} | ${median(ownInstr[name]).toFixed(0)} | ${ownInstr[name].map((x) => x.toFixed(0)).join(', ')} | ${median(ownNetInstr[name]).toFixed(0)} | ${ownNetInstr[name].map((x) => x.toFixed(0)).join(', ')} |`,
      ),
      '',
      `hatch-agent over none: **${agentOver(instr, 'none')}** (compiling left out ${agentOver(steadyInstr, 'none')}, main thread ${agentOver(mainInstr, 'none')}, its own work ${agentOver(ownInstr, 'none')}, net of idle ${agentOver(ownNetInstr, 'none')}); over als-floor: ${agentOver(instr, 'als-floor')} (compiling left out ${agentOver(steadyInstr, 'als-floor')}, main thread ${agentOver(mainInstr, 'als-floor')}, its own work ${agentOver(ownInstr, 'als-floor')}, net of idle ${agentOver(ownNetInstr, 'als-floor')}).`,
    ].join('\n')
  : [
      `Command: \`node bench/jobs.mjs --rounds ${ROUNDS} --jobs ${JOBS} --concurrency ${CONCURRENCY}${flagsSaid}\` ${setting}.`,
      '',
      '| variant | jobs/s (median) | per round | worker CPU µs/job (median) | per round | Redis CPU µs/job (median) |',
      '|---|---|---|---|---|---|',
      ...Object.entries(results).map(
        ([name, xs]) =>
          `| ${name} | ${median(xs).toFixed(0)} | ${xs.map((x) => x.toFixed(0)).join(', ')} | ${median(cpu[name]).toFixed(0)} | ${cpu[name].map((x) => x.toFixed(0)).join(', ')} | ${median(redisCpu[name]).toFixed(0)} |`,
      ),
      '',
      `hatch-agent over none: **${r3(median(ratios))}** jobs/s (median of the per-round ratios; range ${r3(Math.min(...ratios))} to ${r3(Math.max(...ratios))}); over als-floor: ${r3(median(overFloor))} (range ${r3(Math.min(...overFloor))} to ${r3(Math.max(...overFloor))}). Worker CPU per job, hatch-agent over none: ${r3(median(cpuRatios))} (range ${r3(Math.min(...cpuRatios))} to ${r3(Math.max(...cpuRatios))}).`,
    ].join('\n');
const spread = (xs) => `${r3(median(xs))} (${r3(Math.min(...xs))} to ${r3(Math.max(...xs))})`;
const overNone = chosen
  .filter((n) => n !== 'none')
  .map((n) =>
    INSTRUCTIONS
      ? `- ${n} over none, median of the rounds' ratios (range): instructions ${spread(over[n].instructions)}, main thread ${spread(over[n].main)}, its own work ${spread(over[n].own)}, net of idle ${spread(over[n].ownNet)}`
      : `- ${n} over none, median of the rounds' ratios (range): jobs/s ${spread(over[n].perSecond)}, worker CPU per job ${spread(over[n].cpu)}`,
  );
console.log(`\n${table}\n\n${overNone.join('\n')}`);
if (ALLOC)
  console.log(
    `\nJS heap allocated per counted job (median of the rounds; young generation 16 MB):\n${chosen
      .map((n) => `- ${n}: ${median(bytes[n]).toFixed(0)} B (${bytes[n].map((x) => x.toFixed(0)).join(', ')})`)
      .join('\n')}`,
  );
if (process.argv.includes('--write'))
  writeSection(
    opt('section', INSTRUCTIONS ? 'jobs-instructions' : 'jobs'),
    INSTRUCTIONS
      ? `## Instructions per job through a no-op BullMQ worker (Node ${nodeVersion})\n\n${table}\n\n${overNone.join('\n')}\n`
      : `## Jobs per second through a no-op BullMQ worker (Node ${nodeVersion})\n\n${table}\n\n${overNone.join('\n')}\n`,
  );
