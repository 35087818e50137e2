// The recent-requests store and the page helpers, in process against the built package: what is
// kept, in which order, and where the bounds are. Events go through the real diagnostics channels.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { RecentRequests, MAX_ENTRIES, MAX_SQL, MAX_PENDING, MAX_SCOPES } = require('../../dist/src/sinks/recent.js');
const { channels } = require('../../dist/src/bus.js');
const { escapeHtml, waterfall } = require('../../dist/src/hatches/pages.js');
const { redactEnv } = require('../../dist/src/hatches/redact.js');
const { callPath, MAX_PATH } = require('../../dist/src/client-call.js');

// As the http server patch publishes it: `start` is performance.now() when the request began.
function serve(id, duration, start = performance.now() - duration, error = undefined) {
  channels.httpServer.publish({
    requestId: id,
    method: 'GET',
    route: 'unmatched',
    path: '/' + id,
    statusCode: error?.status ?? 200,
    aborted: false,
    start,
    duration,
    error,
  });
}

const failure = (message) => ({
  kind: 'handler',
  name: 'TypeError',
  message,
  stack: ['at handler (app.js:3:9)'],
  status: 500,
});

test('recent keeps the last N newest first; slowest keeps the M slowest, slowest first', (t) => {
  const store = new RecentRequests(3, 2);
  store.start();
  t.after(() => store.stop());
  [5, 1, 9, 3, 7].forEach((d, i) => serve(`r${i}`, d));
  assert.deepEqual(
    store.recentRequests().map((r) => r.id),
    ['r4', 'r3', 'r2'],
  );
  assert.deepEqual(
    store.slowest().map((r) => [r.id, r.duration]),
    [
      ['r2', 9],
      ['r4', 7],
    ],
  );
  assert.equal(store.find('r0'), undefined); // 5 ms: pushed out of both
  assert.equal(store.find('r2').duration, 9); // out of recent, still among the slowest
  // Three more fast ones take every slot of the ring again: the slowest keep their own records.
  [0.5, 0.25, 0.125].forEach((d, i) => serve(`f${i}`, d));
  assert.deepEqual(
    store.recentRequests().map((r) => [r.id, r.path, r.duration]),
    [
      ['f2', '/f2', 0.125],
      ['f1', '/f1', 0.25],
      ['f0', '/f0', 0.5],
    ],
  );
  assert.deepEqual(
    store.slowest().map((r) => [r.id, r.path, r.duration]),
    [
      ['r2', '/r2', 9],
      ['r4', '/r4', 7],
    ],
  );
});

