#!/usr/bin/env node
// The script benchmark (the server one is bench/overhead.mjs): how much later a script that does
// nothing ends under `node -r hatch-agent` than without it, in wall time from spawn to exit.
// Cases, each run once per round in a new random order (a machine that slows down for a while slows
// every case alike); figures are medians and the middle half of the rounds:
// - `node nothing.js`: no agent;
// - the agent with HATCH_STATSD=off: its start-up alone, nothing at the end;
// - the agent with its defaults (no URL set): start-up, then at the end job.run to StatsD
//   (127.0.0.1:8125; nobody needs to listen: UDP);
// - with --checkin, also HATCH_CHECKIN_URL pointing at a local HTTP server (in a process of its
//   own): the start ping and the synchronous end ping (src/sync-http.ts, a child Node) on top.
// The goal (issue 22): with no URL set, the defaults row within 20 ms of the no-agent row; the
// difference between the defaults row and the HATCH_STATSD=off row is what the run's ending costs.
// --base <dir> adds the defaults row of another build (a checkout with its own dist/), to compare.
// --instructions also counts each case once in instructions (valgrind's callgrind, V8 --jitless, as
// bench/startup-wall.mjs does), which a busy machine does not disturb (the check-in row is left out:
// its child Node would be counted under valgrind too).
//   node bench/script.mjs [--runs 30] [--checkin] [--base <checkout>] [--instructions] [--write]
// --write puts the table into bench/RESULTS.md (its own section, per Node major).
// Limitations: wall time on a shared machine is noisy (the load average is printed with it).
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSection } from './results-file.mjs';
import { wholeRun } from './callgrind.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name) => args.flatMap((a, i) => (a === name ? [args[i + 1]] : []));
const runs = Number(opt('--runs')[0] ?? 30);
const write = args.includes('--write');
const withCheckin = args.includes('--checkin');
const countInstructions = args.includes('--instructions');
const agent = path.join(root, 'dist/src/index.js');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-script-bench-'));
const script = path.join(dir, 'nothing.js');
fs.writeFileSync(script, '');

// The check-in service, in a process of its own: spawnSync blocks this one.
let server;
let checkinUrl;
if (withCheckin) {
  server = spawn(
    process.execPath,
    [
      '-e',
      `const s = require('node:http').createServer((q, r) => { q.resume(); q.on('end', () => r.end('OK')); });
       s.listen(0, '127.0.0.1', () => console.log(s.address().port));`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = await new Promise((resolve) => server.stdout.once('data', (d) => resolve(Number(String(d)))));
  checkinUrl = `http://127.0.0.1:${port}/ping/bench`;
}
process.on('exit', () => {
  server?.kill();
  fs.rmSync(dir, { recursive: true, force: true });
});

// Without any HATCH_* of the caller's environment: each case says what it sets.
const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HATCH_')));
const cases = [
  ['node nothing.js', [script], {}],
  ['node -r hatch-agent nothing.js, HATCH_STATSD=off', ['-r', agent, script], { HATCH_STATSD: 'off' }],
  ['node -r hatch-agent nothing.js, defaults (job.run at exit)', ['-r', agent, script], {}],
];
const baseDir = opt('--base')[0];
if (baseDir)
  cases.push([
    'node -r hatch-agent nothing.js, defaults, the --base build',
    ['-r', path.join(path.resolve(baseDir), 'dist/src/index.js'), script],
    {},
  ]);
if (withCheckin)
  cases.push([
    'node -r hatch-agent nothing.js, HATCH_CHECKIN_URL (local server)',
    ['-r', agent, script],
    { HATCH_CHECKIN_URL: checkinUrl },
  ]);

function once(argv, env) {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, argv, { cwd: dir, encoding: 'utf8', env: { ...clean, ...env } });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0 || r.stderr !== '') throw new Error(`node ${argv.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return ms;
}

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  const i = (s.length - 1) * q;
  return s[Math.floor(i)] + (s[Math.ceil(i)] - s[Math.floor(i)]) * (i - Math.floor(i));
};

const version = process.version;
const loadBefore = os.loadavg()[0];
const times = cases.map(() => []);
for (const [, argv, env] of cases) once(argv, env); // warm the disk cache; not counted
for (let round = 0; round < runs; round++) {
  const order = cases.map((_, i) => i).sort(() => Math.random() - 0.5);
  for (const i of order) times[i].push(once(cases[i][1], cases[i][2]));
}
const base = quantile(times[0], 0.5);
const off = quantile(times[1], 0.5);
const rows = cases.map(([name], i) => {
  const med = quantile(times[i], 0.5);
  const sign = (x) => `${x >= 0 ? '+' : ''}${x.toFixed(1)} ms`;
  return `| ${name} | ${med.toFixed(1)} ms | ${quantile(times[i], 0.25).toFixed(1)}–${quantile(times[i], 0.75).toFixed(1)} ms | ${i === 0 ? '' : sign(med - base)} | ${i < 2 ? '' : sign(med - off)} |`;
});
const report = `## A script that does nothing (Node ${version})

- date: ${new Date().toISOString().slice(0, 10)}; ${os.cpus()[0].model}, ${os.cpus().length} CPUs; ${runs} interleaved rounds; load average ${loadBefore.toFixed(1)} before, ${os.loadavg()[0].toFixed(1)} after (a busy machine inflates every row)
- command: \`node bench/script.mjs --runs ${runs}${withCheckin ? ' --checkin' : ''}${baseDir ? ' --base <checkout>' : ''}\`
- wall time from spawn to exit of an empty script; "vs HATCH_STATSD=off" is what the run's ending adds to the agent's start-up

| command | median | middle half | vs no agent | vs HATCH_STATSD=off |
|---|---|---|---|---|
${rows.join('\n')}
`;
let ireport = '';
if (countInstructions) {
  const counted = cases.filter(([, , env]) => env.HATCH_CHECKIN_URL === undefined);
  const counts = counted.map(([, argv, env]) => instructions(argv, env));
  const irows = counted.map(([name], i) => {
    const d = counts[i] - counts[0];
    const vsOff =
      i < 2 ? '' : `${counts[i] - counts[1] >= 0 ? '+' : ''}${((counts[i] - counts[1]) / 1e6).toFixed(1)} M`;
    return `| ${name} | ${(counts[i] / 1e6).toFixed(1)} M | ${i === 0 ? '' : `+${(d / 1e6).toFixed(1)} M (+${((d / counts[0]) * 100).toFixed(1)}%)`} | ${vsOff} |`;
  });
  ireport = `
In instructions (valgrind callgrind, V8 --jitless, one run per case):

| command | instructions | vs no agent | vs HATCH_STATSD=off |
|---|---|---|---|
${irows.join('\n')}
`;
}
console.log(report + ireport);
if (write) writeSection(`script-node${version.slice(1).split('.')[0]}`, report + ireport);

function instructions(argv, env) {
  return wholeRun({ argv, cwd: dir, env: { ...clean, ...env } });
}
