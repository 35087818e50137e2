// The Redis client libraries a matrix line installed (ioredis, node-redis as `redis`, and node-redis 4
// and 5 side by side as `redis4`/`redis5`: the patched files are @redis/client's, found by their own
// package name wherever npm puts them), and CLIENT_JS: a few lines an app script starts with to
// drive either library the same way, chosen by APP_KIND (ioredis | node-redis) and APP_LIB (the
// module to require), against REDIS_URL.
// Limitations: only the commands the Redis tests use are mapped (set, get, incr, del, hset, hgetall,
// blpop, a raw command, a pipeline and a MULTI of those).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { appDir } from './app.mjs';

const CANDIDATES = [
  { lib: 'ioredis', kind: 'ioredis' },
  { lib: 'redis', kind: 'node-redis' },
  { lib: 'redis4', kind: 'node-redis' },
  { lib: 'redis5', kind: 'node-redis' },
];

/** The libraries installed in the app folder, each with its version: [{ lib, kind, version, env }]. */
export function redisClients() {
  const out = [];
  for (const c of CANDIDATES) {
    const pkg = path.join(appDir, 'node_modules', c.lib, 'package.json');
    if (!fs.existsSync(pkg)) continue;
    const version = JSON.parse(fs.readFileSync(pkg, 'utf8')).version;
    out.push({
      ...c,
      version,
      label: `${c.kind === 'ioredis' ? 'ioredis' : 'redis'}@${version}`,
      env: { APP_KIND: c.kind, APP_LIB: c.lib },
    });
  }
  return out;
}

export const CLIENT_JS = `
const KIND = process.env.APP_KIND;
const MOD = process.env.APP_LIB;
const REDIS_URL = process.env.REDIS_URL;
// Connection attempts the server refused: proof that the client saw the server gone, whatever
// its isReady said (node-redis 4.1 counts a TCP connect to a server that is shutting down as ready).
let refusals = 0;
const countRefusal = (e) => { if (e && e.code === 'ECONNREFUSED') refusals++; };
function makeClient(extra = {}) {
  if (KIND === 'ioredis') {
    const Redis = require(MOD);
    const c = new Redis(REDIS_URL, extra);
    c.on('error', countRefusal);
    return c;
  }
  const { createClient } = require(MOD);
  const c = createClient({ url: REDIS_URL, ...extra });
  c.on('error', countRefusal);
  return c;
}
async function connected(c) {
  if (KIND === 'ioredis') {
    if (c.status !== 'ready') await new Promise((ok) => c.once('ready', ok));
  } else await c.connect();
  return c;
}
const NR = { set: 'set', get: 'get', incr: 'incr', del: 'del', hset: 'hSet', hgetall: 'hGetAll' };
function ops(c) {
  const io = KIND === 'ioredis';
  const batch = (m, list) => { for (const [cmd, ...a] of list) m = m[io ? cmd : NR[cmd]](...a) || m; return m; };
  return {
    set: (k, v) => c.set(k, v),
    get: (k) => c.get(k),
    incr: (k) => c.incr(k),
    del: (k) => c.del(k),
    hset: (k, f, v) => (io ? c.hset(k, f, v) : c.hSet(k, f, v)),
    hgetall: (k) => (io ? c.hgetall(k) : c.hGetAll(k)),
    blpop: (k, s) => (io ? c.blpop(k, s) : c.blPop(k, s)),
    raw: (...a) => (io ? c.call(...a) : c.sendCommand(a.map(String))),
    pipeline: (list) => {
      if (io) return batch(c.pipeline(), list).exec();
      const m = batch(c.multi(), list);
      return m.execAsPipeline ? m.execAsPipeline() : m.exec(true);
    },
    multi: (list) => batch(c.multi(), list).exec(),
    up: () => (io ? c.status === 'ready' : c.isReady),
    refusals: () => refusals,
    close: () => (io ? c.quit() : c.quit()),
  };
}
/** An error as the app sees it, in plain data: its class, name, message, own keys and what they hold. */
function plainError(e) {
  if (!(e instanceof Error)) return { thrown: String(e) };
  const out = { ctor: e.constructor && e.constructor.name, name: e.name, message: e.message, keys: Object.keys(e).sort() };
  for (const k of out.keys) if (k !== 'stack') out['k_' + k] = Array.isArray(e[k]) ? e[k].map((x) => (x instanceof Error ? plainError(x) : x)) : e[k] instanceof Error ? plainError(e[k]) : e[k];
  return out;
}
const settle = (p) => Promise.resolve().then(() => p).then((v) => ({ ok: v }), (e) => ({ err: plainError(e) }));
`;
