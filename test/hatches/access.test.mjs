// Access to the hatches: without a valid token (missing, wrong, near-miss) exactly the app's own
// answer, counted; nothing without HATCH_TOKEN; a short token refused; the public health summary;
// HATCH_HEALTH_URLS; HATCH_PREFIX. Session cookies: expired, forged, of the other scope, or the token
// itself as a cookie open nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { createHmac } from 'node:crypto';
import { startApp, runScript, get } from '../support/app.mjs';
import { udpListener } from '../support/udp.mjs';
import { APP, TOKEN, STARTUP_MS, SLOW_OK, auth, until } from './apps.mjs';

let udp;
let app; // hatches on
let plain; // the same app without HATCH_TOKEN
before(async () => {
  udp = await udpListener();
  const statsd = { HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(udp.port), HATCH_STATSD_FLUSH_MS: '100' };
  [app, plain] = await Promise.all([
    startApp(APP, { env: { ...statsd, HATCH_TOKEN: TOKEN, APP_NO_CLIENT: '1' }, timeout: STARTUP_MS }),
    startApp(APP, { env: { HATCH_TOKEN: '', APP_NO_CLIENT: '1' }, timeout: STARTUP_MS }),
  ]);
});
after(async () => {
  await Promise.all([app?.stop(), plain?.stop()]);
  udp?.close();
});

/** The answer as a comparable value: status, headers but date and the request ID, body. */
function shape(r) {
  const headers = { ...r.headers };
  delete headers.date;
  delete headers['x-request-id'];
  return { status: r.status, headers, body: r.body };
}

/** `name=<expiry>.<HMAC-SHA256(token, name:expiry)>`, expiring `seconds` from now. */
function session(name, seconds) {
  const expiry = String(Math.floor(Date.now() / 1000) + seconds);
  return `${name}=${expiry}.${createHmac('sha256', TOKEN).update(`${name}:${expiry}`).digest('hex')}`;
}

const BAD = [
  ['no Authorization', {}],
  ['a wrong token', auth('x'.repeat(TOKEN.length))],
  ['the token but its last character', auth(TOKEN.slice(0, -1) + (TOKEN.endsWith('f') ? 'e' : 'f'))],
  ['the token cut short by one', auth(TOKEN.slice(0, -1))],
  ['the token with one more character', auth(TOKEN + 'a')],
  ['the token without Bearer', { authorization: TOKEN }],
  ['the token as Basic', { authorization: `Basic ${TOKEN}` }],
  ['the token upper-cased', auth(TOKEN.toUpperCase())],
  // Session cookies (src/hatches/auth.ts): made here as the agent makes them, from the token.
  ['an expired session cookie', { cookie: session('hatch_session', -60) }],
  [
    'a session cookie with a forged MAC',
    { cookie: session('hatch_session', 3600).replace(/.$/, (c) => (c === '0' ? '1' : '0')) },
  ],
  ['the debug cookie, which opens no hatch', { cookie: session('hatch_debug', 3600) }],
  ['the token as a cookie', { cookie: `hatch_session=${TOKEN}` }],
];
const PATHS = [
  '/_hatch',
  '/_hatch/',
  '/_hatch/health',
  '/_hatch/config',
  '/_hatch/requests?format=json',
  '/_hatch/error?msg=x',
  '/_hatch/statsd?msg=x',
  '/_hatch/nope',
  '/_hatch/logout',
  '/_hatch/login', // served only with HATCH_DEBUG_ERRORS=on
];

// Every path with no token and a near miss; every kind of bad token on two paths (the machine is shared: not all 64 pairs).
const CASES = [
  ...PATHS.flatMap((p) => [
    [p, ...BAD[0]],
    [p, ...BAD[2]],
  ]),
  ...['/_hatch/health', '/_hatch/config'].flatMap((p) =>
    BAD.filter((_, i) => i !== 0 && i !== 2).map((b) => [p, ...b]),
  ),
];

test("without a valid token every hatch URL gets exactly the app's own 404, and the attempts are counted", async () => {
  const before = app.stderr();
  let n = 0;
  for (const [path, what, headers] of CASES) {
    const [a, b] = await Promise.all([get(app.url + path, headers), get(plain.url + path, headers)]);
    assert.equal(a.status, 404, `${path} with ${what}`);
    assert.deepEqual(shape(a), shape(b), `${path} with ${what}`);
    assert.equal(a.headers['x-app'], 'own-404');
    n++;
  }
  assert.equal(app.stderr(), before); // no log line per attempt, and no test error raised
  // Counted: errors{kind=hatch_auth}, summed over the flushes.
  await until(
    () => {
      const sum = udp.lines
        .filter((l) => l.startsWith('hatch.errors.hatch_auth:'))
        .reduce((s, l) => s + Number(/:(\d+)\|c$/.exec(l)[1]), 0);
      return sum >= n;
    },
    10000,
    `${n} hatch_auth counts`,
  );
});

