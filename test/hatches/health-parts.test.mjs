// Health of every part, against real parts: an SMTP server in this process (smtp-server) that the
// app's nodemailer transport mails through, a proxy in this process in front of the app (the
// HATCH_HEALTH_URLS end-to-end check goes through it to the app's /signup, which sends a mail), and
// real temporary directories and files (HATCH_HEALTH_PATHS). The end-to-end check is listed first,
// then the parts; making the directory unwritable and the file unreadable fails their checks; stopping
// the SMTP server fails the end-to-end check and names the transport as the part at fault; ?history=1
// holds each check's results in order, at most 20.
// Permissions do not stop root, so as root the app runs as `nobody` (and the directory is made
// unwritable by giving it to root); otherwise it is chmod 0555 and the file chmod 000.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as http from 'node:http';
import { startApp, runScript, get, appDir } from '../support/app.mjs';
import { startSmtp } from '../support/smtp.mjs';
import { TOKEN, STARTUP_MS, auth } from './apps.mjs';
import { MAIL_APP } from './mail-app.mjs';

const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;
// As root, the app (as nobody) must reach its folder: every folder above it must let others in.
const blocked = (() => {
  if (!isRoot) return false;
  for (let d = appDir; ; d = path.dirname(d)) {
    if ((fs.statSync(d).mode & 0o001) === 0) return `${d} is not enterable by nobody, whom the app runs as here`;
    if (path.dirname(d) === d) return false;
  }
})();
const user = isRoot ? { uid: NOBODY, gid: NOBODY } : {};

