// The health hatch checks every Redis client the app made (ioredis and node-redis, each library the
// matrix line installed) with PING through the app's own connection, on a redis-server of this
// file's own. The server is asked what happened: CLIENT LIST (by the names the app gave its
// connections) shows no new connection and PING as each connection's last command, and INFO
// commandstats counts the PINGs. A client busy with a blocking command is reported, not probed; a
// stopped server fails the checks, and they pass again once it is back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, get } from '../support/app.mjs';
import { startRedis, stopRedis } from '../support/redis.mjs';
import { redisClients } from '../support/redis-clients.mjs';
import { TOKEN, STARTUP_MS, auth, until } from './apps.mjs';

const libs = redisClients();

const APP = `
const http = require('node:http');
const LIBS = ${JSON.stringify(libs.map(({ lib, kind }) => ({ lib, kind })))};
const clients = LIBS.map(({ lib, kind }, i) => {
  if (kind === 'ioredis') {
    const c = new (require(lib))(process.env.REDIS_URL, { connectionName: 'app-' + i });
    c.on('error', () => {});
    return { kind, c, get: (k) => c.get(k), blpop: (k) => c.blpop(k, 10) };
  }
  const c = require(lib).createClient({ url: process.env.REDIS_URL, name: 'app-' + i });
  c.on('error', () => {});
  return { kind, c, get: (k) => c.get(k), blpop: (k) => c.blPop(k, 10) };
});
const blocked = [];
(async () => {
  for (const x of clients) {
    if (x.kind === 'ioredis') { if (x.c.status !== 'ready') await new Promise((ok) => x.c.once('ready', ok)); }
    else await x.c.connect();
  }
  const server = http.createServer(async (req, res) => {
    if (req.url === '/work') {
      for (const x of clients) await x.get('work');
      return res.end('worked');
    }
    if (req.url === '/block') {
      clients.forEach((x, i) => blocked.push(x.blpop('never-' + i).catch((e) => e.message)));
      return res.end('blocked');
    }
    if (req.url === '/unblocked') return res.end(JSON.stringify(await Promise.all(blocked.splice(0))));
    res.statusCode = 404;
    res.end();
  });
  server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
})();
`;

let redis;
let app;
before(async () => {
  redis = await startRedis();
  app = await startApp(APP, {
    // A PING on loopback answers at once: 5 s is room enough, and node-redis 4.1 (no isReady) fails
    // its check by this timeout while the server is down.
    env: { HATCH_TOKEN: TOKEN, REDIS_URL: redis.url, HATCH_HEALTH_TIMEOUT_MS: '5000' },
    timeout: STARTUP_MS,
  });
});
after(async () => {
  await app?.stop();
  await stopRedis(redis);
});

async function health() {
  const r = await get(app.url + '/_hatch/health', auth());
  return { status: r.status, body: JSON.parse(r.body) };
}
/** The app's connections as the server lists them: name -> { id, cmd }. */
async function appConnections() {
  const out = {};
  for (const line of String(await redis.command('CLIENT', 'LIST')).split('\n')) {
    const f = Object.fromEntries(
      line.split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    );
    if (f.name?.startsWith('app-')) out[f.name] = { id: f.id, cmd: f.cmd };
  }
  return out;
}
async function pings() {
  const m = /cmdstat_ping:calls=(\d+)/.exec(String(await redis.command('INFO', 'commandstats')));
  return m ? Number(m[1]) : 0;
}
const redisChecks = (body) => body.checks.filter((c) => c.name.startsWith('redis '));

test('the matrix line installs a Redis client library', () => assert.ok(libs.length > 0));

test(
  'health PINGs each Redis client through its own connection: no new connection, PING its last command',
  { timeout: 60000 },
  async () => {
    assert.equal((await get(app.url + '/work')).body, 'worked');
    const before = await appConnections();
    assert.equal(Object.keys(before).length, libs.length, JSON.stringify(before));
    const pinged = await pings();
    const h = await health();
    assert.equal(h.status, 200, JSON.stringify(h.body));
    const checks = redisChecks(h.body);
    const want = libs.map((l) => (l.kind === 'ioredis' ? 'ioredis' : 'node-redis'));
    assert.deepEqual(checks.map((c) => c.name.split(' ')[1]).sort(), want.sort(), JSON.stringify(checks));
    for (const c of checks) {
      assert.match(c.name, new RegExp(`^redis (ioredis|node-redis) \\d+ \\(127\\.0\\.0\\.1:${redis.port}/0\\)$`));
      assert.equal(c.status, 'pass', JSON.stringify(c));
      assert.equal(c.detail, 'PING answered PONG');
    }
    assert.equal(await pings(), pinged + libs.length, 'one PING per client');
    const afterwards = await appConnections();
    assert.deepEqual(
      Object.fromEntries(Object.entries(afterwards).map(([n, x]) => [n, x.id])),
      Object.fromEntries(Object.entries(before).map(([n, x]) => [n, x.id])),
      'the same connections, none new',
    );
    for (const [n, x] of Object.entries(afterwards)) assert.equal(x.cmd, 'ping', `${n}'s last command`);
  },
);

test("a client blocked in the app's BLPOP is reported busy, not probed", { timeout: 60000 }, async () => {
  assert.equal((await get(app.url + '/block')).body, 'blocked');
  await until(
    async () => Object.values(await appConnections()).every((x) => x.cmd === 'blpop'),
    10000,
    'every client in BLPOP',
  );
  const pinged = await pings();
  const h = await health();
  assert.equal(h.status, 200, JSON.stringify(h.body));
  for (const c of redisChecks(h.body)) {
    assert.equal(c.status, 'pass', JSON.stringify(c));
    assert.match(c.detail, /^busy with 1 of the app's commands; connected, not probed$/);
  }
  assert.equal(await pings(), pinged, 'no PING queued behind a blocking command');
  for (let i = 0; i < libs.length; i++) await redis.command('LPUSH', `never-${i}`, 'x');
  const got = JSON.parse((await get(app.url + '/unblocked')).body);
  assert.equal(got.length, libs.length);
  for (const [i, g] of got.entries()) assert.deepEqual(Array.isArray(g) ? g : [g.key, g.element], [`never-${i}`, 'x']);
});

test(
  'health fails the Redis checks while the server is stopped, and passes once it is back',
  { timeout: 90000 },
  async () => {
    await redis.stop();
    const down = await until(
      async () => {
        const h = await health();
        return h.status === 503 && redisChecks(h.body).every((c) => c.status === 'fail') && h;
      },
      30000,
      'health 503 naming the Redis clients',
    );
    for (const c of redisChecks(down.body)) {
      assert.ok(down.body.failing.includes(c.name));
      assert.match(c.detail, /^not connected|^no answer within 5000 ms$/);
    }
    await redis.start();
    await until(async () => (await health()).status === 200, 30000, 'health 200 again');
    assert.equal((await get(app.url + '/work')).body, 'worked');
  },
);
