#!/usr/bin/env node
// The performance-regression check: two commits of hatch-agent against each other in one interleaved run.
//   node bench/compare.mjs <base> <head> [--rounds 5] [--seconds 5] [--warmup 2] [--connections 50]
//                          [--routes /hello,/db,/fetch,/render] [--node /path/to/node] [--core] [--write]
// <base> and <head> are git commit-ishes (`main`, `HEAD~3`, a hash); `.` is this working tree as it is built now
// (run `npm run build` first). Each commit is checked out into a temporary git worktree, built there with this
// checkout's TypeScript, and preloaded from its own dist/ (its node_modules are this checkout's: a commit that
// changed the agent's dependencies is compared with today's versions of them).
// Variants, interleaved A B C D then D C B A, one fresh app process per variant and round: no agent, `als-floor`
// (AsyncLocalStorage.run per request, nothing else), base and head, both with every feature on as `hatch-agent` in
// bench/overhead.mjs (`--core`: no sink listening). Per route: the app's CPU µs per request and req/s of each, and
// head over base as the median of the per-round ratios with their range. A difference inside the per-round range,
// or within ±0.05 on a shared machine, is noise. Prints its table; `--write` also writes it as the `compare`
// section of bench/RESULTS.md. Needs bench/ installed: `npm install --prefix bench`.
import { spawnSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startPostgres } from '../test/support/postgres.mjs';
import { writeSection } from './results-file.mjs';
import {
  variants,
  stopApp,
  startApp,
  startDownstream,
  median,
  benchDir,
  benchRequire,
  opt,
  cpuTicks,
  loadRoute,
  HZ,
} from './variants.mjs';

const root = path.resolve(benchDir, '..');
const refs = process.argv
  .slice(2)
  .filter(
    (a, i, all) => !a.startsWith('--') && !all[i - 1]?.match(/^--(rounds|seconds|warmup|connections|routes|node)$/),
  );
if (refs.length !== 2) {
  console.error(
    'usage: node bench/compare.mjs <base> <head> [--rounds N] [--routes a,b] [--node path] [--core] [--write]',
  );
  process.exit(2);
}
const ROUNDS = Number(opt('rounds', 5));
const SECONDS = Number(opt('seconds', 5));
const WARMUP = Number(opt('warmup', 2));
const CONNECTIONS = Number(opt('connections', 50));
const ROUTES = opt('routes', '/hello,/db,/fetch,/render').split(',');
const NODE = opt('node', process.execPath);
const CORE = process.argv.includes('--core');
const nodeVersion = spawnSync(NODE, ['--version'], { encoding: 'utf8' }).stdout.trim();
const autocannon = benchRequire('autocannon');

