// Faults around the app: StatsD unresolvable or its port closed, PostgreSQL stopped mid-run and
// started again, a downstream service that cuts sockets mid-response, and an app that throws in a
// handler or leaves a promise rejection unhandled. For each, the app answers (status and body),
// prints and exits as the same app does without the agent, and the agent recovers when the part
// comes back (metrics flow once StatsD listens, queries are commented and counted after PostgreSQL
// returns, IDs propagate again after the cut sockets).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { startApp, runScript, writeApp } from '../support/app.mjs';
import { startPostgres, stopPostgres } from '../support/postgres.mjs';
import { closedUdpPort } from '../support/udp.mjs';
import { DOWNSTREAM, request, ALLOWED_ID } from './support.mjs';

const RUN = randomBytes(4).toString('hex');
const STARTUP = 90000;
const agentLines = (stderr) => stderr.split('\n').filter((l) => l.startsWith('hatch-agent '));
const until = async (fn, ms, what) => {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > end) throw new Error(`${what}: not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
};

/** A UDP listener on a given port: lines received, from the moment it binds. */
async function listenOn(port) {
  const sock = dgram.createSocket('udp4');
  const lines = [];
  sock.on('message', (m) => lines.push(...m.toString('utf8').split('\n').filter(Boolean)));
  sock.bind(port, '127.0.0.1');
  await once(sock, 'listening');
  return { lines, close: () => sock.close() };
}

let down;
before(async () => {
  down = await startApp(DOWNSTREAM, { agent: false, timeout: STARTUP });
});
after(async () => {
  await down?.stop();
});

// A script that serves a few requests to itself (each with a query) and exits on its own.
const STATSD_SCRIPT = `
const http = require('node:http');
const pg = require('pg');
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
const server = http.createServer(async (req, res) => {
  const r = await pool.query("SELECT 'statsd-${RUN}' AS s");
  res.end(req.url + ' ' + r.rows[0].s);
});
server.listen(0, '127.0.0.1', async () => {
  const get = (p) => new Promise((ok) => http.get('http://127.0.0.1:' + server.address().port + p, { agent: false }, (res) => { let b = ''; res.on('data', (d) => (b += d)); res.on('end', () => ok(res.statusCode + ' ' + b)); }));
  for (let i = 0; i < 10; i++) console.log(await get('/s' + i));
  await new Promise((r) => setTimeout(r, 500)); // several flush intervals
  server.close();
  await pool.end();
  console.log('done');
});
`;

test(
  'StatsD unresolvable or its port closed: same output and exit as without the agent, one line at most',
  { timeout: 300000 },
  async () => {
    const file = writeApp(STATSD_SCRIPT);
    const env = { DATABASE_URL: process.env.DATABASE_URL, HATCH_STATSD: 'on', HATCH_STATSD_FLUSH_MS: '100' };
    const base = await runScript('', { file, agent: false, env, timeout: 120000 });
    assert.equal(base.code, 0, base.stderr);
    assert.match(base.stdout, /done\n$/);
    const port = await closedUdpPort();
    const cases = {
      unresolvable: { HATCH_STATSD_HOST: 'no-such-host.invalid' },
      'closed port': { HATCH_STATSD_HOST: '127.0.0.1', HATCH_STATSD_PORT: String(port) },
    };
    for (const [name, extra] of Object.entries(cases)) {
      const r = await runScript('', { file, env: { ...env, ...extra }, timeout: 120000 });
      assert.equal(r.code, base.code, `${name}: ${r.stderr}`);
      assert.equal(r.signal, base.signal, name);
      assert.equal(r.stdout, base.stdout, name);
      const lines = agentLines(r.stderr);
      assert.ok(lines.length <= 1, `${name}: ${lines.join('\n')}`);
      if (name === 'unresolvable') assert.match(lines[0] ?? '', /no-such-host\.invalid/);
      assert.equal(
        r.stderr
          .split('\n')
          .filter((l) => !l.startsWith('hatch-agent '))
          .join('\n'),
        base.stderr,
        name,
      );
    }
  },
);

test(
  'StatsD port closed, then a daemon starts listening on it: metrics arrive without a restart',
  { timeout: 300000 },
  async () => {
    const port = await closedUdpPort();
    const app = await startApp(
      `
const http = require('node:http');
const server = http.createServer((req, res) => res.end('ok ' + req.url));
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`,
      {
        timeout: STARTUP,
        env: {
          HATCH_STATSD: 'on',
          HATCH_STATSD_PORT: String(port),
          HATCH_STATSD_FLUSH_MS: '100',
          HATCH_RUNTIME_METRICS_MS: '0',
        },
      },
    );
    try {
      for (let i = 0; i < 5; i++) assert.equal((await request(`${app.url}/down${i}`)).body, `ok /down${i}`);
      await new Promise((r) => setTimeout(r, 500)); // flushes into the closed port
      const daemon = await listenOn(port);
      try {
        await until(
          async () => {
            assert.equal((await request(`${app.url}/up`)).body, 'ok /up');
            return daemon.lines.some((l) => l.startsWith('hatch.http.server.'));
          },
          60000,
          'http.server metrics after StatsD came up',
        );
      } finally {
        daemon.close();
      }
      assert.equal(app.child.exitCode, null);
      assert.ok(agentLines(app.stderr()).length <= 1, app.stderr());
    } finally {
      await app.stop();
    }
  },
);

const PG_APP = `
const http = require('node:http');
const pg = require('pg');
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 3, connectionTimeoutMillis: 20000 });
pool.on('error', () => {}); // idle clients lose their server when it stops
const server = http.createServer(async (req, res) => {
  const t = new URL(req.url, 'http://x').searchParams.get('t');
  try {
    const r = await pool.query("SELECT '" + t + "' AS t");
    res.end('ok ' + r.rows[0].t);
  } catch (err) {
    res.statusCode = 503;
    res.end('db error ' + (err.code || err.message));
  }
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

test(
  'PostgreSQL stopped mid-run and restarted: same answers as without the agent; commented and counted again after',
  { timeout: 400000 },
  async () => {
    const shared = process.env.DATABASE_URL;
    delete process.env.DATABASE_URL; // a private server: the shared one must never be stopped
    let db;
    try {
      db = await startPostgres();
    } finally {
      if (shared !== undefined) process.env.DATABASE_URL = shared;
    }
    const stats = dgram.createSocket('udp4');
    const lines = [];
    stats.on('message', (m) => lines.push(...m.toString('utf8').split('\n').filter(Boolean)));
    stats.bind(0, '127.0.0.1');
    await once(stats, 'listening');
    const env = { DATABASE_URL: db.url };
    const [app, bare] = await Promise.all([
      startApp(PG_APP, {
        timeout: STARTUP,
        env: {
          ...env,
          HATCH_STATSD: 'on',
          HATCH_STATSD_PORT: String(stats.address().port),
          HATCH_STATSD_FLUSH_MS: '100',
        },
      }),
      startApp(PG_APP, { agent: false, timeout: STARTUP, env }),
    ]);
    try {
      const both = async (t) => {
        const [a, b] = await Promise.all([request(`${app.url}/?t=${t}`), request(`${bare.url}/?t=${t}`)]);
        assert.deepEqual({ status: a.status, body: a.body }, { status: b.status, body: b.body }, t);
        return a;
      };
      for (let i = 0; i < 5; i++) assert.equal((await both(`before-${RUN}-${i}`)).status, 200);

      await db.stop();
      await new Promise((r) => setTimeout(r, 1000)); // let both pools see their idle clients die
      for (let i = 0; i < 5; i++) {
        const r = await both(`during-${RUN}-${i}`);
        assert.equal(r.status, 503);
        assert.match(r.body, /^db error (ECONNREFUSED|57P01|.*terminat)/);
      }

      await db.start();
      await until(
        async () =>
          (await request(`${app.url}/?t=probe`)).status === 200 &&
          (await request(`${bare.url}/?t=probe`)).status === 200,
        60000,
        'both apps query again',
      );
      lines.length = 0;
      const ids = [];
      for (let i = 0; i < 5; i++) {
        const r = await both(`after-${RUN}-${i}`);
        assert.equal(r.status, 200);
        assert.match(r.headers['x-request-id'], ALLOWED_ID);
        ids.push(r.headers['x-request-id']);
      }
      // Commented again: each query after the restart carries its request's ID in the server's log.
      await until(
        async () => ids.every((id, i) => db.readLog().includes(`/* ${id} */ SELECT 'after-${RUN}-${i}' AS t`)),
        30000,
        'commented queries in the private log',
      );
      // Counted again: db.query timings reach StatsD.
      await until(
        async () => lines.some((l) => /^hatch\.db\.query\.pg\.SELECT\.ok:[\d.]+\|ms/.test(l)),
        30000,
        `db.query metrics after the restart (got ${lines.slice(0, 5)})`,
      );
      assert.equal(app.child.exitCode, null);
      assert.equal(bare.child.exitCode, null);
    } finally {
      await app.stop();
      await bare.stop();
      stats.close();
      await stopPostgres(db);
    }
  },
);

const CUT_SCRIPT = `
const http = require('node:http');
const down = process.env.DOWNSTREAM;
const describe = (e) => e.name + ': ' + e.message + (e.cause ? ' / ' + (e.cause.code || e.cause.message) : '') + (e.code ? ' ' + e.code : '');
const viaHttp = (path) => new Promise((ok) => {
  const req = http.get(down + path, { agent: false }, (res) => {
    let b = '';
    res.on('data', (d) => (b += d));
    res.on('error', (e) => ok('http res error ' + describe(e) + ' after ' + JSON.stringify(b)));
    res.on('aborted', () => {});
    res.on('end', () => ok('http end ' + res.statusCode + ' ' + JSON.stringify(b) + ' complete=' + res.complete));
  });
  req.on('error', (e) => ok('http req error ' + describe(e)));
});
const viaFetch = async (path) => {
  try {
    const r = await fetch(down + path);
    try { return 'fetch ' + r.status + ' ' + (await r.text()); } catch (e) { return 'fetch body error ' + describe(e); }
  } catch (e) { return 'fetch error ' + describe(e); }
};
const server = http.createServer(async (req, res) => {
  const out = [];
  for (const p of ['/cut', '/hangup']) {
    out.push(await viaHttp(p));
    out.push(await viaFetch(p));
  }
  out.push(await viaHttp('/rec?expect=cut-http-' + process.env.RUN_TAG));
  out.push(await viaFetch('/rec?expect=cut-fetch-' + process.env.RUN_TAG));
  res.end(JSON.stringify(out));
});
server.listen(0, '127.0.0.1', () => {
  http.get('http://127.0.0.1:' + server.address().port + '/', { agent: false }, (res) => {
    let b = '';
    res.on('data', (d) => (b += d));
    res.on('end', () => { console.log(res.statusCode, b); server.close(); });
  });
});
`;

test(
  'a downstream that destroys sockets mid-response: same errors as without the agent, propagation after',
  { timeout: 300000 },
  async () => {
    const file = writeApp(CUT_SCRIPT);
    const base = await runScript('', {
      file,
      agent: false,
      env: { DOWNSTREAM: down.url, RUN_TAG: `bare-${RUN}` },
      timeout: 120000,
    });
    const r = await runScript('', { file, env: { DOWNSTREAM: down.url, RUN_TAG: `agent-${RUN}` }, timeout: 120000 });
    assert.equal(base.code, 0, base.stderr);
    assert.equal(r.code, 0, r.stderr);
    const strip = (s) => s.replaceAll(`bare-${RUN}`, 'X').replaceAll(`agent-${RUN}`, 'X');
    assert.equal(strip(r.stdout), strip(base.stdout));
    assert.match(base.stdout, /error/); // the cuts did surface as errors in the app
    assert.deepEqual(agentLines(r.stderr), []);
    assert.equal(r.stderr, base.stderr);
    // After the cut sockets, the agent still propagates the request's ID.
    const stats = JSON.parse((await request(`${down.url}/stats`)).body);
    const h = stats.received[`cut-http-agent-${RUN}`];
    const f = stats.received[`cut-fetch-agent-${RUN}`];
    assert.equal(h?.length, 1);
    assert.match(h[0], ALLOWED_ID);
    assert.deepEqual(f, h);
    assert.deepEqual(stats.received[`cut-http-bare-${RUN}`], ['-']);
  },
);

// Node prints an uncaught error with the file, the source line and a stack; the stack's frames
// differ with the agent (its wrapper is one of them), every other line must not.
const notFrames = (stderr) =>
  stderr
    .split('\n')
    .filter((l) => !/^\s+at /.test(l) && !l.startsWith('hatch-agent '))
    .join('\n');

const CRASH_SCRIPT = `
const http = require('node:http');
const mode = process.env.MODE;
if (process.env.HANDLERS) {
  process.on('uncaughtException', (e) => console.log('uncaughtException', e.message));
  process.on('unhandledRejection', (e) => console.log('unhandledRejection', e.message));
}
const server = http.createServer((req, res) => {
  if (req.url === '/sync') throw new Error('boom-sync');
  if (req.url === '/reject') { Promise.reject(new Error('boom-async')); return res.end('answered'); }
  if (req.url === '/async') return (async () => { throw new Error('boom-async-fn'); })();
  res.end('fine');
});
// Generous timeouts: only the request whose handler throws (and is kept alive by a handler) ends by it.
const get = (p, ms = 120000) => new Promise((ok) => {
  const req = http.get('http://127.0.0.1:' + server.address().port + p, { agent: false }, (res) => { let b = ''; res.on('data', (d) => (b += d)); res.on('end', () => ok(res.statusCode + ' ' + b)); });
  req.on('error', (e) => ok('client error ' + (e.code || e.message)));
  req.setTimeout(ms, () => req.destroy(new Error('timeout')));
});
server.listen(0, '127.0.0.1', async () => {
  console.log('first', await get('/'));
  console.log(mode, await get('/' + mode, 5000));
  await new Promise((r) => setTimeout(r, 200));
  console.log('after', await get('/'));
  server.close();
});
`;

test(
  'a handler that throws, a rejection nobody handles: same output, stderr and exit code as without the agent',
  { timeout: 300000 },
  async (t) => {
    const file = writeApp(CRASH_SCRIPT);
    for (const mode of ['sync', 'reject', 'async']) {
      for (const handlers of [false, true]) {
        await t.test(`${mode}${handlers ? ' with process handlers' : ''}`, async () => {
          const env = { MODE: mode, ...(handlers ? { HANDLERS: '1' } : {}) };
          const [base, r] = await Promise.all([
            runScript('', { file, agent: false, env, timeout: 120000 }),
            runScript('', { file, env, timeout: 120000 }),
          ]);
          assert.equal(r.code, base.code, r.stderr);
          assert.equal(r.signal, base.signal);
          assert.equal(r.stdout, base.stdout);
          assert.equal(notFrames(r.stderr), notFrames(base.stderr));
          assert.deepEqual(agentLines(r.stderr), []);
          if (!handlers) assert.equal(base.code, 1, 'the crash happens without the agent too');
          else assert.match(base.stdout, /after 200 fine/);
        });
      }
    }
  },
);
