// ES-module apps under `node --import hatch-agent app.mjs`: the ESM twin of the CommonJS fixtures.
// Everything is reached with `import` (express, pg, the template engines, node:http's named
// `request`, undici, global fetch), and the app is checked against the same app run without the
// agent. Then: a module reached by both `require` and `import`, and the agent loaded by both flags
// or twice, is patched once (one SQL comment, one timing per query, one "patched" line). The hooks
// are in-thread (module.registerHooks) wherever import-in-the-middle supports them, and always on
// Node >= 26, where module.register is deprecated (DEP0205).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { startApp, runScript, get, appDir } from '../support/app.mjs';
import { udpListener, statsdValues } from '../support/udp.mjs';
import { readLog, waitForLog } from '../support/pglog.mjs';

const WAIT = 60_000;
const STATSD = (udp) => ({
  HATCH_STATSD: 'on',
  HATCH_STATSD_PORT: String(udp.port),
  HATCH_STATSD_FLUSH_MS: '100',
  HATCH_STATSD_TAGS: 'dogstatsd',
});

let udp;
let downstream;
const seen = []; // [path, x-request-id] the downstream service received
before(async () => {
  udp = await udpListener();
  downstream = http.createServer((req, res) => {
    seen.push([req.url, req.headers['x-request-id'] ?? null]);
    res.end('down:' + req.url);
  });
  downstream.keepAliveTimeout = 120000; // no idle-socket race with the app's keep-alive agent on a slow machine
  await new Promise((r) => downstream.listen(0, '127.0.0.1', r));
});
after(() => {
  udp?.close();
  downstream?.close();
});

/** Values in the dogstatsd lines of `metric` whose tags include every one of `tags`. */
function values(lines, metric, ...tags) {
  return statsdValues(
    lines.filter(
      (l) => l.startsWith(`hatch.${metric}:`) && tags.every((t) => l.split('|#')[1]?.split(',').includes(t)),
    ),
  ).length;
}

const APP = `
import { request as httpRequest } from 'node:http';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import express from 'express';
import pg from 'pg';
import ejs from 'ejs';
import pug from 'pug';
import Handlebars from 'handlebars';
import nunjucks from 'nunjucks';
import { request as undiciRequest } from 'undici';

const views = fs.mkdtempSync(path.join(os.tmpdir(), 'esm-views-'));
fs.writeFileSync(path.join(views, 'page.ejs'), '<p><%= id %></p>');
process.on('exit', () => fs.rmSync(views, { recursive: true, force: true }));
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
const down = process.env.DOWN;
const viaHttp = (p) => new Promise((resolve, reject) => {
  const req = httpRequest(down + p, (res) => { let b = ''; res.on('data', (d) => (b += d)); res.on('end', () => resolve(b)); });
  req.on('error', reject);
  req.end();
});

const app = express();
app.set('views', views);
app.set('view engine', 'ejs');
app.get('/orders/:id', async (req, res, next) => {
  try {
    const { rows } = await pool.query("SELECT '" + process.env.MARKER + "' AS marker, $1::int AS id", [req.params.id]);
    const calls = [
      await fetch(down + '/fetch').then((r) => r.text()),
      await undiciRequest(down + '/undici').then((r) => r.body.text()),
      await viaHttp('/http'),
    ];
    const html = [
      ejs.render('<b><%= id %></b>', { id: req.params.id }),
      pug.render('b= id', { id: req.params.id }),
      Handlebars.compile('<b>{{id}}</b>')({ id: req.params.id }),
      nunjucks.renderString('<b>{{ id }}</b>', { id: req.params.id }),
    ];
    app.render('page', { id: req.params.id }, (err, page) => {
      if (err) return next(err);
      res.json({ rows, calls, html, page });
    });
  } catch (err) {
    next(err);
  }
});
const server = app.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
process.on('SIGTERM', () => { server.close(); pool.end(); });
`;