const git = (...args) => {
  const r = spawnSync('git', args, { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout.trim();
};

// Each ref, built in a worktree of its own (removed at exit); `.` is this tree's own build.
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-compare-'));
const worktrees = [];
process.on('exit', () => {
  for (const w of worktrees) spawnSync('git', ['worktree', 'remove', '--force', w], { cwd: root });
  fs.rmSync(work, { recursive: true, force: true });
});
function build(ref, label) {
  if (ref === '.') {
    const entry = path.join(root, 'dist/src/index.js');
    if (!fs.existsSync(entry)) throw new Error('no dist/ in this checkout: run `npm run build` first');
    return { entry, commit: `${git('rev-parse', '--short', 'HEAD')} + working tree` };
  }
  const commit = git('rev-parse', '--short', `${ref}^{commit}`);
  const dir = path.join(work, label);
  git('worktree', 'add', '--detach', dir, commit);
  worktrees.push(dir);
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  // tsc writes its output even when an older commit's types do not check with today's compiler.
  spawnSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', dir], { stdio: 'ignore' });
  const entry = path.join(dir, 'dist/src/index.js');
  if (!fs.existsSync(entry)) throw new Error(`${ref} (${commit}) did not build`);
  return { entry, commit };
}
const base = build(refs[0], 'base');
const head = build(refs[1], 'head');

const ALL = await variants();
const settings = CORE ? ALL['hatch-agent/core'].env : ALL['hatch-agent'].env;
const VARIANTS = {
  none: ALL.none,
  'als-floor': ALL['als-floor'],
  base: { preload: base.entry, env: settings },
  head: { preload: head.entry, env: settings },
};
const NAMES = Object.keys(VARIANTS);

const pg = await startPostgres();
const sink = dgram.createSocket('udp4'); // the agents' StatsD sends are real
sink.on('message', () => {});
await new Promise((r) => sink.bind(0, '127.0.0.1', r));
const downstream = await startDownstream();
const env = { DATABASE_URL: pg.url, HATCH_STATSD_PORT: String(sink.address().port), DOWNSTREAM_URL: downstream.url };

const results = {}; // route -> variant -> [{ rps, cpu, p99 }]
let failures = 0;
const t0 = Date.now();
for (let round = 1; round <= ROUNDS; round++) {
  for (const name of round % 2 ? NAMES : [...NAMES].reverse()) {
    const { child, port } = await startApp(NODE, name, VARIANTS[name], env);
    for (const route of ROUTES) {
      await loadRoute(autocannon, { port, route, seconds: WARMUP, connections: CONNECTIONS });
      const c0 = cpuTicks(child.pid);
      const r = await loadRoute(autocannon, { port, route, seconds: SECONDS, connections: CONNECTIONS });
      const n = r.requests.total;
      const cpu = ((cpuTicks(child.pid) - c0) / HZ / n) * 1e6;
      failures += r.errors + r.timeouts + r.non2xx;
      ((results[route] ??= {})[name] ??= []).push({ rps: n / SECONDS, cpu, p99: r.p99 });
      process.stderr.write(
        `[${((Date.now() - t0) / 1000).toFixed(0)}s] round ${round} ${name.padEnd(9)} ${route.padEnd(7)} ${(n / SECONDS).toFixed(0)} req/s cpu ${cpu.toFixed(1)} µs/req\n`,
      );
    }
    await stopApp(child);
  }
}
sink.close();
downstream.child.kill();
await pg.stop();

const f1 = (x) => x.toFixed(1);
const f2 = (x) => x.toFixed(2);
const ratio = (a, b, k) => {
  const each = a.map((x, i) => x[k] / b[i][k]);
  return `${f2(median(each))} [${f2(Math.min(...each))}-${f2(Math.max(...each))}]`;
};
const rows = ROUTES.map((route) => {
  const r = results[route];
  const cpu = (v) => f1(median(r[v].map((x) => x.cpu)));
  return `| \`${route}\` | ${cpu('none')} | ${cpu('als-floor')} | ${cpu('base')} | ${cpu('head')} | **${ratio(r.head, r.base, 'cpu')}** | ${ratio(r.head, r.base, 'rps')} | ${ratio(r.head, r['als-floor'], 'cpu')} | ${ratio(r.head, r.base, 'p99')} |`;
});
const command = `node bench/compare.mjs ${process.argv
  .slice(2)
  .filter((a) => a !== '--write')
  .join(' ')}`;
const report = `## Two commits compared: ${refs[0]} (${base.commit}) against ${refs[1]} (${head.commit})

- date: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; machine: ${os.cpus().length} × ${os.cpus()[0].model}, ${Math.round(os.totalmem() / 2 ** 30)} GiB; the apps on Node ${nodeVersion}
- command: \`${command}\`
- both with ${CORE ? 'no sink listening (`hatch-agent/core` settings)' : 'every feature on (`hatch-agent` settings: StatsD to a local receiver, HATCH_TOKEN set)'}; autocannon, ${CONNECTIONS} connections, ${WARMUP} s warm-up then ${SECONDS} s per route, ${ROUNDS} interleaved rounds; ${failures} failed/non-2xx responses
- CPU: the app process's utime+stime per response (µs, median of the rounds); ratios: medians of per-round ratios [lowest-highest round]

| route | none | als-floor | base | head | CPU head / base | req/s head / base | CPU head / als-floor | p99 head / base |
|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}
`;
console.log(report);
if (process.argv.includes('--write')) writeSection('compare', report);
