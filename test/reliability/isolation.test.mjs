// Request isolation under load: 2,000 requests, 200 at a time, into an app whose handler interleaves
// pg queries through a pool of 5 (promise and callback forms, so queued callbacks are resumed by
// other requests' releases), a fetch and an http.request to a second service, timers and a shared
// EventEmitter. Every request's SQL text carries its own tag as a literal; the test then checks that
// no ID crossed over, in three places the agent writes to:
// - PostgreSQL's statement log: each `/* id */` comment is the ID of the request whose literal follows;
// - the downstream service: each call arrived with the caller's X-Request-ID;
// - the agent's records: /_hatch/requests?format=json files each query under the right request,
//   and each pino line carries the ID of the request that wrote it.
// Half the requests bring their own X-Request-ID; the other half get a minted UUID, learnt from the
// response header.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startApp, UUID } from '../support/app.mjs';
import { waitForLog } from '../support/pglog.mjs';
import { DOWNSTREAM, request, pool, ALLOWED_ID, scaled } from './support.mjs';

const RUN = randomBytes(4).toString('hex');
const TOTAL = scaled(2000);
const CONCURRENCY = Math.min(200, TOTAL);
const TOKEN = 'reliability-isolation-token-0123456789';

const APP = `
const http = require('node:http');
const { EventEmitter } = require('node:events');
const pg = require('pg');
const pino = require('pino');
const { getRequestId } = require('hatch-agent');
const logger = pino({ base: undefined, timestamp: false });
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 5 });
const downstream = process.env.DOWNSTREAM;
const bus = new EventEmitter();
bus.setMaxListeners(0);
const slips = []; // places where the handler saw another request's ID
const check = (want, where) => { const id = getRequestId(); if (id !== want) slips.push(where + ' ' + want + ' saw ' + id); };
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
// Resolves at the request's 'close' (after the response's end): the call is complete, so its record
// is complete before this request answers (a call still closing after its request ended would join
// the record only when it closes).
const viaHttp = (url) => new Promise((ok, ko) => http.get(url, { agent: false }, (res) => res.resume()).on('close', ok).on('error', ko));

async function handle(t, id) {
  const q = (label) => pool.query("SELECT '" + t + "' AS t, '" + label + "' AS l").then((r) => {
    if (r.rows[0].t !== t) slips.push('row ' + t);
    check(id, 'after query ' + label);
  });
  await Promise.all([
    q('a'),
    fetch(downstream + '/rec?expect=' + t).then((r) => r.text()).then(() => check(id, 'after fetch')),
    sleep(Math.random() * 3).then(() => q('b')),
  ]);
  await new Promise((ok, ko) => {
    bus.once(t, () => {
      check(id, 'emitter');
      pool.query("SELECT '" + t + "' AS t, 'c' AS l", (err) => { check(id, 'pg callback'); err ? ko(err) : ok(); });
    });
    setTimeout(() => bus.emit(t), Math.random() * 3);
  });
  await viaHttp(downstream + '/rec?expect=' + t);
  check(id, 'after http.request');
  logger.info({ t }, 'handled');
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/slips') return res.end(JSON.stringify(slips));
  const t = url.searchParams.get('t');
  const id = getRequestId();
  handle(t, id).then(
    () => res.end(JSON.stringify({ t, id: getRequestId() })),
    // The cause says which part failed (fetch's own message is only 'fetch failed').
    (err) => { res.statusCode = 500; res.end(String(err) + (err.cause ? ' (cause: ' + (err.cause.code ?? '') + ' ' + err.cause.message + ')' : '')); },
  );
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

let down;
let app;
before(async () => {
  down = await startApp(DOWNSTREAM, { agent: false, timeout: 90000 });
  app = await startApp(APP, {
    timeout: 90000,
    env: {
      DOWNSTREAM: down.url,
      HATCH_TOKEN: TOKEN,
      HATCH_RECENT_REQUESTS: String(TOTAL + 100),
      HATCH_SLOW_REQUESTS: '0',
    },
  });
});
after(async () => {
  await app?.stop();
  await down?.stop();
});

test(
  `${TOTAL} requests at ${CONCURRENCY} concurrency: no request ID crosses to another request`,
  { timeout: 2400000 },
  async () => {
    const tags = Array.from({ length: TOTAL }, (_, i) => `iso-${RUN}-${i}`);
    // Own IDs for even tags (a mixed-case, dotted form to exercise the allowlist); odd ones get a UUID.
    const sent = (i) => (i % 2 === 0 ? `Req.${RUN}:${i}` : undefined);
    // A connection per request: a keep-alive socket the server times out while this loaded VM is
    // slow to reuse it ends in ECONNRESET, a client race that says nothing about the agent.
    const responses = await pool(tags, CONCURRENCY, (t, i) =>
      request(`${app.url}/?t=${t}`, { headers: sent(i) ? { 'x-request-id': sent(i) } : {} }).catch((e) => ({
        status: 0,
        body: String(e),
      })),
    );

    // Every request answered, with the ID it ran under, as the handler saw it at its end.
    const idOf = new Map();
    responses.forEach((r, i) => {
      assert.equal(r.status, 200, `request ${i}: ${r.body}`);
      const body = JSON.parse(r.body);
      assert.equal(body.t, tags[i]);
      assert.equal(body.id, r.headers['x-request-id'], `request ${i}`);
      if (sent(i)) assert.equal(body.id, sent(i));
      else assert.match(body.id, UUID);
      idOf.set(tags[i], body.id);
    });
    assert.equal(new Set(idOf.values()).size, TOTAL, 'every request has its own ID');
    assert.deepEqual(JSON.parse((await request(`${app.url}/slips`)).body), [], 'getRequestId() inside the handlers');

    // PostgreSQL's statement log: three queries per request, each commented with its own request's ID.
    const tagged = new RegExp(`SELECT '(iso-${RUN}-\\d+)' AS t, '([abc])' AS l`);
    const lines = await waitForLog(tagged, { count: TOTAL * 3, timeout: 120000 });
    assert.equal(lines.length, TOTAL * 3, 'statement log lines');
    const commented = /statement: \/\* (\S+) \*\/ SELECT '(iso-[0-9a-f]+-\d+)' AS t, '([abc])' AS l$/;
    const perTag = new Map();
    for (const line of lines) {
      const m = commented.exec(line);
      assert.ok(m, `uncommented or malformed: ${line}`);
      assert.equal(m[1], idOf.get(m[2]), `comment of ${m[2]}/${m[3]}: ${line}`);
      perTag.set(m[2], (perTag.get(m[2]) ?? '') + m[3]);
    }
    assert.equal(perTag.size, TOTAL);
    for (const [t, ls] of perTag) assert.equal([...ls].sort().join(''), 'abc', t);

    // The downstream service: two calls per request (fetch, http.request), each with the caller's ID.
    const stats = JSON.parse((await request(`${down.url}/stats`)).body);
    assert.equal(stats.count, TOTAL * 2);
    for (const t of tags) assert.deepEqual(stats.received[t], [idOf.get(t), idOf.get(t)], `downstream for ${t}`);

    // The agent's recent-requests store: each record's queries carry its own tag and ID.
    const recent = await request(`${app.url}/_hatch/requests?format=json`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(recent.status, 200);
    const records = JSON.parse(recent.body).recent.filter((r) => r.path === '/');
    assert.equal(records.length, TOTAL, 'records kept');
    const tagOf = new Map([...idOf].map(([t, id]) => [id, t]));
    for (const rec of records) {
      const t = tagOf.get(rec.id);
      assert.ok(t, `a record for an ID no request had: ${rec.id}`);
      const queries = rec.timeline.filter((e) => e.kind === 'query');
      const calls = rec.timeline.filter((e) => e.kind === 'call');
      assert.equal(queries.length, 3, `${rec.id}: ${JSON.stringify(rec.timeline)}`);
      for (const q of queries)
        assert.ok(q.label.startsWith(`/* ${rec.id} */ SELECT '${t}' AS t`), `${rec.id}: ${q.label}`);
      assert.equal(calls.length, 2, `${rec.id}: ${JSON.stringify(rec.timeline)}`);
    }

    // pino lines on the app's stdout: each carries the ID of the request that wrote it.
    const logs = app
      .stdout()
      .split('\n')
      .filter((l) => l.includes('"msg":"handled"'))
      .map((l) => JSON.parse(l));
    assert.equal(logs.length, TOTAL);
    for (const l of logs) {
      assert.match(l.requestId, ALLOWED_ID);
      assert.equal(l.requestId, idOf.get(l.t), JSON.stringify(l));
    }
  },
);
