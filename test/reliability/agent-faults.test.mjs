// The agent's own failures stay the agent's: with HATCH_TEST_FAULT=<name> (src/fault.ts) the
// agent-side part of one wrapper throws on every call. For each name in src/fault.ts's
// FAULT_POINTS (read from the installed package), one app that goes through
// every patched module (http and http2 servers, http client, fetch, undici, pg pool/client/cursor, Express with
// a mounted router, res.render and an error through an error middleware to finalhandler, Fastify and
// Koa with a route that throws, hapi, ejs, pug, handlebars, nunjucks, pino, winston)
// must print exactly what it prints without the agent, exit the same, and the agent must say
// exactly one line about the fault, however many calls hit it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { runScript, writeApp, appDir } from '../support/app.mjs';

const DATABASE_URL = process.env.DATABASE_URL;

const APP = `
const http = require('node:http');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const PART = process.env.PART; // one slice of the app per run: start-up is what costs on a loaded VM
const pg = require('pg');
const Cursor = require('pg-cursor');
const undici = require('undici');

// Log records as the app's own sinks see them, minus the field the agent adds on purpose.
const records = [];
const strip = (o) => { const c = { ...o }; delete c.requestId; delete c.time; delete c.pid; delete c.hostname; return c; };
let plog, wlog;
if (PART === 'logs') {
  const pino = require('pino');
  const winston = require('winston');
  plog = pino({}, { write: (s) => records.push(['pino', strip(JSON.parse(s))]) });
  const { Writable } = require('node:stream');
  wlog = winston.createLogger({ format: winston.format.json(), transports: [new winston.transports.Stream({ stream: new Writable({ objectMode: true, write(info, _e, cb) { records.push(['winston', strip(JSON.parse(info[Symbol.for('message')]))]); cb(); } }) })] });
}

const views = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-faults-'));
fs.writeFileSync(path.join(views, 'page.ejs'), '<p><%= v %> <%= x %> <%= n %></p>');
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });

const backend = http.createServer((req, res) => res.end('backend ' + req.url));
// fetch and undici keep sockets alive between the app's requests; on a loaded machine a gap longer
// than Node's default 5 s let the backend close one as it was reused (ECONNRESET, either way).
backend.keepAliveTimeout = 600000;
const get = (url) => new Promise((ok, ko) => http.get(url, { agent: false }, (res) => { let b = ''; res.setEncoding('utf8'); res.on('data', (d) => (b += d)); res.on('end', () => ok(res.statusCode + ' ' + b)); }).on('error', ko));

async function work(id) {
  const b = 'http://127.0.0.1:' + backend.address().port;
  const r1 = await pool.query('SELECT $1::int * 2 AS v', [id]);
  const c = await pool.connect();
  const r2 = await c.query("SELECT 'x' || $1::text AS x", [String(id)]);
  c.release();
  const r3 = await new Promise((ok, ko) => pool.connect((e, client, done) => {
    if (e) return ko(e);
    client.query('SELECT 1 + $1::int AS n', [id], (e2, r) => { done(); e2 ? ko(e2) : ok(r); });
  }));
  const cc = await pool.connect();
  const cur = cc.query(new Cursor('SELECT generate_series(1, $1::int) AS n', [id]));
  const rows = await new Promise((ok, ko) => cur.read(10, (e, rs) => (e ? ko(e) : ok(rs))));
  await new Promise((ok) => cur.close(ok));
  cc.release();
  const f = await (await fetch(b + '/fetch/' + id)).text();
  const u = await (await undici.request(b + '/undici/' + id)).body.text();
  const h = await get(b + '/http/' + id);
  plog?.info({ id }, 'pino line');
  wlog?.info('winston line', { id });
  let t = '';
  if (PART === 'engines') {
    t = [
      require('ejs').render('<%= a %>', { a: id }),
      require('pug').render('b= a', { a: id }),
      require('handlebars').compile('{{a}}')({ a: id }),
      require('nunjucks').renderString('{{ a }}', { a: id }),
    ].join(',');
  }
  return { v: r1.rows[0].v, x: r2.rows[0].x, n: r3.rows[0].n, rows: rows.map((r) => r.n).join(''), f, u, h, t };
}

// Each part serves /<n> by running work(n) behind one framework (or plain http).
let fetchPage = get; // how the app's own pages are asked for (an http2 client for the http2 part)
async function serve() {
  if (PART === 'express') {
    const express = require('express');
    const app = express();
    app.set('views', views);
    app.set('view engine', 'ejs');
    const api = express.Router();
    api.get('/items/:id', async (req, res, next) => {
      try {
        const w = await work(Number(req.params.id));
        res.render('page', w, (err, html) => (err ? next(err) : res.send(html + JSON.stringify(w))));
      } catch (e) { next(e); }
    });
    // The run's last request: an error through an error middleware (which passes it on) to
    // finalhandler's 500 (what the express-error and finalhandler points are on).
    api.get('/nothing', (req, res, next) => next(new Error('nothing here')));
    api.use((err, req, res, next) => next(err));
    app.use('/api', api);
    const ex = http.createServer(app);
    await new Promise((r) => ex.listen(0, '127.0.0.1', r));
    return 'http://127.0.0.1:' + ex.address().port + '/api/items/';
  }
  if (PART === 'fastify') {
    const fy = require('fastify')();
    fy.get('/fy/:id', async (req) => work(Number(req.params.id)));
    fy.get('/nothing', async () => { throw new Error('nothing here'); }); // the fastify-error point's 500
    await fy.listen({ port: 0, host: '127.0.0.1' });
    return 'http://127.0.0.1:' + fy.server.address().port + '/fy/';
  }
  if (PART === 'http2') {
    const http2 = require('node:http2');
    const h2 = http2.createServer((req, res) => work(Number(req.url.slice(4))).then((w) => res.end(JSON.stringify(w)), (e) => { res.statusCode = 500; res.end(String(e)); }));
    await new Promise((r) => h2.listen(0, '127.0.0.1', r));
    const session = http2.connect('http://127.0.0.1:' + h2.address().port);
    fetchPage = (url) => new Promise((ok, ko) => {
      const s = session.request({ ':path': new URL(url).pathname });
      let b = '';
      let status;
      s.setEncoding('utf8');
      s.on('response', (h) => (status = h[':status']));
      s.on('data', (d) => (b += d));
      s.on('end', () => ok(status + ' ' + b));
      s.on('error', ko);
      s.end();
    });
    return 'http://127.0.0.1:' + h2.address().port + '/h2/';
  }
  if (PART === 'hapi') {
    const Hapi = require('@hapi/hapi');
    const server = Hapi.server({ port: 0, host: '127.0.0.1' });
    server.route({ method: 'GET', path: '/h/{id}', handler: (request) => work(Number(request.params.id)) });
    // The run's last request: a handler that throws, so hapi answers 500 (what the hapi-error point is on).
    server.route({ method: 'GET', path: '/nothing', handler: () => { throw new Error('nothing here'); } });
    await server.start();
    return 'http://127.0.0.1:' + server.info.port + '/h/';
  }
  if (PART === 'koa') {
    const Koa = require('koa');
    const Router = require('@koa/router');
    const koa = new Koa();
    const router = new Router();
    router.get('/k/:id', async (ctx) => { ctx.body = await work(Number(ctx.params.id)); });
    router.get('/nothing', () => { throw new Error('nothing here'); }); // the koa-error point's 500
    koa.use(router.routes());
    const ks = http.createServer(koa.callback());
    await new Promise((r) => ks.listen(0, '127.0.0.1', r));
    return 'http://127.0.0.1:' + ks.address().port + '/k/';
  }
  const plain = http.createServer((req, res) => work(Number(req.url.slice(3))).then((w) => res.end(JSON.stringify(w)), (e) => { res.statusCode = 500; res.end(String(e)); }));
  await new Promise((r) => plain.listen(0, '127.0.0.1', r));
  return 'http://127.0.0.1:' + plain.address().port + '/p/';
}

(async () => {
  await new Promise((r) => backend.listen(0, '127.0.0.1', r));
  const base = await serve();
  const out = [];
  for (let i = 1; i <= 3; i++) out.push(await fetchPage(base + i));
  out.push(await fetchPage(base.slice(0, base.lastIndexOf('/', base.length - 2) + 1) + 'nothing'));
  await new Promise((r) => setTimeout(r, 50)); // winston writes asynchronously
  console.log(JSON.stringify({ out, records }, null, 1));
  fs.rmSync(views, { recursive: true, force: true });
  process.exit(0);
})().catch((e) => { console.error('APP FAILED', e); process.exit(3); });
`;

