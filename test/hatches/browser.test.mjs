// The requests page in real headless Chromium (Debian's /usr/bin/chromium through playwright-core):
// the row of a request that ran a query and made a call, with a visible bar for each, the call shown
// with its path and without its query string. Then errors, against the hapi app of
// test/hatches/apps.mjs (ERRORS_APP) with HATCH_DEBUG_ERRORS=on, and the same app without the agent:
// a browser without the token gets the app's own 500 body, byte for byte; after a login through the
// form, the errors list and the errored request's page show its stack, and the same app URL answers
// with the debug page (same status, the stack, the redacted headers). Screenshots are kept in
// test/artifacts/ (requests.png, debug-page.png). Last, the hatches into the process (their costs on
// the index, a profile's top functions, the report's summary) and the health history, as drawn.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from '../support/chromium.mjs';
import { startApp, get } from '../support/app.mjs';
import * as http from 'node:http';
import { APP, ERRORS_APP, TOKEN, STARTUP_MS, auth, until } from './apps.mjs';

const ARTIFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'artifacts');

let app;
let errApp;
let bare;
let profile;
let context;
// The app and the browser start side by side: on the shared VM each can take tens of seconds.
before(async () => {
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-chromium-'));
  [app, errApp, bare, context] = await Promise.all([
    startApp(APP, { env: { HATCH_TOKEN: TOKEN, APP_NO_CLIENT: '1' }, timeout: STARTUP_MS }),
    startApp(ERRORS_APP, { env: { HATCH_TOKEN: TOKEN, HATCH_DEBUG_ERRORS: 'on' }, timeout: STARTUP_MS }),
    startApp(ERRORS_APP, { agent: false, timeout: STARTUP_MS }),
    // A persistent context is how playwright takes a --user-data-dir: a fresh one per run. No
    // Authorization header of its own: a page sets it, or logs in.
    launchChromium(profile),
  ]);
});
after(async () => {
  await Promise.all([context?.close().catch(() => {}), app?.stop(), errApp?.stop(), bare?.stop()]);
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

test(
  'the requests page shows the waterfall of a request with its query and its call',
  { timeout: 600000 },
  async (t) => {
    const w = await get(app.url + '/work');
    const id = w.headers['x-request-id'];
    await until(
      async () =>
        JSON.parse((await get(`${app.url}/_hatch/requests?format=json`, auth())).body).recent.some(
          (r) => r.id === id && r.path === '/work',
        ),
      60000,
      'the record',
    );

    const page = await context.newPage();
    await page.setExtraHTTPHeaders(auth());
    const res = await page.goto(`${app.url}/_hatch/requests`, { waitUntil: 'load' });
    assert.equal(res.status(), 200);
    assert.match(res.headers()['content-type'], /^text\/html/);

    // The app's backend, called by /work in the same process, adopted its ID: two rows share it.
    const row = page.locator(`section.request[data-request-id="${id}"]`).filter({ hasText: 'GET /work' });
    assert.equal(await row.count(), 1);
    assert.match(await row.locator('h3').innerText(), /GET \/work → 200/);
    const bars = {};
    for (const kind of ['request', 'query', 'call', 'render']) {
      const bar = row.locator(`.bar-${kind}`);
      assert.equal(await bar.count(), 1, kind);
      assert.ok(await bar.isVisible(), `${kind} bar visible`);
      bars[kind] = await bar.boundingBox();
      assert.ok(
        bars[kind].width >= 1 && bars[kind].height >= 1,
        `${kind} bar has a size: ${JSON.stringify(bars[kind])}`,
      );
    }
    // The bars sit where their work happened: the query starts before the call, both inside the request's track.
    assert.ok(bars.query.x <= bars.call.x, JSON.stringify(bars));
    assert.ok(bars.call.x >= bars.request.x);
    const queryLabel = await row.locator('.entry-query .label').innerText();
    assert.equal(queryLabel, `/* ${id} */ SELECT 'work' AS w, pg_sleep(0.02)`);
    // The path of the call, never its query string (`?key=secret-in-the-query`).
    assert.equal(await row.locator('.entry-call .label').innerText(), 'GET 127.0.0.1/b');
    assert.ok(!(await page.content()).includes('secret-in-the-query'));

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, 'requests.png');
    await row.scrollIntoViewIfNeeded();
    await page.screenshot({ path: shot, fullPage: false });
    assert.ok(fs.statSync(shot).size > 1000);
    t.diagnostic(`screenshot: ${shot}`);
    await page.close();
  },
);

/** The body bytes and content type of a GET, outside the browser. */
function bytes(url) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode, type: res.headers['content-type'], body: Buffer.concat(chunks) }),
        );
      })
      .on('error', reject);
  });
}

