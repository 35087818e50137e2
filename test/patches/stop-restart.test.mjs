// Taking the agent out of a running app and putting it back (`stop()` and `start()` from
// 'hatch-agent'). One app under `node -r hatch-agent` (an http server with Express routes, pg, an
// outgoing http.get and fetch, the hatches) is driven through three phases: with the agent, after
// stop(), after start(). After stop() it must answer exactly as the same app started without the
// agent, send its SQL bare, send no ID downstream, publish nothing, and every function the agent
// wrapped must be the original again (no marker left, the very function the wrapper held); after
// start() it must be instrumented again.
// A second test drives the http and https definitions directly: unpatching one of them must leave
// the other working (the shared response wrappers, uncaught-error listener and ClientRequest emit).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startApp, runScript, get, appDir, UUID } from '../support/app.mjs';
import { udpListener } from '../support/udp.mjs';
import { waitForLog } from '../support/pglog.mjs';

const run = randomBytes(4).toString('hex');
const TOKEN = 'stop-restart-token-0123456789abcdef';

// The app reports which functions carry the agent's marker, on every object the agent patches.
const APP = `
const http = require('node:http');
const https = require('node:https');
const dc = require('node:diagnostics_channel');
const express = require('express');
const pg = require('pg');
// The app without the agent must not load the package either: loading it starts the agent.
const agent = process.env.BARE ? { getRequestId: () => undefined } : require('hatch-agent');
const WRAPPED = Symbol.for('hatch-agent.wrapped');
const ORIGINAL = Symbol.for('hatch-agent.original');
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
const probe = express.Router();
probe.use('/p', () => {});
const targets = {
  'http': http, 'https': https,
  'http.Server.prototype': http.Server.prototype, 'https.Server.prototype': https.Server.prototype,
  'http.ServerResponse.prototype': http.ServerResponse.prototype, 'http.ClientRequest.prototype': http.ClientRequest.prototype,
  'pg.Client.prototype': pg.Client.prototype, 'pg.Pool.prototype': require('pg-pool').prototype,
  'express.Route.prototype': express.Route.prototype, 'express.application': express.application,
  'express.Router': typeof express.Router.prototype.use === 'function' ? express.Router.prototype : express.Router,
  'express Layer.prototype': Object.getPrototypeOf(probe.stack[0]),
};
function wrapped() {
  const out = {};
  for (const [where, obj] of Object.entries(targets)) {
    for (const k of Object.getOwnPropertyNames(obj)) {
      const v = Object.getOwnPropertyDescriptor(obj, k).value; // getters are not called (pg's warn)
      if (typeof v === 'function' && v[WRAPPED] === true) out[where + '.' + k] = v[ORIGINAL];
    }
  }
  return out;
}
let first; // the originals the wrappers held, as first seen
const state = () => {
  const now = wrapped();
  first ??= now;
  const restored = Object.keys(first).filter((k) => {
    const [where, name] = [k.slice(0, k.lastIndexOf('.')), k.slice(k.lastIndexOf('.') + 1)];
    return targets[where][name] === first[k];
  });
  return {
    wrapped: Object.keys(now).sort(),
    restored: restored.sort(),
    uncaughtMonitors: process.listenerCount('uncaughtExceptionMonitor'),
    undici: dc.hasSubscribers('undici:request:create'),
    requestStart: dc.hasSubscribers('http.server.request.start'),
  };
};
const app = express();
app.get('/items/:itemId', async (req, res) => {
  const marker = req.query.m;
  const r = await pool.query("SELECT '" + marker + "' AS marker");
  const down = process.env.DOWN + '/' + marker;
  await new Promise((ok, fail) => http.get(down + '-get', (d) => { d.resume(); d.on('end', ok); }).on('error', fail));
  await (await fetch(down + '-fetch')).text();
  res.json({ marker: r.rows[0].marker, id: agent.getRequestId() ?? null, headerNames: res.getHeaderNames().sort() });
});
app.get('/state', (req, res) => res.json(state()));
app.post('/stop', (req, res) => { agent.stop(); res.json(state()); });
app.post('/start', (req, res) => res.json({ started: agent.start(), ...state() }));
const server = app.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

let down;
const seen = new Map(); // downstream path -> the ID headers it arrived with
let udp;
let app;
let bare;
before(async () => {
  down = http.createServer((req, res) => {
    seen.set(req.url, { id: req.headers['x-request-id'], traceparent: req.headers.traceparent });
    res.end('ok');
  });
  await new Promise((ok) => down.listen(0, '127.0.0.1', ok));
  udp = await udpListener();
  const env = {
    DOWN: `http://127.0.0.1:${down.address().port}`,
    HATCH_TOKEN: TOKEN,
    HATCH_STATSD: 'on',
    HATCH_STATSD_PORT: String(udp.port),
    HATCH_STATSD_FLUSH_MS: '100',
  };
  [app, bare] = await Promise.all([
    startApp(APP, { env }),
    startApp(APP, { env: { ...env, BARE: '1' }, agent: false }),
  ]);
});
after(async () => {
  await Promise.all([app?.stop(), bare?.stop()]);
  down?.close();
  udp?.close();
});

