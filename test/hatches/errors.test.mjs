// Errored requests in the requests hatch, outgoing calls' paths, and the debug pages
// (HATCH_DEBUG_ERRORS=on), over HTTP against a hapi app (test/hatches/apps.mjs ERRORS_APP) run under
// `node -r hatch-agent`, and the same app run without the agent for the bytes it answers:
// - /_hatch/requests lists errored requests apart (`errored`), each with class, message, status and
//   stack (the app's file among the frames); /_hatch/requests/<id> gives one with its timeline;
// - an outgoing call's timeline entry is `GET host/path`, never its query string;
// - the holder of the token gets the debug page (JSON or HTML) with the same status; a request
//   without the token, or with a wrong one, gets the app's own response byte for byte, and so does a
//   token holder's 200 and a 5xx body too large to hold;
// - the login form sets two HttpOnly, SameSite=Strict cookies: one for the prefix, one (Path=/) that
//   the debug pages take and the app never sees; neither holds the token.
// - Express, Fastify and Koa: each way they write a 500 becomes the debug page for the token holder,
//   and stays the framework's own bytes for everyone else.
// The same in Chromium: test/hatches/browser.test.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { startApp } from '../support/app.mjs';
import { ERRORS_APP, FRAMEWORKS_APP, TOKEN, STARTUP_MS, auth, until } from './apps.mjs';

/** GET with headers: { status, rawHeaders, headers, body: Buffer }. */
function raw(url, headers = {}) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers, agent: false }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode,
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            body: Buffer.concat(chunks),
          }),
        );
      })
      .on('error', reject);
  });
}

/** POST a form body: { status, headers, body }. */
function post(url, form) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: 'POST', agent: false, headers: { 'content-type': 'application/x-www-form-urlencoded' } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(form);
  });
}

/** The response as the app made it: status, header lines but Date and the agent's ID echo, body. */
const appsOwn = (r) => ({
  status: r.status,
  headers: r.rawHeaders.filter((_, i, a) => i % 2 === 0 && !/^(date|x-request-id)$/i.test(a[i])).join(','),
  body: r.body.toString('base64'),
});

let app;
let bare;
before(async () => {
  [app, bare] = await Promise.all([
    startApp(ERRORS_APP, { env: { HATCH_TOKEN: TOKEN, HATCH_DEBUG_ERRORS: 'on' }, timeout: STARTUP_MS }),
    startApp(ERRORS_APP, { agent: false, timeout: STARTUP_MS }),
  ]);
});
after(() => Promise.all([app?.stop(), bare?.stop()]));

const json = async (path) => JSON.parse((await raw(app.url + path, auth())).body);

test('an errored request is listed apart, with its error, stack and the calls leading up to it', async () => {
  const r = await raw(app.url + '/boom');
  assert.equal(r.status, 500);
  const id = r.headers['x-request-id'];
  const list = await until(
    async () => {
      const l = await json('/_hatch/requests?format=json');
      return l.errored.some((x) => x.id === id) && l;
    },
    30000,
    'the errored record',
  );
  const e = list.errored.find((x) => x.id === id);
  assert.equal(e.status, 500);
  assert.equal(e.route, '/boom');
  assert.equal(e.error.kind, 'handler');
  assert.equal(e.error.name, 'TypeError');
  assert.equal(e.error.message, 'boom from the route');
  assert.equal(e.error.status, 500);
  assert.ok(e.error.stack.length > 0 && e.error.stack.length <= 20);
  assert.ok(
    e.error.stack.some((f) => /app-[0-9a-f]+\.js:\d+:\d+/.test(f)),
    e.error.stack.join('\n'),
  );
  // Not among the errored: a 200 and the hatch requests themselves.
  await raw(app.url + '/ok');
  const later = await json('/_hatch/requests?format=json');
  assert.ok(
    later.errored.every((x) => x.status >= 500),
    JSON.stringify(later.errored.map((x) => x.status)),
  );

  const one = await json(`/_hatch/requests/${id}?format=json`);
  assert.deepEqual(one.error, e.error);
  const calls = one.timeline.filter((t) => t.kind === 'call').map((t) => t.label);
  assert.deepEqual(calls, ['GET 127.0.0.1/api/items/7', 'GET 127.0.0.1/v2/users']);
  const text = JSON.stringify(later) + JSON.stringify(one);
  for (const secret of ['SECRET-FETCH-123', 'SECRET-GET-456', 'api_key', 'token='])
    assert.ok(!text.includes(secret), secret);

  const html = (await raw(`${app.url}/_hatch/requests?format=html`, auth())).body.toString();
  const errors = html.slice(html.indexOf('<div class="errored">'), html.indexOf('<h2>Slowest'));
  assert.match(errors, new RegExp(`data-request-id="${id}"`));
  assert.match(errors, /<b class="error-name">TypeError<\/b>: <span class="error-message">boom from the route/);
  assert.match(errors, /<pre class="stack">at [^<]*app-[0-9a-f]+\.js:\d+/);
});

