// Redis under `node -r hatch-agent`, for each client library the matrix line installed (ioredis,
// node-redis 4, 5 and 6: test/support/redis-clients.mjs), against a real redis-server of this
// file's own (test/support/redis.mjs), which is stopped and started again in the middle of traffic.
// What is checked, per library:
// - 200 concurrent requests, each with a SET, a GET, a pipeline and a MULTI of its own keys: each
//   request's timeline (the requests hatch's JSON) holds exactly its own commands, named with their
//   first key, and no value anywhere; StatsD (a real UDP socket) gets one db.query timing per call;
// - the same script's results and errors, deep-equal with and without the agent;
// - a restart: commands sent while the server is down wait in the client's offline queue and keep
//   their caller's context; what the app sees is what it sees without the agent; afterwards the
//   agent still times every command in its own context.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startApp, runScript, get, writeApp, appDir, recordedEvents } from '../support/app.mjs';
import { udpListener } from '../support/udp.mjs';
import { startRedis, stopRedis } from '../support/redis.mjs';
import { redisClients, CLIENT_JS } from '../support/redis-clients.mjs';

const TOKEN = 'redis-test-token-0123456789abcdef';
const clients = redisClients();
let redis;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await stopRedis(redis);
});

test('the matrix line installs a Redis client library', () => {
  assert.ok(clients.length > 0, `no ioredis or redis in ${appDir}`);
});

const SERVER = `${CLIENT_JS}
const http = require('node:http');
const client = makeClient();
const r = ops(client);
(async () => {
  await connected(client);
  const server = http.createServer(async (req, res) => {
    const n = req.url.split('/')[2];
    try {
      await r.set('req:' + n, 'secret-' + n);
      const v = await r.get('req:' + n);
      const p = await r.pipeline([['incr', 'cnt:' + n], ['get', 'cnt:' + n]]);
      const m = await r.multi([['set', 'm:' + n, 'secret-m-' + n], ['get', 'm:' + n]]);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ n, v, p, m }));
    } catch (e) {
      res.statusCode = 500;
      res.end(String(e && e.message));
    }
  });
  server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
})();
`;

