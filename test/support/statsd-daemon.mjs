// The real Etsy StatsD daemon (node_modules/statsd/stats.js) as a child
// process, so tests can check that what we emit is valid StatsD: it counts
// every unparsable line in `messages.bad_lines_seen` and shows the parsed
// metrics through its admin (management) TCP interface.
//
//   const sd = await startStatsdDaemon();
//   ... send to 127.0.0.1:sd.port ...
//   (await sd.stats()).messages.bad_lines_seen   // 0 if every line was valid
//   await sd.timers()                            // { 'a.b': [ 1 ] }
//   await sd.stop();
//
// Its key sanitiser rewrites names (spaces -> _, / -> -, drops chars outside
// [A-Za-z0-9_.;=-]), and tags (|#k:v) become part of the key as ;k=v.
//
// With `graphite: { host, port }` it flushes through its own graphite backend instead of the
// console one, to a carbon line receiver (see carbon.mjs), under the backend's default names
// (legacyNamespace: stats.timers.<name>.mean, stats_counts.<name>, ...): no `graphite` naming
// settings are written, so the names are what a default statsd install produces. Its debug
// switch is on then, so a refused carbon connection shows in output().
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import dgram from 'node:dgram';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import vm from 'node:vm';

const STATS_JS = path.join(path.dirname(createRequire(import.meta.url).resolve('statsd/package.json')), 'stats.js');

// Preloaded into the daemon: exit (and remove its temp dir) when our test
// process is gone (e.g. SIGKILL), since nothing else would ever stop it.
// It also gives the daemon back util.log, which statsd 0.9 calls and Node 23
// removed (the Node 24 line would otherwise fail to start it).
const DAEMON_PRELOAD = `const util = require('util');
if (typeof util.log !== 'function') util.log = (msg) => console.log(new Date().toISOString() + ' - ' + msg);
const parent = process.ppid;
setInterval(() => {
  if (process.ppid === parent) return;
  require('fs').rmSync(__dirname, { recursive: true, force: true });
  process.exit(0);
}, 1000).unref();\n`;

const running = new Set();
process.on('exit', () => {
  for (const d of running) d.killSync();
});

