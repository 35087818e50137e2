// The agent makes Node print no warning: a representative app (an Express server, a pg query,
// global fetch, node:http's client, an EJS render, a pino logger), CommonJS and ES-module, is run
// under `-r hatch-agent` and `--import hatch-agent` with Node's default flags, and its stderr must
// be exactly the stderr of the same app run without the agent. A DeprecationWarning or an
// ExperimentalWarning the agent causes (on Node 26, `module.register` prints DEP0205), or any line
// the agent itself prints at the default log level, is a failure. The same test runs on every
// matrix line, so "nothing on 26 that 24 does not print" is checked as "nothing on any line".
// Each run also shows the agent at work (the echoed request ID, the SQL comment, pino's requestId),
// so a run where the agent silently did nothing cannot pass.
// Limitations: only the modules this app loads, and only what happens during one request; the
// hatches load their code at their first request and are covered by the hatch tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { runScript } from './support/app.mjs';
import { waitForLog } from './support/pglog.mjs';

// The body both module kinds share: one request through the app, which queries pg, calls itself
// through fetch and node:http, renders EJS and logs with pino; then one line of what it saw.
const BODY = `
const records = [];
const logger = pino({}, { write: (line) => records.push(JSON.parse(line)) });
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 1 });
const app = express();
app.get('/leaf', (req, res) => res.send('leaf'));
app.get('/orders/:id', async (req, res, next) => {
  try {
    const { rows } = await pool.query("SELECT '" + process.env.MARKER + "' AS marker");
    const base = 'http://127.0.0.1:' + server.address().port;
    const viaFetch = await fetch(base + '/leaf').then((r) => r.text());
    const viaHttp = await new Promise((resolve, reject) => {
      http.get(base + '/leaf', (r) => { let b = ''; r.on('data', (d) => (b += d)); r.on('end', () => resolve(b)); }).on('error', reject);
    });
    logger.info({ id: req.params.id }, 'order');
    res.send(ejs.render('<p><%= id %> <%= marker %></p>', { id: req.params.id, marker: rows[0].marker }) + viaFetch + viaHttp);
  } catch (err) {
    next(err);
  }
});
const server = app.listen(0, '127.0.0.1', async () => {
  const r = await fetch('http://127.0.0.1:' + server.address().port + '/orders/7', { headers: { 'x-request-id': process.env.RID } });
  const body = await r.text();
  console.log(JSON.stringify({ status: r.status, body, echoed: r.headers.get('x-request-id'), logged: records.find((l) => l.msg === 'order')?.requestId ?? null }));
  server.close();
  await pool.end();
});
`;

const APPS = {
  'a CommonJS': {
    ext: '.js',
    source: `const http = require('node:http');
const express = require('express');
const pg = require('pg');
const ejs = require('ejs');
const pino = require('pino');
${BODY}`,
  },
  'an ES-module': {
    ext: '.mjs',
    source: `import http from 'node:http';
import express from 'express';
import pg from 'pg';
import ejs from 'ejs';
import pino from 'pino';
${BODY}`,
  },
};

// Node's default flags: nothing from the caller's environment may silence warnings here.
const ENV = { NODE_OPTIONS: '', NODE_NO_WARNINGS: '' };

/** The lines of `after` that `before` does not have (a multiset difference), for the message. */
function extraLines(before, after) {
  const left = before.split('\n');
  return after.split('\n').filter((l) => {
    const i = left.indexOf(l);
    if (i === -1) return true;
    left.splice(i, 1);
    return false;
  });
}

test('the harness sees a warning Node prints under its default flags', async () => {
  const r = await runScript("process.emitWarning('canary', 'DeprecationWarning', 'DEP9999');", {
    agent: false,
    env: ENV,
  });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /\[DEP9999\] DeprecationWarning: canary/);
});

for (const [kind, { ext, source }] of Object.entries(APPS)) {
  test(`${kind} app under -r and --import prints on stderr exactly what it prints without the agent (node ${process.versions.node})`, async (t) => {
    const plainMarker = 'warn-' + randomBytes(4).toString('hex');
    const plain = await runScript(source, {
      agent: false,
      ext,
      env: { ...ENV, MARKER: plainMarker, RID: 'warn-plain' },
    });
    assert.equal(plain.code, 0, plain.stderr);
    const seenPlain = JSON.parse(plain.stdout);
    assert.equal(seenPlain.status, 200, plain.stdout);
    assert.equal(seenPlain.echoed, null, 'without the agent nothing echoes the ID');

    for (const agent of ['import', true]) {
      const flag = agent === true ? '-r' : '--import';
      await t.test(`${flag} hatch-agent`, async () => {
        const marker = 'warn-' + randomBytes(4).toString('hex');
        const rid = 'warn-' + randomBytes(6).toString('hex');
        const r = await runScript(source, { agent, ext, env: { ...ENV, MARKER: marker, RID: rid } });
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(extraLines(plain.stderr, r.stderr), [], `the agent added to stderr:\n${r.stderr}`);
        assert.equal(r.stderr, plain.stderr, 'nor took anything away');

        // The agent was at work: the app answered as without it, and the request ID was echoed.
        const seen = JSON.parse(r.stdout);
        assert.deepEqual(
          { ...seen, echoed: null, logged: null },
          { ...seenPlain, body: seenPlain.body.replace(plainMarker, marker) },
        );
        assert.equal(seen.echoed, rid);
        // pg and pino are reached through the module hooks, under -r as under --import, for both
        // kinds of app (an ES module's import of a CommonJS package passes Module._load).
        assert.equal(seen.logged, rid, 'pino records carry the request ID');
        const [statement] = await waitForLog(`'${marker}'`, { timeout: 30000 });
        assert.ok(statement.includes(`/* ${rid} GET /orders/:id */ SELECT '${marker}'`), statement);
      });
    }
  });
}
