// The app the hatch tests run under `node -r hatch-agent`: a pg.Pool and a standalone pg.Client on
// DATABASE_URL, a backend server it calls with fetch (with a query string, which the hatches must not
// show), and a render (published on `hatch:render`, as a render patch would). Its own 404 names
// nothing about the hatches.
export const TOKEN = 'hatch-test-token-0123456789abcdef';

export const APP = `
const http = require('node:http');
const dc = require('node:diagnostics_channel');
const pg = require('pg');
const { getRequestId, withRequestId } = require('hatch-agent');
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 3 });
pool.on('error', () => {}); // idle clients lose their server when it stops; the app carries on
const client = process.env.APP_NO_CLIENT ? null : new pg.Client({ connectionString: process.env.DATABASE_URL });
client?.on('error', () => {});
let locker = null;
let second = null;
const waiting = [];
const backend = http.createServer((req, res) => res.end('backend ok'));
backend.keepAliveTimeout = 120000; // no idle-socket race with the keep-alive agent on a slow machine
(async () => {
  await client?.connect();
  await new Promise((r) => backend.listen(0, '127.0.0.1', r));
  const server = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://x');
      if (url.pathname === '/work') {
        await pool.query("SELECT 'work' AS w, pg_sleep(0.02)");
        const r = await fetch('http://127.0.0.1:' + backend.address().port + '/b?key=secret-in-the-query');
        await r.text();
        const start = performance.now();
        await new Promise((ok) => setTimeout(ok, 5));
        dc.channel('hatch:render').publish({ requestId: getRequestId(), engine: 'ejs', template: 'report', error: false, start, duration: performance.now() - start });
        res.setHeader('content-type', 'text/plain');
        return res.end('worked');
      }
      if (url.pathname === '/many' && client) {
        for (let i = 0; i < 150; i++) await client.query('SELECT $1::int AS i', [i]);
        return res.end('many');
      }
      // A query the handler does not wait for: it ends 50 ms after the response.
      if (url.pathname === '/fire') {
        pool.query("SELECT 'fired' AS f, pg_sleep(0.05)").catch(() => {});
        return res.end('fired');
      }
      // A worker's loop, as README shows it: one withRequestId scope per message, a query in each.
      if (url.pathname === '/messages') {
        const n = Number(url.searchParams.get('n'));
        let done = 0;
        for (let i = 0; i < n; i++)
          done += await withRequestId('msg-' + i, async () => (await pool.query('SELECT $1::int AS i', [i])).rowCount);
        return res.end(String(done));
      }
      // A client kept busy: /lock takes an advisory lock in a session of its own, /busy starts a
      // query on the standalone client that waits for it, /queue adds one more query behind that,
      // /unlock ends the locking session and answers with what both queries returned.
      if (url.pathname === '/lock' && client) {
        locker = new pg.Client({ connectionString: process.env.DATABASE_URL });
        await locker.connect();
        await locker.query('SELECT pg_advisory_lock(4242)');
        return res.end('locked');
      }
      if (url.pathname === '/busy' && client) {
        waiting.push(client.query("SELECT pg_advisory_xact_lock(4242), 'busy' AS q").then((r) => r.rows[0].q, String));
        return res.end('busy');
      }
      if (url.pathname === '/queue' && client) {
        waiting.push(client.query("SELECT 'queued' AS q").then((r) => r.rows[0].q, String));
        return res.end('queued');
      }
      if (url.pathname === '/unlock' && locker) {
        await locker.end();
        locker = null;
        res.setHeader('content-type', 'application/json');
        return res.end(JSON.stringify(await Promise.all(waiting.splice(0))));
      }
      // A second pool, made from options (not a connection string), then ended by the app.
      if (url.pathname === '/second-pool') {
        const u = new URL(process.env.DATABASE_URL);
        second = new pg.Pool({ host: u.hostname, port: Number(u.port), database: u.pathname.slice(1), user: decodeURIComponent(u.username), password: decodeURIComponent(u.password), max: 1 });
        await second.query('SELECT 2');
        return res.end('second');
      }
      if (url.pathname === '/end-second-pool' && second) {
        await second.end();
        return res.end('ended');
      }
      if (url.pathname === '/evil') {
        await pool.query("SELECT '<script>alert(1)</script>' AS x");
        return res.end('evil');
      }
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'x-app': 'own-404' });
      res.end('the app has no ' + url.pathname);
    } catch (err) {
      res.statusCode = 500;
      res.end(String(err));
    }
  });
  server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
})();
`;

