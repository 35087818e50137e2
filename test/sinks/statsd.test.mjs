// The StatsD sink on real sockets: the three naming modes on a UDP listener, the real Etsy StatsD
// daemon accepting our output with zero bad lines, StatsD down (closed port, unresolvable host)
// changing nothing for the app, the flush at exit, and bad HATCH_* values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, runScript, get } from '../support/app.mjs';
import { udpListener, closedUdpPort, statsdValues } from '../support/udp.mjs';
import { startStatsdDaemon } from '../support/statsd-daemon.mjs';

const DATABASE_URL = process.env.DATABASE_URL;

// A server with a query per request, when DATABASE_URL is there.
const SERVER = `
const http = require('node:http');
const pg = require('pg');
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
const server = http.createServer(async (req, res) => {
  if (req.url === '/db') { const r = await pool.query('SELECT 1 AS one'); return res.end(String(r.rows[0].one)); }
  if (req.url === '/boom') { res.statusCode = 500; return res.end('boom'); }
  res.end('hello');
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

async function traffic(url) {
  await get(url + '/');
  await get(url + '/db');
  await get(url + '/boom');
  await get(url + '/', { 'x-request-id': '*/ bad' });
}

test('plain StatsD (default): Graphite-safe names with dimensions in a fixed order', async () => {
  const udp = await udpListener();
  const app = await startApp(SERVER, {
    env: { DATABASE_URL, HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(udp.port), HATCH_STATSD_FLUSH_MS: '100' },
  });
  try {
    await traffic(app.url);
    const lines = await udp.waitFor(
      (ls) =>
        ls.includes('hatch.errors.invalid_request_id:1|c') &&
        ls.some((l) => l.startsWith('hatch.errors.status.')) &&
        ls.some((l) => l.startsWith('hatch.db.query.')) &&
        ls.some((l) => l.includes('.500:')),
    );
    assert.ok(lines.some((l) => /^hatch\.http\.server\.GET\.unmatched\.200(:[\d.]+\|ms)+$/.test(l)));
    assert.ok(lines.some((l) => /^hatch\.http\.server\.GET\.unmatched\.500(:[\d.]+\|ms)+$/.test(l)));
    assert.ok(lines.some((l) => /^hatch\.db\.query\.pg\.SELECT\.ok(:[\d.]+\|ms)+$/.test(l)));
    assert.ok(lines.includes('hatch.errors.invalid_request_id:1|c'));
    // The app's own 500 (no error thrown): counted once, by kind, route and status.
    assert.ok(lines.includes('hatch.errors.status.unmatched.500:1|c'), lines.join('\n'));
    for (const l of lines) assert.match(l, /^[A-Za-z0-9_.-]+(:[\d.]+\|(ms|c|g))+$/, `not Graphite-safe: ${l}`); // g: runtime.* gauges
  } finally {
    await app.stop();
    udp.close();
  }
});

test('dogstatsd and telegraf modes put the dimensions in tags; the prefix is configurable', async () => {
  for (const [mode, http, db] of [
    [
      'dogstatsd',
      /^app\.http\.server(:[\d.]+)+\|ms\|#method:GET,route:unmatched,status_code:200$/,
      /^app\.db\.query(:[\d.]+)+\|ms\|#system:pg,operation:SELECT,outcome:ok$/,
    ],
    [
      'telegraf',
      /^app\.http\.server,method=GET,route=unmatched,status_code=200(:[\d.]+\|ms)+$/,
      /^app\.db\.query,system=pg,operation=SELECT,outcome=ok(:[\d.]+\|ms)+$/,
    ],
  ]) {
    const udp = await udpListener();
    const app = await startApp(SERVER, {
      env: {
        DATABASE_URL,
        HATCH_STATSD: 'on',
        HATCH_STATSD_PORT: String(udp.port),
        HATCH_STATSD_FLUSH_MS: '100',
        HATCH_STATSD_TAGS: mode,
        HATCH_STATSD_PREFIX: 'app.',
      },
    });
    try {
      await traffic(app.url);
      const lines = await udp.waitFor((ls) => ls.some((l) => http.test(l)) && ls.some((l) => db.test(l)));
      assert.ok(
        lines.every((l) => l.startsWith('app.')),
        lines.join('\n'),
      );
    } finally {
      await app.stop();
      udp.close();
    }
  }
});

test('the real StatsD daemon accepts the default output (several values a line) with zero bad lines, every value counted', async () => {
  // Only the default (plain StatsD) mode: dogstatsd mode's multi-value lines are a Datadog Agent
  // (>= 6.25) format that the Etsy daemon does not parse.
  const daemon = await startStatsdDaemon();
  const app = await startApp(SERVER, {
    env: { DATABASE_URL, HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(daemon.port), HATCH_STATSD_FLUSH_MS: '100' },
  });
  try {
    for (let i = 0; i < 20; i++) await traffic(app.url);
    // The daemon has every value once its timers hold as many as we made requests.
    let timers;
    const until = Date.now() + 10000;
    for (;;) {
      timers = await daemon.timers();
      const http = Object.entries(timers)
        .filter(([k]) => k.startsWith('hatch.http.server'))
        .reduce((n, [, v]) => n + v.length, 0);
      if (http >= 80 || Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const stats = await daemon.stats();
    assert.equal(stats.messages.bad_lines_seen, 0, daemon.output());
    assert.equal(timers['hatch.http.server.GET.unmatched.200'].length, 60);
    assert.equal(timers['hatch.http.server.GET.unmatched.500'].length, 20);
    assert.equal(timers['hatch.db.query.pg.SELECT.ok'].length, 20);
    assert.equal((await daemon.counters())['hatch.errors.invalid_request_id'], 20);
  } finally {
    await app.stop();
    await daemon.stop();
  }
});

// A self-contained app that serves, calls itself and exits on its own: what it prints and its exit
// code must not depend on StatsD being there.
const SELF = `
const http = require('node:http');
const server = http.createServer((req, res) => { res.statusCode = req.url === '/x' ? 404 : 200; res.end('body ' + req.url); });
server.listen(0, '127.0.0.1', async () => {
  const out = [];
  for (const p of ['/', '/x', '/y']) {
    const r = await fetch('http://127.0.0.1:' + server.address().port + p);
    out.push([r.status, await r.text()]);
  }
  console.log(JSON.stringify(out));
  server.close();
  setTimeout(() => process.exit(7), 300); // past a few flush intervals, then a distinctive code
});
`;

test('StatsD down (closed port, unresolvable host): the app notices nothing', async () => {
  const plain = await runScript(SELF, { agent: false });
  assert.equal(plain.code, 7);
  const closed = await closedUdpPort();
  for (const env of [
    { HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(closed), HATCH_STATSD_FLUSH_MS: '100' },
    { HATCH_STATSD: 'on', HATCH_STATSD_HOST: 'no-such-host.invalid', HATCH_STATSD_FLUSH_MS: '100' },
  ]) {
    const r = await runScript(SELF, { env });
    assert.equal(r.code, plain.code, r.stderr);
    assert.equal(r.stdout, plain.stdout);
    assert.ok(r.stderr.split('\n').filter(Boolean).length <= 1, `at most one line: ${r.stderr}`);
  }
});

test('an unresolvable StatsD host is reported in one line, however long DNS takes', async () => {
  // DNS here sometimes answers only after its 5 s timeout: wait for the line, do not race it.
  const app = await startApp(SERVER, {
    env: { DATABASE_URL, HATCH_STATSD: 'on', HATCH_STATSD_HOST: 'no-such-host.invalid', HATCH_STATSD_FLUSH_MS: '100' },
  });
  try {
    const until = Date.now() + 20000;
    while (!app.stderr().includes('\n') && Date.now() < until) {
      await traffic(app.url);
      await new Promise((r) => setTimeout(r, 200));
    }
    await traffic(app.url);
    assert.match(
      app.stderr(),
      /^hatch-agent warn: statsd: cannot resolve HATCH_STATSD_HOST=no-such-host\.invalid \(\w+\); metrics are dropped until it resolves\n$/,
    );
  } finally {
    await app.stop();
  }
});

test('values recorded just before process.exit() are still sent', async () => {
  const udp = await udpListener();
  try {
    const r = await runScript(
      `