let smtp;
let proxy;
let app;
let tmp;
let dir; // must be writable
let file; // must be readable
before(async () => {
  if (blocked) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-health-paths-'));
  fs.chmodSync(tmp, 0o755);
  dir = path.join(tmp, 'uploads');
  file = path.join(tmp, 'settings.json');
  fs.mkdirSync(dir);
  fs.writeFileSync(file, '{"the app reads":"this"}');
  if (isRoot) {
    fs.chownSync(dir, NOBODY, NOBODY);
    fs.chownSync(file, NOBODY, NOBODY);
  }
  smtp = await startSmtp();
  // The reverse proxy in front of the app: what HATCH_HEALTH_URLS calls.
  proxy = http.createServer((req, res) => {
    http
      .get(app.url + req.url, (r) => {
        res.writeHead(r.statusCode);
        r.pipe(res);
      })
      .on('error', () => {
        res.writeHead(502);
        res.end();
      });
  });
  await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
  app = await startApp(MAIL_APP, {
    ...user,
    env: {
      SMTP_A: String(smtp.port),
      HATCH_TOKEN: TOKEN,
      HATCH_HEALTH_TIMEOUT_MS: '10000',
      HATCH_HEALTH_URLS: `http://127.0.0.1:${proxy.address().port}/signup`,
      HATCH_HEALTH_PATHS: `${dir},relative/dir,${file}`,
    },
    timeout: STARTUP_MS,
  });
});
after(async () => {
  await app?.stop();
  await smtp?.stop();
  proxy?.close();
  if (tmp) {
    fs.chmodSync(dir, 0o755);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

async function health() {
  const r = await get(app.url + '/_hatch/health', auth());
  return { status: r.status, body: JSON.parse(r.body) };
}
const summary = (body) => body.checks.map((c) => [c.name, c.layer, c.status]);

test(
  'end-to-end first, then the parts; unwritable, unreadable and a stopped SMTP server each name their part; history in order',
  { skip: blocked, timeout: 120000 },
  async () => {
    const url = `url http://127.0.0.1:${proxy.address().port}/signup`;
    const mail = `mail transport 1 (127.0.0.1:${smtp.port})`;
    assert.match(
      app.stderr(),
      /HATCH_HEALTH_PATHS=".*" has entries that are no absolute path \(relative\/dir\); using ".*uploads,.*settings\.json"/,
    );
    assert.equal(app.stderr().split('\n').filter(Boolean).length, 1, app.stderr());

    // 1. All pass, in order.
    const sentBefore = smtp.messages.length;
    const up = await health();
    assert.equal(up.status, 200, JSON.stringify(up.body));
    assert.deepEqual(summary(up.body), [
      [url, 'end-to-end', 'pass'],
      [mail, 'part', 'pass'],
      [`path ${dir}`, 'part', 'pass'],
      [`path ${file}`, 'part', 'pass'],
    ]);
    for (const c of up.body.checks) assert.ok(typeof c.latencyMs === 'number' && c.latencyMs >= 0, JSON.stringify(c));
    const byName = (b, n) => b.checks.find((c) => c.name === n);
    assert.match(byName(up.body, mail).detail, /^verify\(\) passed/);
    assert.match(byName(up.body, `path ${dir}`).detail, /written, flushed and removed/);
    assert.equal(byName(up.body, `path ${file}`).detail, 'readable: read 24 bytes');
    assert.deepEqual(fs.readdirSync(dir), [], 'the write check leaves nothing behind');
    assert.equal(
      smtp.messages.length,
      sentBefore + 1,
      'the end-to-end check went through the app: its signup mail arrived',
    );

    // 2. The directory made unwritable and the file unreadable, for the app's user.
    if (isRoot) {
      fs.chownSync(dir, 0, 0);
      fs.chownSync(file, 0, 0);
      fs.chmodSync(file, 0o600);
    } else {
      fs.chmodSync(dir, 0o555);
      fs.chmodSync(file, 0o000);
    }
    const locked = await health();
    assert.equal(locked.status, 503);
    assert.deepEqual(locked.body.failing, [`path ${dir}`, `path ${file}`]);
    assert.match(byName(locked.body, `path ${dir}`).detail, /EACCES/);
    assert.match(byName(locked.body, `path ${file}`).detail, /EACCES/);
    if (isRoot) {
      fs.chownSync(dir, NOBODY, NOBODY);
      fs.chownSync(file, NOBODY, NOBODY);
    } else {
      fs.chmodSync(dir, 0o755);
      fs.chmodSync(file, 0o644);
    }

    // 3. The SMTP server stopped: the end-to-end check fails, and the parts say which one is guilty.
    await smtp.stop();
    const down = await health();
    assert.equal(down.status, 503);
    assert.deepEqual(summary(down.body), [
      [url, 'end-to-end', 'fail'],
      [mail, 'part', 'fail'],
      [`path ${dir}`, 'part', 'pass'],
      [`path ${file}`, 'part', 'pass'],
    ]);
    assert.match(byName(down.body, url).detail, /answered 500/);
    assert.match(byName(down.body, mail).detail, /ECONNREFUSED/);
    const html = await get(app.url + '/_hatch/health?format=html', auth());
    assert.match(html.body, /failing: url http:.*\/signup, mail transport 1/);
    const rows = [...html.body.matchAll(/<tr class="check" data-check="([^"]+)" data-layer="([^"]+)">/g)].map((m) => [
      m[1],
      m[2],
    ]);
    assert.deepEqual(
      rows.map((r) => r[1]),
      ['end-to-end', 'part', 'part', 'part'],
    );

    // 4. Back.
    await smtp.start();
    const back = await health();
    assert.equal(back.status, 200, JSON.stringify(back.body));

    // History: this test's five rounds in order (the HTML one included); the history itself runs no round.
    const hist = async () => JSON.parse((await get(app.url + '/_hatch/health?history=1', auth())).body);
    const h = await hist();
    assert.equal(h.kept, 20);
    assert.deepEqual(
      h.checks.map((c) => [c.name, c.layer, c.results.map((r) => r.status).join(' ')]),
      [
        [url, 'end-to-end', 'pass pass fail fail pass'],
        [mail, 'part', 'pass pass fail fail pass'],
        [`path ${dir}`, 'part', 'pass fail pass pass pass'],
        [`path ${file}`, 'part', 'pass fail pass pass pass'],
      ],
    );
    for (const c of h.checks) {
      const times = c.results.map((r) => Date.parse(r.at));
      assert.ok(
        times.every((t, i) => Number.isFinite(t) && (i === 0 || t >= times[i - 1])),
        JSON.stringify(c),
      );
      assert.ok(c.results.every((r) => typeof r.latencyMs === 'number' && typeof r.detail === 'string'));
    }
    assert.match(h.checks[1].results[2].detail, /ECONNREFUSED/);
    assert.deepEqual(await hist(), h, 'reading the history runs no round');
    const page = await get(app.url + '/_hatch/health?history=1&format=html', auth());
    assert.equal((page.body.match(/<section class="history"/g) ?? []).length, 4);
    assert.equal((page.body.match(/<tr class="result">/g) ?? []).length, 20);

    // At most 20 per check: 17 more rounds make 22, and the first two are gone.
    for (let i = 0; i < 17; i++) assert.equal((await health()).status, 200);
    const full = await hist();
    for (const c of full.checks) assert.equal(c.results.length, 20, c.name);
    assert.deepEqual(
      full.checks[0].results.slice(0, 3).map((r) => r.status),
      ['fail', 'fail', 'pass'],
      'the oldest kept is the third round',
    );
  },
);

test('HATCH_HEALTH_PATHS: a path that is no directory or file, missing, or under a file fails', async () => {
  const plain = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-health-file-'));
  const under = path.join(plain, 'a-file');
  fs.writeFileSync(under, 'x');
  const r = await runScript(
    `
const { createServer } = require('node:http');
const s = createServer((q, a) => a.end()).listen(0, '127.0.0.1', async () => {
  const res = await fetch('http://127.0.0.1:' + s.address().port + '/_hatch/health', { headers: { authorization: 'Bearer ${TOKEN}' } });
  console.log(JSON.stringify({ status: res.status, checks: (await res.json()).checks.map((c) => [c.name, c.status, c.detail]) }));
  s.close();
});`,
    { env: { HATCH_TOKEN: TOKEN, HATCH_HEALTH_PATHS: `/dev/null,/nonexistent/hatch-dir,${under}/below` } },
  );
  fs.rmSync(plain, { recursive: true, force: true });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.status, 503);
  assert.deepEqual(
    out.checks.map((c) => [c[0], c[1]]),
    [
      ['path /dev/null', 'fail'],
      ['path /nonexistent/hatch-dir', 'fail'],
      [`path ${under}/below`, 'fail'],
    ],
  );
  assert.match(out.checks[0][2], /neither a directory nor a regular file/);
  assert.match(out.checks[1][2], /ENOENT/);
  assert.match(out.checks[2][2], /ENOTDIR/);
});

test(
  'two rounds at once share one verify() of the transport, and both pass',
  { skip: blocked, timeout: 60000 },
  async () => {
    smtp.greetAfterMs = 700;
    try {
      const before = smtp.connects;
      const [a, b] = await Promise.all([health(), health()]);
      assert.equal(a.status, 200, JSON.stringify(a.body));
      assert.equal(b.status, 200, JSON.stringify(b.body));
      // Two signup mails (one per round's end-to-end check) and one verify() for both rounds.
      assert.equal(smtp.connects - before, 3);
    } finally {
      smtp.greetAfterMs = 0;
    }
  },
);
