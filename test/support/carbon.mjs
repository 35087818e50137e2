// A real Graphite carbon-cache (Debian's graphite-carbon) for tests, in the foreground, with its own
// carbon.conf and storage-schemas.conf in a fresh temp dir, and whisper-fetch (python3-whisper) to
// read back what it stored.
//
//   const carbon = await startCarbon();     // plaintext receiver on 127.0.0.1:carbon.port
//   ... send `name value timestamp` lines, e.g. through the Etsy statsd daemon's graphite backend ...
//   await carbon.fetch('a.b.c', from)       // { start, end, step, values } of a/b/c.wsp, null if absent
//   await carbon.stop();                     // SIGTERM, then removes the dir
//
// How: `carbon-cache --config=<dir>/carbon.conf --nodaemon start` (no fork, logs on stdout). Every
// path (storage, whisper, logs, pid file) is under the temp dir, so it runs as root or as an ordinary
// user and leaves nothing behind; USER is empty, so as root it does not switch to _graphite (who
// could not write the temp dir). One retention, 1s:1h, so each statsd flush lands in its own point;
// creates and updates are unthrottled and every write is flushed (naive strategy, WHISPER_AUTOFLUSH),
// so a point is on disk a moment after carbon received it. The pickle receiver is off, the cache
// query port is an ephemeral loopback port, tags are off (they would POST to a graphite-web on :80).
// A detached watchdog stops carbon and removes the dir if the test process dies without stop().
//
// Limitations: Linux with graphite-carbon and python3-whisper installed (`.ci/run` installs them);
// the line receiver's port is picked free and could be taken before carbon binds it (retried).
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const CARBON = 'carbon-cache';
const WHISPER_FETCH = 'whisper-fetch';

// Run by a detached `node -` with the test process's pid, carbon's pid and the dir: when the test
// process is gone, SIGTERM carbon (SIGKILL after 3 s) and remove the dir.
const WATCHDOG = `
const fs = require('fs');
const [parent, pid, dir] = process.argv.slice(2).map((v, i) => (i < 2 ? +v : v));
const isCarbon = () => { try { return fs.readFileSync('/proc/' + pid + '/cmdline', 'utf8').includes('carbon-cache'); } catch { return false; } };
const poll = setInterval(() => {
  try { process.kill(parent, 0); if (process.ppid === parent) return; } catch {}
  clearInterval(poll);
  if (isCarbon()) process.kill(pid, 'SIGTERM');
  const t0 = Date.now();
  setInterval(() => {
    if (isCarbon() && Date.now() - t0 < 3000) return;
    if (isCarbon()) process.kill(pid, 'SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  }, 100);
}, 1000);`;

const running = new Set();
process.on('exit', () => {
  for (const c of running) c.killSync();
});

async function freeTcpPort() {
  const srv = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => srv.once('listening', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

function connects(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.setTimeout(1000);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.once('timeout', () => {
      s.destroy();
      resolve(false);
    });
  });
}

function conf(dir, port) {
  const d = (sub) => path.join(dir, sub) + '/';
  return `[cache]
STORAGE_DIR = ${d('storage')}
LOCAL_DATA_DIR = ${d('storage/whisper')}
WHISPER_DIR = ${d('storage/whisper')}
CONF_DIR = ${dir}/
LOG_DIR = ${d('log')}
PID_DIR = ${d('run')}
USER =
DATABASE = whisper
ENABLE_LOGROTATION = False
ENABLE_TAGS = False
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = inf
MAX_CREATES_PER_MINUTE = inf
MIN_TIMESTAMP_RESOLUTION = 1
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = ${port}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = 0
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = 0
USE_FLOW_CONTROL = True
CACHE_WRITE_STRATEGY = naive
WHISPER_AUTOFLUSH = True
WHISPER_FALLOCATE_CREATE = False
LOG_UPDATES = False
LOG_CACHE_HITS = False
LOG_LISTENER_CONN_SUCCESS = False
CARBON_METRIC_INTERVAL = 0
`;
}

const SCHEMAS = `[everything]
pattern = .*
retentions = 1s:1h
`;

