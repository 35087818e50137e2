// Incoming HTTP under `node -r hatch-agent`: the request ID (minted, adopted, or replaced when
// hostile), its echo, its journey through async work, and the http.server timing on real UDP.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startApp, get, UUID } from '../support/app.mjs';
import { udpListener } from '../support/udp.mjs';
import { throwAwayCertificate } from '../support/tls.mjs';

// One app for most tests: it answers with what the app itself sees of the ID, after a tour of
// promises, timers, immediates, nextTick, microtasks and an event emitter.
const APP = `
const http = require('node:http');
const { EventEmitter } = require('node:events');
const { getRequestId } = require('hatch-agent');
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/hang') return; // never answers: only the client's abort ends it
  const seen = { handler: getRequestId(), header: req.headers['x-request-id'] };
  const delay = Number(url.searchParams.get('delay') || 0);
  await new Promise((r) => setTimeout(r, delay));
  seen.timeout = getRequestId();
  await Promise.resolve().then(() => { seen.promise = getRequestId(); });
  await new Promise((r) => setImmediate(() => { seen.immediate = getRequestId(); r(); }));
  await new Promise((r) => process.nextTick(() => { seen.nextTick = getRequestId(); r(); }));
  await new Promise((r) => queueMicrotask(() => { seen.microtask = getRequestId(); r(); }));
  const ee = new EventEmitter();
  await new Promise((r) => { ee.on('ping', () => { seen.emitter = getRequestId(); r(); }); setTimeout(() => ee.emit('ping'), 1); });
  if (url.pathname === '/missing') { res.statusCode = 404; return res.end('no'); }
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(seen));
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

let udp;
let app;
before(async () => {
  udp = await udpListener();
  app = await startApp(APP, {
    env: { HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(udp.port), HATCH_STATSD_FLUSH_MS: '100' },
  });
});
after(async () => {
  await app?.stop();
  udp?.close();
});

/** Sends one request with raw header bytes (so values Node's client refuses can be sent). */
function rawRequest(port, headerBytes) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', reject);
    sock.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const [head, body] = text.split('\r\n\r\n');
      const lines = head.split('\r\n');
      const status = Number(lines[0].split(' ')[1]);
      const headers = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status, headers, body });
    });
    sock.write(
      Buffer.concat([
        Buffer.from('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n'),
        headerBytes,
        Buffer.from('\r\n'),
      ]),
    );
  });
}

test('a new UUID is minted, echoed, and is what the app sees in req.headers and getRequestId()', async () => {
  const r = await get(app.url + '/');
  assert.equal(r.status, 200);
  const id = r.headers['x-request-id'];
  assert.match(id, UUID);
  const seen = JSON.parse(r.body);
  for (const [where, v] of Object.entries(seen)) assert.equal(v, id, `ID seen in ${where}`);
});

test("the caller's allowlisted X-Request-ID is adopted", async () => {
  const r = await get(app.url + '/', { 'X-Request-ID': 'caller-42.a:b_c' });
  assert.equal(r.headers['x-request-id'], 'caller-42.a:b_c');
  assert.equal(JSON.parse(r.body).handler, 'caller-42.a:b_c');
  assert.equal(JSON.parse(r.body).header, 'caller-42.a:b_c');
});

test('hostile X-Request-ID values are replaced by a UUID, never echoed, and counted', async () => {
  udp.clear();
  const hostile = [
    Buffer.from('X-Request-ID: */ DROP TABLE x; --\r\n'),
    Buffer.from('X-Request-ID: ' + 'A'.repeat(10 * 1024) + '\r\n'),
    Buffer.from('X-Request-ID: caf\xe9-\xff\xfe\r\n', 'latin1'),
    Buffer.from('X-Request-ID: \u00e9t\u00e9 \u2603\r\n', 'utf8'),
    Buffer.from('X-Request-ID: \r\n'),
    Buffer.from('X-Request-ID: a\'b"c\r\n'),
    Buffer.from('X-Request-ID: a b\tc\r\n'),
    Buffer.from('X-Request-ID: ok-1\r\nX-Request-ID: ok-2\r\n'),
  ];
  let counted = 0;
  for (const h of hostile) {
    const r = await rawRequest(app.port, h);
    assert.equal(r.status, 200, `status for ${JSON.stringify(h.toString('latin1').slice(0, 40))}`);
    const echoed = r.headers['x-request-id'];
    assert.match(echoed, UUID, `echo for ${JSON.stringify(h.toString('latin1').slice(0, 40))}`);
    assert.equal(JSON.parse(r.body).handler, echoed);
    counted++;
  }
  // Header bytes Node's parser refuses (CR/LF inside a value, NUL) never reach the app at all.
  for (const h of [Buffer.from('X-Request-ID: a\rb\r\n'), Buffer.from('X-Request-ID: a\0b\r\n')]) {
    const r = await rawRequest(app.port, h);
    assert.equal(r.status, 400);
    assert.equal(r.headers['x-request-id'], undefined);
  }
  const invalid = (ls) =>
    ls
      .filter((l) => l.startsWith('hatch.errors.invalid_request_id:'))
      .reduce((n, l) => n + Number(l.split(':')[1].split('|')[0]), 0);
  await udp.waitFor((ls) => invalid(ls) >= counted);
  // Exactly once each: a request made after all of them (this test's only 404) is timed when it
  // ends, later than every count above was recorded, so once its line is here every flush before
  // it is too; three more flush intervals leave room for a count published late.
  await get(app.url + '/missing');
  await udp.waitFor((ls) => ls.some((l) => l.startsWith('hatch.http.server.GET.unmatched.404:')));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(invalid(udp.lines), counted, udp.lines.filter((l) => l.startsWith('hatch.errors.')).join('\n'));
});

test('the ID stays with its own request across 100 concurrent requests and async hops', async () => {
  const rs = await Promise.all(
    Array.from({ length: 100 }, (_, i) =>
      get(`${app.url}/?delay=${(i * 7) % 20}`, i % 2 ? { 'x-request-id': `c-${i}` } : {}),
    ),
  );
  for (const [i, r] of rs.entries()) {
    const id = r.headers['x-request-id'];
    if (i % 2) assert.equal(id, `c-${i}`);
    const seen = JSON.parse(r.body);
    for (const [where, v] of Object.entries(seen)) assert.equal(v, id, `request ${i}: ID seen in ${where}`);
  }
});

test('http.server timings reach StatsD with method, route and status code', async () => {
  udp.clear();
  await get(app.url + '/');
  await get(app.url + '/missing');
  const lines = await udp.waitFor(
    (ls) =>
      ls.some((l) => l.startsWith('hatch.http.server.GET.unmatched.404:')) &&
      ls.some((l) => l.startsWith('hatch.http.server.GET.unmatched.200:')),
  );
  for (const l of lines.filter((x) => x.startsWith('hatch.http.server.'))) {
    assert.match(l, /^hatch\.http\.server\.GET\.unmatched\.(200|404)(:\d+(\.\d+)?\|ms)+$/);
  }
});

test('a request the client aborts is recorded at the socket close as `aborted`', async () => {
  udp.clear();
  await new Promise((resolve) => {
    const sock = net.connect(app.port, '127.0.0.1', () => {
      sock.write('GET /hang HTTP/1.1\r\nHost: x\r\n\r\n');
      setTimeout(() => sock.destroy(), 50);
    });
    sock.on('close', resolve);
  });
  // The handler never responds, so the only end this request can have is the socket's close.
  const lines = await udp.waitFor((ls) => ls.some((l) => l.startsWith('hatch.http.server.GET.unmatched.aborted:')));
  assert.match(
    lines.find((l) => l.includes('.aborted:')),
    /^hatch\.http\.server\.GET\.unmatched\.aborted(:[\d.]+\|ms)+$/,
  );
});

test('https servers get the same treatment; a custom header name is honoured', async () => {
  const { dir } = throwAwayCertificate();
  const tls = await startApp(
    `
