// A finished request is not kept alive by the agent. A request's context outlives the request (a
// timer started in it; on Node 24 and 26 the keep-alive timeout Node starts for the connection in
// it), so whatever the context points to lives until the connection's next request: with Koa's
// context or hapi's request in it, the whole finished request (headers, body, response) stayed in
// memory on every idle keep-alive connection. Each app here keeps a WeakRef to its framework's
// request object, serves one request on a keep-alive connection that then stays open and idle, and
// answers a second request on another connection with whether that object survived two full GCs.
// Without the agent it never does; with the agent it must not either.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { startApp, get } from '../support/app.mjs';

// gc() without a node flag: the apps start exactly as a user's.
const GC = `
require('node:v8').setFlagsFromString('--expose-gc');
const collect = require('node:vm').runInNewContext('gc');
let held;
async function survived() {
  collect();
  await new Promise((r) => setTimeout(r, 20));
  collect();
  return held !== undefined && held.deref() !== undefined;
}`;

const APPS = {
  'node:http': `${GC}
const server = require('node:http').createServer(async (req, res) => {
  if (req.url === '/check') return res.end(JSON.stringify({ survived: await survived() }));
  held = new WeakRef(req);
  res.end('x'.repeat(1000));
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));`,
  koa: `${GC}
const Koa = require('koa');
const Router = require('@koa/router');
const app = new Koa();
const router = new Router();
router.get('/users/:id', (ctx) => { held = new WeakRef(ctx); ctx.body = 'x'.repeat(1000); });
router.get('/check', async (ctx) => { ctx.body = { survived: await survived() }; });
app.use(router.routes());
const server = app.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));`,
  hapi: `${GC}
const Hapi = require('@hapi/hapi');
(async () => {
  const server = new Hapi.Server({ host: '127.0.0.1', port: 0 });
  server.route({ method: 'GET', path: '/users/{id}', handler: (request) => { held = new WeakRef(request); return 'x'.repeat(1000); } });
  server.route({ method: 'GET', path: '/check', handler: async () => ({ survived: await survived() }) });
  await server.start();
  console.log('listening ' + server.info.port);
})();`,
};

/** One request on a keep-alive connection that stays open (the agent is returned for closing). */
async function keptAlive(url) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const status = await new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      })
      .on('error', reject);
  });
  return { agent, status };
}

async function check(source, agent) {
  const app = await startApp(source, { agent });
  try {
    const first = await keptAlive(`${app.url}/users/7`);
    assert.equal(first.status, 200);
    // The first connection stays open and idle while the second asks.
    const r = await get(`${app.url}/check`);
    first.agent.destroy();
    assert.equal(r.status, 200, r.body);
    return JSON.parse(r.body).survived;
  } finally {
    await app.stop();
  }
}

for (const [name, source] of Object.entries(APPS)) {
  test(`${name}: a finished request is collectable while its keep-alive connection idles, as without the agent`, async () => {
    assert.equal(await check(source, false), false, 'without the agent the request object is collected');
    assert.equal(
      await check(source, true),
      false,
      'under the agent the finished request object survived two full GCs on its idle connection',
    );
  });
}
