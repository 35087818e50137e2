// The app's own hatches (`hatch()` from 'hatch-agent') on an app under `node -r hatch-agent` with a
// pg Pool: listed on /_hatch with their description; served under the token, inside the request's
// context (the handler's query carries the request's ID in PostgreSQL's statement log and is in the
// request's record); JSON and HTML; a handler that throws, rejects or answers no JSON answers 500
// with its message and the app runs on; bad and taken names refused with one line each; without the
// token the app's own 404 (the handler never runs), counted; an ES-module app importing `hatch`
// while -r loaded the agent; and the published types, compiled by tsc.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { startApp, get, appDir, UUID, typeCheck } from '../support/app.mjs';
import { udpListener } from '../support/udp.mjs';
import { waitForLog } from '../support/pglog.mjs';
import { TOKEN, STARTUP_MS, auth, until } from './apps.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(import.meta.url);

const OWN_APP = `
const http = require('node:http');
const pg = require('pg');
const { hatch, getRequestId } = require('hatch-agent');
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
pool.on('error', () => {});
let runs = 0;
const results = {
  reindex: hatch('reindex', { description: 'rebuild the search index' }, async ({ query, request }) => {
    runs++;
    const r = await pool.query("SELECT $1::text AS since, 'own-hatch-' || $2::text AS tag", [query.since ?? '', query.marker ?? '']);
    return { since: r.rows[0].since, method: request.method, url: request.url, id: getRequestId() };
  }),
  double: hatch('double', ({ query }) => ({ n: Number(query.n) * 2, proto: Object.getPrototypeOf(query) === null })),
  throws: hatch('throws', { description: 'throws at once' }, () => { throw new Error('thrown by the app hatch'); }),
  rejects: hatch('rejects', { description: 'rejects later' }, async () => { await null; throw new RangeError('rejected by the app hatch'); }),
  cyclic: hatch('cyclic', { description: 'answers a cycle' }, () => { const o = {}; o.self = o; return o; }),
  upper: hatch('Upper', {}, () => 1),
  slash: hatch('a/b', {}, () => 1),
  long: hatch('x'.repeat(65), {}, () => 1),
  builtin: hatch('config', {}, () => 1),
  future: hatch('profile', {}, () => 1),
  twice: hatch('reindex', {}, () => 2),
  noHandler: hatch('no-handler', { description: 'no handler' }),
};
console.log('registered ' + JSON.stringify(results));
const server = http.createServer((req, res) => {
  if (req.url === '/runs') return res.end(String(runs));
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'x-app': 'own-404' });
  res.end('the app has no ' + req.url);
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

let udp;
let app;
let plain; // the same app without HATCH_TOKEN
before(async () => {
  udp = await udpListener();
  const statsd = { HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(udp.port), HATCH_STATSD_FLUSH_MS: '100' };
  [app, plain] = await Promise.all([
    startApp(OWN_APP, { env: { ...statsd, HATCH_TOKEN: TOKEN }, timeout: STARTUP_MS }),
    startApp(OWN_APP, { env: { HATCH_TOKEN: '' }, timeout: STARTUP_MS }),
  ]);
});
after(async () => {
  await Promise.all([app?.stop(), plain?.stop()]);
  udp?.close();
});

const json = async (p, headers = auth()) => {
  const r = await get(app.url + p, headers);
  return { ...r, json: JSON.parse(r.body) };
};

test('bad and taken names are refused with one line each; the others are registered', () => {
  const registered = JSON.parse(/registered (.*)/.exec(app.stdout())[1]);
  assert.deepEqual(registered, {
    reindex: true,
    double: true,
    throws: true,
    rejects: true,
    cyclic: true,
    upper: false,
    slash: false,
    long: false,
    builtin: false,
    future: false,
    twice: false,
    noHandler: false,
  });
  const lines = app.stderr().split('\n').filter(Boolean);
  assert.deepEqual(lines, [
    'hatch-agent warn: hatch("Upper"): a hatch name is 1 to 64 of [a-z0-9-]; this hatch is not served',
    'hatch-agent warn: hatch("a/b"): a hatch name is 1 to 64 of [a-z0-9-]; this hatch is not served',
    `hatch-agent warn: hatch("${'x'.repeat(65)}"): a hatch name is 1 to 64 of [a-z0-9-]; this hatch is not served`,
    'hatch-agent warn: hatch("config"): the name is taken by one of the agent\'s own hatches; this hatch is not served',
    'hatch-agent warn: hatch("profile"): the name is taken by one of the agent\'s own hatches; this hatch is not served',
    'hatch-agent warn: hatch("reindex"): the name is taken by a hatch registered before; this one is not served',
    'hatch-agent warn: hatch("no-handler"): the handler is not a function; this hatch is not served',
  ]);
  // Without the hatches on, the same lines: the names are the app's mistake either way.
  assert.deepEqual(plain.stderr().split('\n').filter(Boolean), lines);
});

test("listed on /_hatch with their description, after the agent's; every built-in name is reserved", async () => {
  const { status, json: index } = await json('/_hatch');
  assert.equal(status, 200);
  const own = index.hatches.filter((h) => h.app);
  assert.deepEqual(own, [
    { path: '/_hatch/reindex', description: 'rebuild the search index', app: true },
    { path: '/_hatch/double', description: "the app's own hatch double", app: true },
    { path: '/_hatch/throws', description: 'throws at once', app: true },
    { path: '/_hatch/rejects', description: 'rejects later', app: true },
    { path: '/_hatch/cyclic', description: 'answers a cycle', app: true },
  ]);
  assert.ok(index.hatches.indexOf(own[0]) > index.hatches.findIndex((h) => h.path === '/_hatch/logout'));
  const html = await get(app.url + '/_hatch', { ...auth(), accept: 'text/html' });
  assert.match(
    html.body,
    /<tr class="app-hatch"><td><code>GET \/_hatch\/reindex<\/code><\/td><td><i>the app's own<\/i>: rebuild the search index/,
  );
  // The agent's own names, as its index lists them (and /login, served with HATCH_DEBUG_ERRORS=on).
  const { RESERVED } = require(path.join(root, 'dist/src/app-hatches.js'));
  const builtins = index.hatches.filter((h) => !h.app && h.path !== '/_hatch').map((h) => h.path.split(/[/?]/)[2]);
  for (const name of [...builtins, 'login']) assert.ok(RESERVED.includes(name), `${name} is reserved`);
});

test("served in the request's context: its query carries the request's ID and is in the request's record", async () => {
  const marker = `m${Date.now()}`;
  const r = await json(`/_hatch/reindex?since=2024-01-01&marker=${marker}&since=ignored`);
  assert.equal(r.status, 200, r.body);
  const id = r.headers['x-request-id'];
  assert.match(id, UUID);
  assert.deepEqual(r.json, {
    since: '2024-01-01',
    method: 'GET',
    url: `/_hatch/reindex?since=2024-01-01&marker=${marker}&since=ignored`,
    id,
  });
  const [line] = await waitForLog(`/* ${id} */ SELECT $1::text AS since, 'own-hatch-'`);
  assert.ok(line.includes(marker) || line.includes('$2'), line);
  const rec = await until(
    async () => {
      const x = await get(`${app.url}/_hatch/requests/${id}?format=json`, auth());
      return x.status === 200 && JSON.parse(x.body);
    },
    10000,
    `the record of ${id}`,
  );
  const q = rec.timeline.filter((e) => e.kind === 'query');
  assert.equal(q.length, 1, JSON.stringify(rec));
  assert.match(q[0].label, /own-hatch-/);
});

test('JSON and HTML, like every hatch; the query has no prototype', async () => {
  const r = await json('/_hatch/double?n=21');
  assert.deepEqual(r.json, { n: 42, proto: true });
  const h = await get(app.url + '/_hatch/double?n=4&format=html', auth());
  assert.equal(h.status, 200);
  assert.match(h.headers['content-type'], /^text\/html/);
  assert.match(h.body, /&quot;n&quot;: 8/);
  const proto = await json('/_hatch/double?__proto__=x&n=1');
  assert.deepEqual(proto.json, { n: 2, proto: true });
});

test('a handler that throws, rejects or answers no JSON: 500 with its message, and the app runs on', async () => {
  for (const [name, message] of [
    ['throws', 'thrown by the app hatch'],
    ['rejects', 'rejected by the app hatch'],
    ['cyclic', /^its answer is no JSON \(.*circular/i],
  ]) {
    const r = await json(`/_hatch/${name}`);
    assert.equal(r.status, 500, name);
    assert.equal(r.json.error, `the app's hatch ${name} failed`);
    if (typeof message === 'string') assert.equal(r.json.message, message);
    else assert.match(r.json.message, message);
    assert.doesNotMatch(r.body, /:\d+:\d+\)/, 'no stack');
  }
  assert.equal((await get(app.url + '/runs')).status, 200);
  assert.equal(app.child.exitCode, null);
  // Nothing on stderr but the registration lines.
  assert.equal(app.stderr().split('\n').filter(Boolean).length, 7);
});