function post(url) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(JSON.parse(body)));
    });
    req.on('error', reject);
    req.end();
  });
}

/** One request to /items/:itemId with its own marker; what the app, pg and the downstream server saw. */
async function exercise(target, phase) {
  const marker = `sr-${run}-${phase}-${randomBytes(3).toString('hex')}`;
  const r = await get(`${target.url}/items/${phase}?m=${marker}`);
  assert.equal(r.status, 200, r.body);
  const [sql] = await waitForLog(`SELECT '${marker}' AS marker`);
  return {
    r,
    body: JSON.parse(r.body),
    sql,
    get: seen.get(`/${marker}-get`),
    fetch: seen.get(`/${marker}-fetch`),
    marker,
  };
}

function assertInstrumented(x, phase) {
  const id = x.r.headers['x-request-id'];
  assert.match(id, UUID, `${phase}: the response carries the ID`);
  assert.equal(x.body.id, id, `${phase}: the handler sees the ID`);
  assert.ok(x.body.headerNames.includes('x-request-id'), `${phase}: getHeaderNames shows the ID header`);
  assert.ok(
    x.sql.includes(`statement: /* ${id} GET /items/:itemId */ SELECT '${x.marker}'`),
    `${phase}: SQL commented: ${x.sql}`,
  );
  assert.equal(x.get?.id, id, `${phase}: http.get carries the ID`);
  assert.equal(x.fetch?.id, id, `${phase}: fetch carries the ID`);
  assert.match(x.fetch?.traceparent ?? '', /^00-[0-9a-f]{32}-/, `${phase}: fetch carries a traceparent`);
}

function assertState(s, phase, on) {
  const expected = [
    'http.get',
    'http.request',
    'https.get',
    'https.request',
    'http.ClientRequest.prototype.emit',
    ...[
      '_storeHeader',
      'getHeader',
      'getHeaderNames',
      'getHeaders',
      'getRawHeaderNames',
      'hasHeader',
      'removeHeader',
    ].map((n) => `http.ServerResponse.prototype.${n}`),
    'pg.Client.prototype.query',
    'pg.Client.prototype.connect',
    'pg.Pool.prototype.connect',
    'express.Router.route',
    'express.application.render',
    'express.Router.use',
  ];
  if (on) {
    for (const name of expected)
      assert.ok(s.wrapped.includes(name), `${phase}: ${name} is wrapped (${s.wrapped.join(', ')})`);
    assert.ok(s.undici, `${phase}: subscribed to the undici channels`);
    assert.ok(s.requestStart, `${phase}: subscribed to Node's http.server.request.start`);
  } else {
    assert.deepEqual(s.wrapped, [], `${phase}: nothing is wrapped any more`);
    assert.ok(
      s.restored.length >= expected.length,
      `${phase}: each wrapped function is the very original again (${s.restored.join(', ')})`,
    );
    assert.equal(s.undici, false, `${phase}: nothing subscribed to the undici channels`);
    assert.equal(s.requestStart, false, `${phase}: nothing subscribed to http.server.request.start`);
  }
}