test('a 5xx the app answers itself, with no error, is a status record', async () => {
  const r = await raw(app.url + '/status500');
  const id = r.headers['x-request-id'];
  const one = await until(
    async () => {
      const x = await raw(`${app.url}/_hatch/requests/${id}?format=json`, auth());
      return x.status === 200 && JSON.parse(x.body);
    },
    30000,
    'the record',
  );
  assert.deepEqual(one.error, {
    kind: 'status',
    name: 'none',
    message: 'answered 500 with no error',
    stack: [],
    status: 500,
  });
});

test('the token holder gets the debug page with the same status; JSON or HTML', { timeout: 60000 }, async () => {
  const j = await raw(app.url + '/boom?q=private', { ...auth(), accept: 'application/json', 'x-api-key': 'k-123' });
  assert.equal(j.status, 500);
  assert.match(j.headers['content-type'], /^application\/json/);
  assert.equal(j.headers['cache-control'], 'no-store');
  const d = JSON.parse(j.body);
  assert.equal(d.debug, true);
  assert.equal(d.id, j.headers['x-request-id']);
  assert.equal(d.path, '/boom');
  assert.equal(d.error.name, 'TypeError');
  assert.equal(d.error.message, 'boom from the route');
  assert.ok(
    d.error.stack.some((f) => /app-[0-9a-f]+\.js:\d+:\d+/.test(f)),
    d.error.stack.join('\n'),
  );
  assert.deepEqual(
    d.timeline.filter((t) => t.kind === 'call').map((t) => t.label),
    ['GET 127.0.0.1/api/items/7', 'GET 127.0.0.1/v2/users'],
  );
  assert.equal(d.headers.authorization, '[redacted]');
  assert.equal(d.headers['x-api-key'], '[redacted]');
  assert.equal(d.headers.accept, 'application/json');
  assert.ok(!j.body.toString().includes(TOKEN));

  const h = await raw(app.url + '/boom', { ...auth(), accept: 'text/html' });
  assert.equal(h.status, 500);
  assert.match(h.headers['content-type'], /^text\/html/);
  assert.match(h.headers['content-security-policy'], /default-src 'none'/);
  const body = h.body.toString();
  assert.match(body, /<b class="error-name">TypeError<\/b>/);
  assert.match(body, /<pre class="stack">at [^<]*app-[0-9a-f]+\.js:\d+/);
  assert.match(body, /<code>authorization<\/code><\/td><td><code>\[redacted\]<\/code>/);

  // A 5xx with no error is a debug page too, and so is one written in parts, whose end waits for
  // the callback of its first write (held, not written: it is called all the same).
  const s = JSON.parse((await raw(app.url + '/status500', auth())).body);
  assert.equal(s.error.kind, 'status');
  const p = await raw(app.url + '/pieces', auth());
  assert.equal(p.status, 503);
  assert.equal(JSON.parse(p.body).error.message, 'answered 503 with no error');
});

test("without the token, with a wrong one, or for a 200 or a body too big to hold: the app's own bytes", async () => {
  const wrong = { authorization: `Bearer ${TOKEN.slice(0, -1)}x` };
  for (const [path, headers] of [
    ['/boom', {}],
    ['/boom', wrong],
    ['/boom', { cookie: 'hatch_debug=1.' + '0'.repeat(64) }],
    ['/status500', {}],
    ['/pieces', {}],
    ['/ok', auth()],
    ['/big500', auth()],
  ]) {
    const [mine, theirs] = await Promise.all([raw(app.url + path, headers), raw(bare.url + path, headers)]);
    assert.deepEqual(appsOwn(mine), appsOwn(theirs), `${path} ${JSON.stringify(headers)}`);
  }
});

