// The app the transparency test runs, with and without `-r hatch-agent` (copied into the fixture
// folder, where the libraries are installed). It uses every patched module inside a request
// (http/https/http2 server and client, pg with pg-pool, pg-cursor and pg-query-stream, undici and fetch,
// express with finalhandler, fastify, koa with @koa/router, ejs, pug, handlebars, nunjucks, pino, winston;
// bullmq, node-cron and cron are walked but not run), then
// prints one JSON report on stdout:
// - `shapes`: every function reachable from the modules' exports and prototypes, and every
//   function the app got back or was called with (compiled templates, Express's `next`, an engine's
//   callback), described by what code can see of it (name, length, own keys and descriptors,
//   prototype, [[Prototype]], toString). The test compares the run under the agent with the run
//   without it: this finds a replaced function whether the agent marked it or not.
// - `instances`: instanceof relations the libraries document.
// - under the agent only, `wrappers`: every function the agent marked (found on the same walk, and
//   in the test registry HATCH_TEST_WRAPPERS=1 keeps), compared with the original it holds, and
//   `escaped`: registry entries the walk did not reach and no app-visible place showed.
// Limitations: the walk goes two levels down from each root (exports, classes' prototypes, one
// instance's prototype chain); a wrapper installed deeper is found only through the registry.
'use strict';
const http = require('node:http');
const https = require('node:https');
const http2 = require('node:http2');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { createHash } = require('node:crypto');
const pg = require('pg');
const PgPool = require('pg-pool');
const Cursor = require('pg-cursor');
const QueryStream = require('pg-query-stream');
const streamCursor = require(
  require.resolve('pg-cursor', { paths: [path.dirname(require.resolve('pg-query-stream'))] }),
);
const undici = require('undici');
const express = require('express');
const fastify = require('fastify');
const Koa = require('koa');
const KoaRouter = require('@koa/router');
const ejs = require('ejs');
const pug = require('pug');
const handlebars = require('handlebars');
const nunjucks = require('nunjucks');
const pino = require('pino');
const winston = require('winston');
// Queues and schedulers: their exports and prototypes are walked (no Redis is needed for that).
const bullmq = require('bullmq');
const nodeCron = require('node-cron');
const cron = require('cron');
// ioredis as BullMQ loads it (its own copy, when it brings one): the Redis patch wraps its classes.
const ioredis = require(require.resolve('ioredis', { paths: [path.dirname(require.resolve('bullmq'))] }));

const WRAPPED = Symbol.for('hatch-agent.wrapped');
const ORIGINAL = Symbol.for('hatch-agent.original');
const MARKERS = new Set([WRAPPED, ORIGINAL, Symbol.for('hatch-agent.wasOwn')]);
const registry = globalThis[Symbol.for('hatch-agent.testWrappers')];
const hasOwn = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
const keyName = (k) => (typeof k === 'symbol' ? `[${k.description}]` : k);

/** What code can see of a function, as JSON (comparable across two processes). */
function shape(fn) {
  const keys = Reflect.ownKeys(fn).filter((k) => !MARKERS.has(k));
  const own = {};
  for (const k of keys) {
    const d = Object.getOwnPropertyDescriptor(fn, k);
    let value;
    if ('value' in d)
      value =
        k === 'prototype'
          ? protoShape(d.value)
          : typeof d.value === 'function'
            ? 'function'
            : typeof d.value === 'object' && d.value !== null
              ? 'object'
              : d.value;
    else value = 'accessor';
    own[keyName(k)] = { value, writable: d.writable, enumerable: d.enumerable, configurable: d.configurable };
  }
  const proto = Object.getPrototypeOf(fn);
  return {
    name: fn.name,
    length: fn.length,
    keys: keys.map(keyName),
    own,
    proto: proto === null ? null : (proto.constructor?.name ?? '?'),
    toString: createHash('sha1').update(Function.prototype.toString.call(fn)).digest('hex').slice(0, 12),
  };
}
// A prototype object's own keys are seen by the walk itself (a wrapper added to one is a path of its own).
const protoShape = (p) => (p === null ? null : typeof p);

