#!/usr/bin/env node
// Start-up in wall time: how long `node -r hatch-agent` takes to run nothing, against `node -e 0`,
// for a CommonJS start (`-e 0`) and an ES-module start (an empty .mjs entry), and `--import` too.
// Every case is run once per round, in a new random order each round, so a machine that slows down
// for a while slows every case alike; the figures are medians (and the middle half) of the rounds.
// The agent is the build in dist/ unless named: `--agent before=/path/to/other/checkout` adds
// another build (a checkout with its own dist/) to the same interleaved rounds, to compare.
//   node bench/startup-wall.mjs [--runs 40] [--node /path/to/node ...] [--agent label=dir ...] [--instructions] [--write]
// --write puts the tables into bench/RESULTS.md (their own sections, one per Node version).
// --instructions also counts each case once in instructions (valgrind's callgrind, V8 --jitless, as
// bench/startup.mjs does; needs valgrind): however busy the machine is, Node 20's repeat to within
// 1%; Node 26's varied by up to 5% between runs of one same command.
// Limitations: wall time on a shared machine is noisy (the load average is printed with it); the
// instruction count sums every thread (V8's helper threads make Node 26's vary), and an
// interpreter's counts are not the JIT's.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { writeSection } from './results-file.mjs';
import { wholeRun } from './callgrind.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name) => args.flatMap((a, i) => (a === name ? [args[i + 1]] : []));
const runs = Number(opt('--runs')[0] ?? 40);
const nodes = opt('--node').length ? opt('--node') : [process.execPath];
const agents = [['this build', root], ...opt('--agent').map((a) => a.split('='))];
const write = args.includes('--write');
const countInstructions = args.includes('--instructions');

// An empty ES-module entry in a folder of its own (no package.json "type" to look up on the way).
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-startup-'));
const mjs = path.join(dir, 'empty.mjs');
fs.writeFileSync(mjs, '');
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));

function cases() {
  const list = [
    ['node -e 0', ['-e', '0']],
    ['node empty.mjs', [mjs]],
  ];
  for (const [label, d] of agents) {
    const cjs = path.join(d, 'dist/src/index.js');
    const esm = pathToFileURL(path.join(d, 'dist/src/esm.mjs')).href;
    const tag = agents.length > 1 ? ` (${label})` : '';
    list.push([`node -r hatch-agent -e 0${tag}`, ['-r', cjs, '-e', '0']]);
    list.push([`node -r hatch-agent empty.mjs${tag}`, ['-r', cjs, mjs]]);
    list.push([`node --import hatch-agent empty.mjs${tag}`, ['--import', esm, mjs]]);
  }
  return list;
}

function once(node, argv) {
  const t = process.hrtime.bigint();
  const r = spawnSync(node, argv, { cwd: dir, encoding: 'utf8', env: { ...process.env, HATCH_STATSD: 'off' } });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0 || r.stderr !== '') throw new Error(`${node} ${argv.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return ms;
}

function instructions(node, argv) {
  return wholeRun({ node, argv, cwd: dir, env: { ...process.env, HATCH_STATSD: 'off' } });
}

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  const i = (s.length - 1) * q;
  return s[Math.floor(i)] + (s[Math.ceil(i)] - s[Math.floor(i)]) * (i - Math.floor(i));
};

for (const node of nodes) {
  const version = spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim();
  const loadBefore = os.loadavg()[0];
  const list = cases();
  const times = list.map(() => []);
  for (const [, argv] of list) once(node, argv); // warm the disk cache; not counted
  for (let round = 0; round < runs; round++) {
    const order = list.map((_, i) => i).sort(() => Math.random() - 0.5);
    for (const i of order) times[i].push(once(node, list[i][1]));
  }
  const base = { cjs: quantile(times[0], 0.5), esm: quantile(times[1], 0.5) };
  const rows = list.map(([name], i) => {
    const med = quantile(times[i], 0.5);
    const against = name.includes('.mjs') ? base.esm : base.cjs;
    const diff = i < 2 ? '' : `${med - against >= 0 ? '+' : ''}${(med - against).toFixed(1)} ms`;
    return `| \`${name}\` | ${med.toFixed(1)} ms | ${quantile(times[i], 0.25).toFixed(1)}–${quantile(times[i], 0.75).toFixed(1)} ms | ${diff} |`;
  });
  // What import-in-the-middle's loader adds (the --import rows against the -r rows, same entry).
  const hooks = agents.map(([label], a) => {
    const r = quantile(times[2 + 3 * a + 1], 0.5);
    const imp = quantile(times[2 + 3 * a + 2], 0.5);
    return `${label}: ${imp - r >= 0 ? '+' : ''}${(imp - r).toFixed(1)} ms`;
  });
  const report = `## Start-up in wall time (Node ${version})

- date: ${new Date().toISOString().slice(0, 10)}; ${os.cpus()[0].model}, ${os.cpus().length} CPUs; ${runs} interleaved rounds; load average ${loadBefore.toFixed(1)} before, ${os.loadavg()[0].toFixed(1)} after (a busy machine inflates every row)
- command: \`node bench/startup-wall.mjs --runs ${runs}${nodes.length > 1 || node !== process.execPath ? ' --node <node ' + version + '>' : ''}${agents
    .slice(1)
    .map(([l]) => ` --agent ${l}=<checkout>`)
    .join('')}\`
- the difference is against \`node -e 0\` for \`-e 0\` rows and against \`node empty.mjs\` for the .mjs rows
- import-in-the-middle's hooks (\`--import\` against \`-r\`, both on empty.mjs): ${hooks.join('; ')}

| command | median | middle half | vs no agent |
|---|---|---|---|
${rows.join('\n')}
`;
  console.log(report);
  if (write) writeSection(`startup-wall-node${version.slice(1).split('.')[0]}`, report);
  if (!countInstructions) continue;
  const counts = list.map(([, argv]) => instructions(node, argv));
  const irows = list.map(([name], i) => {
    const against = name.includes('.mjs') ? counts[1] : counts[0];
    const diff =
      i < 2
        ? ''
        : `+${((counts[i] - against) / 1e6).toFixed(1)} M (+${(((counts[i] - against) / against) * 100).toFixed(1)}%)`;
    return `| \`${name}\` | ${(counts[i] / 1e6).toFixed(1)} M | ${diff} |`;
  });
  const ireport = `## Start-up in instructions, CommonJS and ES-module starts (Node ${version})

- date: ${new Date().toISOString().slice(0, 10)}; valgrind callgrind, V8 --jitless, one run per case (on Node 20 repeatable to within 1%; Node 26's counts of one same command varied by up to 5% here)
- command: \`node bench/startup-wall.mjs --instructions${nodes.length > 1 || node !== process.execPath ? ' --node <node ' + version + '>' : ''}${agents
    .slice(1)
    .map(([l]) => ` --agent ${l}=<checkout>`)
    .join('')}\`
- every thread is counted: Node 20's module-hooks thread (\`--import\`) too, and V8's own helper threads, whose share varies

| command | instructions | vs no agent |
|---|---|---|
${irows.join('\n')}
`;
  console.log(ireport);
  if (write) writeSection(`startup-instructions-node${version.slice(1).split('.')[0]}`, ireport);
}