const STACK_FRAME = /^at .*app-[0-9a-f]+\.js:\d+:\d+/m;

test(
  "errors in the browser: the app's own 500 without the token; the stack on the errors list, the request page and the debug page after a login",
  { timeout: 600000 },
  async (t) => {
    const page = await context.newPage();
    // Without the token: hapi's own 500, the same bytes as without the agent.
    const plain = await page.goto(`${errApp.url}/boom`, { waitUntil: 'load' });
    assert.equal(plain.status(), 500);
    const theirs = await bytes(`${bare.url}/boom`);
    assert.equal(theirs.status, 500);
    assert.deepEqual(await plain.body(), theirs.body);
    assert.equal(plain.headers()['content-type'], theirs.type);
    const id = plain.headers()['x-request-id'];

    // The login form: the token typed in, the cookies set, on to the requests page.
    const form = await page.goto(`${errApp.url}/_hatch/login`, { waitUntil: 'load' });
    assert.equal(form.status(), 200);
    await page.locator('input[name="token"]').fill(TOKEN);
    await Promise.all([
      page.waitForURL(`${errApp.url}/_hatch/requests`),
      page.locator('button[type="submit"]').click(),
    ]);
    // (Cookies know no port: the other app on 127.0.0.1 would get them too; its test ran before.)
    const cookies = await context.cookies(`${errApp.url}/_hatch/requests`);
    assert.deepEqual(cookies.map((c) => [c.name, c.path, c.httpOnly, c.sameSite]).sort(), [
      ['hatch_debug', '/', true, 'Strict'],
      ['hatch_session', '/_hatch', true, 'Strict'],
    ]);

    // The errors list: the untokened request's error, with its stack and its calls' paths.
    await until(
      async () => {
        await page.reload({ waitUntil: 'load' });
        return (await page.locator(`.errored section.request[data-request-id="${id}"]`).count()) === 1;
      },
      30000,
      'the errored request on the page',
    );
    const listed = page.locator(`.errored section.request[data-request-id="${id}"]`);
    assert.equal(await listed.locator('.error-name').innerText(), 'TypeError');
    assert.equal(await listed.locator('.error-message').innerText(), 'boom from the route');
    const stack = listed.locator('pre.stack');
    assert.ok(await stack.isVisible());
    assert.match(await stack.innerText(), STACK_FRAME);
    assert.deepEqual(await listed.locator('.entry-call .label').allInnerTexts(), [
      'GET 127.0.0.1/api/items/7',
      'GET 127.0.0.1/v2/users',
    ]);
    const html = await page.content();
    for (const secret of ['SECRET-FETCH-123', 'SECRET-GET-456']) assert.ok(!html.includes(secret), secret);

    // Its own page, through the link.
    await Promise.all([page.waitForURL(/\/_hatch\/requests\/[^/]+\?format=html$/), listed.locator('h3 a').click()]);
    const own = page.locator(`section.request[data-request-id="${id}"]`);
    assert.match(await own.locator('h3').innerText(), /GET \/boom → 500/);
    assert.ok(await own.locator('pre.stack').isVisible());
    assert.match(await own.locator('pre.stack').innerText(), STACK_FRAME);

    // The same app URL, now with the debug cookie: the debug page, with the app's status.
    await page.setExtraHTTPHeaders({ 'x-api-key': 'browser-key-123' });
    const debug = await page.goto(`${errApp.url}/boom`, { waitUntil: 'load' });
    assert.equal(debug.status(), 500);
    assert.match(await page.title(), /^500 · TypeError: boom from the route/);
    const block = page.locator('.debug section.request');
    assert.ok(await block.locator('pre.stack').isVisible());
    assert.match(await block.locator('pre.stack').innerText(), STACK_FRAME);
    assert.deepEqual(await block.locator('.entry-call .label').allInnerTexts(), [
      'GET 127.0.0.1/api/items/7',
      'GET 127.0.0.1/v2/users',
    ]);
    // The headers as the app got them, redacted: an API key's value hidden, and no cookie (the debug
    // cookie was the only one, and the app never sees it).
    const headerRow = (name) =>
      page
        .locator('table.headers tr')
        .filter({ has: page.locator('td:first-child', { hasText: new RegExp(`^${name}$`) }) });
    assert.equal(await headerRow('x-api-key').locator('td').nth(1).innerText(), '[redacted]');
    assert.equal(await headerRow('cookie').count(), 0);
    assert.match(await headerRow('user-agent').locator('td').nth(1).innerText(), /Chrome/);
    assert.ok(!(await page.content()).includes('browser-key-123'));
    assert.ok(!(await page.content()).includes(TOKEN));

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, 'debug-page.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(fs.statSync(shot).size > 1000);
    t.diagnostic(`screenshot: ${shot}`);
    await page.close();
  },
);

