// Real MariaDB for tests and the benchmark, from Debian's `mariadb-server` (/usr/sbin/mariadbd;
// .ci/run installs it when absent).
//
//   const db = await startMariaDB();            // temp datadir, free loopback port, general log on
//   ... db.url, db.port, await db.query('SHOW GLOBAL STATUS LIKE "Prepared_stmt_count"') ...
//   ... db.logSize(), await db.waitForLog(/Query\t\/\* id \*\/ SELECT/, { from }) ...
//   await db.stop(); await db.start();          // same port and datadir (a restart under traffic)
//   await stopMariaDB();                        // stop every server + delete temp dirs
//
// How: `mariadb-install-db` makes a fresh datadir in a temp folder under os.tmpdir() (never in the
// checkout, which may live in a folder only root can enter), then `mariadbd --no-defaults` runs
// with everything on its command line: bound to 127.0.0.1 on a free port, a unix socket in the temp
// folder (never /run/mysqld), the general log (every statement the server receives, as received,
// comments included) in `<temp>/run/general.log`, utf8mb4, small InnoDB buffers, no native AIO (a
// container's io_setup limit is shared by every server on the machine). Readiness is the server's
// handshake packet read off its unix socket; the test database and user (`hatch_test`,
// `hatch`/`hatch`, all privileges) are then made once, as MariaDB's root over the unix socket, with
// Debian's `mariadb` command-line client, which is also what `query()` uses: the harness needs no
// client library, so tests stay free to load mysql2 in their apps only.
// Root: mariadbd refuses to run as root without `--user`, so as root the server runs as the `mysql`
// OS user (made by the Debian package) when it exists, and the folders it writes are chowned to
// it; else as root (`--user=root`). As another user it runs as that user.
// Failures: a missing binary, a datadir that cannot be made, a server that exits or does not answer
// within 30 s rejects with one line (MariaDBStartError); `detail` holds the server's own output and
// its error log. An auto-picked port that another process grabs first is retried (3 times).
// A detached watchdog stops the server and deletes the temp folder if the test process dies
// without stopping it.
// Start-up cost, measured on this 2-core box shared with other jobs (MariaDB 10.11, Node 20): a
// fresh startMariaDB() takes 1.2-4 s (mariadb-install-db 0.7-3.3 s, the server to its first
// handshake 0.2-0.5 s, the database and user 0.05 s); stop()+start() 0.2-1 s.
// Limitations: Linux only (uid switch, /proc); no TLS; the general log grows without bound (a test
// reads from its own `logSize()` mark); query() returns text cells (the client's batch output, tabs
// and newlines in values escaped by it), for a test that asks the server what it holds.
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freeTcpPort } from './postgres.mjs';
import { sizeOf, readFrom, waitForLog } from './logfile.mjs';

const handles = new Set();
const find = (names) => names.find((p) => fs.existsSync(p)) ?? path.basename(names[0]);
const SERVER = find(['/usr/sbin/mariadbd', '/usr/sbin/mysqld', '/usr/local/sbin/mariadbd']);
const INSTALL_DB = find([
  '/usr/bin/mariadb-install-db',
  '/usr/bin/mysql_install_db',
  '/usr/local/bin/mariadb-install-db',
]);
const CLIENT = find(['/usr/bin/mariadb', '/usr/bin/mysql', '/usr/local/bin/mariadb']);
const INSTALL_HINT =
  "install Debian's mariadb-server and mariadb-client (apt-get install mariadb-server mariadb-client)";

/** startMariaDB's rejection: `message` is one line (what failed, what to do); `detail` the output. */
export class MariaDBStartError extends Error {
  constructor(summary, detail = '') {
    super(`MariaDB could not start: ${summary}`);
    this.name = 'MariaDBStartError';
    this.code = 'HATCH_MARIADB_START';
    this.detail = detail;
  }
}
const fail = (summary, detail) => {
  throw new MariaDBStartError(summary, detail);
};

const run = (cmd, args, opts = {}) =>
  new Promise((resolve) =>
    execFile(cmd, args, { maxBuffer: 64 << 20, ...opts }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : (err.code ?? 1)) : 0, stdout, stderr, err }),
    ),
  );