for (const c of clients) {
  test(`${c.label}: 200 concurrent requests, each command on its own request's timeline, one db.query per call`, async () => {
    const udp = await udpListener();
    const app = await startApp(SERVER, {
      env: {
        ...c.env,
        REDIS_URL: redis.url,
        HATCH_TOKEN: TOKEN,
        HATCH_RECENT_REQUESTS: '500',
        HATCH_STATSD: 'on',
        HATCH_STATSD_PORT: String(udp.port),
        HATCH_STATSD_FLUSH_MS: '100',
      },
    });
    try {
      const tag = `${c.lib}-${Date.now()}`;
      const rs = await Promise.all(Array.from({ length: 200 }, (_, i) => get(`${app.url}/cmd/${tag}-${i}`)));
      for (const [i, r] of rs.entries()) {
        assert.equal(r.status, 200, r.body);
        const body = JSON.parse(r.body);
        assert.equal(body.v, `secret-${tag}-${i}`);
      }
      const hatch = await get(`${app.url}/_hatch/requests?format=json`, { authorization: `Bearer ${TOKEN}` });
      assert.equal(hatch.status, 200);
      assert.ok(!hatch.body.includes('secret-'), 'no value reaches the requests hatch');
      const records = JSON.parse(hatch.body).recent.filter((x) => x.path.startsWith(`/cmd/${tag}-`));
      assert.equal(records.length, 200);
      for (const rec of records) {
        const n = rec.path.split('/')[2];
        assert.deepEqual(
          rec.timeline.map((e) => [e.kind, e.label, e.outcome]),
          [
            ['query', `SET req:${n}`, 'ok'],
            ['query', `GET req:${n}`, 'ok'],
            ['query', `PIPELINE 2: INCR cnt:${n}, GET cnt:${n}`, 'ok'],
            ['query', `MULTI 2: SET m:${n}, GET m:${n}`, 'ok'],
          ],
          `request ${rec.id} (${rec.path})`,
        );
      }
      // The HTML waterfall of one request shows the same rows.
      const one = records[0];
      const n0 = one.path.split('/')[2];
      const html = await get(`${app.url}/_hatch/requests/${one.id}?format=html`, { authorization: `Bearer ${TOKEN}` });
      assert.equal(html.status, 200);
      for (const label of [`SET req:${n0}`, `GET req:${n0}`, `PIPELINE 2: INCR cnt:${n0}, GET cnt:${n0}`])
        assert.ok(html.body.includes(`<span class="label" title="${label}">${label}</span>`), label);
      assert.ok(!html.body.includes('secret-'), 'no value in the page');
      // One timing per call: 200 of each, and nothing else (no handshake, no ready check).
      // Timings come as multi-value lines, `name:v1|ms:v2|ms:…`: each value is one call.
      const count = (ls) => {
        const by = {};
        for (const l of ls) {
          const m = /^hatch\.db\.query\.redis\.([A-Z_]+)\.(ok|error):(.*)$/.exec(l);
          if (m) by[`${m[1]}.${m[2]}`] = (by[`${m[1]}.${m[2]}`] ?? 0) + m[3].split(':').length;
        }
        return by;
      };
      const want = { 'SET.ok': 200, 'GET.ok': 200, 'PIPELINE.ok': 200, 'MULTI.ok': 200 };
      await udp
        .waitFor((ls) => Object.entries(want).every(([k, n]) => (count(ls)[k] ?? 0) >= n), 20000)
        .catch(() => {});
      await new Promise((ok) => setTimeout(ok, 300)); // any extra line would come with the next flush
      assert.deepEqual(count(udp.lines), want);
    } finally {
      await app.stop();
      udp.close();
    }
  });

  test(`${c.label}: results and errors are deep-equal with and without the agent`, async () => {
    const k = `side-${c.lib}-${Date.now()}`;
    const SCRIPT = `${CLIENT_JS}
(async () => {
  const client = await connected(makeClient());
  const r = ops(client);
  const K = ${JSON.stringify(k)};
  const out = [];
  for (const f of [
    () => r.set(K + ':a', 'value-a'),
    () => r.get(K + ':a'),
    () => r.get(K + ':missing'),
    () => r.incr(K + ':a'),
    () => r.hset(K + ':h', 'f', 'v'),
    () => r.hgetall(K + ':h'),
    () => r.hgetall(K + ':missing'),
    () => r.raw('NO.SUCH.COMMAND', K),
    () => r.raw('SET', K + ':raw', 'x', 'BADOPTION'),
    () => r.pipeline([['set', K + ':p', '1'], ['incr', K + ':a'], ['get', K + ':p']]),
    () => r.multi([['set', K + ':m', '1'], ['incr', K + ':a'], ['get', K + ':m']]),
    () => r.multi([['incr', K + ':m'], ['get', K + ':m']]),
    () => r.del(K + ':a'),
  ]) out.push(await settle(f()));
  await r.close();
  console.log(JSON.stringify(out));
})();
`;
    const file = writeApp(SCRIPT);
    const env = { ...c.env, REDIS_URL: redis.url };
    const without = await runScript(null, { file, agent: false, env });
    await redis.command('FLUSHALL');
    // With the agent, the flight recorder is on too: its record holds the commands, never a value.
    const recorder = path.join(os.tmpdir(), `hatch-redis-${process.pid}-${Date.now()}.jsonl`);
    const withAgent = await runScript(null, { file, agent: true, env: { ...env, HATCH_FLIGHT_RECORDER: recorder } });
    assert.equal(without.code, 0, without.stderr);
    assert.equal(withAgent.code, without.code, withAgent.stderr);
    assert.equal(withAgent.stderr, without.stderr);
    const a = JSON.parse(without.stdout);
    const b = JSON.parse(withAgent.stdout);
    assert.ok(a.some((x) => x.err) && a.some((x) => x.ok), without.stdout);
    assert.deepEqual(b, a);
    const record = recordedEvents(recorder);
    fs.rmSync(recorder, { force: true });
    // The app's own stdout (its results) is recorded as it is; the agent's events hold no value.
    const own = record.filter((e) => e.type !== 'log');
    assert.ok(!JSON.stringify(own).includes('value-a'), 'no value in the flight record');
    const queries = own.filter((e) => e.type === 'db.query' && e.system === 'redis');
    assert.deepEqual(
      queries.map((e) => [e.operation, e.text, e.commands, e.error]),
      [
        ['SET', `SET ${k}:a`, 1, false],
        ['GET', `GET ${k}:a`, 1, false],
        ['GET', `GET ${k}:missing`, 1, false],
        ['INCR', `INCR ${k}:a`, 1, true],
        ['HSET', `HSET ${k}:h`, 1, false],
        ['HGETALL', `HGETALL ${k}:h`, 1, false],
        ['HGETALL', `HGETALL ${k}:missing`, 1, false],
        ['OTHER', `NO.SUCH.COMMAND ${k}`, 1, true],
        ['SET', `SET ${k}:raw`, 1, true],
        ['PIPELINE', `PIPELINE 3: SET ${k}:p, INCR ${k}:a, GET ${k}:p`, 3, true],
        ['MULTI', `MULTI 3: SET ${k}:m, INCR ${k}:a, GET ${k}:m`, 3, true],
        ['MULTI', `MULTI 2: INCR ${k}:m, GET ${k}:m`, 2, false],
        ['DEL', `DEL ${k}:a`, 1, false],
        ['QUIT', 'QUIT', 1, false],
      ],
    );
  });

  test(`${c.label}: a Redis restart in the middle of traffic: queued commands keep their context, the app sees what it sees without the agent`, async () => {
    const SCRIPT = `${CLIENT_JS}
const readline = require('node:readline');
const AGENT = process.env.APP_AGENT === '1';
const api = AGENT ? require('hatch-agent') : { withRequestId: (id, fn) => fn(), getRequestId: () => undefined };
const events = [];
if (AGENT) require('node:diagnostics_channel').subscribe('hatch:db.query', (e) => events.push([e.requestId, e.text, e.error]));
const lines = readline.createInterface({ input: process.stdin });
const next = () => new Promise((ok) => lines.once('line', ok));
const say = (m) => process.stdout.write(m + '\\n');
(async () => {
  const client = await connected(makeClient());
  const r = ops(client);
  const before = [];
  for (let i = 0; i < 5; i++) before.push(await settle(api.withRequestId('before-' + i, () => r.set('rs:' + i, 'v' + i))));
  // Traffic that keeps going through the restart: what it sees is summarised, not compared one by one.
  let traffic = true;
  const seen = { ok: 0, err: 0, okAfter: 0 };
  let restarted = false;
  const loop = (async () => {
    while (traffic) {
      const x = await settle(api.withRequestId('traffic', () => r.get('rs:0')));
      if (x.ok !== undefined) { seen.ok++; if (restarted) seen.okAfter++; } else seen.err++;
      await new Promise((ok) => setTimeout(ok, 5));
    }
  })();
  say('stop');
  await next();
  // Down means: not ready, and a reconnect refused. Not ready alone is racy: node-redis 4.1 could be
  // "ready" again on a connection the dying server's backlog took, and a queued command written there
  // failed with EPIPE, in either run.
  const refused = r.refusals();
  for (let t = 0; (r.up() || r.refusals() === refused) && t < 400; t++) await new Promise((ok) => setTimeout(ok, 25));
  const queued = [];
  for (let i = 0; i < 3; i++)
    queued.push(api.withRequestId('outage-' + i, () => r.set('rs:' + i, 'q' + i).then((v) => ({ ok: v, ctx: api.getRequestId() }), (e) => ({ err: plainError(e) }))));
  say('start');
  await next();
  const q = await Promise.all(queued);
  restarted = true;
  const afterwards = [];
  for (let i = 0; i < 5; i++) afterwards.push(await settle(api.withRequestId('after-' + i, () => r.get('rs:' + i))));
  await new Promise((ok) => setTimeout(ok, 100));
  traffic = false;
  await loop;
  await r.close();
  say(JSON.stringify({ before, queued: q, afterwards, okAfter: seen.okAfter > 0, events }));
  lines.close();
})();
`;
    const file = writeApp(SCRIPT);
    const runOnce = (agent) =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [...(agent ? ['-r', 'hatch-agent'] : []), file], {
          cwd: appDir,
          env: { ...process.env, ...c.env, REDIS_URL: redis.url, HATCH_STATSD: 'off', APP_AGENT: agent ? '1' : '0' },
        });
        let out = '';
        let err = '';
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`restart script timed out\n${out}\n${err}`));
        }, 60000);
        child.stderr.on('data', (d) => (err += d));
        child.stdout.on('data', async (d) => {
          out += d;
          try {
            if (out.endsWith('stop\n') && !out.includes('stopped')) {
              out += 'stopped\n';
              await new Promise((ok) => setTimeout(ok, 100)); // traffic before the stop
              await redis.stop();
              child.stdin.write('stopped\n');
            } else if (out.endsWith('start\n') && !out.includes('started')) {
              out += 'started\n';
              await new Promise((ok) => setTimeout(ok, 300)); // the queued commands wait
              await redis.start();
              child.stdin.write('started\n');
            }
          } catch (e) {
            reject(e);
          }
        });
        child.on('close', (code) => {
          clearTimeout(timer);
          resolve({ code, stderr: err, result: JSON.parse(out.trim().split('\n').pop()) });
        });
      });
    const without = await runOnce(false);
    const withAgent = await runOnce(true);
    assert.equal(without.code, 0, without.stderr);
    assert.equal(withAgent.code, 0, withAgent.stderr);
    assert.equal(withAgent.stderr, without.stderr);
    const { events, ...seen } = withAgent.result;
    const { events: none, ...seenWithout } = without.result;
    assert.deepEqual(none, []);
    // What the app saw, context aside (without the agent there is none).
    const noCtx = (s) => ({ ...s, queued: s.queued.map(({ ctx, ...rest }) => rest) });
    assert.deepEqual(noCtx(seen), noCtx(seenWithout));
    assert.deepEqual(
      seen.queued,
      [0, 1, 2].map((i) => ({ ok: 'OK', ctx: `outage-${i}` })),
    );
    // The server restarted empty: the values read afterwards are the ones the queued commands wrote.
    assert.deepEqual(
      seen.afterwards.slice(0, 3),
      [0, 1, 2].map((i) => ({ ok: `q${i}` })),
    );
    assert.equal(seen.okAfter, true, 'traffic succeeds again after the restart');
    // The queued commands are timed in their callers' context, and so is everything after the restart;
    // each once, although the client sends it twice (queued offline, then flushed at ready).
    for (let i = 0; i < 3; i++)
      assert.deepEqual(
        events.filter(([id]) => id === `outage-${i}`),
        [[`outage-${i}`, `SET rs:${i}`, false]],
        JSON.stringify(events),
      );
    for (let i = 0; i < 5; i++) {
      assert.deepEqual(
        events.filter(([id]) => id === `before-${i}`),
        [[`before-${i}`, `SET rs:${i}`, false]],
      );
      assert.deepEqual(
        events.filter(([id]) => id === `after-${i}`),
        [[`after-${i}`, `GET rs:${i}`, false]],
      );
    }
    assert.ok(
      events.every(([id, text]) => ['GET rs:0', 'QUIT'].includes(text) || /^(before|after|outage)-/.test(id)),
      JSON.stringify(events),
    );
  });
}

