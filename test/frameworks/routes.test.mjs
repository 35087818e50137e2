// Route templates under `node -r hatch-agent`: Express (nested routers, a sub-app mounted at a
// parameterised path, static files), Fastify (prefixed plugins) and Koa with @koa/router (nested
// routers). The StatsD lines carry the templates, never the concrete IDs, and requests no route
// took are `unmatched`. The apps answer the same with and without the agent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as http from 'node:http';
import { startApp, get, appDir } from '../support/app.mjs';
import { udpListener, statsdValues } from '../support/udp.mjs';

const version = (m) =>
  JSON.parse(fs.readFileSync(path.join(appDir, 'node_modules', m, 'package.json'), 'utf8')).version;

// Concrete IDs no metric may contain.
const IDS = ['918273', '564738', '102938', '847561'];

const EXPRESS = `
const express = require('express');
const path = require('node:path');
const fs = require('node:fs');
fs.mkdirSync(path.join(__dirname, 'public'), { recursive: true });
fs.writeFileSync(path.join(__dirname, 'public', 'site.css'), 'body{}');
const app = express();
const api = express.Router();
const users = express.Router({ mergeParams: true });
users.get('/:userId', (req, res) => res.json({ user: req.params.userId }));
users.get('/:userId/orders/:orderId', (req, res) => res.json(req.params));
api.use('/users', users);
api.get('/health', (req, res) => res.send('ok'));
app.use('/api', api);
const tenant = express();
tenant.get('/items/:itemId', (req, res) => res.send('item ' + req.params.itemId));
app.use('/t/:tenant', tenant);
// One router mounted at two places: the request's own mount names it.
const shared = express.Router();
shared.get('/:key', (req, res) => res.send('shared ' + req.params.key));
app.use('/one', shared);
app.use('/two/:n', shared);
app.use('/static', express.static(path.join(__dirname, 'public')));
app.get('/', (req, res) => res.send('home'));
const server = app.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

const FASTIFY = `
const fastify = require('fastify')();
fastify.get('/users/:userId', async (req) => ({ user: req.params.userId }));
fastify.register(async (api) => {
  api.get('/orders/:orderId', async (req) => ({ order: req.params.orderId }));
}, { prefix: '/v1' });
fastify.listen({ port: 0, host: '127.0.0.1' }).then(() => console.log('listening ' + fastify.server.address().port));
`;

const KOA = `
const Koa = require('koa');
const Router = require('@koa/router');
const app = new Koa();
const router = new Router();
const users = new Router();
users.get('/:userId', (ctx) => { ctx.body = { user: ctx.params.userId }; });
users.get('/:userId/orders/:orderId', async (ctx) => { await new Promise((r) => setTimeout(r, 2)); ctx.body = ctx.params; });
router.use('/api/users', users.routes());
router.get('/health', (ctx) => { ctx.body = 'ok'; });
// A middleware that awaits before routing: the route is read when the request ends.
app.use(async (ctx, next) => { await new Promise((r) => setTimeout(r, 1)); await next(); });
app.use(router.routes());
const server = app.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

const CASES = [
  {
    name: `express@${version('express')}`,
    source: EXPRESS,
    requests: [
      ['/api/users/918273', '/api/users/:userId', 200],
      ['/api/users/564738/orders/102938', '/api/users/:userId/orders/:orderId', 200],
      ['/api/health', '/api/health', 200],
      ['/t/847561/items/918273', '/t/:tenant/items/:itemId', 200],
      ['/one/918273', '/one/:key', 200],
      ['/two/564738/102938', '/two/:n/:key', 200],
      ['/', '/', 200],
      ['/static/site.css', 'unmatched', 200],
      ['/nothing/918273', 'unmatched', 404],
    ],
  },
  {
    name: `fastify@${version('fastify')}`,
    source: FASTIFY,
    requests: [
      ['/users/918273', '/users/:userId', 200],
      ['/v1/orders/564738', '/v1/orders/:orderId', 200],
      ['/nothing/102938', 'unmatched', 404],
    ],
  },
  {
    name: `koa@${version('koa')} with @koa/router@${version('@koa/router')}`,
    source: KOA,
    requests: [
      ['/api/users/918273', '/api/users/:userId', 200],
      ['/api/users/564738/orders/102938', '/api/users/:userId/orders/:orderId', 200],
      ['/health', '/health', 200],
      ['/nothing/847561', 'unmatched', 404],
    ],
  },
];

