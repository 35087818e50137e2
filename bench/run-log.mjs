#!/usr/bin/env node
// The run's log (src/log-capture.ts, src/sinks/flight-recorder.ts), priced in two parts:
// 1. what each kept log line costs the app: a child with the agent and a flight recorder logs N
//    lines of each kind (console.log, process.stdout.write, pino, winston) in blocks, alternately
//    with the recorder listening and not (the difference is publishing and keeping the line
//    alone), and reports CPU ns per line; stdout goes to /dev/null, pino and winston to streams
//    that drop what they get; the ring is full, so each kept line also drops the oldest;
// 2. what delivering the record costs the exit: wall time from spawn to exit of a script that
//    does nothing, under no agent, the agent, the agent with a file target, a URL target answering
//    on 127.0.0.1, a URL target nothing listens on, and one that never answers
//    (HATCH_FLIGHT_RECORDER_TIMEOUT_MS=500).
// Variants interleaved over rounds; medians.
//   node bench/run-log.mjs [--instructions] [--rounds N] [--lines N] [--exits N]   (after `npm run build`)
// --instructions counts part 1 in instructions per line under valgrind's callgrind (the figure a
// busy machine cannot disturb; bench/callgrind.mjs), all threads, 4 blocks each way of --lines.
// pino and winston are taken from bench/node_modules (`npm install --prefix bench`), or from the
// folder HATCH_BENCH_MODULES names (any app folder with both installed); a logger not found is skipped.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { benchDir, opt } from './variants.mjs';
import * as cg from './callgrind.mjs';

const root = path.resolve(benchDir, '..');
const agent = path.join(root, 'dist/src/index.js');
const INSTRUCTIONS = process.argv.includes('--instructions');
const ROUNDS = Number(opt('rounds', INSTRUCTIONS ? 1 : 5));
const LINES = Number(opt('lines', INSTRUCTIONS ? 10_000 : 200_000));
const EXITS = Number(opt('exits', 10));
const modules = process.env.HATCH_BENCH_MODULES || benchDir;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-bench-run-log-'));

// The child of part 1: for each kind it can load, blocks of lines with the recorder subscribed and
// unsubscribed (agent.flightRecorder.stop()/start(): the wrappers stay, with no one listening),
// alternating; prints `<kind> <ns per line off> <ns per line on>`, medians over the blocks.
const LINES_CHILD = `
const { createRequire } = require('node:module');
const { Writable } = require('node:stream');
const req = createRequire(${JSON.stringify(path.join(modules, 'package.json'))});
const agent = globalThis[Symbol.for('hatch-agent.agent')];
const N = ${LINES}, BLOCKS = 20, PER = Math.ceil(N / BLOCKS);
const drop = () => new Writable({ write(c, e, cb) { cb(); } });
const kinds = {
  'console.log': () => (i) => console.log('line of the run number', i),
  'stdout.write': () => (i) => process.stdout.write('line of the run ' + i + '\\n'),
};
try {
  const pino = req('pino');
  const p = pino({}, { write() {} });
  kinds.pino = () => (i) => p.info({ i }, 'line of the run');
} catch {}
try {
  const winston = req('winston');
  const w = winston.createLogger({ format: winston.format.json(), transports: [new winston.transports.Stream({ stream: drop() })] });
  kinds.winston = () => (i) => w.info('line of the run', { i });
} catch {}
const median = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];
(async () => {
  const counter = process.env.${cg.ENV} ? (await import(${JSON.stringify(path.join(benchDir, 'callgrind.mjs'))})).inProcess() : null;
  const blocks = counter ? 4 : BLOCKS;
  const per = counter ? N : PER;
  const out = [];
  for (const [name, make] of Object.entries(kinds)) {
    const f = make();
    for (let i = 0; i < 20000; i++) f(i);
    const t = { on: [], off: [] };
    for (let b = 0; b < blocks * 2; b++) {
      const on = b % 2 === 1;
      if (on) agent.flightRecorder.start(); else agent.flightRecorder.stop();
      for (let i = 0; i < 1000; i++) f(i);
      if (counter) {
        t[on ? 'on' : 'off'].push((await counter.count(async () => { for (let i = 0; i < per; i++) f(i); })) / per);
      } else {
        const c = process.cpuUsage();
        for (let i = 0; i < per; i++) f(i);
        const d = process.cpuUsage(c);
        t[on ? 'on' : 'off'].push(((d.user + d.system) * 1000) / per);
      }
    }
    out.push(name + ' ' + median(t.off) + ' ' + median(t.on));
  }
  require('node:fs').writeSync(3, out.join('\\n') + '\\n');
})();
`;