test('stop() takes the agent out exactly, start() puts it back', async () => {
  const plain = await get(`${bare.url}/state`);
  const baseline = JSON.parse(plain.body);
  assert.deepEqual(baseline.wrapped, []);

  // 1. With the agent.
  const s1 = JSON.parse((await get(`${app.url}/state`)).body);
  assertState(s1, 'with the agent', true);
  assert.ok(s1.uncaughtMonitors > baseline.uncaughtMonitors, 'the uncaught-error listener is installed');
  assertInstrumented(await exercise(app, 'on'), 'with the agent');
  await udp.waitFor((ls) => ls.some((l) => l.startsWith('hatch.http.server.GET.items_itemId.200:')));
  const hatch = await get(`${app.url}/_hatch/config?format=json`, { authorization: `Bearer ${TOKEN}` });
  assert.equal(hatch.status, 200);
  const outcomes1 = JSON.parse(hatch.body).patches;
  assert.ok(
    outcomes1.some((p) => p.module === 'undici' && p.status === 'subscribed'),
    JSON.stringify(outcomes1),
  );

  // 2. After stop(): as without the agent.
  const s2 = await post(`${app.url}/stop`);
  assertState(s2, 'after stop()', false);
  assert.equal(s2.uncaughtMonitors, baseline.uncaughtMonitors, 'after stop(): the uncaught-error listener is gone');
  await new Promise((r) => setTimeout(r, 300)); // what stop() flushed has arrived
  udp.clear();
  const off = await exercise(app, 'off');
  const without = await exercise(bare, 'off');
  for (const x of [off, without]) {
    assert.equal(x.r.headers['x-request-id'], undefined, 'no ID on the response');
    assert.equal(x.body.id, null, 'no ID in the handler');
    assert.ok(x.sql.includes(`statement: SELECT '${x.marker}'`), `SQL sent bare: ${x.sql}`);
    assert.deepEqual(x.get, { id: undefined, traceparent: undefined }, 'http.get carries no ID');
    assert.deepEqual(x.fetch, { id: undefined, traceparent: undefined }, 'fetch carries no ID');
  }
  const headersOf = (x) =>
    Object.keys(x.r.headers)
      .filter((h) => h !== 'date' && h !== 'etag')
      .sort();
  assert.deepEqual(headersOf(off), headersOf(without), 'the same response headers as without the agent');
  assert.deepEqual(off.body.headerNames, without.body.headerNames);
  const hidden = await get(`${app.url}/_hatch/config?format=json`, { authorization: `Bearer ${TOKEN}` });
  assert.equal(hidden.status, 404, 'after stop(): the hatches are gone, the app answers');
  await new Promise((r) => setTimeout(r, 400));
  assert.deepEqual(
    udp.lines.filter((l) => l.startsWith('hatch.')),
    [],
    'after stop(): nothing reaches StatsD',
  );

  // 3. After start(): instrumented again, including the modules loaded before the stop.
  const s3 = await post(`${app.url}/start`);
  assert.equal(s3.started, true);
  assertState(s3, 'after start()', true);
  assert.equal(s3.uncaughtMonitors, s1.uncaughtMonitors, 'after start(): one uncaught-error listener again');
  assertInstrumented(await exercise(app, 'again'), 'after start()');
  await udp.waitFor((ls) => ls.some((l) => l.startsWith('hatch.http.server.GET.items_itemId.200:')));
  const again = await get(`${app.url}/_hatch/config?format=json`, { authorization: `Bearer ${TOKEN}` });
  assert.equal(again.status, 200);
  const outcomes3 = JSON.parse(again.body).patches;
  const named = (list) => list.map((p) => `${p.module} ${p.status} ${p.detail}`).sort();
  assert.equal(new Set(named(outcomes3)).size, outcomes3.length, `none doubled: ${named(outcomes3)}`);
  // The same outcomes, and one more where Node 22+ loaded node:http2 for fetch after the first request's
  // look for loaded builtins: start() patches what is loaded then.
  assert.deepEqual(
    named(outcomes3).filter((o) => o !== 'http2 patched http2' || named(outcomes1).includes(o)),
    named(outcomes1),
    'the same outcomes',
  );
  assert.equal(app.stderr(), '', 'nothing logged');
});