test('an ES-module app under --import is instrumented as -r instruments its CommonJS twin', async () => {
  const plainMarker = 'esm-' + randomBytes(4).toString('hex');
  const marker = 'esm-' + randomBytes(4).toString('hex');
  const env = { DOWN: `http://127.0.0.1:${downstream.address().port}` };

  const plainApp = await startApp(APP, {
    agent: false,
    ext: '.mjs',
    timeout: 2 * WAIT,
    env: { ...env, MARKER: plainMarker },
  });
  const plain = await get(plainApp.url + '/orders/42', { 'x-request-id': 'esm-plain-1' });
  await plainApp.stop();
  assert.equal(plain.status, 200, plain.body);
  assert.equal(plain.headers['x-request-id'], undefined, 'without the agent nothing echoes the ID');

  seen.length = 0;
  udp.clear();
  const app = await startApp(APP, {
    agent: 'import',
    timeout: 2 * WAIT,
    env: { ...env, MARKER: marker, ...STATSD(udp), HATCH_LOG: 'debug' },
  });
  const id = 'esm-req-' + randomBytes(6).toString('hex');
  try {
    const r = await get(app.url + '/orders/42', { 'x-request-id': id });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(
      JSON.parse(r.body),
      JSON.parse(plain.body.replaceAll(plainMarker, marker)),
      'the app answers exactly as without the agent',
    );
    assert.equal(r.headers['x-request-id'], id, 'the request ID is echoed');

    // The ID reached the next service through fetch, the undici package and node:http's named import.
    assert.deepEqual(seen, [
      ['/fetch', id],
      ['/undici', id],
      ['/http', id],
    ]);

    // The query, imported pg, carries exactly one comment with the ID.
    await waitForLog(marker, { timeout: WAIT });
    const statements = readLog()
      .split('\n')
      .filter((l) => l.includes(`'${marker}'`));
    for (const s of statements) {
      assert.ok(s.includes(`/* ${id} GET /orders/:id */ SELECT '${marker}'`), s);
      assert.equal(s.split('/*').length - 1, 1, `one comment: ${s}`);
    }

    // Metrics: the route template, one query, three calls, one render per engine plus the Express view.
    const want = [
      ['http.server', 'route:/orders/:id', 1],
      ['db.query', 'operation:SELECT', 1],
      ['http.client', 'method:GET', 3],
      ['render', 'engine:ejs', 2],
      ['render', 'engine:pug', 1],
      ['render', 'engine:handlebars', 1],
      ['render', 'engine:nunjucks', 1],
    ];
    const lines = await udp.waitFor((ls) => want.every(([m, t, n]) => values(ls, m, t) >= n), WAIT);
    await new Promise((res) => setTimeout(res, 300)); // one more flush: nothing counted twice arrives late
    for (const [m, t, n] of want) assert.equal(values(udp.lines, m, t), n, `${m} ${t}\n${lines.join('\n')}`);
    for (const mod of ['express', 'pg', 'ejs', 'pug', 'handlebars', 'nunjucks']) {
      assert.match(app.stderr(), new RegExp(`hatch-agent debug: ${mod}@\\S+ patched`), app.stderr());
    }
    // Which hooks: in-thread where the installed import-in-the-middle says this Node supports them.
    const agentRequire = createRequire(path.join(appDir, 'node_modules/hatch-agent/package.json'));
    const { supportsSyncHooks } = await import(
      pathToFileURL(agentRequire.resolve('import-in-the-middle/supports-sync-hooks.mjs')).href
    );
    const inThread = supportsSyncHooks();
    if (Number(process.versions.node.split('.')[0]) >= 26)
      assert.ok(inThread, 'Node >= 26 must not take the deprecated module.register path');
    assert.match(
      app.stderr(),
      inThread
        ? /debug: ES-module imports hooked \(in-thread module hooks\)/
        : /debug: ES-module imports hooked \(module hooks thread\)/,
      app.stderr(),
    );
    assert.doesNotMatch(app.stderr(), /Warning/, app.stderr());
  } finally {
    await app.stop();
  }
});

const BOTH = (marker) => `
import { createRequire } from 'node:module';
import pg from 'pg';
import { withRequestId, getRequestId } from 'hatch-agent';
const require = createRequire(import.meta.url);
const pgRequired = require('pg');
const imported = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 1 });
const required = new pgRequired.Pool({ connectionString: process.env.DATABASE_URL, max: 1 });
await withRequestId(process.env.RID, async () => {
  await imported.query("SELECT '${marker}-imported' AS x");
  await required.query("SELECT '${marker}-required' AS x");
  console.log(pgRequired === pg, getRequestId());
});
await Promise.all([imported.end(), required.end()]);
`;

for (const agent of ['import', 'require+import', 'import-twice']) {
  test(`pg reached by both import and require, agent loaded by ${agent}: patched once, one comment and one timing per query`, async () => {
    const marker = 'both-' + randomBytes(4).toString('hex');
    const rid = 'rid-' + randomBytes(6).toString('hex');
    udp.clear();
    const r = await runScript(BOTH(marker), {
      agent,
      ext: '.mjs',
      timeout: 2 * WAIT,
      env: { ...STATSD(udp), RID: rid, HATCH_LOG: 'debug' },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `true ${rid}\n`);
    const lines = r.stderr.split('\n');
    assert.equal(lines.filter((l) => / pg@\S+ patched/.test(l)).length, 1, r.stderr);
    assert.equal(lines.filter((l) => l.includes('debug: started')).length, 1, r.stderr);
    assert.ok(!r.stderr.includes('warn'), r.stderr);
    for (const which of ['imported', 'required']) {
      await waitForLog(`${marker}-${which}`, { timeout: WAIT });
      const found = readLog()
        .split('\n')
        .filter((l) => l.includes(`'${marker}-${which}'`));
      assert.ok(found.length >= 1);
      for (const s of found) assert.ok(s.includes(`/* ${rid} */ SELECT`) && s.split('/*').length === 2, s);
    }
    await udp.waitFor((ls) => values(ls, 'db.query', 'operation:SELECT') >= 2, WAIT);
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(values(udp.lines, 'db.query', 'operation:SELECT'), 2, udp.lines.join('\n'));
  });
}