/** The OS user the server runs as: `mysql` (uid, gid) as root when it exists, else null (ourselves, or root). */
async function serverUser() {
  if (process.getuid?.() !== 0) return null;
  const [u, g] = await Promise.all([run('id', ['-u', 'mysql']), run('id', ['-g', 'mysql'])]);
  if (u.code !== 0 || g.code !== 0) return null;
  return { name: 'mysql', uid: Number(u.stdout), gid: Number(g.stdout) };
}

/** Whether `uid` may enter `dir` and every folder above it (owner or other x bit; groups ignored). */
async function enterable(dir, uid) {
  let d = await fsp.realpath(dir);
  for (;;) {
    const st = await fsp.stat(d);
    if (!(st.mode & (st.uid === uid ? 0o100 : 0o001))) return false;
    const up = path.dirname(d);
    if (up === d) return true;
    d = up;
  }
}

/**
 * Resolves once the server sends its handshake (protocol 10) on a fresh connection to its unix
 * socket; rejects otherwise. The socket, not the port: another server on a taken port would answer.
 * mariadbd listens on it only after its TCP port is bound.
 */
function handshake(socketPath, timeoutMs = 1000) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path: socketPath });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('no handshake'));
    }, timeoutMs);
    let buf = Buffer.alloc(0);
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 5) return;
      clearTimeout(timer);
      s.destroy();
      // 4-byte packet header, then 0x0a (protocol 10) for a handshake or 0xff for an error packet
      if (buf[4] === 0x0a) resolve();
      else reject(new Error(`server answered: ${buf.subarray(7).toString('utf8').trim()}`));
    });
  });
}

// Detached, so it outlives a test process that dies without stopping the server: it then stops
// the server (SIGTERM, SIGKILL after 5 s) and deletes the temp folder. Polls once a second.
const WATCHDOG = `
const fs = require('fs');
const [parent, pid, dir] = process.argv.slice(2);
const alive = (p) => { try { process.kill(+p, 0); } catch { return false; }
  try { return !/^\\d+ \\(.*\\) Z/s.test(fs.readFileSync('/proc/' + p + '/stat', 'utf8')); } catch { return true; } };
const sig = (s) => { try { if (alive(pid)) process.kill(+pid, s); } catch {} };
const poll = setInterval(() => {
  if (process.ppid === +parent && alive(parent)) return;
  clearInterval(poll);
  sig('SIGTERM');
  const t0 = Date.now();
  setInterval(() => {
    if (alive(pid) && Date.now() - t0 < 5000) return;
    sig('SIGKILL');
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  }, 100);
}, 1000);`;