// The definitions driven directly, without `-r`: the package's own built files, as installed.
const dist = path.join(appDir, 'node_modules', 'hatch-agent', 'dist');
const ROLLBACK = `
const http = require('node:http');
const https = require('node:https');
const net = require('node:net');
const dc = require('node:diagnostics_channel');
const { httpServer, httpsServer } = require(${JSON.stringify(path.join(dist, 'patches/http-server/index.js'))});
const { httpClient, httpsClient } = require(${JSON.stringify(path.join(dist, 'patches/http-client.js'))});
const { activeConfig } = require(${JSON.stringify(path.join(dist, 'src/config.js'))});
const WRAPPED = Symbol.for('hatch-agent.wrapped');
const marked = (f) => f[WRAPPED] === true;
const errors = [];
dc.subscribe('hatch:error', (e) => errors.push(e.kind));
const calls = [];
dc.subscribe('hatch:http.client', (e) => calls.push(e.statusCode));
const monitors = () => process.listenerCount('uncaughtExceptionMonitor');
const base = monitors();
const out = {};
const config = activeConfig();
httpServer.patch(http, config);
httpsServer.patch(https, config);
httpsServer.unpatch(https);
const starts = () => dc.channel('http.server.request.start').hasSubscribers;
out.serverAfterHttpsUnpatch = { monitors: monitors() - base, storeHeader: marked(http.ServerResponse.prototype._storeHeader), start: starts() };
httpClient.patch(http, config);
httpsClient.patch(https, config);
httpClient.unpatch(http);
out.clientAfterHttpUnpatch = { emit: marked(http.ClientRequest.prototype.emit), httpsRequest: marked(https.request), httpRequest: marked(http.request) };
// A server whose handler throws once: reported through the listener the https unpatch must not remove.
process.on('uncaughtException', () => {});
const server = http.createServer((req, res) => {
  if (req.url === '/throw') { res.destroy(); throw new Error('boom'); }
  res.end('ok');
});
// A TCP server that hangs up: an https request to it fails, and its 'close' must still be timed.
const hangup = net.createServer((s) => s.destroy());
server.listen(0, '127.0.0.1', () => hangup.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  http.get('http://127.0.0.1:' + port + '/', (res) => {
    out.echoed = res.headers['x-request-id'] !== undefined;
    res.resume();
    http.get('http://127.0.0.1:' + port + '/throw').on('error', () => {
      const req = https.request('https://127.0.0.1:' + hangup.address().port + '/', () => {});
      req.on('error', () => {});
      req.on('close', () => setTimeout(() => {
        out.uncaughtReported = errors.includes('uncaught');
        out.httpsCallsTimed = calls.length;
        httpServer.unpatch(http);
        httpsClient.unpatch(https);
        out.afterAll = { monitors: monitors() - base, storeHeader: marked(http.ServerResponse.prototype._storeHeader), serverStart: starts(), clientEmit: marked(http.ClientRequest.prototype.emit) };
        console.log(JSON.stringify(out));
        server.close();
        hangup.close();
      }, 50));
      req.end();
    });
  });
}));
`;

test('unpatching the https (or http) definition leaves the other one working; the last one restores all', async () => {
  const r = await runScript(ROLLBACK, { agent: false });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(
    out.serverAfterHttpsUnpatch,
    { monitors: 1, storeHeader: true, start: true },
    'http server keeps the listener and the response wrappers',
  );
  assert.deepEqual(
    out.clientAfterHttpUnpatch,
    { emit: true, httpsRequest: true, httpRequest: false },
    'https client keeps the emit wrapper',
  );
  assert.equal(out.echoed, true, 'the http server still echoes the ID');
  assert.equal(out.uncaughtReported, true, "an http handler's throw is still reported");
  assert.equal(out.httpsCallsTimed, 1, 'the failed https call is still timed');
  assert.deepEqual(
    out.afterAll,
    { monitors: 0, storeHeader: false, serverStart: false, clientEmit: false },
    'the last unpatch restores everything',
  );
});