test('the login form sets the cookies; the debug cookie opens the debug page, the app never sees it', async () => {
  const form = await raw(app.url + '/_hatch/login');
  assert.equal(form.status, 200);
  assert.match(form.body.toString(), /<form method="post" action="\/_hatch\/login">/);
  assert.match(form.headers['content-security-policy'], /form-action 'self'/);

  const bad = await post(app.url + '/_hatch/login', 'token=not-the-token');
  assert.equal(bad.status, 403);
  assert.equal(bad.headers['set-cookie'], undefined);

  const ok = await post(app.url + '/_hatch/login', new URLSearchParams({ token: TOKEN }).toString());
  assert.equal(ok.status, 303);
  assert.equal(ok.headers.location, '/_hatch/requests');
  const cookies = ok.headers['set-cookie'];
  assert.equal(cookies.length, 2);
  const [session, debug] = cookies;
  assert.match(session, /^hatch_session=\d+\.[0-9a-f]{64}; Path=\/_hatch; HttpOnly; SameSite=Strict; Max-Age=28800$/);
  assert.match(debug, /^hatch_debug=\d+\.[0-9a-f]{64}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=28800$/);
  for (const c of cookies) assert.ok(!c.includes(TOKEN));
  const pair = (c) => c.split(';')[0];

  // Each cookie opens its own scope only.
  assert.equal((await raw(app.url + '/_hatch/requests?format=json', { cookie: pair(session) })).status, 200);
  const hatchWithDebug = await raw(app.url + '/_hatch/requests?format=json', { cookie: pair(debug) });
  assert.notEqual(hatchWithDebug.status, 200);
  const [mine, theirs] = await Promise.all([
    raw(app.url + '/boom', { cookie: pair(session) }),
    raw(bare.url + '/boom', { cookie: pair(session) }),
  ]);
  assert.deepEqual(appsOwn(mine), appsOwn(theirs));

  const page = await raw(app.url + '/boom', { cookie: `a=1; ${pair(debug)}; b=2` });
  assert.equal(page.status, 500);
  assert.equal(JSON.parse(page.body).error.name, 'TypeError');
  const seen = await raw(app.url + '/cookies', { cookie: `a=1; ${pair(debug)}; b=2` });
  assert.equal(seen.body.toString(), 'a=1; b=2');
  const alone = await raw(app.url + '/cookies', { cookie: pair(debug) });
  assert.equal(alone.body.toString(), '(none)');

  const out = await raw(app.url + '/_hatch/logout', { cookie: pair(session) });
  assert.equal(out.status, 200);
  assert.deepEqual(
    out.headers['set-cookie'].map((c) => c.replace(/HttpOnly.*Max-Age=0$/, 'cleared')),
    ['hatch_session=; Path=/_hatch; cleared', 'hatch_debug=; Path=/; cleared'],
  );
});

test('Express, Fastify and Koa: the debug page for the token holder, their own bytes for everyone else', async () => {
  const [fw, fwBare] = await Promise.all([
    startApp(FRAMEWORKS_APP, { env: { HATCH_TOKEN: TOKEN, HATCH_DEBUG_ERRORS: 'on' }, timeout: STARTUP_MS }),
    startApp(FRAMEWORKS_APP, { agent: false, timeout: STARTUP_MS }),
  ]);
  try {
    const bases = async (a) => {
      const ports = JSON.parse((await raw(a.url + '/ports')).body);
      return { express: a.url, fastify: `http://127.0.0.1:${ports.fastify}`, koa: `http://127.0.0.1:${ports.koa}` };
    };
    const [mine, theirs] = await Promise.all([bases(fw), bases(fwBare)]);
    for (const name of ['express', 'fastify', 'koa'])
      for (const path of ['/answer', '/throw']) {
        const what = `${name} ${path}`;
        const [a, b] = await Promise.all([raw(mine[name] + path), raw(theirs[name] + path)]);
        assert.equal(a.status, 500, what);
        assert.deepEqual(appsOwn(a), appsOwn(b), what);
        const d = await raw(mine[name] + path, auth());
        assert.equal(d.status, 500, what);
        assert.match(d.headers['content-type'], /^application\/json/, what);
        const page = JSON.parse(d.body);
        assert.equal(page.debug, true, what);
        // Koa's error path removes every header the response had, the echoed ID with them.
        if (!(name === 'koa' && path === '/throw')) assert.equal(page.id, d.headers['x-request-id'], what);
        assert.match(page.id, /^[0-9a-f-]{36}$/, what);
        assert.equal(page.error.status, 500, what);
        assert.equal(page.headers.authorization, '[redacted]', what);
      }
  } finally {
    await Promise.all([fw.stop(), fwBare.stop()]);
  }
});