test('HATCH_DISABLE=redis leaves ioredis and node-redis untouched, without a warning line', async () => {
  const SCRIPT = `
const dc = require('node:diagnostics_channel');
const WRAPPED = Symbol.for('hatch-agent.wrapped');
const events = [];
dc.subscribe('hatch:db.query', (e) => events.push(e.text));
(async () => {
  const out = {};
  for (const { lib, kind } of ${JSON.stringify(clients.map(({ lib, kind }) => ({ lib, kind })))}) {
    let c;
    if (kind === 'ioredis') {
      const Redis = require(lib);
      c = new Redis(process.env.REDIS_URL);
      await c.get('disabled');
      out[lib] = Redis.prototype.sendCommand[WRAPPED] === true;
      c.disconnect();
    } else {
      c = require(lib).createClient({ url: process.env.REDIS_URL });
      await c.connect();
      await c.get('disabled');
      await c.quit();
    }
  }
  console.log(JSON.stringify({ wrapped: out, events: events.length }));
})();
`;
  const file = writeApp(SCRIPT);
  const env = { REDIS_URL: redis.url, HATCH_LOG: 'info' };
  const off = await runScript(null, { file, env: { ...env, HATCH_DISABLE: 'redis' } });
  const on = await runScript(null, { file, env });
  assert.equal(off.code, 0, off.stderr);
  assert.equal(off.stderr, '');
  const o = JSON.parse(off.stdout);
  assert.equal(o.events, 0);
  assert.ok(
    Object.values(o.wrapped).every((w) => w === false),
    off.stdout,
  );
  const n = JSON.parse(on.stdout);
  assert.equal(n.events, clients.length * 2 - Object.keys(n.wrapped).length); // a GET each, and node-redis's QUIT
  assert.ok(
    Object.values(n.wrapped).every((w) => w === true),
    on.stdout,
  );
});