// ---- the walk: every function on the modules' exports and prototypes -------------------------
const shapes = {};
const found = new Map(); // marked wrapper -> where the walk found it
const seenBy = new Map();
/** The objects already walked for a module: each is walked once, under the first name found. */
const walked = (module) => seenBy.get(module) ?? seenBy.set(module, new Set()).get(module);
function walk(module, root, label, depth, seen = walked(module)) {
  if (root === null || (typeof root !== 'object' && typeof root !== 'function') || seen.has(root)) return;
  if (root === Object.prototype || root === Function.prototype) return;
  seen.add(root);
  for (const k of Reflect.ownKeys(root)) {
    if (MARKERS.has(k) || (typeof root === 'function' && k === 'prototype')) continue; // prototypes: see below
    const d = Object.getOwnPropertyDescriptor(root, k);
    if (!d || !('value' in d)) continue; // getters are not called
    const v = d.value;
    const where = `${label}.${keyName(k)}`;
    if (typeof v === 'function') {
      shapes[`${module} ${where}`] = { ...shape(v), holder: { writable: d.writable, enumerable: d.enumerable } };
      if (v[WRAPPED] === true && !found.has(v)) found.set(v, { module, where });
      if (depth > 0 && k !== 'constructor') {
        walk(module, v, where, depth - 1, seen);
        // a plain function's prototype ({ constructor }) is no class: nothing to walk there
        if (v.prototype && Reflect.ownKeys(v.prototype).some((p) => p !== 'constructor'))
          walk(module, v.prototype, `${where}.prototype`, depth - 1, seen);
      }
    } else if (v !== null && typeof v === 'object' && depth > 0) {
      walk(module, v, where, depth - 1, seen);
    }
  }
}
/** An instance's prototype chain, up to Object.prototype. */
function walkChain(module, instance, label) {
  let i = 0;
  for (let p = Object.getPrototypeOf(instance); p !== null && p !== Object.prototype; p = Object.getPrototypeOf(p))
    walk(module, p, `${label}<${i++}>`, 0, new Set());
}

// ---- functions the app got back or was called with ------------------------------------------
function seenByApp(where, fn) {
  shapes[`app ${where}`] = shape(fn);
  if (typeof fn === 'function' && fn[WRAPPED] === true && !found.has(fn))
    found.set(fn, { module: where.split(' ')[0], where });
}
const identities = {};
const instances = {};

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'transparency-'));
fs.writeFileSync(path.join(tmp, 'page.ejs'), '<p><%= a %></p>');
fs.writeFileSync(path.join(tmp, 'page.pug'), 'p= a');
fs.writeFileSync(path.join(tmp, 'page.njk'), '<p>{{ a }}</p>');
fs.writeFileSync(path.join(tmp, 'page.custom'), 'custom');