/** One line for a server or install failure, from its output and error log. */
function explain(what, text, port) {
  if (/No space left on device/i.test(text))
    return `no space left on the device holding ${os.tmpdir()}: free some, or set TMPDIR to a folder on a disk with room`;
  if (/Address already in use|Can't start server: Bind on TCP\/IP port/i.test(text))
    return `port ${port} on 127.0.0.1 is already in use: stop what listens there (\`ss -ltnp 'sport = :${port}'\`) or choose another port`;
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const key = lines.filter((l) => /\[ERROR\]|ERROR|error:|Can't|cannot/i.test(l)).shift() ?? lines.pop() ?? 'no output';
  return `${what} failed: ${key.replace(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \d+ /, '').replace(/\s+/g, ' ')}`;
}

/**
 * Starts a server. Options: `port` (this port only; by default a free one), `database`, `user`,
 * `password` (the test user's). The handle: host, port, url, user, password, database, logFile,
 * timings, pid, running, query(sql), readLog(from), logSize(), waitForLog(pattern, { from, timeoutMs }),
 * stop(), start(), kill(), destroy().
 */
export async function startMariaDB({ port, database = 'hatch_test', user = 'hatch', password = 'hatch' } = {}) {
  for (const [file, what] of [
    [SERVER, 'mariadbd'],
    [INSTALL_DB, 'mariadb-install-db'],
    [CLIENT, 'the mariadb client'],
  ]) {
    if (!fs.existsSync(file)) fail(`${what} not found (${file}): ${INSTALL_HINT}`);
  }
  const who = await serverUser();
  let base = os.tmpdir();
  if (who && !(await enterable(base, who.uid).catch(() => false))) base = '/tmp';
  const root = await fsp.mkdtemp(path.join(base, 'hatch-mariadb-'));
  const dataDir = path.join(root, 'data');
  const runDir = path.join(root, 'run');
  const socket = path.join(runDir, 'mysqld.sock');
  const logFile = path.join(runDir, 'general.log');
  const errorLog = path.join(runDir, 'error.log');
  const timings = {};
  let currentPort = port;
  let child = null;
  let watchdog = null;
  let output = '';
  const keep = (d) => {
    output = (output + d).slice(-8000);
  };
  const readErrorLog = () => {
    try {
      return fs.readFileSync(errorLog, 'utf8').split('\n').slice(-40).join('\n');
    } catch {
      return '';
    }
  };
  const tail = () => `--- mariadbd output ---\n${output}\n--- ${errorLog} (tail) ---\n${readErrorLog()}`;
  // The same InnoDB settings for install and server: small, fast, throwaway data.
  const innodb = [
    '--innodb-buffer-pool-size=16M',
    '--innodb-log-file-size=8M',
    '--innodb-flush-log-at-trx-commit=0',
    '--innodb-use-native-aio=0',
  ];
  const userArg = process.getuid?.() === 0 ? [`--user=${who ? who.name : 'root'}`] : [];

  async function install() {
    await fsp.chmod(root, 0o755); // our own fresh folder, so the server's user can enter it
    for (const d of [dataDir, runDir]) {
      await fsp.mkdir(d, { mode: 0o750 });
      if (who) await fsp.chown(d, who.uid, who.gid);
    }
    const t0 = performance.now();
    const r = await run(
      INSTALL_DB,
      [
        '--no-defaults',
        `--datadir=${dataDir}`,
        ...userArg,
        '--auth-root-authentication-method=normal',
        '--skip-test-db',
        '--skip-name-resolve',
        ...innodb,
      ],
      { cwd: root, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' } },
    );
    timings.installMs = Math.round(performance.now() - t0);
    if (r.err?.code === 'ENOENT') fail(`${INSTALL_DB} could not be run: ${INSTALL_HINT}`);
    if (r.code !== 0)
      fail(
        explain(`mariadb-install-db (exit ${r.code})`, `${r.stderr}\n${r.stdout}`, currentPort),
        `${r.stdout}\n${r.stderr}`,
      );
  }

  async function launch() {
    const t0 = performance.now();
    output = '';
    const args = [
      '--no-defaults',
      ...userArg,
      `--datadir=${dataDir}`,
      `--port=${currentPort}`,
      '--bind-address=127.0.0.1',
      `--socket=${socket}`,
      `--pid-file=${path.join(runDir, 'mysqld.pid')}`,
      `--tmpdir=${runDir}`,
      `--log-error=${errorLog}`,
      '--general-log=1',
      `--general-log-file=${logFile}`,
      '--skip-name-resolve',
      '--character-set-server=utf8mb4',
      '--collation-server=utf8mb4_general_ci',
      '--max-connections=500',
      ...innodb,
    ];
    let exited = null;
    const c = spawn(SERVER, args, { cwd: root, env: { LC_ALL: 'C' }, stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    c.stdout.on('data', keep);
    c.stderr.on('data', keep);
    c.on('error', (err) => (exited ??= { err }));
    c.on('exit', (code, sig) => (exited ??= { code: code ?? sig }));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (exited) {
        child = null;
        if (exited.err)
          fail(`${SERVER} could not be run (${exited.err.code ?? exited.err.message}): ${INSTALL_HINT}`, tail());
        fail(explain(`the server (exit ${exited.code})`, `${readErrorLog()}\n${output}`, currentPort), tail());
      }
      if (Date.now() > deadline) {
        c.kill('SIGKILL');
        fail(`the server did not answer on port ${currentPort} within 30 s`, tail());
      }
      try {
        await handshake(socket);
        break;
      } catch {
        await sleep(50);
      }
    }
    timings.startMs = Math.round(performance.now() - t0);
    // A forgotten stop() must not keep the test process alive: exit hooks and the watchdog clean up.
    c.unref();
    c.stdout.unref?.();
    c.stderr.unref?.();
    watchdog = spawn(process.execPath, ['-', String(process.pid), String(c.pid), root], {
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    watchdog.on('error', () => {}); // no watchdog is no reason to fail a start
    watchdog.stdin.on('error', () => {});
    watchdog.stdin.end(WATCHDOG);
    watchdog.unref();
  }

  const running = () => !!child && child.exitCode === null && child.signalCode === null;

  async function stopServer(signal) {
    watchdog?.kill();
    watchdog = null;
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) {
      child = null;
      return;
    }
    c.ref();
    const exited = new Promise((r) => c.once('exit', r));
    c.kill(signal);
    const timer = setTimeout(() => c.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
    child = null;
  }

  /** Runs SQL as MariaDB's root over the unix socket; resolves with rows of text cells. */
  async function query(sql) {
    const r = await run(CLIENT, [
      '--no-defaults',
      `--socket=${socket}`,
      '--user=root',
      '--batch',
      '--skip-column-names',
      '--comments',
      '-e',
      sql,
    ]);
    if (r.code !== 0) throw new Error(`mariadb client: ${String(r.stderr).trim() || `exit ${r.code}`}`);
    return String(r.stdout)
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.split('\t'));
  }

  let destroyed = false;
  const handle = {
    host: '127.0.0.1',
    port: 0,
    user,
    password,
    database,
    logFile,
    socket,
    timings,
    get url() {
      return `mysql://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
    },
    get pid() {
      return running() ? child.pid : null;
    },
    get running() {
      return running();
    },
    query,
    /** Log text from byte offset `from`. */
    readLog: (from = 0) => readFrom(logFile, from),
    /** Byte size of the log now: pass to readLog/waitForLog to see only newer lines. */
    logSize: () => sizeOf(logFile),
    /** Resolves with the log text after `from` once it matches (RegExp, string, or fn(text) => boolean). */
    waitForLog: (pattern, opts) =>
      waitForLog(logFile, pattern, { timeoutMs: 10000, what: 'MariaDB general log', ...opts }),
    /** Starts again after stop()/kill(): same port and datadir. */
    async start() {
      if (destroyed) throw new Error('MariaDB handle was destroyed');
      if (!running()) await launch();
    },
    /** Clean shutdown (SIGTERM); the datadir stays, so start() works. Idempotent. */
    async stop() {
      await stopServer('SIGTERM');
    },
    /** A crash (SIGKILL by default); start() recovers the datadir. */
    async kill(signal = 'SIGKILL') {
      await stopServer(signal);
    },
    /** Stops the server and deletes the temp folder. Idempotent. */
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      await stopServer('SIGTERM');
      handles.delete(handle);
      exitCleanup.delete(handle);
      await fsp.rm(root, { recursive: true, force: true });
    },
  };
  handles.add(handle);
  exitCleanup.set(handle, () => {
    if (running())
      child.kill('SIGTERM'); // the watchdog then deletes the folder
    else fs.rmSync(root, { recursive: true, force: true });
  });

  try {
    // A taken port is told before the datadir is made (seconds of mariadb-install-db for nothing).
    if (port !== undefined && !(await portFree(port))) fail(explain('', 'Address already in use', port));
    await install();
    for (let attempt = 1; ; attempt++) {
      if (port === undefined) currentPort = await freeTcpPort();
      try {
        await launch();
        break;
      } catch (e) {
        if (port !== undefined || attempt >= 3 || !/already in use/.test(e.message)) throw e;
      }
    }
    handle.port = currentPort;
    const t0 = performance.now();
    const id = (s) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
    await query(
      `CREATE DATABASE IF NOT EXISTS \`${database.replace(/`/g, '``')}\`;` +
        ` CREATE USER IF NOT EXISTS ${id(user)}@'%' IDENTIFIED BY ${id(password)};` +
        ` GRANT ALL PRIVILEGES ON *.* TO ${id(user)}@'%';`,
    );
    timings.setupMs = Math.round(performance.now() - t0);
  } catch (err) {
    await handle.destroy().catch(() => {});
    if (err instanceof MariaDBStartError) throw err;
    throw new MariaDBStartError(`${err.message} (${err.code ?? 'no code'})`, `${err.stack}\n${tail()}`);
  }
  return handle;
}

/** Whether nothing listens on 127.0.0.1:`port` now. */
function portFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** Stops one server (and deletes its folder), or every server this process started. */
export async function stopMariaDB(handle) {
  if (handle) return handle.destroy();
  await Promise.all([...handles].map((h) => h.destroy()));
}

// At exit nothing async runs: signal running servers, delete stopped ones' folders.
const exitCleanup = new Map();
process.on('exit', () => {
  for (const fn of exitCleanup.values()) {
    try {
      fn();
    } catch {}
  }
});