test(
  'the hatches into the process and the health history in the browser: listed with their costs, each page drawn',
  { timeout: 600000 },
  async () => {
    await get(app.url + '/work'); // the pool's first connect announces it to the health hatch
    const page = await context.newPage();
    await page.setExtraHTTPHeaders(auth());
    // The index: each hatch into the process on its own line, with what it costs.
    const index = await page.goto(`${app.url}/_hatch`, { waitUntil: 'load' });
    assert.equal(index.status(), 200);
    const listing = await page.locator('body').innerText();
    for (const p of ['/report', '/profile', '/heap', '/mail', '/queue-ping']) assert.ok(listing.includes(p), p);
    assert.match(listing, /blocks the event loop/);

    // Two health rounds, then their history: one section per check, its results in order.
    for (let i = 0; i < 2; i++) await page.goto(`${app.url}/_hatch/health`, { waitUntil: 'load' });
    const hist = await page.goto(`${app.url}/_hatch/health?history=1`, { waitUntil: 'load' });
    assert.equal(hist.status(), 200);
    const pool = page.locator('section.history').filter({ hasText: /pg pool 1/ });
    assert.equal(await pool.count(), 1);
    assert.ok((await pool.locator('tr.result').count()) >= 2);
    assert.deepEqual([...new Set(await pool.locator('tr.result td.pass').allInnerTexts())], ['pass']);

    // A one-second profile, drawn as the top functions by self time.
    const prof = await page.goto(`${app.url}/_hatch/profile?seconds=1`, { waitUntil: 'load', timeout: 60000 });
    assert.equal(prof.status(), 200);
    assert.ok((await page.locator('tr.function').count()) >= 1);
    assert.match(await page.locator('body').innerText(), /Top functions by self time/);

    // The report, drawn as its summary, without the token anywhere on it.
    const report = await page.goto(`${app.url}/_hatch/report`, { waitUntil: 'load', timeout: 60000 });
    assert.equal(report.status(), 200);
    assert.match(await page.locator('body').innerText(), /JavaScript stack/);
    assert.ok(!(await page.content()).includes(TOKEN));
    await page.close();
  },
);
