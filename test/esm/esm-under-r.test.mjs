// `node -r hatch-agent` instruments what is reached by `import` too. The fixture is an ES-module
// package of our own, built the way MikroORM, slonik and Nest's platform adapters are
// ("type": "module", `exports` with an `import` condition), that imports pg and express inside it;
// the app only calls it. It is used from a CommonJS app under -r (by `require()` of the ES-module
// package, and by `import()`), from an ES-module app under -r, and under --import from both kinds
// of app (a `require()` of an ES module passes no hook in Node 20's module-hooks thread): each
// request's statements carry its ID (one comment each), and its timing is named by the Express route
// template, never `unmatched`.
// Then what the agent cannot patch, or could not before: a copy of pg required by its path (one
// warning line naming it and the fix, and no warning for the apps above), and pg reached through a
// symlink that resolves outside node_modules/pg/ (npm link, workspaces), by require and by import,
// which is patched.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
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
const PKG = 'hatch-esm-fixture';
// pg 8.0.3 (the oldest line) has no ES-module entry, so `import { Client } from 'pg'` is a
// SyntaxError there with or without the agent: the named import is used only where pg has one.
const pgJson = JSON.parse(fs.readFileSync(path.join(appDir, 'node_modules/pg/package.json'), 'utf8'));
const NAMED = pgJson.exports?.['.']?.import !== undefined;

let udp;
before(async () => {
  udp = await udpListener();
  const dir = path.join(appDir, 'node_modules', PKG);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'package.json'),
    JSON.stringify({
      name: PKG,
      version: '1.0.0',
      type: 'module',
      exports: { '.': { import: './index.js', default: './index.js' } },
    }),
  );
  fs.writeFileSync(path.join(dir, 'named.js'), "export { Client } from 'pg';\n");
  fs.writeFileSync(
    path.join(dir, 'index.js'),
    `import pg from 'pg';
import express from 'express';

/** An Express app whose /users/:id queries through a pool, and through a Client of its own. */
export async function createApp(marker) {
  const Client = process.env.NAMED === '1' ? (await import('./named.js')).Client : pg.Client;
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
  const app = express();
  app.get('/users/:id', async (req, res, next) => {
    try {
      const { rows } = await pool.query("SELECT '" + marker + "-pool' AS marker, $1::int AS id", [req.params.id]);
      const client = new Client({ connectionString: process.env.DATABASE_URL });
      await client.connect();
      try {
        await client.query("SELECT '" + marker + "-client' AS marker");
      } finally {
        await client.end();
      }
      res.json(rows);
    } catch (err) {
      next(err);
    }
  });
  return { app, close: () => pool.end() };
}
`,
  );
});
after(() => udp?.close());

/** Values in the dogstatsd lines of `metric` whose tags include every one of `tags`. */
function values(lines, metric, ...tags) {
  return statsdValues(
    lines.filter(
      (l) => l.startsWith(`hatch.${metric}:`) && tags.every((t) => l.split('|#')[1]?.split(',').includes(t)),
    ),
  ).length;
}

const LISTEN = `
  const server = made.app.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
  process.on('SIGTERM', () => { server.close(); made.close(); });`;
const APPS = [
  [
    'a CommonJS app, require() of the ES-module package, under -r',
    true,
    '.js',
    `const { createApp } = require('${PKG}');\ncreateApp(process.env.MARKER).then((made) => {${LISTEN}\n});`,
  ],
  [
    'a CommonJS app, import() of the ES-module package, under -r',
    true,
    '.js',
    `import('${PKG}').then(({ createApp }) => createApp(process.env.MARKER)).then((made) => {${LISTEN}\n});`,
  ],
  [
    'an ES-module app under -r',
    true,
    '.mjs',
    `import { createApp } from '${PKG}';\nconst made = await createApp(process.env.MARKER);${LISTEN}`,
  ],
  // Node 20's module-hooks thread never sees a require() of an ES module (Nest's fastify adapter).
  [
    'a CommonJS app, require() of the ES-module package, under --import',
    'import',
    '.js',
    `const { createApp } = require('${PKG}');\ncreateApp(process.env.MARKER).then((made) => {${LISTEN}\n});`,
  ],
  [
    'an ES-module app under --import',
    'import',
    '.mjs',
    `import { createApp } from '${PKG}';\nconst made = await createApp(process.env.MARKER);${LISTEN}`,
  ],
];