const http = require('node:http');
const server = http.createServer((req, res) => res.end('ok'));
server.listen(0, '127.0.0.1', () => {
  http.get('http://127.0.0.1:' + server.address().port + '/', (res) => { res.resume(); res.on('end', () => setImmediate(() => process.exit(0))); });
});`,
      { env: { HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(udp.port), HATCH_STATSD_FLUSH_MS: '60000' } },
    );
    assert.equal(r.code, 0, r.stderr);
    await udp.waitFor((ls) => ls.some((l) => l.startsWith('hatch.http.server.GET.unmatched.200:')), 3000);
    // The app has exited, so all it sent is on its way: what arrives in a moment is all there is.
    await new Promise((r) => setTimeout(r, 200));
    const values = statsdValues(udp.lines.filter((l) => l.startsWith('hatch.http.server.GET.unmatched.200:')));
    assert.equal(values.length, 1, `one timing for the one request: ${udp.lines.join(' ')}`);
    assert.ok(Number.isFinite(values[0]) && values[0] >= 0, `a duration in ms: ${values[0]}`);
  } finally {
    udp.close();
  }
});

test('a bad HATCH_* value prints one line naming it and what is used instead; the app runs', async () => {
  const r = await runScript(`console.log('ran')`, {
    env: { HATCH_STATSD_PORT: 'eighty', HATCH_STATSD_TAGS: 'influx' },
  });
  assert.equal(r.code, 0);
  assert.equal(r.stdout, 'ran\n');
  const lines = r.stderr.split('\n').filter(Boolean);
  assert.deepEqual(lines, [
    'hatch-agent warn: HATCH_STATSD_PORT="eighty" is not a whole number from 1 to 65535; using 8125',
    'hatch-agent warn: HATCH_STATSD_TAGS="influx" is not one of none|dogstatsd|telegraf; using "none"',
  ]);
});

test('HATCH_STATSD=off: nothing is sent', async () => {
  const udp = await udpListener();
  try {
    const app = await startApp(SERVER, {
      env: { DATABASE_URL, HATCH_STATSD: 'off', HATCH_STATSD_PORT: String(udp.port), HATCH_STATSD_FLUSH_MS: '100' },
    });
    await traffic(app.url);
    await new Promise((r) => setTimeout(r, 400));
    const r = await get(app.url + '/');
    assert.match(r.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'the rest of the agent still works');
    const { code } = await app.stop('SIGINT');
    assert.equal(code, null);
    assert.deepEqual(udp.lines, []);
  } finally {
    udp.close();
  }
});
