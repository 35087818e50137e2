#!/usr/bin/env node
// Start-up cost in instructions, counted by valgrind's callgrind: repeatable whatever else the
// machine is doing, unlike wall or even CPU time on a shared VM. V8 runs --jitless under valgrind,
// so the absolute numbers are an interpreter's; the difference is what the agent adds.
//   node bench/startup.mjs          (needs valgrind: apt-get install valgrind)
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as os from 'node:os';
import { writeSection } from './results-file.mjs';
import { wholeRun } from './callgrind.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
function instructions(args, env = {}) {
  return wholeRun({ argv: [...args, '-e', '0'], cwd: root, env: { ...process.env, ...env } });
}
const rows = [
  ['node -e 0', instructions([])],
  [
    'node -r require-in-the-middle -e 0 (our one required hook dependency)',
    instructions(['-r', 'require-in-the-middle']),
  ],
  ['node -r hatch-agent -e 0', instructions(['-r', 'hatch-agent'])],
];
const base = rows[0][1];
const table = rows.map(
  ([name, n]) =>
    `| \`${name}\` | ${(n / 1e6).toFixed(0)} M | ${n === base ? '' : `+${(((n - base) / base) * 100).toFixed(0)}%`} |`,
);
const report = `## Start-up in instructions

- date: ${new Date().toISOString().slice(0, 10)}; Node ${process.version}; ${os.cpus()[0].model}
- command: \`node bench/startup.mjs\` (valgrind callgrind, V8 --jitless; repeatable to within 1%)

| command | instructions | vs node -e 0 |
|---|---|---|
${table.join('\n')}
`;
writeSection('startup', report);
console.log(report);
