// Real Redis for tests, from Debian's `redis-server` (installed by .ci/run when absent).
//
//   const redis = await startRedis();          // temp dir, free loopback port, no persistence
//   ... redis.url, redis.port, await redis.command('INFO', 'stats') ...
//   await redis.stop(); await redis.start();   // same port (a restart in the middle of traffic)
//   await stopRedis();                         // stop every server + delete temp dirs
//
// How: `redis-server` is spawned with its settings on the command line (no config file): bound to
// 127.0.0.1 on a free port, no RDB snapshots and no AOF (nothing is written but the log), its log
// in the temp dir. Readiness is a real `PING` answered `+PONG` over a plain socket, so the harness
// needs no client library and tests stay free to load ioredis or node-redis in their apps only.
// `command()` speaks RESP itself, for a test that reads what the server holds (MONITOR-free: a
// test asks the server, e.g. `INFO commandstats`, `CLIENT LIST`, `GET k`).
// Failures: a missing binary or a server that does not answer within 10 s rejects with one line
// (RedisStartError) whose `detail` holds the server's own output.
// Limitations: no TLS, no ACL users beyond `requirepass` (option `password`), no cluster.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freeTcpPort } from './postgres.mjs';

const handles = new Set();
const BINARY = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) => fs.existsSync(p)) ?? 'redis-server';

export class RedisStartError extends Error {
  constructor(message, detail = '') {
    super(message);
    this.name = 'RedisStartError';
    this.detail = detail;
  }
}

/** Encodes one command as RESP. */
function encode(args) {
  let out = `*${args.length}\r\n`;
  for (const a of args) {
    const s = Buffer.from(String(a));
    out += `$${s.length}\r\n${s.toString('latin1')}\r\n`;
  }
  return Buffer.from(out, 'latin1');
}

/** Parses one RESP reply from `buf` at `at`: [value, next] or undefined when incomplete. */
function parse(buf, at = 0) {
  const end = buf.indexOf('\r\n', at);
  if (end < 0) return undefined;
  const type = String.fromCharCode(buf[at]);
  const line = buf.toString('utf8', at + 1, end);
  if (type === '+') return [line, end + 2];
  if (type === '-') return [new Error(line), end + 2];
  if (type === ':') return [Number(line), end + 2];
  if (type === '$') {
    const n = Number(line);
    if (n < 0) return [null, end + 2];
    if (buf.length < end + 2 + n + 2) return undefined;
    return [buf.toString('utf8', end + 2, end + 2 + n), end + 2 + n + 2];
  }
  if (type === '*') {
    const n = Number(line);
    if (n < 0) return [null, end + 2];
    const items = [];
    let next = end + 2;
    for (let i = 0; i < n; i++) {
      const r = parse(buf, next);
      if (!r) return undefined;
      items.push(r[0]);
      next = r[1];
    }
    return [items, next];
  }
  throw new Error(`unexpected RESP reply: ${JSON.stringify(buf.toString('utf8', at, end))}`);
}

/** One command on a fresh connection: resolves with the reply (an Error reply rejects). */
export function redisCommand(port, args, { password, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    const pending = [];
    if (password) pending.push(encode(['AUTH', password]));
    pending.push(encode(args));
    let skip = password ? 1 : 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis ${args[0]} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('connect', () => socket.write(Buffer.concat(pending)));
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const r = parse(buf);
        if (!r) return;
        buf = buf.subarray(r[1]);
        if (skip > 0) {
          skip--;
          if (r[0] instanceof Error) {
            clearTimeout(timer);
            socket.destroy();
            reject(r[0]);
            return;
          }
          continue;
        }
        clearTimeout(timer);
        socket.end();
        if (r[0] instanceof Error) reject(r[0]);
        else resolve(r[0]);
        return;
      }
    });
  });
}

async function spawnServer(h) {
  const args = [
    '--port',
    String(h.port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    h.dir,
    '--logfile',
    h.logFile,
    '--daemonize',
    'no',
    '--protected-mode',
    'no',
  ];
  if (h.password) args.push('--requirepass', h.password);
  const child = spawn(BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  let failed = null;
  child.on('error', (err) => (failed = err));
  h.child = child;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (failed) {
      throw new RedisStartError(
        failed.code === 'ENOENT'
          ? `redis-server not found (${BINARY}): install Debian's redis-server (apt-get install redis-server)`
          : `redis-server could not be started: ${failed.message}`,
        output,
      );
    }
    if (child.exitCode !== null) {
      const log = await fsp.readFile(h.logFile, 'utf8').catch(() => '');
      throw new RedisStartError(`redis-server exited with code ${child.exitCode} on port ${h.port}`, output + log);
    }
    try {
      if ((await redisCommand(h.port, ['PING'], { password: h.password, timeoutMs: 1000 })) === 'PONG') return;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new RedisStartError(`redis-server did not answer PING within 10 s on port ${h.port}`, output);
    }
    await sleep(25);
  }
}

/**
 * Starts a server on a free loopback port. `password` sets requirepass. The handle:
 * url, port, host, command(...args), stop(), start(), kill(), destroy().
 */
export async function startRedis({ password } = {}) {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'hatch-redis-'));
  const h = {
    host: '127.0.0.1',
    port: await freeTcpPort(),
    password,
    dir: root,
    logFile: path.join(root, 'redis.log'),
    child: null,
    get url() {
      return `redis://${this.password ? `:${encodeURIComponent(this.password)}@` : ''}127.0.0.1:${this.port}`;
    },
    command: (...args) => redisCommand(h.port, args, { password: h.password }),
    async stop() {
      const child = h.child;
      if (!child || child.exitCode !== null || child.signalCode) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
    async kill() {
      const child = h.child;
      if (!child || child.exitCode !== null || child.signalCode) return;
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    },
    async start() {
      await spawnServer(h);
    },
    async destroy() {
      await h.stop();
      handles.delete(h);
      await fsp.rm(root, { recursive: true, force: true });
    },
  };
  handles.add(h);
  try {
    await spawnServer(h);
  } catch (err) {
    handles.delete(h);
    await fsp.rm(root, { recursive: true, force: true });
    throw err;
  }
  return h;
}

/** Stops one server (and deletes its dir), or every server this process started. */
export async function stopRedis(handle) {
  if (handle) return handle.destroy();
  await Promise.all([...handles].map((h) => h.destroy()));
}