// Every fault point, from the list the installed agent exports (src/fault.ts), so a point added
// there is tested here without an edit. Every slice of the app runs the core (http server and
// client, fetch, undici, pg); a point reached only by another slice names it below.
const { FAULT_POINTS } = createRequire(import.meta.url)(
  path.resolve(appDir, 'node_modules/hatch-agent/dist/src/fault.js'),
);
const SLICE = {
  'express-use': 'express',
  'express-read': 'express',
  'express-route': 'express',
  'express-render': 'express',
  'express-error': 'express',
  finalhandler: 'express',
  fastify: 'fastify',
  'fastify-error': 'fastify',
  koa: 'koa',
  'koa-error': 'koa',
  'koa-compose': 'koa',
  render: 'engines',
  pino: 'logs',
  winston: 'logs',
  'http2-server': 'http2',
  'http2-server-close': 'http2',
  'http2-server-echo': 'http2',
  'hapi-server': 'hapi',
  hapi: 'hapi',
  'hapi-error': 'hapi',
};
const FAULTS = Object.fromEntries(FAULT_POINTS.map((name) => [name, SLICE[name] ?? 'core']));
test('the fault list is there, and every slice named here is for a point in it', () => {
  assert.ok(
    Array.isArray(FAULT_POINTS) && FAULT_POINTS.length > 0,
    'hatch-agent/dist/src/fault.js exports FAULT_POINTS',
  );
  assert.deepEqual(
    Object.keys(SLICE).filter((n) => !FAULT_POINTS.includes(n)),
    [],
    'SLICE names points src/fault.ts no longer has',
  );
});
// HATCH_TEST_FAULTS=a,b runs only those (a quick check of one wrapper); all by default.
const only = process.env.HATCH_TEST_FAULTS?.split(',').filter((n) => n in FAULTS);
if (only?.length) for (const n of Object.keys(FAULTS)) if (!only.includes(n)) delete FAULTS[n];
const PARTS = [...new Set(Object.values(FAULTS))];