/** The answer as a comparable value: status, headers but date and the request ID, body. */
function shape(r) {
  const headers = { ...r.headers };
  delete headers.date;
  delete headers['x-request-id'];
  return { status: r.status, headers, body: r.body };
}

test("without the token: the app's own 404, the handler never runs (nor on HEAD), and it is counted", async () => {
  const sum = () =>
    udp.lines
      .filter((l) => l.startsWith('hatch.errors.hatch_auth:'))
      .reduce((s, l) => s + Number(/:(\d+)\|c$/.exec(l)[1]), 0);
  const start = sum();
  const runs = (await get(app.url + '/runs')).body;
  let n = 0;
  for (const p of ['/_hatch/reindex?since=x', '/_hatch/throws', '/_hatch/double?n=1'])
    for (const headers of [{}, auth(TOKEN.slice(0, -1) + (TOKEN.endsWith('f') ? 'e' : 'f'))]) {
      const [a, b] = await Promise.all([get(app.url + p, headers), get(plain.url + p, headers)]);
      assert.equal(a.status, 404, p);
      assert.equal(a.headers['x-app'], 'own-404', p);
      assert.deepEqual(shape(a), shape(b), p);
      n++;
    }
  assert.equal((await get(app.url + '/runs')).body, runs);
  // HEAD with the token: 200, and the handler does not run either.
  const h = await new Promise((resolve, reject) =>
    http
      .request(app.url + '/_hatch/reindex', { method: 'HEAD', headers: auth(), agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode);
      })
      .on('error', reject)
      .end(),
  );
  assert.equal(h, 200);
  assert.equal((await get(app.url + '/runs')).body, runs);
  // With the right token but the hatches off (no HATCH_TOKEN): the app's own 404 too.
  assert.equal((await get(plain.url + '/_hatch/reindex', auth())).headers['x-app'], 'own-404');
  await until(() => sum() - start >= n, 10000, `${n} hatch_auth counts`);
});