test('a record says when its request began (ISO 8601); find gives the newest of two with one ID', (t) => {
  const store = new RecentRequests(5, 5);
  store.start();
  t.after(() => store.stop());
  const before = Date.now();
  serve('same', 40);
  serve('other', 1);
  serve('same', 2);
  const after = Date.now();
  const [newest] = store.recentRequests();
  assert.equal(newest.id, 'same');
  assert.match(newest.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const began = Date.parse(newest.at);
  // 2 ms before the event, within the 1 ms that whole-millisecond wall clocks round away.
  assert.ok(began >= before - 3 && began <= after - 1, `${newest.at} is not 2 ms before the event`);
  assert.equal(store.find('same').duration, 2); // the newer one, though the older is slower
  assert.equal(store.slowest()[0].duration, 40);
  assert.deepEqual(store.find('other').timeline, []);
  assert.deepEqual(JSON.parse(JSON.stringify(store.find('other'))).errors, []);
});

test('a timeline: entries at their offset from the request, capped with a count, SQL cut', (t) => {
  const store = new RecentRequests(10, 10);
  store.start();
  t.after(() => store.stop());
  const t0 = performance.now();
  channels.httpClient.publish({
    requestId: 'a',
    method: 'GET',
    host: 'api',
    statusCode: 200,
    start: t0 + 30,
    duration: 5,
  });
  channels.dbQuery.publish({
    requestId: 'a',
    system: 'pg',
    text: 'SELECT ' + 'x'.repeat(MAX_SQL + 50),
    error: false,
    start: t0 + 10,
    duration: 2,
  });
  for (let i = 0; i < MAX_ENTRIES + 5; i++)
    channels.render.publish({
      requestId: 'a',
      engine: 'ejs',
      template: 't',
      error: false,
      start: t0 + 40,
      duration: 1,
    });
  channels.error.publish({ kind: 'uncaught', requestId: 'a', message: 'Error: boom' });
  serve('a', performance.now() - t0 + 50, t0);
  const r = store.find('a');
  assert.equal(r.timeline.length, MAX_ENTRIES);
  assert.equal(r.dropped, 7);
  assert.deepEqual(
    r.timeline.slice(0, 2).map((e) => [e.kind, e.offset]),
    [
      ['query', 10],
      ['call', 30],
    ],
  );
  assert.equal(r.timeline[0].label.length, MAX_SQL + 1);
  assert.deepEqual(r.errors, ['uncaught: Error: boom']);
  assert.equal(store.inFlight, 0);
});

test('two requests with one ID in flight (a service calling itself): each takes what began in its own span', (t) => {
  const store = new RecentRequests(10, 10);
  store.start();
  t.after(() => store.stop());
  const t0 = performance.now();
  channels.dbQuery.publish({
    requestId: 'same',
    system: 'pg',
    text: 'SELECT outer',
    error: false,
    start: t0 + 1,
    duration: 2,
  });
  channels.dbQuery.publish({
    requestId: 'same',
    system: 'pg',
    text: 'SELECT inner',
    error: false,
    start: t0 + 12,
    duration: 2,
  });
  serve('same', 10, t0 + 10); // the inner request, from +10 to +20
  channels.httpClient.publish({
    requestId: 'same',
    method: 'GET',
    host: 'self',
    statusCode: 200,
    start: t0 + 5,
    duration: 20,
  });
  serve('same', 30, t0); // the outer one
  const [outer, inner] = store.recentRequests();
  assert.deepEqual(
    inner.timeline.map((e) => e.label),
    ['SELECT inner'],
  );
  assert.deepEqual(
    outer.timeline.map((e) => e.label),
    ['SELECT outer', 'GET self'],
  );
  assert.equal(store.inFlight, 0);
});

test('requests in flight are bounded: the oldest is dropped first', (t) => {
  const store = new RecentRequests(10, 10);
  store.start();
  t.after(() => store.stop());
  for (let i = 0; i < MAX_PENDING + 10; i++)
    channels.dbQuery.publish({
      requestId: `p${i}`,
      system: 'pg',
      text: 'SELECT 1',
      error: false,
      start: 0,
      duration: 1,
    });
  assert.equal(store.inFlight, MAX_PENDING);
  assert.equal(store.evicted, 10);
  // The ten dropped are the oldest: p0 files with no query, p10 (the oldest kept) with its own.
  serve('p0', 1, 0);
  serve('p10', 1, 0);
  const [p10, p0] = store.recentRequests();
  assert.deepEqual([p0.id, p0.timeline.length, p10.id, p10.timeline.length], ['p0', 0, 'p10', 1]);
  assert.equal(store.inFlight, MAX_PENDING - 1);
});

test('withRequestId scopes hold nothing in flight; a request keeps its own ID, nested or beside a scope', (t) => {
  const { withRequestId, storage, getRequestId } = require('../../dist/src/context.js');
  const store = new RecentRequests(10, 0);
  store.start();
  t.after(() => store.stop());
  const query = (text, start = performance.now()) =>
    channels.dbQuery.publish({
      requestId: getRequestId(),
      system: 'pg',
      text,
      error: false,
      start,
      duration: 1,
    });
  const t0 = performance.now();
  // A request in flight with a query, then a scope under its ID outside it, and one nested in it.
  storage.run({ id: 'req', start: t0, route: undefined }, () => query('SELECT in request'));
  storage.run({ id: 'req', start: t0, route: undefined }, () => withRequestId('req', () => query('SELECT nested')));
  // A worker's scopes, one per message, more than the store would hold in flight.
  for (let i = 0; i < MAX_PENDING + 10; i++)
    withRequestId(`s${i}`, () => {
      query(`SELECT ${i}`);
      channels.error.publish({ kind: 'uncaught', requestId: getRequestId(), message: 'boom' });
    });
  withRequestId('req', () => query('SELECT beside, same ID'));
  assert.equal(store.inFlight, 1); // the request's, and no scope's
  assert.equal(store.evicted, 0);
  serve('req', performance.now() - t0, t0);
  assert.deepEqual(
    store.recentRequests()[0].timeline.map((e) => e.label),
    ['SELECT in request', 'SELECT nested', 'SELECT beside, same ID'],
  );
  assert.equal(store.inFlight, 0);
  // The scope beside it did not mark the request's ID: the next request under it keeps its query.
  // A request under `id` whose one query begins 1 ms after its start (and the earlier request's end,
  // which it would otherwise join), filed with a span that holds the query whatever the clock does
  // meanwhile: the labels its record is filed with.
  const nextRequest = (id, text) => {
    const start = performance.now();
    storage.run({ id, start, route: undefined }, () => query(text, start + 1));
    serve(id, 1000, start);
    return store.recentRequests()[0].timeline.map((e) => e.label);
  };
  assert.deepEqual(nextRequest('req', 'SELECT next request'), ['SELECT next request']);
  // Only the last MAX_SCOPES scope IDs are marked: the oldest is collected again (as a request's would be).
  assert.ok(MAX_SCOPES <= MAX_PENDING);
  storage.run({ id: 's9', start: performance.now(), route: undefined }, () => query('SELECT s9 unmarked'));
  assert.equal(store.inFlight, 1);
  // A request that adopts a marked ID unmarks it when it files: the next one with that ID keeps its queries.
  serve('s500', 1, performance.now() - 10);
  assert.deepEqual(nextRequest('s500', 'SELECT adopted'), ['SELECT adopted']);
});

test("an entry that ends after its request was filed joins the request's record; one begun after it does not", (t) => {
  const store = new RecentRequests(10, 10);
  store.start();
  t.after(() => store.stop());
  const query = (id, text, start, duration = 1) =>
    channels.dbQuery.publish({ requestId: id, system: 'pg', text, error: false, start, duration });
  const t0 = performance.now() - 100;
  query('fire', 'SELECT awaited', t0 + 1);
  serve('fire', 20, t0); // from t0 to t0 + 20
  // A query the handler did not wait for (begun at +5, ended at +45) and a call begun at +3.
  query('fire', 'INSERT audit', t0 + 5, 40);
  channels.httpClient.publish({
    requestId: 'fire',
    method: 'POST',
    host: 'hook',
    statusCode: 202,
    start: t0 + 3,
    duration: 50,
  });
  assert.equal(store.inFlight, 0);
  const labels = (r) => r.timeline.map((e) => [e.label, e.offset]);
  const want = [
    ['SELECT awaited', 1],
    ['POST hook', 3],
    ['INSERT audit', 5],
  ];
  assert.deepEqual(labels(store.find('fire')), want);
  assert.deepEqual(labels(store.slowest()[0]), want); // the slowest record shares the timeline
  // Begun after the request ended: another request's under the same ID, held in flight for it.
  query('fire', 'SELECT later', t0 + 30);
  assert.equal(store.inFlight, 1);
  assert.equal(store.find('fire').timeline.length, 3);
  serve('fire', 10, t0 + 25);
  assert.deepEqual(labels(store.find('fire')), [['SELECT later', 5]]);
  // A request with no entry at its filing gets its late one too; once pushed out of the ring it is not found.
  serve('quiet', 10, t0);
  query('quiet', 'INSERT late', t0 + 2, 90);
  assert.deepEqual(labels(store.find('quiet')), [['INSERT late', 2]]);
  for (let i = 0; i < 10; i++) serve(`other${i}`, 1);
  query('quiet', 'INSERT too late', t0 + 3);
  assert.equal(store.inFlight, 1);
});

test('requests in flight side by side, filed in any order, each get their own queries', (t) => {
  const store = new RecentRequests(10, 0);
  store.start();
  t.after(() => store.stop());
  const query = (id, text) =>
    channels.dbQuery.publish({
      requestId: id,
      system: 'pg',
      text,
      error: false,
      start: performance.now(),
      duration: 1,
    });
  // a is the first in flight, b and c come while it is; b files first, then a, then c (with d begun meanwhile).
  query('a', 'SELECT a1');
  query('b', 'SELECT b1');
  query('a', 'SELECT a2');
  query('c', 'SELECT c1');
  assert.equal(store.inFlight, 3);
  serve('b', 5, performance.now() - 5);
  serve('a', 5, performance.now() - 5);
  query('d', 'SELECT d1');
  serve('c', 5, performance.now() - 5);
  query('d', 'SELECT d2');
  serve('d', 5, performance.now() - 5);
  assert.equal(store.inFlight, 0);
  const byId = Object.fromEntries(store.recentRequests().map((r) => [r.id, r.timeline.map((e) => e.label)]));
  assert.deepEqual(byId, {
    a: ['SELECT a1', 'SELECT a2'],
    b: ['SELECT b1'],
    c: ['SELECT c1'],
    d: ['SELECT d1', 'SELECT d2'],
  });
});

test('HTML escapes what a caller can choose; env secrets are redacted', () => {
  assert.equal(escapeHtml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  const html = waterfall(
    {
      id: 'id"><b>',
      method: 'GET',
      route: 'unmatched',
      path: '/<img src=x>',
      status: 200,
      aborted: false,
      at: 'now',
      duration: 10,
      timeline: [
        {
          kind: 'query',
          label: "SELECT '</div><script>x</script>'",
          offset: 1,
          duration: 2,
          outcome: 'ok',
          error: false,
        },
      ],
      dropped: 3,
      errors: [],
    },
    '/_hatch',
  );
  for (const raw of ['<script', '<img', 'id"><b>']) assert.ok(!html.includes(raw), raw);
  assert.match(html, /class="bar bar-query" style="left:10%;width:20%"/);
  assert.match(html, /3 more entries not kept/);
  assert.deepEqual(
    redactEnv(
      { DATABASE_URL: 'postgres://u:pw@h/db', API_KEY: 'k', X: 'has tok-tok-tok inside', PATH: '/bin' },
      'tok-tok-tok',
    ),
    {
      API_KEY: '[redacted]',
      DATABASE_URL: 'postgres://u:[redacted]@h/db',
      PATH: '/bin',
      X: 'has [redacted] inside',
    },
  );
});

test('errored requests are kept apart: newest first, bounded, not pushed out by traffic', (t) => {
  const store = new RecentRequests(3, 1, 2);
  store.start();
  t.after(() => store.stop());
  const t0 = performance.now();
  channels.httpClient.publish({
    requestId: 'e0',
    method: 'GET',
    host: 'api',
    path: '/items/7',
    statusCode: 200,
    start: t0 + 1,
    duration: 2,
  });
  serve('e0', performance.now() - t0 + 5, t0, failure('first'));
  serve('e1', 1, undefined, failure('second'));
  for (let i = 0; i < 10; i++) serve(`ok${i}`, 100); // traffic: slower, and more of it than the ring holds
  assert.deepEqual(
    store.erroredRequests().map((r) => [r.id, r.status, r.error.message]),
    [
      ['e1', 500, 'second'],
      ['e0', 500, 'first'],
    ],
  );
  assert.ok(store.recentRequests().every((r) => r.error === null));
  const e0 = store.find('e0'); // only among the errored by now
  assert.deepEqual(e0.error, failure('first'));
  assert.deepEqual(
    e0.timeline.map((e) => e.label),
    ['GET api/items/7'],
  );
  serve('e2', 1, undefined, failure('third')); // the oldest goes
  assert.deepEqual(
    store.erroredRequests().map((r) => r.id),
    ['e2', 'e1'],
  );
  assert.equal(store.find('e0'), undefined);
  // 0 keeps none.
  const none = new RecentRequests(3, 1, 0);
  none.start();
  t.after(() => none.stop());
  serve('e3', 1, undefined, failure('fourth'));
  assert.deepEqual(none.erroredRequests(), []);
});

test("a request's timeline so far: copies, from its start, the pending record left as it is", (t) => {
  const store = new RecentRequests(3, 1, 2);
  store.start();
  t.after(() => store.stop());
  const t0 = performance.now();
  for (const [text, at] of [
    ['SELECT 2', 8],
    ['SELECT 1', 4],
  ])
    channels.dbQuery.publish({ requestId: 'live', system: 'pg', text, error: false, start: t0 + at, duration: 1 });
  const so = store.soFar('live', t0);
  assert.deepEqual(
    so.timeline.map((e) => [e.label, e.offset]),
    [
      ['SELECT 1', 4],
      ['SELECT 2', 8],
    ],
  );
  assert.deepEqual(store.soFar('nothing', t0), { timeline: [], dropped: 0, errors: [] });
  serve('live', performance.now() - t0 + 10, t0);
  assert.deepEqual(
    store.find('live').timeline.map((e) => [e.label, e.offset]),
    [
      ['SELECT 1', 4],
      ['SELECT 2', 8],
    ],
  );
});

test("a call's path: no query string or fragment, cut to a bound", () => {
  assert.equal(callPath('/a/b?api_key=secret'), '/a/b');
  assert.equal(callPath('/a#frag?x'), '/a');
  assert.equal(callPath('/plain'), '/plain');
  assert.equal(callPath('/' + 'x'.repeat(MAX_PATH + 10) + '?q=1').length, MAX_PATH);
  assert.equal(callPath(''), undefined);
  assert.equal(callPath(undefined), undefined);
  assert.equal(callPath(42), undefined);
});

test("HTML: an errored request's stack on its page, its summary in a list, every value escaped", () => {
  const r = {
    id: 'x',
    method: 'GET',
    route: '/r',
    path: '/r',
    status: 500,
    aborted: false,
    at: 'now',
    duration: 1,
    timeline: [],
    dropped: 0,
    errors: [],
    error: { ...failure('<img src=x>'), stack: ['at <script>(app.js:1:1)', 'at two (app.js:2:2)'] },
  };
  const full = waterfall(r, '/_hatch', true);
  assert.match(full, /<pre class="stack">at &lt;script&gt;\(app.js:1:1\)\nat two \(app.js:2:2\)<\/pre>/);
  assert.match(full, /<b class="error-name">TypeError<\/b>: <span class="error-message">&lt;img src=x&gt;<\/span>/);
  const summary = waterfall(r, '/_hatch');
  assert.ok(!summary.includes('class="stack"'));
  assert.match(summary, /<p class="error-summary">TypeError: &lt;img src=x&gt;<\/p>/);
});

// As src/jobs.ts publishes a job's end.
function runJob(id, jobId, duration, outcome = 'completed', name = 'mail') {
  channels.job.publish({
    requestId: id,
    system: 'bullmq',
    queue: 'q',
    name,
    jobId,
    attempt: 1,
    outcome,
    wait: 1,
    start: performance.now() - duration,
    duration,
    error: outcome === 'failed' ? failure('no') : undefined,
  });
}

test("jobs through a ring whose slots are reused: each record its own job's fields; the slowest and errored keep theirs", (t) => {
  const store = new RecentRequests(2, 1, 1);
  store.start();
  t.after(() => store.stop());
  runJob('j1', '1', 50, 'failed', 'charge'); // the slowest and the errored one
  const held = store.recentRequests()[0];
  serve('h1', 1); // a request between jobs: its slot has no job
  runJob('j2', '2', 1);
  runJob('j3', '3', 2);
  serve('h2', 1);
  runJob('j4', '', 3); // a schedule-like job without an ID: no `#` in its path
  const mark = (r) => [
    r.id,
    r.method,
    r.route,
    r.path,
    r.status,
    r.job && `${r.job.name} ${r.job.jobId} ${r.job.outcome}`,
  ];
  assert.deepEqual(store.recentRequests().map(mark), [
    ['j4', 'JOB', 'q/mail', 'bullmq q/mail', 200, 'mail  completed'],
    ['h2', 'GET', 'unmatched', '/h2', 200, null],
  ]);
  runJob('j5', '5', 1);
  assert.deepEqual(store.recentRequests().map(mark), [
    ['j5', 'JOB', 'q/mail', 'bullmq q/mail #5', 200, 'mail 5 completed'],
    ['j4', 'JOB', 'q/mail', 'bullmq q/mail', 200, 'mail  completed'],
  ]);
  const j1 = ['j1', 'JOB', 'q/charge', 'bullmq q/charge #1', 500, 'charge 1 failed'];
  assert.deepEqual(store.slowest().map(mark), [j1]);
  assert.deepEqual(store.erroredRequests().map(mark), [j1]);
  // A record handed out is a copy: later jobs filed into its slot leave it as it was.
  assert.deepEqual(mark(held), j1);
});
