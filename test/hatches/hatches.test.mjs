// The maintenance hatches on a live app under `node -r hatch-agent`: every hatch with a valid token.
// (Access without a token: access.test.mjs.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, get, UUID } from '../support/app.mjs';
import { udpListener } from '../support/udp.mjs';
import { APP, TOKEN, STARTUP_MS, SLOW_OK, auth, until } from './apps.mjs';

let udp;
let app;
before(async () => {
  udp = await udpListener();
  app = await startApp(APP, {
    env: {
      HATCH_STATSD: 'on',
      HATCH_STATSD_PORT: String(udp.port),
      HATCH_STATSD_FLUSH_MS: '100',
      HATCH_TOKEN: TOKEN,
      HATCH_HEALTH_TIMEOUT_MS: SLOW_OK,
    },
    timeout: STARTUP_MS,
  });
});
after(async () => {
  await app?.stop();
  udp?.close();
});

async function json(path, headers = auth()) {
  const r = await get(app.url + path, headers);
  assert.match(r.headers['content-type'], /^application\/json/, `${path}: ${r.body}`);
  return { ...r, json: JSON.parse(r.body) };
}

/** The record of request `id` to `path` (the app's backend, called by /work, shares its ID). */
async function recordOf(id, path) {
  return until(
    async () => {
      const r = await get(`${app.url}/_hatch/requests?format=json`, auth());
      return JSON.parse(r.body).recent.find((x) => x.id === id && x.path === path);
    },
    10000,
    `the record of ${path} ${id}`,
  );
}

test('the index lists every hatch, as JSON and as HTML', async () => {
  const { status, json: body } = await json('/_hatch');
  assert.equal(status, 200);
  const paths = body.hatches.map((h) => h.path);
  for (const p of [
    '/_hatch',
    '/_hatch/health',
    '/_hatch/error?msg=…',
    '/_hatch/statsd?msg=…',
    '/_hatch/config',
    '/_hatch/requests',
    '/_hatch/requests/<id>',
    '/_hatch/logout',
  ])
    assert.ok(paths.includes(p), p);
  for (const h of body.hatches) assert.ok(h.description.length > 10);
  const html = await get(app.url + '/_hatch', { ...auth(), accept: 'text/html,*/*' });
  assert.equal(html.status, 200);
  assert.match(html.headers['content-type'], /^text\/html/);
  assert.match(html.body, /\/_hatch\/requests/);
  assert.match(html.headers['x-request-id'], UUID); // served inside its request context
});