async function freeTcpPort() {
  const srv = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => srv.once('listening', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

async function freeUdpPort() {
  const s = dgram.createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

// Its UDP bind completes asynchronously (after an address lookup), so an
// answering admin port proves nothing about UDP; /proc/net/udp does.
function udpBound(port) {
  let table;
  try {
    table = fs.readFileSync('/proc/net/udp', 'utf8');
  } catch {
    return true;
  }
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return new RegExp(`^\\s*\\d+: [0-9A-F]{8}:${hex} `, 'm').test(table); // local_address column
}

/**
 * @param {{ flushInterval?: number, dumpMessages?: boolean, graphite?: { host: string, port: number }, config?: object }} [opts]
 *   graphite: flush to this carbon line receiver with the daemon's graphite backend.
 *   config: extra daemon settings merged into the generated config file.
 */
export async function startStatsdDaemon({
  flushInterval = 3_600_000,
  dumpMessages = false,
  graphite,
  config = {},
} = {}) {
  if (graphite)
    config = {
      backends: ['./backends/graphite'],
      graphiteHost: graphite.host,
      graphitePort: graphite.port,
      debug: true,
      ...config,
    };
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'hatch-statsd-'));
  const preload = path.join(dir, 'daemon-preload.cjs');
  await fsp.writeFile(preload, DAEMON_PRELOAD);
  try {
    // Free ports are only free until someone binds them: retry on a clash.
    for (let attempt = 1; ; attempt++) {
      try {
        return await launch({ dir, preload, flushInterval, dumpMessages, config });
      } catch (e) {
        if (attempt >= 3 || !/EADDRINUSE/.test(e.message)) throw e;
      }
    }
  } catch (e) {
    await fsp.rm(dir, { recursive: true, force: true });
    throw e;
  }
}

async function launch({ dir, preload, flushInterval, dumpMessages, config }) {
  const port = await freeUdpPort();
  const mgmtPort = await freeTcpPort();
  const conf = {
    port,
    address: '127.0.0.1',
    mgmt_port: mgmtPort,
    mgmt_address: '127.0.0.1',
    flushInterval, // long: metrics stay visible via `counters`/`timers` until a flush resets them
    backends: ['./backends/console'], // no network; its flush output lands in output()
    automaticConfigReload: false,
    title: false, // keep "node ... stats.js" in ps instead of renaming the process
    dumpMessages,
    ...config,
  };
  const confFile = path.join(dir, 'config.js');
  await fsp.writeFile(confFile, JSON.stringify(conf, null, 2)); // stats.js evals it as a JS literal

  const child = spawn(process.execPath, ['--require', preload, STATS_JS, confFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (b) => {
    out = (out + b).slice(-20_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((r) =>
    child.once('exit', (code, sig) => r(`exit code ${code}${sig ? ` signal ${sig}` : ''}`)),
  );
  const isRunning = () => child.exitCode === null && child.signalCode === null;

  const daemon = {
    port,
    mgmtPort,
    get pid() {
      return child.pid;
    },
    /** Everything the daemon printed (logs, bad lines, console-backend flushes). */
    output: () => out,
    /** Send one admin command (stats, counters, timers, gauges, health, delcounters x, ...); returns text before END. */
    command: (cmd, timeoutMs = 5000) => mgmtCommand(mgmtPort, cmd, timeoutMs),
    /** `stats` parsed: { uptime, messages: { bad_lines_seen, last_msg_seen (seconds ago) }, console: {...} }. */
    async stats() {
      const res = {};
      for (const line of (await daemon.command('stats')).split('\n')) {
        const m = /^([^:]+): (.*)$/.exec(line);
        if (!m) continue;
        const val = m[2] !== '' && !Number.isNaN(Number(m[2])) ? Number(m[2]) : m[2];
        const dot = m[1].indexOf('.');
        if (dot < 0) res[m[1]] = val;
        else (res[m[1].slice(0, dot)] ??= {})[m[1].slice(dot + 1)] = val;
      }
      return res;
    },
    counters: () => inspected(daemon, 'counters'),
    timers: () => inspected(daemon, 'timers'),
    gauges: () => inspected(daemon, 'gauges'),
    killSync() {
      if (isRunning()) child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
    /** SIGTERM (the daemon just exits), SIGKILL after 5 s; removes the temp dir. Idempotent. */
    async stop() {
      running.delete(daemon);
      if (isRunning()) {
        child.ref();
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };

  // Ready = admin port answers and the UDP socket is bound (or it died trying).
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (!isRunning())
      throw new Error(`statsd daemon ${await exited} while starting (udp ${port}, mgmt ${mgmtPort}):\n${out}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`statsd daemon not listening on udp ${port} / mgmt ${mgmtPort} after 15 s:\n${out}`);
    }
    const health = await mgmtCommand(mgmtPort, 'health', 1000).catch(() => '');
    if (health.includes('health: up') && udpBound(port)) break;
    await sleep(50);
  }
  // A forgotten stop() must not keep the test process alive; the exit handler kills it.
  child.unref();
  child.stdout.unref?.();
  child.stderr.unref?.();
  running.add(daemon);
  return daemon;
}

// Replies end with "END\n\n", except health (one line) and help/config (no
// terminator: taken as complete after 200 ms of silence).
function mgmtCommand(port, cmd, timeoutMs) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = '';
    let idle;
    const finish = (err, text) => {
      clearTimeout(timer);
      clearTimeout(idle);
      sock.destroy();
      if (err) reject(err);
      else resolve(text);
    };
    const timer = setTimeout(
      () =>
        finish(
          new Error(
            `statsd admin :${port} "${cmd}": no complete reply within ${timeoutMs} ms; got ${JSON.stringify(buf)}`,
          ),
        ),
      timeoutMs,
    );
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${cmd}\n`));
    sock.on('error', (e) => finish(new Error(`statsd admin :${port} "${cmd}": ${e.message}`)));
    sock.on('close', () => finish(null, buf));
    sock.on('data', (d) => {
      buf += d;
      const end = /(^|\n)END\n\n/.exec(buf);
      if (end) return finish(null, buf.slice(0, end.index + end[1].length));
      if (buf.startsWith('ERROR\n')) return finish(new Error(`statsd admin: unknown command "${cmd}"`));
      if (/^health\b/.test(cmd) && buf.includes('\n')) return finish(null, buf);
      clearTimeout(idle);
      idle = setTimeout(() => finish(null, buf), 200);
    });
  });
}

// counters/timers/gauges replies are util.inspect() output, i.e. a JS literal.
async function inspected(daemon, kind) {
  const text = await daemon.command(kind);
  if (/\.\.\. \d+ more item/.test(text))
    throw new Error(`statsd ${kind} output was truncated by util.inspect (over 100 values):\n${text.slice(0, 2000)}`);
  return vm.runInThisContext(`(${text})`); // this realm, so deepStrictEqual works
}