for (const c of clients.filter((x) => x.kind === 'ioredis')) {
  test(`${c.label}: with enableAutoPipelining each command is timed on its own, in its own caller's context`, async () => {
    const SCRIPT = `
const dc = require('node:diagnostics_channel');
const { withRequestId, getRequestId } = require('hatch-agent');
const Redis = require(process.env.APP_LIB);
const events = [];
dc.subscribe('hatch:db.query', (e) => events.push([e.requestId, e.text, e.commands]));
(async () => {
  const c = new Redis(process.env.REDIS_URL, { enableAutoPipelining: true });
  await new Promise((ok) => c.once('ready', ok));
  events.length = 0;
  const seen = await Promise.all(Array.from({ length: 50 }, (_, i) => withRequestId('auto-' + i, async () => {
    await c.set('auto:' + i, 'secret-' + i);
    const v = await c.get('auto:' + i);
    return [v, getRequestId()];
  })));
  c.disconnect();
  console.log(JSON.stringify({ seen, events }));
})();
`;
    const r = await runScript(SCRIPT, { env: { ...c.env, REDIS_URL: redis.url } });
    assert.equal(r.code, 0, r.stderr);
    const { seen, events } = JSON.parse(r.stdout);
    assert.deepEqual(
      seen,
      seen.map((_, i) => [`secret-${i}`, `auto-${i}`]),
    );
    assert.deepEqual(
      events.sort(),
      Array.from({ length: 50 }, (_, i) => [
        [`auto-${i}`, `GET auto:${i}`, 1],
        [`auto-${i}`, `SET auto:${i}`, 1],
      ])
        .flat()
        .sort(),
    );
  });
}
