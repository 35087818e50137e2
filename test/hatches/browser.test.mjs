// The requests page in real headless Chromium (Debian's /usr/bin/chromium through playwright-core):
// the row of a request that ran a query and made a call, with a visible bar for each. The
// screenshot is kept in test/artifacts/requests.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from '../support/chromium.mjs';
import { startApp, get } from '../support/app.mjs';
import { APP, TOKEN, STARTUP_MS, auth, until } from './apps.mjs';

const ARTIFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'artifacts');

let app;
let profile;
let context;
// The app and the browser start side by side: on the shared VM each can take tens of seconds.
before(async () => {
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-chromium-'));
  [app, context] = await Promise.all([
    startApp(APP, { env: { HATCH_TOKEN: TOKEN, APP_NO_CLIENT: '1' }, timeout: STARTUP_MS }),
    // A persistent context is how playwright takes a --user-data-dir: a fresh one per run.
    launchChromium(profile, {
      extraHTTPHeaders: auth(),
    }),
  ]);
});
after(async () => {
  await Promise.all([context?.close().catch(() => {}), app?.stop()]);
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

    const page = context.pages()[0] ?? (await context.newPage());
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
    assert.equal(await row.locator('.entry-call .label').innerText(), 'GET 127.0.0.1');

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, 'requests.png');
    await row.scrollIntoViewIfNeeded();
    await page.screenshot({ path: shot, fullPage: false });
    assert.ok(fs.statSync(shot).size > 1000);
    t.diagnostic(`screenshot: ${shot}`);
  },
);