/** Starts carbon-cache; resolves once its plaintext receiver accepts connections. */
export async function startCarbon() {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'hatch-carbon-'));
  try {
    // A free port is only free until someone binds it: retry on a clash.
    for (let attempt = 1; ; attempt++) {
      try {
        return await launch(dir);
      } catch (e) {
        if (attempt >= 3 || !/Address already in use|CannotListenError/.test(e.message)) throw e;
      }
    }
  } catch (e) {
    await fsp.rm(dir, { recursive: true, force: true });
    throw e;
  }
}

async function launch(dir) {
  const port = await freeTcpPort();
  for (const sub of ['storage/whisper', 'log', 'run']) await fsp.mkdir(path.join(dir, sub), { recursive: true });
  await fsp.rm(path.join(dir, 'run', 'carbon-cache-a.pid'), { force: true }); // a failed attempt's
  const confFile = path.join(dir, 'carbon.conf');
  await fsp.writeFile(confFile, conf(dir, port));
  await fsp.writeFile(path.join(dir, 'storage-schemas.conf'), SCHEMAS);
  const whisperDir = path.join(dir, 'storage', 'whisper');

  const child = spawn(CARBON, [`--config=${confFile}`, '--nodaemon', 'start'], {
    cwd: dir,
    env: { ...process.env, PYTHONUNBUFFERED: '1' }, // its log lines as they happen, not at exit
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (b) => {
    out = (out + b).slice(-20_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let spawnError;
  child.once('error', (e) => {
    spawnError = e;
  });
  const exited = new Promise((r) =>
    child.once('close', (code, sig) => r(`exit code ${code}${sig ? ` signal ${sig}` : ''}`)),
  );
  const isRunning = () =>
    !spawnError && child.pid !== undefined && child.exitCode === null && child.signalCode === null;
  let watchdog = null;

  const carbon = {
    port,
    dir,
    whisperDir,
    get pid() {
      return child.pid;
    },
    /** Everything carbon printed (its console log). */
    output: () => out,
    /** The whisper file of a dotted metric name. */
    file: (metric) => path.join(whisperDir, ...metric.split('.')) + '.wsp',
    /** All metric names with a whisper file, sorted. */
    metrics() {
      let files = [];
      try {
        files = fs.readdirSync(whisperDir, { recursive: true });
      } catch {}
      return files
        .filter((f) => f.endsWith('.wsp'))
        .map((f) => f.slice(0, -4).split(path.sep).join('.'))
        .sort();
    },
    /** whisper-fetch --json of a metric from `from` (unix seconds) to now; null while it has no file. */
    async fetch(metric, from) {
      const file = carbon.file(metric);
      if (!fs.existsSync(file)) return null;
      const text = await new Promise((resolve, reject) => {
        execFile(WHISPER_FETCH, ['--json', `--from=${from}`, file], { timeout: 10_000 }, (err, stdout, stderr) =>
          err ? reject(new Error(`${WHISPER_FETCH} ${file}: ${err.message}\n${stderr}`)) : resolve(stdout),
        );
      });
      return JSON.parse(text);
    },
    killSync() {
      running.delete(carbon);
      watchdog?.kill();
      if (isRunning()) child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
    /** SIGTERM (carbon writes its cache and exits), SIGKILL after 10 s; removes the dir. Idempotent. */
    async stop() {
      running.delete(carbon);
      watchdog?.kill();
      watchdog = null;
      if (isRunning()) {
        child.ref();
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };

  // Ready = the line receiver accepts a connection (or carbon died trying: a port clash, a bad conf).
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (spawnError)
      throw new Error(`cannot run ${CARBON} (${spawnError.message}): install graphite-carbon (.ci/run does)`);
    if (!isRunning()) throw new Error(`${CARBON} ${await exited} while starting on 127.0.0.1:${port}:\n${out}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${CARBON} not listening on 127.0.0.1:${port} after 30 s:\n${out}`);
    }
    if (await connects(port)) break;
    await sleep(100);
  }
  // A forgotten stop() must not keep the test process alive; the exit handler and the watchdog clean up.
  child.unref();
  child.stdout.unref?.();
  child.stderr.unref?.();
  watchdog = spawn(process.execPath, ['-', String(process.pid), String(child.pid), dir], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  watchdog.stdin.end(WATCHDOG);
  watchdog.unref();
  running.add(carbon);
  return carbon;
}