for (const [name, agent, ext, source] of APPS) {
  test(`pg and express inside an ES-module package: ${name}`, async () => {
    const marker = 'esmr-' + randomBytes(4).toString('hex');
    udp.clear();
    const app = await startApp(source, {
      agent,
      ext,
      timeout: 2 * WAIT,
      env: { ...STATSD(udp), MARKER: marker, NAMED: NAMED ? '1' : '0', HATCH_LOG: 'debug' },
    });
    const ids = ['esmr-a-' + randomBytes(5).toString('hex'), 'esmr-b-' + randomBytes(5).toString('hex')];
    try {
      for (const [i, id] of ids.entries()) {
        const r = await get(`${app.url}/users/${i + 1}`, { 'x-request-id': id });
        assert.equal(r.status, 200, r.body);
        assert.deepEqual(JSON.parse(r.body), [{ marker: `${marker}-pool`, id: i + 1 }]);
        assert.equal(r.headers['x-request-id'], id);
      }
      // Each request's statements, through the pool and through the Client, carry its own ID, once.
      await waitForLog(`${marker}-client`, { count: 2, timeout: WAIT });
      const statements = readLog()
        .split('\n')
        .filter((l) => l.includes(`'${marker}-`));
      assert.ok(statements.length >= 4, statements.join('\n'));
      for (const [i, id] of ids.entries()) {
        for (const via of ['pool', 'client']) {
          const mine = statements.filter(
            (s) => s.includes(`'${marker}-${via}'`) && (via === 'client' || s.includes('$1')),
          );
          assert.ok(
            mine.some((s) => s.includes(`/* ${id} GET /users/:id */ SELECT '${marker}-${via}'`)),
            `${via} statement of request ${i} carries ${id}:\n${statements.join('\n')}`,
          );
        }
      }
      for (const s of statements) assert.equal(s.split('/*').length - 1, 1, `one comment: ${s}`);

      // Timed by the route template: two requests, four queries, nothing unmatched.
      const lines = await udp.waitFor(
        (ls) => values(ls, 'http.server', 'route:/users/:id') >= 2 && values(ls, 'db.query', 'operation:SELECT') >= 4,
        WAIT,
      );
      await new Promise((res) => setTimeout(res, 300)); // one more flush: nothing counted twice arrives late
      assert.equal(values(udp.lines, 'http.server', 'route:/users/:id'), 2, lines.join('\n'));
      assert.equal(values(udp.lines, 'http.server', 'route:unmatched'), 0, lines.join('\n'));
      assert.equal(values(udp.lines, 'db.query', 'operation:SELECT'), 4, udp.lines.join('\n'));
      const stderr = app.stderr();
      for (const mod of ['pg', 'express'])
        assert.equal(
          stderr.split('\n').filter((l) => new RegExp(`debug: ${mod}@\\S+ patched$`).test(l)).length,
          1,
          stderr,
        );
      assert.doesNotMatch(stderr, /warn|Warning/, stderr);
    } finally {
      await app.stop();
    }
  });
}