const agentLines = (stderr) => stderr.split('\n').filter((l) => l.startsWith('hatch-agent '));
const otherStderr = (stderr) =>
  stderr
    .split('\n')
    .filter((l) => !l.startsWith('hatch-agent '))
    .join('\n');

test(
  'each wrapper that fails on its agent side leaves the app as it is without the agent, with one log line',
  { timeout: 1800000 },
  async (t) => {
    const file = writeApp(APP);
    const env = (part, extra = {}) => ({ DATABASE_URL, PART: part, ...extra });
    // Something must listen, or the wrappers' publishing side (the close listener, a call's end, a
    // render's timing) never runs and its fault cannot fire: the flight recorder listens to every
    // channel and writes only its own file (StatsD is off in test apps).
    const recorded = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-faults-recorder-'));
    t.after(() => fs.rmSync(recorded, { recursive: true, force: true }));
    const listen = (job) => ({ HATCH_FLIGHT_RECORDER: path.join(recorded, `${job}.jsonl`) });
    // Without the agent (the reference), with it and no fault (control), and each fault: two at a
    // time, since each run is an app start on a shared 2-core VM.
    const jobs = [
      ...PARTS.map((part) => ['base', part, { file, agent: false, env: env(part) }]),
      ...PARTS.map((part) => ['control', part, { file, env: env(part, listen(`control-${part}`)) }]),
      ...Object.entries(FAULTS).map(([name, part]) => [
        name,
        part,
        { file, env: env(part, { HATCH_TEST_FAULT: name, ...listen(name) }) },
      ]),
    ];
    const results = new Map();
    await Promise.all(
      [1, 2].map(async () => {
        for (let job = jobs.shift(); job; job = jobs.shift()) {
          const [name, part, opts] = job;
          results.set(`${name} ${part}`, await runScript('', { ...opts, timeout: 600000 })); // one run took 220 s at load 25
        }
      }),
    );
    const base = {};
    for (const part of PARTS) {
      const b = (base[part] = results.get(`base ${part}`));
      assert.equal(b.code, 0, `${part}: ${b.stderr}`);
      const out = JSON.parse(b.stdout);
      assert.equal(out.out.length, 4);
      assert.ok(
        out.out.slice(0, 3).every((l) => l.startsWith('200 ')),
        b.stdout,
      );
      if (part === 'logs') assert.equal(out.records.length, 6, b.stdout);
      if (part === 'engines') assert.match(b.stdout, /1,\\u003cb\\u003e1|1,<b>1/);
      await t.test(`control ${part}: no fault, same output, nothing logged`, () => {
        const r = results.get(`control ${part}`);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, b.stdout);
        assert.deepEqual(agentLines(r.stderr), []);
      });
    }
    for (const [name, part] of Object.entries(FAULTS)) {
      await t.test(`HATCH_TEST_FAULT=${name} (${part})`, () => {
        const base = results.get(`base ${part}`);
        const expected = JSON.parse(base.stdout);
        const r = results.get(`${name} ${part}`);
        assert.equal(r.code, base.code, `exit code\n${r.stderr}`);
        assert.equal(r.signal, base.signal);
        assert.deepEqual(JSON.parse(r.stdout), expected);
        assert.equal(r.stdout, base.stdout);
        const lines = agentLines(r.stderr);
        // The fault fired (its message is in the line), so the point is reached, and it was reported
        // once, not once per call.
        assert.notEqual(
          lines.length,
          0,
          `nothing reached fault('${name}') in the ${part} slice: no call site uses the name, or the point needs another slice (SLICE above)`,
        );
        assert.equal(lines.length, 1, `agent lines:\n${lines.join('\n')}`);
        assert.match(lines[0], new RegExp(`^hatch-agent warn: .*hatch-agent test fault: ${name}\\b`));
        assert.equal(otherStderr(r.stderr), otherStderr(base.stderr));
      });
    }
  },
);