function run(args, env, { stdio = ['ignore', 'ignore', 'pipe', 'pipe'], dir = null } = {}) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const [cmd, cmdArgs] = cg.wrap(dir, [process.execPath, ...args]);
    const child = spawn(cmd, cmdArgs, { env: { ...process.env, HATCH_STATSD: 'off', ...cg.env(dir), ...env }, stdio });
    let fd3 = '';
    let stderr = '';
    child.stdio[3]?.on('data', (d) => (fd3 += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (code !== 0 && code !== null) reject(new Error(`exit ${code}: ${stderr}`));
      else resolve({ ms, fd3, stderr });
    });
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// Part 1
const script = path.join(tmp, 'lines.js');
fs.writeFileSync(script, LINES_CHILD);
const perLine = {};
for (let r = 0; r < ROUNDS; r++) {
  const dir = INSTRUCTIONS ? cg.outputDir() : null;
  const { fd3 } = await run(['-r', agent, script], { HATCH_FLIGHT_RECORDER: path.join(tmp, 'lines.jsonl') }, { dir });
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  for (const line of fd3.trim().split('\n')) {
    const [kind, off, on] = line.split(' ');
    (perLine[kind] ??= []).push([Number(off), Number(on)]);
  }
}
const unit = INSTRUCTIONS ? 'instructions' : 'CPU ns';
console.log(
  `## what a kept log line costs (${unit} per line; median over ${ROUNDS} processes of the medians of ${INSTRUCTIONS ? 4 : 20} blocks each way)`,
);
console.log('| line | recorder not listening | recorder keeping it | a kept line costs |');
console.log('|---|---|---|---|');
for (const [kind, runs] of Object.entries(perLine)) {
  const off = median(runs.map((x) => x[0]));
  const on = median(runs.map((x) => x[1]));
  const diff = median(runs.map((x) => x[1] - x[0]));
  console.log(
    `| ${kind} | ${off.toFixed(0)} | ${on.toFixed(0)} | ${diff.toFixed(0)} ${INSTRUCTIONS ? 'instructions' : 'ns'} |`,
  );
}

// Part 2
if (EXITS > 0) await exitCosts();

async function exitCosts() {
  // Part 2
  const answering = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  const silent = http.createServer(() => {}); // never answers
  await new Promise((r) => answering.listen(0, '127.0.0.1', r));
  await new Promise((r) => silent.listen(0, '127.0.0.1', r));
  const probe = net.createServer();
  await new Promise((r) => probe.listen(0, '127.0.0.1', r));
  const closed = probe.address().port;
  await new Promise((r) => probe.close(r));

  const empty = path.join(tmp, 'nothing.js');
  fs.writeFileSync(empty, '');
  const exits = {
    'no agent': { args: [empty], env: {} },
    agent: { args: ['-r', agent, empty], env: {} },
    'agent, file target': { args: ['-r', agent, empty], env: { HATCH_FLIGHT_RECORDER: path.join(tmp, 'exit.jsonl') } },
    'agent, URL target answering': {
      args: ['-r', agent, empty],
      env: { HATCH_FLIGHT_RECORDER: `http://127.0.0.1:${answering.address().port}/run.jsonl` },
    },
    'agent, URL target refused': {
      args: ['-r', agent, empty],
      env: { HATCH_FLIGHT_RECORDER: `http://127.0.0.1:${closed}/run.jsonl`, HATCH_LOG: 'silent' },
    },
    'agent, URL target silent, timeout 500 ms': {
      args: ['-r', agent, empty],
      env: {
        HATCH_FLIGHT_RECORDER: `http://127.0.0.1:${silent.address().port}/run.jsonl`,
        HATCH_FLIGHT_RECORDER_TIMEOUT_MS: '500',
        HATCH_LOG: 'silent',
      },
    },
  };
  const times = {};
  for (let r = 0; r < EXITS; r++) {
    for (const [name, v] of Object.entries(exits)) {
      const { ms } = await run(v.args, { TMPDIR: tmp, ...v.env }, { stdio: ['ignore', 'ignore', 'pipe'] });
      (times[name] ??= []).push(ms);
    }
  }
  answering.close();
  silent.closeAllConnections?.();
  silent.close();
  console.log(`\n## a script that does nothing: spawn to exit, ms (median of ${EXITS})`);
  console.log('| variant | ms | over the agent alone |');
  console.log('|---|---|---|');
  const base = median(times.agent);
  for (const [name, t] of Object.entries(times)) {
    const m = median(t);
    console.log(`| ${name} | ${m.toFixed(1)} | ${name === 'no agent' ? '' : `${(m - base).toFixed(1)}`} |`);
  }
}

console.log(`\nnode ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg()[0].toFixed(2)}`);
fs.rmSync(tmp, { recursive: true, force: true });