const https = require('node:https'); const fs = require('node:fs');
const { getRequestId } = require('hatch-agent');
const s = https.createServer({ key: fs.readFileSync(${JSON.stringify(path.join(dir, 'key.pem'))}), cert: fs.readFileSync(${JSON.stringify(path.join(dir, 'cert.pem'))}) },
  (req, res) => setTimeout(() => res.end(String(getRequestId())), 1));
s.listen(0, '127.0.0.1', () => console.log('listening ' + s.address().port));`,
    { env: { HATCH_REQUEST_ID_HEADER: 'X-Correlation-ID' } },
  );
  try {
    const https = await import('node:https');
    const r = await new Promise((resolve, reject) => {
      https
        .get(
          `https://127.0.0.1:${tls.port}/`,
          { rejectUnauthorized: false, headers: { 'x-correlation-id': 'tls-1' } },
          (res) => {
            let b = '';
            res.on('data', (d) => (b += d));
            res.on('end', () => resolve({ headers: res.headers, body: b }));
          },
        )
        .on('error', reject);
    });
    assert.equal(r.headers['x-correlation-id'], 'tls-1');
    assert.equal(r.body, 'tls-1');
    assert.equal(r.headers['x-request-id'], undefined);
  } finally {
    await tls.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the echoed ID acts as a header the app can read, replace and remove, and is never doubled', async () => {
  const echo = await startApp(`
const http = require('node:http');
const { getRequestId } = require('hatch-agent');
const cases = {
  plain: (req, res) => res.end(getRequestId()),
  set: (req, res) => { res.setHeader('X-Request-Id', 'app-set'); res.end(); },
  removed: (req, res) => { res.removeHeader('X-REQUEST-ID'); res.end(JSON.stringify({ has: res.hasHeader('x-request-id'), get: res.getHeader('x-request-id') ?? null })); },
  'head-object': (req, res) => { res.writeHead(200, { 'content-type': 'text/plain', 'X-Request-ID': 'app-object' }); res.end(); },
  'head-other': (req, res) => { res.writeHead(201, { 'content-type': 'text/plain' }); res.end(getRequestId()); },
  'head-flat': (req, res) => { res.writeHead(200, ['X-Request-Id', 'app-flat', 'a', 'b']); res.end(); },
  'head-pairs': (req, res) => { res.writeHead(200, [['a', 'b'], ['x-request-id', 'app-pairs']]); res.end(); },
  'after-set': (req, res) => { res.setHeader('content-type', 'text/plain'); res.writeHead(200, { 'x-request-id': 'app-after-set' }); res.end(); },
  read: (req, res) => {
    res.setHeader('a', '1');
    res.end(JSON.stringify({ id: getRequestId(), get: res.getHeader('X-Request-ID'), has: res.hasHeader('x-request-id'),
      all: res.getHeaders(), names: res.getHeaderNames(), raw: res.getRawHeaderNames() }));
  },
};
const s = http.createServer((req, res) => cases[req.url.slice(1)](req, res));
s.listen(0, '127.0.0.1', () => console.log('listening ' + s.address().port));`);
  const http = await import('node:http');
  const fetchRaw = (name) =>
    new Promise((resolve, reject) => {
      http
        .get(`${echo.url}/${name}`, { agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d) => (body += d));
          // Every X-Request-ID line as sent, however spelled (res.headers would join duplicates).
          res.on('end', () =>
            resolve({
              status: res.statusCode,
              ids: res.rawHeaders.filter((_, i, a) => i % 2 === 1 && a[i - 1].toLowerCase() === 'x-request-id'),
              body,
            }),
          );
        })
        .on('error', reject);
    });
  try {
    const plain = await fetchRaw('plain');
    assert.equal(plain.ids.length, 1);
    assert.match(plain.ids[0], UUID);
    assert.equal(plain.body, plain.ids[0]);
    assert.deepEqual((await fetchRaw('set')).ids, ['app-set']);
    const removed = await fetchRaw('removed');
    assert.deepEqual(removed.ids, []);
    assert.deepEqual(JSON.parse(removed.body), { has: false, get: null });
    assert.deepEqual((await fetchRaw('head-object')).ids, ['app-object']);
    const other = await fetchRaw('head-other');
    assert.equal(other.status, 201);
    assert.deepEqual(other.ids, [other.body]);
    assert.deepEqual((await fetchRaw('head-flat')).ids, ['app-flat']);
    assert.deepEqual((await fetchRaw('head-pairs')).ids, ['app-pairs']);
    assert.deepEqual((await fetchRaw('after-set')).ids, ['app-after-set']);
    const read = await fetchRaw('read');
    const seen = JSON.parse(read.body);
    assert.deepEqual(read.ids, [seen.id]);
    assert.equal(seen.get, seen.id);
    assert.equal(seen.has, true);
    assert.deepEqual(seen.all, { a: '1', 'x-request-id': seen.id });
    assert.deepEqual(seen.names.sort(), ['a', 'x-request-id']);
    assert.deepEqual(seen.raw.sort(), ['a', 'x-request-id']);
  } finally {
    await echo.stop();
  }
});