async function exercise(base) {
  // templates: compiled functions go to the app
  seenByApp('ejs compile(filename)', ejs.compile('<%= a %>', { filename: path.join(tmp, 'foo.ejs') }));
  seenByApp('ejs compile()', ejs.compile('<%= a %>'));
  seenByApp('ejs compile(async)', ejs.compile('<%= a %>', { async: true }));
  seenByApp('pug compile()', pug.compile('p= a'));
  seenByApp('pug compileFile()', pug.compileFile(path.join(tmp, 'page.pug')));
  seenByApp('handlebars compile()', handlebars.compile('{{a}}'));
  const hb2 = handlebars.create();
  seenByApp('handlebars create().compile()', hb2.compile('{{a}}'));
  walk('handlebars', hb2, 'create()', 0);
  ejs.compile('<%= a %>')({ a: 1 });
  ejs.render('<%= a %>', { a: 1 });
  await new Promise((resolve, reject) =>
    ejs.renderFile(path.join(tmp, 'page.ejs'), { a: 1 }, (err, s) => (err ? reject(err) : resolve(s))),
  );
  pug.render('p= a', { a: 1 });
  await new Promise((resolve, reject) =>
    pug.renderFile(path.join(tmp, 'page.pug'), { a: 1 }, (err, s) => (err ? reject(err) : resolve(s))),
  );
  handlebars.compile('{{a}}')({ a: 1 });
  const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(tmp));
  instances['nunjucks Environment'] = env instanceof nunjucks.Environment;
  env.renderString('{{ a }}', { a: 1 });
  await new Promise((resolve, reject) =>
    env.render('page.njk', { a: 1 }, (err, s) => (err ? reject(err) : resolve(s))),
  );

  // pg, pg-pool, pg-cursor, pg-query-stream
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
  instances['pg Pool is pg-pool'] = pool instanceof PgPool;
  await pool.query('SELECT 1');
  const client = await pool.connect();
  instances['pg Client'] = client instanceof pg.Client;
  await new Promise((resolve, reject) => client.query('SELECT 1', (err) => (err ? reject(err) : resolve())));
  const appCallback = function appCallback(_err) {};
  const q = new pg.Query('SELECT 1');
  await new Promise((resolve) => {
    client.query(q, (...a) => {
      appCallback(...a);
      resolve();
    });
  });
  const q2 = new pg.Query('SELECT 2');
  const cb2 = () => {};
  await new Promise((resolve) => {
    q2.on('end', resolve);
    q2.on('error', resolve);
    client.query(q2, cb2);
  });
  identities['pg Query.callback is the app callback'] = q2.callback === cb2;
  const cursor = client.query(new Cursor('SELECT generate_series(1, 3) AS n'));
  instances['pg-cursor Cursor'] = cursor instanceof Cursor;
  await new Promise((resolve, reject) =>
    cursor.read(10, function (err) {
      identities['pg-cursor read callback this is the cursor'] = this === cursor;
      return err ? reject(err) : resolve();
    }),
  );
  await new Promise((resolve) => cursor.close(resolve));
  const stream = client.query(new QueryStream('SELECT generate_series(1, 3) AS n'));
  instances['pg-query-stream QueryStream'] = stream instanceof QueryStream;
  for await (const _row of stream);
  client.release();
  await new Promise((resolve) =>
    pool.connect(function (err, c, done) {
      seenByApp('pg-pool connect callback done', done);
      done();
      resolve();
    }),
  );
  await pool.end();
  walkChain('pg', client, 'client');
  walkChain('pg-cursor', cursor, 'cursor');
  walkChain('pg-query-stream', stream, 'stream');

  // outgoing: http, https, fetch, undici
  await new Promise((resolve, reject) =>
    http
      .get(`${base}/leaf`, (res) => {
        instances['http IncomingMessage'] = res instanceof http.IncomingMessage;
        res.resume();
        res.on('end', resolve);
      })
      .on('error', reject),
  );
  const creq = http.request(`${base}/leaf`);
  instances['http ClientRequest'] = creq instanceof http.ClientRequest;
  identities['for-in over a ClientRequest lists emit'] = (() => {
    for (const k in creq) if (k === 'emit') return true;
    return false;
  })();
  await new Promise((resolve) => creq.on('response', (r) => r.resume().on('end', resolve)).end());
  await new Promise((resolve) => https.get('https://127.0.0.1:1/').on('error', () => resolve()));
  await (await fetch(`${base}/leaf`)).text();
  await (await undici.request(`${base}/leaf`)).body.text();

  // an http2 server (h2c) answering one stream: its server and stream classes are the ones patched
  const h2 = http2.createServer((req, res) => res.end('h2'));
  h2.on('stream', (s) => (h2Classes.stream ??= Object.getPrototypeOf(s)));
  await new Promise((resolve) => h2.listen(0, '127.0.0.1', resolve));
  const session = http2.connect(`http://127.0.0.1:${h2.address().port}`);
  await new Promise((resolve, reject) =>
    session.request({ ':path': '/' }).on('error', reject).on('end', resolve).resume().end(),
  );
  session.close();
  h2Classes.server = Object.getPrototypeOf(h2);
  await new Promise((resolve) => h2.close(resolve));
}
const h2Classes = {};