test('a copy of pg required by its path, which no hook can name: one warning line naming it and the fix', async () => {
  const vendor = path.join(appDir, `vendor-${randomBytes(4).toString('hex')}`);
  fs.cpSync(path.join(appDir, 'node_modules/pg'), path.join(vendor, 'pg'), { recursive: true });
  const marker = 'vend-' + randomBytes(4).toString('hex');
  try {
    const app = await startApp(
      `const express = require('express');
const pg = require(${JSON.stringify(path.join(vendor, 'pg'))});
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 1 });
const app = express();
app.get('/q', async (req, res) => { await pool.query("SELECT '${marker}' AS m"); res.send('ok'); });
const server = app.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
process.on('SIGTERM', () => { server.close(); pool.end(); });`,
      { agent: true, timeout: 2 * WAIT },
    );
    try {
      for (const n of [1, 2]) assert.equal((await get(app.url + '/q', { 'x-request-id': `vend-${n}` })).status, 200);
      // Not patched indeed: the statement has no comment.
      const [statement] = await waitForLog(`'${marker}'`, { timeout: WAIT });
      assert.ok(!statement.includes('/*'), statement);
    } finally {
      await app.stop();
    }
    const warnings = app
      .stderr()
      .split('\n')
      .filter((l) => l.startsWith('hatch-agent warn:'));
    assert.equal(warnings.length, 1, app.stderr());
    assert.equal(
      warnings[0],
      `hatch-agent warn: pg@${pgJson.version} (${path.join(vendor, 'pg')}) was loaded without being patched, so it is not instrumented: load it by its package name from node_modules (not copied or bundled), with the agent preloaded (node -r hatch-agent, or --import hatch-agent)`,
    );
  } finally {
    fs.rmSync(vendor, { recursive: true, force: true });
  }
});

// A workspace: the app's node_modules/pg is a symlink to packages/pg, which is outside any
// node_modules/pg/ once resolved (Node resolves symlinks); pg's own dependencies resolve from there.
test('pg reached through a symlink outside node_modules/pg/ (npm link, a workspace) is patched, by require and by import', async () => {
  const ws = path.join(appDir, `workspace-${randomBytes(4).toString('hex')}`);
  fs.cpSync(path.join(appDir, 'node_modules/pg'), path.join(ws, 'packages/pg'), { recursive: true });
  fs.mkdirSync(path.join(ws, 'app/node_modules'), { recursive: true });
  fs.symlinkSync(path.join(ws, 'packages/pg'), path.join(ws, 'app/node_modules/pg'), 'dir');
  const body = (marker) => `
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 1 });
await withRequestId(process.env.RID, () => pool.query("SELECT '${marker}' AS m"));
await pool.end();`;
  try {
    for (const [kind, ext, head] of [
      [
        'require',
        '.js',
        "const pg = require('pg');\nconst { withRequestId } = require('hatch-agent');\n(async () => {",
      ],
      ['import', '.mjs', "import pg from 'pg';\nimport { withRequestId } from 'hatch-agent';\n"],
    ]) {
      const marker = `link-${kind}-` + randomBytes(4).toString('hex');
      const rid = 'link-' + randomBytes(6).toString('hex');
      const file = path.join(ws, 'app', `main${ext}`);
      fs.writeFileSync(file, head + body(marker) + (kind === 'require' ? '\n})();' : ''));
      const r = await runScript(null, { agent: true, file, env: { RID: rid, HATCH_LOG: 'debug' }, timeout: 2 * WAIT });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /debug: pg@\S+ patched\n/, r.stderr);
      assert.doesNotMatch(r.stderr, /warn/, r.stderr);
      const [statement] = await waitForLog(`'${marker}'`, { timeout: WAIT });
      assert.ok(statement.includes(`/* ${rid} */ SELECT '${marker}'`), `${kind}: ${statement}`);
    }
  } finally {
    fs.rmSync(ws, { recursive: true, force: true });
  }
});

test('an ES-module app that imports only node:http, under -r: its first request already has its ID and the hatches', async () => {
  const TOKEN = 'esm-builtins-token-0123456789';
  const app = await startApp(
    `import http from 'node:http';
const server = http.createServer((req, res) => {
  res.statusCode = 404;
  res.end('not here');
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));`,
    { ext: '.mjs', env: { HATCH_TOKEN: TOKEN } },
  );
  try {
    const first = await get(app.url + '/_hatch/health', { authorization: `Bearer ${TOKEN}` });
    assert.equal(first.status, 200, first.body);
    assert.match(first.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
    const second = await get(app.url + '/anything');
    assert.equal(second.status, 404);
    assert.equal(second.body, 'not here');
    assert.match(second.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
  } finally {
    await app.stop();
  }
});
