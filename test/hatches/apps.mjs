// The app the hatch tests run under `node -r hatch-agent`: a pg.Pool and a standalone pg.Client on
// DATABASE_URL, a backend server it calls with fetch, and a render (published on `hatch:render`,
// as a render patch would). Its own 404 names nothing about the hatches.
export const TOKEN = 'hatch-test-token-0123456789abcdef';

export const APP = `
const http = require('node:http');
const dc = require('node:diagnostics_channel');
const pg = require('pg');
const { getRequestId } = require('hatch-agent');
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
        const r = await fetch('http://127.0.0.1:' + backend.address().port + '/b');
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
