// Outgoing calls: two services on 127.0.0.1, both under `node -r hatch-agent`. A receives a request
// and calls B with global fetch, undici.request, undici.fetch and http.get; B runs a pg query.
// A's response header, B's received header and B's statement in the PostgreSQL log must carry one
// ID. `npm test` runs this file with undici 7 and 6 on Node 20, and undici 8 on Node 24.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { appDir, startApp, runScript, get, UUID } from '../support/app.mjs';
import { udpListener, statsdValues } from '../support/udp.mjs';
import { waitForLog } from '../support/pglog.mjs';
import { freeTcpPort } from '../support/postgres.mjs';
import { throwAwayCertificate } from '../support/tls.mjs';

/** How many values StatsD lines carry: a line holds every value of its series in one flush (`name:v1|ms:v2|ms`). */
const values = (ls) => statsdValues(ls).length;

const run = randomBytes(4).toString('hex');
const DATABASE_URL = process.env.DATABASE_URL;
const undiciVersion = JSON.parse(
  fs.readFileSync(path.join(appDir, 'node_modules/undici/package.json'), 'utf8'),
).version;

// B: answers with the raw request-ID and traceparent headers it received (rawHeaders: what came
// over the wire, before its own agent touched req.headers), and runs one query per call.
const B = `
const http = require('node:http');
const pg = require('pg');
const { getRequestId } = require('hatch-agent');
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
const raw = (req, name) => { for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i].toLowerCase() === name) return req.rawHeaders[i + 1]; return null; };
const server = http.createServer(async (req, res) => {
  const m = new URL(req.url, 'http://x').searchParams.get('m');
  if (m) await pool.query("SELECT '" + m + "' AS marker");
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ received: raw(req, 'x-request-id'), traceparent: raw(req, 'traceparent'), id: getRequestId() }));
});
// A's http.get, http.request and axios share Node's global keep-alive agent. With the server's
// default 5 s keep-alive, a socket idle for ~5 s (while the test polls the statement log on a slow
// machine) can be closed by B just as A reuses it: "socket hang up", with or without the agent.
server.keepAliveTimeout = 120000;
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

// A: calls B the way ?via= says and answers with what B answered.
const A = `
const http = require('node:http');
const { Writable } = require('node:stream');
const undici = require('undici');
const axios = require('axios');
const { getRequestId } = require('hatch-agent');
const B = process.env.B_URL;
const body = (res) => new Promise((ok) => { let b = ''; res.setEncoding('utf8'); res.on('data', (d) => (b += d)); res.on('end', () => ok(b)); });
const collect = (done) => new Writable({ write(c, e, cb) { (this.b ??= []).push(c); cb(); }, final(cb) { done(JSON.parse(Buffer.concat(this.b).toString())); cb(); } });
const pool = new undici.Pool(new URL(B).origin, { connections: 2 });
const vias = {
  fetch: async (url, headers) => (await fetch(url, { headers })).json(),
  'undici.request': async (url, headers) => (await undici.request(url, { headers })).body.json(),
  'undici.fetch': async (url, headers) => (await undici.fetch(url, { headers })).json(),
  'undici.stream': (url, headers) => new Promise((ok, ko) => undici.stream(url, { headers }, () => collect(ok)).catch(ko)),
  'undici.pipeline': (url, headers) => new Promise((ok, ko) => {
    const duplex = undici.pipeline(url, { method: 'GET', headers }, ({ body }) => body);
    duplex.on('error', ko);
    duplex.pipe(collect(ok));
    duplex.end();
  }),
  'undici.Pool': async (url, headers) => (await pool.request({ path: new URL(url).pathname + new URL(url).search, method: 'GET', headers })).body.json(),
  'http.get': (url, headers) => new Promise((ok, ko) => http.get(url, { headers }, (res) => body(res).then((b) => ok(JSON.parse(b)))).on('error', ko)),
  'http.request': (url, headers) => new Promise((ok, ko) => { const req = http.request(new URL(url), { method: 'POST', headers }, (res) => body(res).then((b) => ok(JSON.parse(b)))); req.on('error', ko); req.end('payload'); }),
  axios: async (url, headers) => (await axios.get(url, { headers })).data,
};
try {
  const undici5 = require('undici5');
  vias['undici@5.request'] = async (url, headers) => (await undici5.request(url, { headers })).body.json();
} catch {}
const server = http.createServer(async (req, res) => {
  const q = new URL(req.url, 'http://x').searchParams;
  const headers = q.get('own') ? { 'X-Request-ID': q.get('own') } : {};
  try {
    const b = await vias[q.get('via')](B + '/work?m=' + (q.get('m') || ''), headers);
    res.end(JSON.stringify({ a: getRequestId(), b }));
  } catch (e) { res.statusCode = 500; res.end(String(e)); }
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

const hasUndici5 = fs.existsSync(path.join(appDir, 'node_modules/undici5'));
const VIAS = [
  'fetch',
  'undici.request',
  'undici.fetch',
  'undici.stream',
  'undici.pipeline',
  'undici.Pool',
  'http.get',
  'http.request',
  'axios',
  ...(hasUndici5 ? ['undici@5.request'] : []),
];
let udp;
let b;
let a;
before(async () => {
  udp = await udpListener();
  b = await startApp(B, { env: { DATABASE_URL } });
  a = await startApp(A, {
    env: { B_URL: b.url, HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(udp.port), HATCH_STATSD_FLUSH_MS: '100' },
  });
});
after(async () => {
  await a?.stop();
  await b?.stop();
  udp?.close();
});

test(`one ID in A's response, B's request and B's statement log, through every client (undici@${undiciVersion}${hasUndici5 ? ' and 5' : ''})`, async () => {
  for (const via of VIAS) {
    const marker = `out-${run}-${via}`;
    const r = await get(`${a.url}/call?via=${via}&m=${marker}`);
    assert.equal(r.status, 200, `${via}: ${r.body}`);
    const id = r.headers['x-request-id'];
    assert.match(id, UUID);
    const { a: aId, b: seen } = JSON.parse(r.body);
    assert.equal(aId, id);
    assert.equal(seen.received, id, `${via}: B received the ID`);
    assert.equal(seen.id, id, `${via}: B adopted it`);
    const [line] = await waitForLog(`SELECT '${marker}'`);
    assert.ok(line.includes(`/* ${id} */ SELECT '${marker}'`), `${via}: ${line}`);
    // A UUID request ID doubles as a W3C trace-id, with a fresh span id per call.
    assert.match(seen.traceparent, new RegExp(`^00-${id.replace(/-/g, '')}-[0-9a-f]{16}-01$`), via);
  }
});

test('a caller-set X-Request-ID is kept', async () => {
  for (const via of VIAS) {
    const r = await get(`${a.url}/call?via=${via}&own=mine-${run}`);
    assert.equal(JSON.parse(r.body).b.received, `mine-${run}`, via);
  }
});

test('a hostile incoming X-Request-ID never reaches an outgoing header: the replacement goes instead', async () => {
  for (const bad of ['*/ DROP TABLE x; --', 'a b', 'x'.repeat(200), "it's"]) {
    for (const via of ['fetch', 'http.get']) {
      const r = await get(`${a.url}/call?via=${via}`, { 'x-request-id': bad });
      const id = r.headers['x-request-id'];
      assert.match(id, UUID);
      assert.equal(JSON.parse(r.body).b.received, id, `${via} with ${JSON.stringify(bad.slice(0, 20))}`);
    }
  }
});

test('an incoming traceparent (with no X-Request-ID) becomes the request ID and stays in the trace', async () => {
  const trace = randomBytes(16).toString('hex');
  const r = await get(`${a.url}/call?via=fetch`, { traceparent: `00-${trace}-${randomBytes(8).toString('hex')}-01` });
  assert.equal(r.headers['x-request-id'], trace);
  const seen = JSON.parse(r.body).b;
  assert.equal(seen.received, trace);
  assert.match(seen.traceparent, new RegExp(`^00-${trace}-[0-9a-f]{16}-01$`));
  // An invalid traceparent is ignored.
  const bad = await get(`${a.url}/call?via=fetch`, {
    traceparent: `00-${'0'.repeat(32)}-${randomBytes(8).toString('hex')}-01`,
  });
  assert.match(bad.headers['x-request-id'], UUID);
});

test('HATCH_TRACEPARENT=off: no traceparent sent, none adopted', async () => {
  const off = await startApp(A, { env: { B_URL: b.url, HATCH_TRACEPARENT: 'off' } });
  try {
    const trace = randomBytes(16).toString('hex');
    const r = await get(`${off.url}/call?via=fetch`, {
      traceparent: `00-${trace}-${randomBytes(8).toString('hex')}-01`,
    });
    assert.match(r.headers['x-request-id'], UUID);
    const seen = JSON.parse(r.body).b;
    assert.equal(seen.received, r.headers['x-request-id']);
    assert.equal(seen.traceparent, null);
  } finally {
    await off.stop();
  }
});

test('each call is timed once as http.client with method, host and status', async () => {
  // A process and a listener of its own, so no other test's calls can be counted here.
  const own = await udpListener();
  const solo = await startApp(A, {
    env: { B_URL: b.url, HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(own.port), HATCH_STATSD_FLUSH_MS: '100' },
  });
  try {
    for (const via of VIAS) assert.equal((await get(`${solo.url}/call?via=${via}`)).status, 200);
    await own.waitFor((ls) => values(ls.filter((l) => l.startsWith('hatch.http.client.'))) >= VIAS.length);
    await new Promise((r) => setTimeout(r, 500)); // five flush intervals: a double count would be here
    const client = own.lines.filter((l) => l.startsWith('hatch.http.client.'));
    assert.equal(values(client), VIAS.length, client.join('\n'));
    for (const l of client) assert.match(l, /^hatch\.http\.client\.(GET|POST)\.127_0_0_1\.200(:[\d.]+\|ms)+$/);
    assert.equal(values(client.filter((l) => l.includes('.POST.'))), 1);
  } finally {
    await solo.stop();
    own.close();
  }
});

test('HATCH_PROPAGATE_HOSTS: a host outside the allowlist receives no header', async () => {
  const denied = await startApp(A, { env: { B_URL: b.url, HATCH_PROPAGATE_HOSTS: 'api.example.com,*.internal' } });
  const allowed = await startApp(A, {
    env: { B_URL: b.url, HATCH_PROPAGATE_HOSTS: `other.example.com,127.0.0.1:${b.port}` },
  });
  try {
    for (const via of VIAS) {
      const d = JSON.parse((await get(`${denied.url}/call?via=${via}`)).body).b;
      assert.equal(d.received, null, via);
      assert.equal(d.traceparent, null, via);
      const r = await get(`${allowed.url}/call?via=${via}`);
      assert.equal(JSON.parse(r.body).b.received, r.headers['x-request-id'], via);
    }
  } finally {
    await denied.stop();
    await allowed.stop();
  }
});

// Failures: what the app sees must be exactly what it sees without the agent, and the agent
// times each as `error`.
const FAILURES = `
const http = require('node:http');
const net = require('node:net');
const undici = require('undici');
const agent = process.env.USE_AGENT ? require('hatch-agent') : null;
const within = agent ? (fn) => agent.withRequestId('fail-1', fn) : (fn) => fn();
// A resolver that does not answer in time says EAI_AGAIN where one that does says ENOTFOUND: that is
// the machine's DNS, the same with or without the agent, so both read as ENOTFOUND.
const dns = (v) => (typeof v === 'string' ? v.replace('EAI_AGAIN', 'ENOTFOUND') : v);
const shape = (e) => e && { name: e.name, message: dns(e.message), code: dns(e.code), cause: e.cause && { name: e.cause.name, message: dns(e.cause.message), code: dns(e.cause.code) } };
const settle = (p) => p.then((v) => ({ ok: typeof v }), (e) => shape(e));
const viaGet = (url, opts = {}, setup) => new Promise((resolve) => {
  const req = http.get(url, opts, (res) => { res.resume(); res.on('end', () => resolve({ status: res.statusCode })); });
  req.on('error', (e) => resolve(shape(e)));
  if (setup) setup(req);
});
const silent = net.createServer(() => {}); // accepts and never answers
silent.listen(0, '127.0.0.1', () => within(async () => {
  const hang = 'http://127.0.0.1:' + silent.address().port + '/';
  const closed = 'http://127.0.0.1:' + process.env.CLOSED_PORT + '/';
  const unknown = 'http://no-such-host.invalid/';
  const out = {};
  out.fetchRefused = await settle(fetch(closed));
  out.fetchDns = await settle(fetch(unknown));
  out.fetchTimeout = await settle(fetch(hang, { signal: AbortSignal.timeout(100) }));
  const ac = new AbortController(); setTimeout(() => ac.abort(), 50);
  out.fetchAbort = await settle(fetch(hang, { signal: ac.signal }));
  out.undiciRefused = await settle(undici.request(closed));
  out.undiciTimeout = await settle(undici.request(hang, { headersTimeout: 100 }));
  out.getRefused = await viaGet(closed);
  out.getDns = await viaGet(unknown);
  out.getTimeout = await viaGet(hang, {}, (req) => req.setTimeout(100, () => req.destroy(new Error('client timeout'))));
  out.getAbort = await viaGet(hang, {}, (req) => setTimeout(() => req.destroy(), 50));
  console.log(JSON.stringify(out));
  silent.close();
  setTimeout(() => process.exit(0), 150);
}));
`;

test('failures (refused, unknown host, timeout, abort): the app sees exactly its own error; the agent times each as error', async () => {
  // A TCP port where nothing listens now (a UDP port's number could be a TCP listener's).
  const env = { CLOSED_PORT: String(await freeTcpPort()) };
  const plain = await runScript(FAILURES, { agent: false, env });
  assert.equal(plain.code, 0, plain.stderr);
  // A listener of its own, so nothing but this script's calls can be counted here.
  const own = await udpListener();
  try {
    const ours = await runScript(FAILURES, {
      env: {
        ...env,
        USE_AGENT: '1',
        HATCH_STATSD: 'on',
        HATCH_STATSD_PORT: String(own.port),
        HATCH_STATSD_FLUSH_MS: '100',
      },
    });
    assert.equal(ours.code, 0, ours.stderr);
    assert.equal(ours.stderr, '');
    const expected = JSON.parse(plain.stdout);
    assert.deepEqual(JSON.parse(ours.stdout), expected);
    assert.equal(Object.keys(expected).length, 10);
    const isError = (l) => /^hatch\.http\.client\.GET\.[^.]+\.error:/.test(l);
    const lines = await own.waitFor((ls) => values(ls.filter(isError)) >= 10);
    const errors = lines.filter(isError);
    assert.equal(values(errors.filter((l) => l.includes('.127_0_0_1.'))), 8, errors.join('\n'));
    assert.equal(values(errors.filter((l) => l.includes('.no-such-host_invalid.'))), 2, errors.join('\n'));
  } finally {
    own.close();
  }
});

test('https.get and https.request carry the ID and are timed once each', async () => {
  const { dir } = throwAwayCertificate();
  const own = await udpListener();
  try {
    const r = await runScript(
      `
const https = require('node:https');
const fs = require('node:fs');
const { withRequestId } = require('hatch-agent');
const seen = [];
const server = https.createServer({ key: fs.readFileSync(${JSON.stringify(path.join(dir, 'key.pem'))}), cert: fs.readFileSync(${JSON.stringify(path.join(dir, 'cert.pem'))}) }, (req, res) => {
  const i = req.rawHeaders.findIndex((h) => h.toLowerCase() === 'x-request-id');
  seen.push(i < 0 ? null : req.rawHeaders[i + 1]);
  res.end('ok');
});
server.listen(0, '127.0.0.1', () => withRequestId('tls-${run}', async () => {
  const url = 'https://127.0.0.1:' + server.address().port + '/';
  const call = (fn) => new Promise((ok, ko) => fn((res) => { res.resume(); res.on('end', ok); }).on('error', ko));
  await call((cb) => https.get(url, { rejectUnauthorized: false }, cb));
  await call((cb) => { const req = https.request(url, { method: 'PUT', rejectUnauthorized: false }, cb); req.end('x'); return req; });
  console.log(JSON.stringify(seen));
  server.close();
}));`,
      { env: { HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(own.port), HATCH_STATSD_FLUSH_MS: '100' } },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [`tls-${run}`, `tls-${run}`]);
    await own.waitFor((ls) => ls.filter((l) => l.startsWith('hatch.http.client.')).length >= 2);
    await new Promise((res) => setTimeout(res, 300));
    assert.deepEqual(
      own.lines
        .filter((l) => l.startsWith('hatch.http.client.'))
        .map((l) => l.split(':')[0])
        .sort(),
      ['hatch.http.client.GET.127_0_0_1.200', 'hatch.http.client.PUT.127_0_0_1.200'],
    );
  } finally {
    own.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