test('without HATCH_TOKEN nothing is served, even to the right token', async () => {
  for (const path of PATHS) {
    const r = await get(plain.url + path, auth());
    assert.equal(r.status, 404, path);
    assert.equal(r.headers['x-app'], 'own-404');
  }
  // An app path next to the prefix stays the app's with the hatches on.
  const r = await get(app.url + '/_hatchery', auth());
  assert.equal(r.headers['x-app'], 'own-404');
});

test('a token shorter than 24 characters is refused with one clear line, and the hatches stay off', async () => {
  const short = 'short-token-123';
  const a = await startApp(APP, { env: { HATCH_TOKEN: short, APP_NO_CLIENT: '1' }, timeout: STARTUP_MS });
  try {
    const r = await get(a.url + '/_hatch', auth(short));
    assert.equal(r.status, 404);
    assert.equal(r.headers['x-app'], 'own-404');
    assert.match(a.stderr(), /HATCH_TOKEN is 15 characters, shorter than 24; the \/_hatch URLs stay off/);
    assert.ok(!a.stderr().includes(short));
  } finally {
    await a.stop();
  }
});

test('HATCH_HEALTH_PUBLIC opens only the health summary; HATCH_HEALTH_URLS are checked, a 5xx names its URL', async () => {
  const target = http.createServer((req, res) => {
    res.statusCode = req.url === '/boom' ? 500 : req.url === '/missing' ? 404 : 200;
    res.end('x');
  });
  await new Promise((r) => target.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${target.address().port}`;
  const [a, b] = await Promise.all([
    startApp(APP, {
      env: {
        HATCH_TOKEN: TOKEN,
        HATCH_HEALTH_TIMEOUT_MS: SLOW_OK,
        HATCH_HEALTH_PUBLIC: '1',
        HATCH_HEALTH_URLS: `${base}/ok,${base}/missing`,
        APP_NO_CLIENT: '1',
      },
      timeout: STARTUP_MS,
    }),
    startApp(APP, {
      env: {
        HATCH_TOKEN: TOKEN,
        HATCH_HEALTH_TIMEOUT_MS: SLOW_OK,
        HATCH_HEALTH_URLS: `${base}/ok,${base}/boom`,
        APP_NO_CLIENT: '1',
      },
      timeout: STARTUP_MS,
    }),
  ]);
  try {
    const pub = await get(a.url + '/_hatch/health');
    assert.equal(pub.status, 200, (await get(a.url + '/_hatch/health', auth())).body);
    assert.deepEqual(JSON.parse(pub.body), { status: 'pass' }); // no details
    const full = await get(a.url + '/_hatch/health', auth());
    assert.deepEqual(
      JSON.parse(full.body).checks.map((c) => [c.name, c.status]),
      [
        [`url ${base}/ok`, 'pass'],
        [`url ${base}/missing`, 'pass'],
      ],
    );
    for (const path of ['/_hatch', '/_hatch/config', '/_hatch/requests']) {
      const r = await get(a.url + path);
      assert.equal(r.headers['x-app'], 'own-404', path);
    }
    const failing = await get(b.url + '/_hatch/health', auth());
    assert.equal(failing.status, 503);
    const body = JSON.parse(failing.body);
    assert.equal(body.status, 'fail');
    assert.deepEqual(body.failing, [`url ${base}/boom`]);
    assert.match(body.checks.find((c) => c.name === `url ${base}/boom`).detail, /answered 500/);
    const closed = await get(b.url + '/_hatch/health'); // not public there
    assert.equal(closed.headers['x-app'], 'own-404');
  } finally {
    await Promise.all([a.stop(), b.stop()]);
    target.close();
  }
});

test('a bad HATCH_PREFIX is refused with one line; a good one moves the hatches', async () => {
  const r = await runScript('', { env: { HATCH_TOKEN: TOKEN, HATCH_PREFIX: '/ops/' } });
  assert.match(r.stderr, /HATCH_PREFIX="\/ops\/" is not a path/);
  const a = await startApp(APP, {
    env: { HATCH_TOKEN: TOKEN, HATCH_PREFIX: '/ops/hatch', APP_NO_CLIENT: '1' },
    timeout: STARTUP_MS,
  });
  try {
    assert.equal((await get(a.url + '/ops/hatch/config', auth())).status, 200);
    assert.equal((await get(a.url + '/_hatch/config', auth())).headers['x-app'], 'own-404');
  } finally {
    await a.stop();
  }
});
