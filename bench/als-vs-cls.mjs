#!/usr/bin/env node
// AsyncLocalStorage (what hatch-agent uses) against cls-hooked on the same promise-heavy workload.
//   node bench/als-vs-cls.mjs [--instructions] [--requests N] [--no-write]   (after `npm install --prefix bench`)
// --instructions counts instructions per request with valgrind's callgrind (bench/callgrind.mjs)
// instead of CPU time: the one figure this shared VM cannot disturb (one round: counts repeat).
// One "request": enter a context holding its ID, then 3 parallel chains of 10 awaited async
// steps each (every step awaits a resolved promise and a setImmediate-free microtask, and reads
// the ID back), as a handler fanning out to a few libraries would. 50 requests are in flight at
// a time, so contexts interleave. Each variant runs in a process of its own (cls-hooked installs
// a global async hook that would slow the others down) and checks that every read returned its
// own request's ID. Reported: ns per request (median of 5 samples) and heap after a forced GC.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as cg from './callgrind.mjs';
import { benchRequire, opt } from './variants.mjs';
import { fileURLToPath } from 'node:url';

const argv = process.argv;
const INSTRUCTIONS = argv.includes('--instructions');
const REQUESTS = Number(opt('requests', INSTRUCTIONS ? 2_000 : 20_000));
const SAMPLES = INSTRUCTIONS ? 3 : 5;
const ROUNDS = INSTRUCTIONS ? 1 : 3;
const STEPS = 10;
const CHAINS = 3;
const IN_FLIGHT = 50;

const variant = process.env.HATCH_CTX_VARIANT;
if (variant) {
  const require = benchRequire;
  let run; // (id, fn) => fn's promise, with id readable through get()
  let get;
  if (variant === 'none') {
    // No context store: the workload alone (the ID is passed along by hand).
    run = (id, fn) => fn(id);
    get = (id) => id;
  } else if (variant === 'als') {
    const { AsyncLocalStorage } = require('node:async_hooks');
    const als = new AsyncLocalStorage();
    run = (id, fn) => als.run({ id }, fn, id);
    get = () => als.getStore()?.id;
  } else if (variant === 'cls-hooked') {
    const cls = require('cls-hooked');
    const ns = cls.createNamespace('bench');
    run = (id, fn) =>
      ns.runPromise(() => {
        ns.set('id', id);
        return fn(id);
      });
    get = () => ns.get('id');
  } else throw new Error(`unknown variant ${variant}`);

  let wrong = 0;
  const step = async (id, i) => {
    await Promise.resolve(i);
    if (get(id) !== id) wrong++;
    return i + 1;
  };
  const chain = async (id) => {
    let x = 0;
    for (let i = 0; i < STEPS; i++) x = await step(id, x);
    return x;
  };
  const request = (n) =>
    run(`req-${n}`, async (id) => {
      const r = await Promise.all(Array.from({ length: CHAINS }, () => chain(id)));
      if (get(id) !== id) wrong++;
      return r;
    });
  const batch = async (count) => {
    let next = 0;
    const worker = async () => {
      while (next < count) await request(next++);
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  };
  await batch(REQUESTS / 4); // warm-up
  const xs = [];
  const counter = cg.inProcess();
  for (let i = 0; i < SAMPLES; i++) {
    if (counter) {
      xs.push((await counter.count(() => batch(REQUESTS))) / REQUESTS);
      continue;
    }
    const c = process.cpuUsage(); // CPU time, not wall time: the machine is a starved shared VM
    await batch(REQUESTS);
    const d = process.cpuUsage(c);
    xs.push(((d.user + d.system) * 1000) / REQUESTS);
  }
  globalThis.gc();
  const heap = process.memoryUsage().heapUsed;
  process.stdout.write(
    JSON.stringify({ ns: [...xs].sort((a, b) => a - b)[Math.floor(SAMPLES / 2)], samples: xs, heap, wrong }),
  );
} else {
  const one = (v) => {
    const dir = INSTRUCTIONS ? cg.outputDir() : null;
    const args = [process.execPath, '--expose-gc', fileURLToPath(import.meta.url), ...argv.slice(2)];
    const [cmd, cmdArgs] = cg.wrap(dir, args);
    const r = spawnSync(cmd, cmdArgs, {
      env: { ...process.env, HATCH_CTX_VARIANT: v, ...cg.env(dir) },
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    });
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    if (r.status !== 0) throw new Error(`${v}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  const names = ['none', 'als', 'cls-hooked'];
  const runs = Object.fromEntries(names.map((n) => [n, []]));
  for (let round = 0; round < ROUNDS; round++)
    for (const n of round % 2 ? [...names].reverse() : names) runs[n].push(one(n));
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const base = med(runs.none.map((r) => r.ns));
  const rows = names.map((n) => {
    const ns = med(runs[n].map((r) => r.ns));
    const heap = med(runs[n].map((r) => r.heap)) / 2 ** 20;
    const wrong = runs[n].reduce((a, r) => a + r.wrong, 0);
    return `| ${n === 'als' ? 'AsyncLocalStorage' : n === 'none' ? 'no context store' : 'cls-hooked 4.2.2'} | ${(ns / 1000).toFixed(1)} | ${n === 'none' ? '' : `+${((ns - base) / 1000).toFixed(1)} (${(ns / base).toFixed(2)}x)`} | ${heap.toFixed(1)} | ${n === 'none' ? 'n/a' : wrong} |`;
  });
  const report = `## AsyncLocalStorage against cls-hooked

- date: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; ${os.cpus().length} × ${os.cpus()[0].model}, shared VM; Node ${process.version}
- command: \`node bench/als-vs-cls.mjs${INSTRUCTIONS ? ' --instructions' : ''} --requests ${REQUESTS}\`${INSTRUCTIONS ? ' (instructions counted by valgrind callgrind, JIT on)' : ''}
- workload: per request, enter a context, then ${CHAINS} parallel chains of ${STEPS} awaited async steps, each reading the ID back;
  ${IN_FLIGHT} requests in flight; each variant in its own process, ${ROUNDS} round${ROUNDS > 1 ? 's' : ''} interleaved, median of per-round medians of ${SAMPLES} samples.

| context store | ${INSTRUCTIONS ? 'k instructions' : 'CPU µs'} per request | vs none | heap after GC, MB | wrong reads |
|---|---|---|---|---|
${rows.join('\n')}
`;
  if (!argv.includes('--no-write')) (await import('./results-file.mjs')).writeSection('als', report);
  console.log(report);
}