test("an ES-module app imports hatch from 'hatch-agent' while -r loaded the agent: one registry", async () => {
  const esm = await startApp(
    `
import * as http from 'node:http';
// Under -r, the built-ins an ES module imports are patched when the loader next loads a CommonJS
// package (README, "Using it"): pg is that package here.
import 'pg';
import { createRequire } from 'node:module';
import { hatch } from 'hatch-agent';
const cjs = createRequire(import.meta.url)('hatch-agent');
console.log('same ' + (cjs.hatch === hatch));
hatch('from-esm', { description: 'registered by an ES module' }, () => ({ esm: true }));
const server = http.createServer((req, res) => { res.statusCode = 404; res.end('no'); });
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`,
    { agent: true, ext: '.mjs', env: { HATCH_TOKEN: TOKEN }, timeout: STARTUP_MS },
  );
  try {
    assert.match(esm.stdout(), /^same true$/m);
    const r = await get(esm.url + '/_hatch/from-esm', auth());
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(JSON.parse(r.body), { esm: true });
    const index = JSON.parse((await get(esm.url + '/_hatch', auth())).body);
    assert.ok(
      index.hatches.some((h) => h.path === '/_hatch/from-esm' && h.description === 'registered by an ES module'),
    );
    assert.equal(esm.stderr(), '');
  } finally {
    await esm.stop();
  }
});

// The types do not depend on Node's version: under `npm test` tsc runs on the first line only.
const typesElsewhere = process.env.HATCH_TEST_PRIMARY === '0' && 'tsc runs on the first matrix line';
test('hatch() is typed, as installed from the package', { skip: typesElsewhere }, async () => {
  const file = path.join(appDir, 'typed-hatch.ts');
  fs.writeFileSync(
    file,
    `import { hatch, type HatchContext, type HatchHandler } from 'hatch-agent';
const ok: boolean = hatch('reindex', { description: 'rebuild the search index' }, async ({ query, request }) => ({
  since: query.since,
  method: request.method,
}));
const short: boolean = hatch('short', () => 1);
const handler: HatchHandler = (ctx: HatchContext) => ctx.query.x ?? null;
hatch('typed', {}, handler);
// @ts-expect-error the description is a string
hatch('bad', { description: 1 }, () => 1);
// @ts-expect-error a handler is needed
hatch('none', { description: 'x' });
// @ts-expect-error the name is a string
hatch(42, () => 1);
export { ok, short };
`,
  );
  const r = await typeCheck(file);
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
