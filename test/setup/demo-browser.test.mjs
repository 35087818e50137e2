// The demo's requests page in real headless Chromium (Debian's /usr/bin/chromium through
// playwright-core): `node demo/run.mjs` serving (no --once), its page opened at the `open <url>`
// address it prints (its viewer adds the token), under the demo's own traffic. The GET /orders/42
// request must show its query, its outgoing call to the stock service and its ejs render as bars,
// each visible, where the work happened. Then Ctrl-C (SIGINT): both services and PostgreSQL stop,
// exit 0. The screenshot is kept in test/artifacts/demo-requests.png.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { launchChromium } from '../support/chromium.mjs';
import { cleanEnv, repo, requestIds, sections } from './support.mjs';

const ARTIFACTS = path.join(repo, 'test', 'artifacts');

let demo;
let context;
let profile;
after(async () => {
  await context?.close().catch(() => {});
  // A failed assertion leaves the demo serving: Ctrl-C lets it stop PostgreSQL and remove its temp folder.
  if (demo && demo.exitCode === null && demo.signalCode === null) {
    demo.kill('SIGINT');
    const timer = setTimeout(() => demo.kill('SIGKILL'), 20000);
    await new Promise((r) => demo.once('close', r));
    clearTimeout(timer);
  }
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

test(
  "the demo's requests page shows GET /orders/42 with its query, call and render as bars; Ctrl-C stops it",
  { timeout: 600000 },
  async (t) => {
    demo = spawn(process.execPath, ['demo/run.mjs'], { cwd: repo, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    demo.stdout.on('data', (d) => (out += d));
    demo.stderr.on('data', (d) => (err += d));
    const exited = new Promise((r) => demo.on('close', (code, signal) => r({ code, signal })));
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-chromium-'));
    const browser = launchChromium(profile);
    const ready = new Promise((resolve, reject) => {
      demo.stdout.on('data', () => {
        if (/^== serving until Ctrl-C/m.test(out)) resolve();
      });
      exited.then(({ code }) => reject(new Error(`the demo exited (${code}) before serving:\n${out}\n${err}`)));
    });
    [context] = await Promise.all([browser, ready]);

    const url = /^open (http:\/\/127\.0\.0\.1:\d+\/_hatch\/requests\?format=html)$/m.exec(out)?.[1];
    assert.ok(url, out);
    const id = requestIds(sections(out)[1])['/orders/42'].id;

    const page = context.pages()[0] ?? (await context.newPage());
    const res = await page.goto(url, { waitUntil: 'load' });
    assert.equal(res.status(), 200);
    assert.match(res.headers()['content-type'], /^text\/html/);

    const row = page.locator(`.recent section.request[data-request-id="${id}"]`).filter({ hasText: 'GET /orders/42' });
    assert.equal(await row.count(), 1, await page.content());
    assert.match(await row.locator('h3').innerText(), /GET \/orders\/42 → 200 · [\d.]+ ms · route \/orders\/:id/);
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
    // In the order the handler did them: the query, then the call, then the page.
    assert.ok(bars.query.x <= bars.call.x && bars.call.x <= bars.render.x, JSON.stringify(bars));
    assert.ok(
      bars.query.x >= bars.request.x && bars.render.x + bars.render.width <= bars.request.x + bars.request.width + 1,
      JSON.stringify(bars),
    );
    assert.equal(
      await row.locator('.entry-query .label').innerText(),
      `/* ${id} GET /orders/:id */ SELECT o.id, o.sku, u.name FROM orders o JOIN users u ON u.id = o.user_id WHERE o.id = $1`,
    );
    assert.match(await row.locator('.entry-call .label').innerText(), /^GET 127\.0\.0\.1\/stock\/[^?]+$/);
    assert.equal(await row.locator('.entry-render .label').innerText(), 'ejs order');

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, 'demo-requests.png');
    await row.scrollIntoViewIfNeeded();
    await page.screenshot({ path: shot, fullPage: false });
    assert.ok(fs.statSync(shot).size > 1000);
    t.diagnostic(`screenshot: ${shot}`);

    demo.kill('SIGINT'); // what Ctrl-C sends
    const end = await exited;
    assert.deepEqual(end, { code: 0, signal: null }, `${out}\n${err}`);
    assert.match(out, /^stopped: services and PostgreSQL$/m);
    assert.equal(err, '', 'nothing on stderr');
  },
);