// Only a failing test waits this long; a loaded machine can take seconds to start hot-shots and send.
const WAIT = 60_000;

let udp;
before(async () => {
  udp = await udpListener();
});
after(() => udp?.close());

/** A POST with an empty body; resolves with its status. */
function post(url) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Every request once; returns [status, content-type, body] per request. */
async function run(app, requests) {
  const out = [];
  for (const [p] of requests) {
    const r = await get(app.url + p);
    out.push([r.status, r.headers['content-type'], r.body]);
  }
  return out;
}

for (const c of CASES) {
  test(`${c.name}: http.server lines carry the route template, never the concrete IDs`, async () => {
    const plainApp = await startApp(c.source, { agent: false });
    const plain = await run(plainApp, c.requests);
    await plainApp.stop();

    udp.clear();
    const app = await startApp(c.source, {
      env: {
        HATCH_STATSD: 'on',
        HATCH_STATSD_PORT: String(udp.port),
        HATCH_STATSD_FLUSH_MS: '100',
        HATCH_STATSD_TAGS: 'dogstatsd',
      },
    });
    try {
      const seen = await run(app, c.requests);
      assert.deepEqual(seen, plain, 'the app answers exactly as without the agent');
      const expected = c.requests.map(([, route, status]) => `route:${route},status_code:${status}`);
      const count = (ls, tags) =>
        statsdValues(ls.filter((l) => l.startsWith('hatch.http.server:') && l.endsWith(`|#method:GET,${tags}`))).length;
      await udp.waitFor(
        (ls) => expected.every((tags) => count(ls, tags) >= expected.filter((t) => t === tags).length),
        WAIT,
      );
      // A double count can come in a later flush. A POST after all the requests (no GET line
      // counts it) is timed when it ends, after every timing above was recorded: once its line is
      // here, all flushes before it are too; three more flush intervals leave room for a late one.
      await post(app.url + '/nothing/after');
      await udp.waitFor(
        (ls) => ls.some((l) => l.startsWith('hatch.http.server:') && l.includes('|#method:POST,')),
        WAIT,
      );
      await new Promise((r) => setTimeout(r, 300));
      const lines = [...udp.lines];
      const server = lines.filter((l) => l.startsWith('hatch.http.server:'));
      for (const tags of new Set(expected)) {
        assert.equal(count(lines, tags), expected.filter((t) => t === tags).length, `one timing for ${tags}`);
      }
      for (const l of server) for (const id of IDS) assert.ok(!l.includes(id), `no concrete ID in ${l}`);
    } finally {
      await app.stop();
    }
  });
}

test(`express@${version('express')}: plain StatsD names join the sanitized template`, async () => {
  udp.clear();
  const app = await startApp(EXPRESS, {
    env: { HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(udp.port), HATCH_STATSD_FLUSH_MS: '100' },
  });
  try {
    assert.equal((await get(app.url + '/api/users/564738/orders/102938')).status, 200);
    assert.equal((await get(app.url + '/nothing/102938')).status, 404);
    const lines = await udp.waitFor(
      (ls) =>
        ls.some((l) => l.startsWith('hatch.http.server.GET.api_users_userId_orders_orderId.200:')) &&
        ls.some((l) => l.startsWith('hatch.http.server.GET.unmatched.404:')),
      WAIT,
    );
    for (const l of lines) for (const id of IDS) assert.ok(!l.includes(id), `no concrete ID in ${l}`);
  } finally {
    await app.stop();
  }
});