// ---- servers ---------------------------------------------------------------------------------
async function main() {
  const app = express();
  app.engine('custom', function (file, options, callback) {
    seenByApp('express engine callback', callback);
    callback(null, 'custom');
  });
  app.set('views', tmp);
  const router = express.Router();
  router.get('/leaf', (req, res) => res.send('leaf'));
  router.use((req, res, next) => {
    seenByApp('express next (mounted router)', next);
    next();
  });
  app.use('/m', router);
  app.use('/mw', function mounted(req, res, next) {
    seenByApp('express next (mounted middleware)', next);
    next();
  });
  app.get('/leaf', (req, res) => res.send('leaf'));
  app.get('/page', (req, res) => res.render('page.custom'));
  app.get('/ejs', (req, res) => res.render('page.ejs', { a: 1 }));
  app.get('/run', async (req, res, next) => {
    try {
      await exercise(`http://127.0.0.1:${server.address().port}`);
      res.send('ran');
    } catch (err) {
      next(err);
    }
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  instances['http Server'] = server instanceof http.Server;
  const base = `http://127.0.0.1:${server.address().port}`;
  for (const p of ['/run', '/m/leaf', '/m/none', '/mw/x', '/page', '/ejs']) await (await fetch(base + p)).text();

  const f = fastify();
  f.get('/f/:id', async () => 'f');
  await f.listen({ port: 0, host: '127.0.0.1' });
  await (await fetch(`http://127.0.0.1:${f.server.address().port}/f/1`)).text();
  walk('fastify', f, 'instance', 0);
  await f.close();

  const koa = new Koa();
  const kr = new KoaRouter();
  kr.get('/k/:id', (ctx) => {
    ctx.body = 'k';
  });
  koa.use(kr.routes());
  instances['koa Application'] = koa instanceof Koa;
  const ks = koa.listen(0, '127.0.0.1');
  await new Promise((r) => ks.once('listening', r));
  await (await fetch(`http://127.0.0.1:${ks.address().port}/k/1`)).text();
  ks.close();

  const lines = [];
  const logger = pino({}, { write: (l) => lines.push(l) });
  logger.info('x');
  instances['pino child shares the logger chain'] = Object.getPrototypeOf(logger.child({})) === logger;
  walkChain('pino', logger, 'logger');
  const w = winston.createLogger({
    transports: [
      new winston.transports.Stream({ stream: new (require('node:stream').Writable)({ write: (c, e, cb) => cb() }) }),
    ],
  });
  w.info('x');
  if (typeof winston.Logger === 'function' && winston.Logger.prototype)
    instances['winston Logger'] = w instanceof winston.Logger;
  walkChain('winston', w, 'logger');
  server.close();

  // the modules' exports and classes' prototypes
  const probe = express.Router();
  probe.use('/p', () => {});
  // Prototypes first, so that a wrapper is named by the prototype it sits on.
  const roots = {
    http: {
      'Server.prototype': http.Server.prototype,
      'ServerResponse.prototype': http.ServerResponse.prototype,
      'OutgoingMessage.prototype': http.OutgoingMessage.prototype,
      'ClientRequest.prototype': http.ClientRequest.prototype,
      http,
    },
    https: { 'Server.prototype': https.Server.prototype, https },
    http2: { 'Http2Server.prototype': h2Classes.server, 'ServerHttp2Stream.prototype': h2Classes.stream, http2 },
    pg: { 'Client.prototype': pg.Client.prototype, 'Query.prototype': pg.Query.prototype, pg },
    'pg-pool': { 'Pool.prototype': PgPool.prototype, Pool: PgPool },
    // pg-query-stream may bring a pg-cursor of its own (it does next to pg-cursor 2.0.0): patched too
    'pg-cursor': {
      'Cursor.prototype': Cursor.prototype,
      Cursor,
      "pg-query-stream's Cursor.prototype": streamCursor.prototype,
    },
    'pg-query-stream': { 'QueryStream.prototype': QueryStream.prototype, QueryStream },
    undici: { undici },
    express: {
      application: express.application,
      'Router.prototype':
        typeof express.Router.prototype?.use === 'function' ? express.Router.prototype : express.Router,
      'Route.prototype': express.Route.prototype,
      'Layer.prototype': Object.getPrototypeOf(probe.stack[0]),
      request: express.request,
      response: express.response,
      express,
    },
    fastify: { fastify },
    koa: { 'Application.prototype': Koa.prototype, Koa },
    '@koa/router': { 'Router.prototype': KoaRouter.prototype, Router: KoaRouter },
    ejs: { ejs },
    pug: { pug },
    handlebars: { handlebars },
    nunjucks: { 'Environment.prototype': nunjucks.Environment.prototype, nunjucks },
    pino: { pino },
    winston: { winston },
    bullmq: {
      'Queue.prototype': bullmq.Queue.prototype,
      'Worker.prototype': bullmq.Worker.prototype,
      'Job.prototype': bullmq.Job.prototype,
      bullmq,
    },
    'node-cron': { 'node-cron': nodeCron },
    cron: { 'CronJob.prototype': cron.CronJob.prototype, cron },
    ioredis: { 'Redis.prototype': ioredis.Redis.prototype, 'Pipeline.prototype': ioredis.Pipeline.prototype, ioredis },
  };
  // finalhandler's export is one function, answered to require with a wrapper: the app's require
  // gets the one Express got.
  seenByApp('finalhandler export', require('finalhandler'));
  // koa-compose's export is answered with a copy compiled from its own source (patches/koa-compose.ts).
  seenByApp('koa-compose export', require('koa-compose'));
  for (const [module, named] of Object.entries(roots)) {
    const seen = walked(module);
    for (const [label, r] of Object.entries(named)) walk(module, r, label, 2, seen);
  }

  const report = { shapes, instances, identities };
  if (registry !== undefined) {
    report.wrappers = [];
    for (const [wrapper, at] of found) report.wrappers.push({ ...at, ...compare(wrapper, wrapper[ORIGINAL]) });
    const reached = new Set(found.keys());
    report.registry = registry.length;
    report.escaped = registry.filter((r) => !reached.has(r.wrapper)).map((r) => r.where);
    // per-call wrappers (a callback handed to an engine, each render's) are many: compare them all
    for (const r of registry)
      if (!reached.has(r.wrapper))
        report.wrappers.push({
          module: r.where.split(' ')[0],
          where: `${r.where} (registry)`,
          ...compare(r.wrapper, r.original),
        });
  }
  fs.rmSync(tmp, { recursive: true, force: true });
  process.stdout.write(JSON.stringify(report) + '\n');
}

/** What differs between a wrapper and the original it holds. */
function compare(w, o) {
  const diffs = [];
  if (typeof o !== 'function') return { diffs: ['no original'] };
  if (w.name !== o.name) diffs.push(`name: ${JSON.stringify(w.name)} vs ${JSON.stringify(o.name)}`);
  if (w.length !== o.length) diffs.push(`length: ${w.length} vs ${o.length}`);
  const wk = Reflect.ownKeys(w).filter((k) => !MARKERS.has(k));
  const ok = Reflect.ownKeys(o).filter((k) => !MARKERS.has(k));
  const sorted = (a) => a.map(keyName).sort().join(',');
  if (sorted(wk) !== sorted(ok)) diffs.push(`own keys: ${sorted(wk)} vs ${sorted(ok)}`);
  else if (wk.map(keyName).join(',') !== ok.map(keyName).join(',')) diffs.push('own key order');
  for (const k of ok) {
    const a = Object.getOwnPropertyDescriptor(w, k);
    const b = Object.getOwnPropertyDescriptor(o, k);
    if (!a) continue;
    for (const f of ['writable', 'enumerable', 'configurable'])
      if (a[f] !== b[f]) diffs.push(`descriptor ${keyName(k)}.${f}`);
    if (k !== 'name' && k !== 'length' && 'value' in a !== 'value' in b) diffs.push(`descriptor ${keyName(k)} kind`);
    else if ('value' in a && a.value !== b.value) diffs.push(`value ${keyName(k)}`);
  }
  if (hasOwn(o, 'prototype') !== hasOwn(w, 'prototype') || w.prototype !== o.prototype) diffs.push('prototype');
  if (Object.getPrototypeOf(w) !== Object.getPrototypeOf(o)) diffs.push('[[Prototype]]');
  if (Function.prototype.toString.call(w) !== Function.prototype.toString.call(o)) diffs.push('toString');
  return { name: o.name, diffs };
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