/** Start-up allowance: the test VM is shared, and under load an app can take long to listen. */
export const STARTUP_MS = 90000;
/** Health checks' timeout in the tests: a loaded VM must not turn a live check into a failing one. */
export const SLOW_OK = '20000';

export const auth = (token = TOKEN) => ({ authorization: `Bearer ${token}` });

/** Polls fn until it returns a truthy value (or throws after timeoutMs). */
export async function until(fn, timeoutMs = 20000, what = 'condition') {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end)
      throw new Error(`${what} not reached within ${timeoutMs} ms; last: ${last?.stack ?? JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * A hapi app whose routes end in errors, for the errors list and the debug pages. `/boom` calls its
 * backend twice (fetch, then http.get, each URL with a secret in its query string) and throws a
 * TypeError: hapi answers its own Boom 500, and the agent's hapi patch captures the error with its
 * stack. `/status500` answers 500 with no error (a `status` record), `/big500` a 500 body larger
 * than the debug pages hold, `/pieces` a 503 written in two parts (the end waits for the first
 * write's callback), `/ok` 200, `/cookies` the Cookie header the app got. It never requires the
 * agent, so the tests run it with and without `-r hatch-agent` unchanged.
 */
export const ERRORS_APP = `
const http = require('node:http');
const Hapi = require('@hapi/hapi');
const backend = http.createServer((req, res) => res.end('backend ' + req.url));
backend.keepAliveTimeout = 120000;
const get = (url) => new Promise((ok, fail) => http.get(url, (r) => { r.resume(); r.on('end', ok); }).on('error', fail));
(async () => {
  await new Promise((r) => backend.listen(0, '127.0.0.1', r));
  const base = 'http://127.0.0.1:' + backend.address().port;
  const server = new Hapi.Server({ port: 0, host: '127.0.0.1' });
  server.route({ method: 'GET', path: '/boom', handler: async () => {
    await (await fetch(base + '/api/items/7?api_key=SECRET-FETCH-123')).text();
    await get(base + '/v2/users?token=SECRET-GET-456&x=1');
    throw new TypeError('boom from the route');
  } });
  server.route({ method: 'GET', path: '/status500', handler: (request, h) => h.response('the app says no').code(500) });
  server.route({ method: 'GET', path: '/big500', handler: (request, h) => h.response('x'.repeat(300 * 1024)).code(500) });
  server.route({ method: 'GET', path: '/ok', handler: () => 'ok' });
  server.route({ method: 'GET', path: '/pieces', handler: (request, h) => {
    const res = request.raw.res;
    res.statusCode = 503;
    res.write('part one, ', () => res.end('part two'));
    return h.abandon;
  } });
  server.route({ method: 'GET', path: '/cookies', handler: (request) => request.headers.cookie ?? '(none)' });
  await server.start();
  console.log('listening ' + server.info.port);
})();
`;

/**
 * Express, Fastify and Koa in one process, each with a route that answers 500 itself and one that
 * throws: how each framework writes its response (Express `end` with its own Content-Length and
 * ETag, Fastify `writeHead` then `end`, Koa `end`). Express listens on the port printed; GET /ports
 * on it gives the other two. It never requires the agent.
 */
export const FRAMEWORKS_APP = `
const express = require('express');
const Fastify = require('fastify');
const Koa = require('koa');
(async () => {
  const f = Fastify();
  f.get('/answer', async (req, reply) => reply.code(500).send({ fastify: 'answered 500' }));
  f.get('/throw', async () => { throw new Error('fastify threw'); });
  await f.listen({ port: 0, host: '127.0.0.1' });
  const k = new Koa();
  k.silent = true; // Koa's own stderr line for a thrown error is the same with and without the agent, but noisy
  k.use(async (ctx) => {
    if (ctx.path === '/answer') { ctx.status = 500; ctx.body = 'koa answered 500'; return; }
    throw new Error('koa threw');
  });
  const ks = await new Promise((r) => { const s = k.listen(0, '127.0.0.1', () => r(s)); });
  const e = express();
  e.get('/ports', (req, res) => res.json({ fastify: f.server.address().port, koa: ks.address().port }));
  e.get('/answer', (req, res) => res.status(500).send('express answered 500'));
  e.get('/throw', () => { throw new Error('express threw'); });
  e.use((err, req, res, next) => res.status(500).type('text').send('the app says: ' + err.message));
  const es = e.listen(0, '127.0.0.1', () => console.log('listening ' + es.address().port));
})();
`;