test("health: the app's pool and client answer SELECT 1, StatsD gets a probe; JSON and HTML", async () => {
  await get(app.url + '/work'); // the pool connects
  const { status, json: body } = await json('/_hatch/health');
  assert.equal(status, 200, JSON.stringify(body));
  assert.equal(body.status, 'pass');
  assert.deepEqual(body.failing, []);
  const names = body.checks.map((c) => c.name);
  assert.ok(
    names.some((n) => /^pg pool 1 \(/.test(n)),
    names.join(),
  );
  assert.ok(
    names.some((n) => /^pg client \d+ \(/.test(n)),
    names.join(),
  ); // the standalone client, not the pool's
  assert.equal(names.filter((n) => n.startsWith('pg client')).length, 1, names.join());
  assert.ok(names.includes('statsd'));
  for (const c of body.checks) {
    assert.equal(c.status, 'pass', JSON.stringify(c));
    assert.equal(typeof c.latencyMs, 'number');
  }
  assert.match(body.checks.find((c) => c.name === 'statsd').detail, /receipt not confirmed/);
  await udp.waitFor((ls) => ls.includes('hatch.hatch.probe:1|c'));
  const html = await get(app.url + '/_hatch/health?format=html', auth());
  assert.equal(html.status, 200);
  assert.match(html.body, /class="check" data-check="pg pool 1/);
});

test("health: a client busy with the app's query is reported connected, not probed; nothing queues behind the app", async (t) => {
  assert.equal((await get(app.url + '/lock')).body, 'locked');
  t.after(() => get(app.url + '/unlock')); // a failed assertion must not leave the client blocked for later tests
  assert.equal((await get(app.url + '/busy')).body, 'busy'); // the client now waits on the lock
  const clientCheck = async () =>
    (await json('/_hatch/health')).json.checks.find((x) => x.name.startsWith('pg client')); // the app's client, made first
  const { status, json: body } = await json('/_hatch/health');
  assert.equal(status, 200, JSON.stringify(body));
  const c = body.checks.find((x) => x.name.startsWith('pg client'));
  assert.equal(c.status, 'pass', JSON.stringify(c));
  assert.match(c.detail, /^busy with the app's query; connected, not probed$/);
  // The app queues one more query behind its own; had the health check queued a probe, pg
  // (>= 8.19) would print a DeprecationWarning here, and the app's queries would wait behind ours.
  assert.equal((await get(app.url + '/queue')).body, 'queued');
  assert.match((await clientCheck()).detail, /^busy with the app's query \(1 queued\); connected, not probed$/);
  const done = await get(app.url + '/unlock');
  assert.deepEqual(JSON.parse(done.body), ['busy', 'queued']);
  assert.equal((await clientCheck()).detail, 'SELECT 1 answered');
  assert.doesNotMatch(app.stderr(), /DeprecationWarning/);
});

test('health: a pool the app ended is no longer checked, the others still are', async () => {
  await get(app.url + '/work');
  assert.equal((await get(app.url + '/second-pool')).body, 'second');
  const pools = async () => (await json('/_hatch/health')).json.checks.filter((c) => c.name.startsWith('pg pool'));
  const u = new URL(process.env.DATABASE_URL);
  const target = `${u.hostname}:${u.port || 5432}/${u.pathname.slice(1)}`; // from the connection string (pool 1) and from options (pool 2)
  const before = await pools();
  assert.deepEqual(
    before.map((c) => [c.name, c.status]),
    [
      [`pg pool 1 (${target})`, 'pass'],
      [`pg pool 2 (${target})`, 'pass'],
    ],
  );
  assert.equal((await get(app.url + '/end-second-pool')).body, 'ended');
  const after = await pools();
  assert.deepEqual(
    after.map((c) => [c.name, c.status]),
    [[`pg pool 1 (${target})`, 'pass']],
  );
});

test('error: a test error goes through the error path (counter, stderr with the ID, the record) and answers 500', async () => {
  const r = await json('/_hatch/error?msg=' + encodeURIComponent('is reporting on?\nforged line'));
  assert.equal(r.status, 500);
  const id = r.headers['x-request-id'];
  assert.equal(r.json.requestId, id);
  assert.equal(r.json.error, 'HatchTestError: is reporting on?forged line'); // control characters dropped
  await until(
    () => app.stderr().includes(`request ${id}: hatch_test: HatchTestError: is reporting on?forged line`),
    5000,
    'the stderr line',
  );
  await udp.waitFor((ls) => ls.includes('hatch.errors.hatch_test:1|c'));
  const rec = await recordOf(id, '/_hatch/error');
  assert.equal(rec.status, 500);
  assert.deepEqual(rec.errors, ['hatch_test: HatchTestError: is reporting on?forged line']);
});

test('statsd: sends a test counter and answers with the exact line, the message made metric-safe', async () => {
  const r = await json('/_hatch/statsd?msg=' + encodeURIComponent('deploy 42/ok:|#x'));
  assert.equal(r.status, 200);
  assert.equal(r.json.line, 'hatch.hatch.test.deploy_42_ok_x:1|c');
  assert.equal(r.json.sent, true);
  await udp.waitFor((ls) => ls.includes(r.json.line));
});

test('config: versions, every patch with the version it patched, secrets redacted', async () => {
  const { status, json: body } = await json('/_hatch/config');
  assert.equal(status, 200);
  assert.equal(body.agent.name, 'hatch-agent');
  assert.match(body.agent.version, /^\d+\.\d+\.\d+/);
  assert.equal(body.node, process.version);
  assert.equal(body.config.hatchToken, '[redacted]');
  const pg = body.patches.find((p) => p.module === 'pg');
  assert.equal(pg.status, 'patched');
  assert.match(pg.version, /^8\./);
  assert.ok(body.patches.some((p) => p.module === 'http' && p.status === 'patched'));
  assert.equal(body.env.HATCH_TOKEN, '[redacted]');
  assert.ok(!JSON.stringify(body).includes(TOKEN));
});

test("requests: a request's timeline holds its query (SQL as sent, with its comment), its call and its render", async () => {
  const w = await get(app.url + '/work');
  assert.equal(w.body, 'worked');
  const id = w.headers['x-request-id'];
  const rec = await recordOf(id, '/work');
  assert.equal(rec.method, 'GET');
  assert.equal(rec.path, '/work');
  assert.equal(rec.route, 'unmatched');
  assert.equal(rec.status, 200);
  assert.ok(rec.duration > 0);
  const kinds = rec.timeline.map((e) => e.kind);
  assert.deepEqual(kinds, ['query', 'call', 'render']); // in order of their start
  const [q, c, r] = rec.timeline;
  assert.equal(q.label, `/* ${id} */ SELECT 'work' AS w, pg_sleep(0.02)`);
  assert.equal(c.label, 'GET 127.0.0.1/b'); // the path, not its query string
  assert.equal(c.outcome, '200');
  assert.equal(r.label, 'ejs report');
  for (const e of rec.timeline) assert.ok(e.offset >= 0 && e.duration >= 0, JSON.stringify(e));
  assert.ok(q.offset <= c.offset && c.offset <= r.offset);

  const list = await json('/_hatch/requests?format=json');
  assert.ok(list.json.recent.some((x) => x.id === id));
  assert.ok(Array.isArray(list.json.slowest) && list.json.slowest.length > 0);
  const durations = list.json.slowest.map((x) => x.duration);
  assert.deepEqual(
    durations,
    [...durations].sort((a, b) => b - a),
  );
  const one = await json(`/_hatch/requests/${id}`);
  assert.equal(one.json.id, id);
  const missing = await get(app.url + '/_hatch/requests/no-such-id', auth());
  assert.equal(missing.status, 404);

  // The backend /work called (same process) adopted the propagated ID: its request has its own record.
  const inner = await recordOf(id, '/b');
  assert.deepEqual(inner.timeline, []);
});

test("requests: a worker's withRequestId scopes leave nothing in flight, and the requests around them keep their queries", async () => {
  // More scopes than the store holds requests in flight: held, they would fill it and push out the oldest.
  // (What earlier tests left in flight stays: a query that ended after its request had been filed.)
  const before = (await json('/_hatch/requests?format=json')).json;
  const m = await get(app.url + '/messages?n=1100');
  assert.equal(m.body, '1100');
  const w = await get(app.url + '/work');
  const rec = await recordOf(w.headers['x-request-id'], '/work');
  assert.deepEqual(
    rec.timeline.map((e) => e.kind),
    ['query', 'call', 'render'],
  );
  const list = await json('/_hatch/requests?format=json');
  assert.deepEqual([list.json.inFlight, list.json.evicted], [before.inFlight, before.evicted]);
  assert.ok(!list.json.recent.some((x) => x.id.startsWith('msg-')));
});

test("requests: a query the handler did not wait for joins its request's record when it ends, past the request's end", async () => {
  const before = (await json('/_hatch/requests?format=json')).json;
  const f = await get(app.url + '/fire');
  assert.equal(f.body, 'fired');
  const id = f.headers['x-request-id'];
  // No request is made until the query has ended: a request filed meanwhile could take the record's
  // slot in the store's index of recent IDs (1 in 256), and the late query would be held instead.
  await new Promise((r) => setTimeout(r, 300));
  const rec = await until(
    async () => {
      const r = await recordOf(id, '/fire');
      return r.timeline.some((e) => e.kind === 'query') ? r : undefined;
    },
    10000,
    'the late query on the record',
  );
  const [q] = rec.timeline;
  assert.equal(q.label, `/* ${id} */ SELECT 'fired' AS f, pg_sleep(0.05)`);
  assert.ok(q.offset + q.duration > rec.duration, JSON.stringify(rec));
  const after = (await json('/_hatch/requests?format=json')).json;
  assert.deepEqual([after.inFlight, after.evicted], [before.inFlight, before.evicted]);
});

test('requests: a timeline is capped at 100 entries with the rest counted; HTML escapes SQL', async () => {
  const m = await get(app.url + '/many');
  assert.equal(m.body, 'many');
  const rec = await recordOf(m.headers['x-request-id'], '/many');
  assert.equal(rec.timeline.length, 100);
  assert.equal(rec.dropped, 50);

  const e = await get(app.url + '/evil');
  const id = e.headers['x-request-id'];
  await recordOf(id, '/evil');
  const html = await get(`${app.url}/_hatch/requests/${id}?format=html`, auth());
  assert.equal(html.status, 200);
  assert.match(html.headers['content-security-policy'], /default-src 'none'/);
  assert.ok(html.body.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
  assert.ok(!html.body.includes('<script'));
  const page = await get(`${app.url}/_hatch/requests?format=html`, auth());
  assert.ok(!page.body.includes('<script'));
});
