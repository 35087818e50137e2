// http2 servers under `node -r hatch-agent` (a CommonJS app) and `node --import hatch-agent` (its
// ES-module twin, with named imports from node:http2): four servers in one app, h2c
// (`http2.createServer`) and TLS (`http2.createSecureServer`, a throw-away certificate from openssl),
// each once on the compatibility `request` event and once on the `stream` event. Clients over
// node:http2. Checked: the ID adopted, replaced when hostile, minted when absent, taken from a
// traceparent; echoed (the app's own header wins, its headers object is left alone); carried
// through async work into a pg query (the SQL comment in PostgreSQL's statement log); the
// `http.server` timing on a real UDP socket (status sent, aborted streams); the hatches served on
// the compatibility API with a token, left to the app without one and on the stream API;
// stop()/start(); the agent's own faults; and the app's answers and stderr identical without the agent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as http2 from 'node:http2';
import { randomBytes } from 'node:crypto';
import { startApp, UUID } from '../support/app.mjs';
import { udpListener } from '../support/udp.mjs';
import { waitForLog } from '../support/pglog.mjs';
import { throwAwayCertificate } from '../support/tls.mjs';

const run = randomBytes(4).toString('hex'); // this run's statements, apart in the shared log
const TOKEN = 'http2-test-token-0123456789abcdef';
const WAIT = 60_000;

let tlsDir;
let udp;
before(async () => {
  udp = await udpListener();
  ({ dir: tlsDir } = throwAwayCertificate('hatch-h2-tls-'));
});
after(() => {
  udp?.close();
  if (tlsDir) fs.rmSync(tlsDir, { recursive: true, force: true });
});

// The app's routes, the same on all four servers (`answer(reply)` hides the API):
//   /q?m=       a pg query with the marker, after a timer; answers { id, seen } (what the app saw)
//   /plain      no ID in the answer: the with/without-agent comparison
//   /own        the app sets its own x-request-id
//   /keys       a headers object the app reuses: its keys after the answer
//   /status?code= answers that status
//   /hang       never answers
//   /_hatch...  the app's own 404 (what a request the hatches decline gets)
//   /stop, /start  the agent's stop() and start()
const ROUTES = `
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
const KEPT = { 'content-type': 'text/plain', 'x-kept': 'yes' };
async function route(url, headers, answer) {
  const q = url.searchParams;
  switch (url.pathname) {
    case '/q': {
      const seen = { handler: getRequestId(), header: headers['x-request-id'] ?? null };
      await new Promise((r) => setTimeout(r, 2));
      const { rows } = await pool.query("SELECT '" + q.get('m') + "' AS marker");
      seen.afterQuery = getRequestId();
      return answer(Number(q.get('code')) || 200, { 'content-type': 'application/json' }, JSON.stringify({ marker: rows[0].marker, ...seen }));
    }
    case '/plain': return answer(201, { 'content-type': 'text/plain', 'x-app': 'a' }, 'plain ' + url.search);
    case '/own': return answer(200, { 'X-Request-ID': 'app-own' }, 'own');
    case '/keys': return answer(200, KEPT, () => JSON.stringify(Object.keys(KEPT)));
    case '/status': return answer(Number(q.get('code')), { 'content-type': 'text/plain' }, 'status');
    case '/hang': return;
    case '/stop': agent.stop(); return answer(200, {}, 'stopped');
    case '/start': return answer(200, {}, String(agent.start()));
  }
  return answer(404, { 'content-type': 'text/plain' }, 'app 404 ' + url.pathname);
}
const fail = (e) => { console.error('APP FAILED', e); process.exit(3); };
const compat = (req, res) => {
  const url = new URL(req.url, 'http://x');
  route(url, req.headers, (status, headers, body) => {
    res.writeHead(status, headers);
    res.end(typeof body === 'function' ? body() : body);
  }).catch(fail);
};
const onStream = (stream, headers) => {
  const url = new URL(headers[':path'], 'http://x');
  route(url, headers, (status, h, body) => {
    // respondWithFile for /plain?file: the other way an answer's headers are sent
    if (url.pathname === '/plain' && url.searchParams.has('file')) return stream.respondWithFile(FILE, { ':status': status, ...h });
    stream.respond(h === KEPT ? KEPT : { ':status': status, ...h });
    stream.end(typeof body === 'function' ? body() : body);
  }).catch(fail);
};
const FILE = path.join(os.tmpdir(), 'h2-plain-' + process.pid + '.txt');
fs.writeFileSync(FILE, 'from a file');
process.on('exit', () => fs.rmSync(FILE, { force: true }));
const tls = { key: fs.readFileSync(process.env.TLS_KEY), cert: fs.readFileSync(process.env.TLS_CERT) };
const servers = {
  h2c: http2.createServer(compat),
  tls: createSecureServer(tls, compat),
  'h2c-stream': http2.createServer().on('stream', onStream),
  'tls-stream': createSecureServer(tls).on('stream', onStream),
};
(async () => {
  const ports = {};
  for (const [name, s] of Object.entries(servers)) {
    await new Promise((r) => s.listen(0, '127.0.0.1', r));
    ports[name] = s.address().port;
  }
  process.stdout.write('ports ' + JSON.stringify(ports) + '\\nlistening ' + ports.h2c + '\\n');
})().catch(fail);
`;

const CJS = `
const http2 = require('node:http2');
const { createSecureServer } = require('node:http2');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const pg = require('pg');
// Without the agent the app must not load it: requiring hatch-agent starts it.
const agent = process.env.PLAIN ? { stop() {}, start() { return false; } } : require('hatch-agent');
const getRequestId = process.env.PLAIN ? () => null : agent.getRequestId;
${ROUTES}`;

const ESM = `
import http2 from 'node:http2';
import { createSecureServer } from 'node:http2';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
const agent = process.env.PLAIN ? { stop() {}, start() { return false; } } : await import('hatch-agent');
const getRequestId = process.env.PLAIN ? () => null : agent.getRequestId;
${ROUTES}`;

const SERVERS = ['h2c', 'tls', 'h2c-stream', 'tls-stream'];

/** One request on a new session: { status, headers, body }. */
function h2(ports, server, reqPath, headers = {}) {
  const secure = server.startsWith('tls');
  const session = http2.connect(
    `${secure ? 'https' : 'http'}://127.0.0.1:${ports[server]}`,
    secure ? { rejectUnauthorized: false } : {},
  );
  return new Promise((resolve, reject) => {
    session.on('error', reject);
    const req = session.request({ ':path': reqPath, ...headers });
    let status;
    let got;
    let body = '';
    req.on('response', (h) => {
      got = { ...h };
      status = h[':status'];
      delete got[':status'];
    });
    req.setEncoding('utf8');
    req.on('data', (d) => (body += d));
    req.on('error', reject);
    req.on('end', () => {
      session.close();
      resolve({ status, headers: got, body });
    });
  });
}

/** A request the client cancels after `ms`: the server's stream is reset before any answer. */
function cancelled(ports, server, reqPath, ms = 100) {
  const secure = server.startsWith('tls');
  const session = http2.connect(
    `${secure ? 'https' : 'http'}://127.0.0.1:${ports[server]}`,
    secure ? { rejectUnauthorized: false } : {},
  );
  return new Promise((resolve) => {
    session.on('error', () => {});
    const req = session.request({ ':path': reqPath });
    req.on('error', () => {});
    setTimeout(() => {
      req.close(http2.constants.NGHTTP2_CANCEL);
      req.on('close', () => {
        session.close();
        resolve();
      });
    }, ms);
  });
}

async function start(mode, env = {}) {
  const app = await startApp(mode.esm ? ESM : CJS, {
    agent: mode.agent,
    ext: mode.esm ? '.mjs' : '.js',
    env: {
      DATABASE_URL: process.env.DATABASE_URL,
      TLS_KEY: path.join(tlsDir, 'key.pem'),
      TLS_CERT: path.join(tlsDir, 'cert.pem'),
      ...env,
    },
  });
  const ports = JSON.parse(/ports (.*)\n/.exec(app.stdout())[1]);
  return { app, ports };
}

// What the app answers, stripped of what differs between runs (the date, the echoed ID).
const PLAIN_REQUESTS = [
  '/plain?a=1',
  '/plain?file=1',
  '/own',
  '/keys',
  '/status?code=299',
  '/_hatch',
  '/_hatch/config',
  '/nothing',
];
async function answers(ports) {
  const out = [];
  for (const server of SERVERS) {
    for (const p of PLAIN_REQUESTS) {
      const r = await h2(
        ports,
        server,
        p,
        p.startsWith('/_hatch') ? { authorization: 'Bearer wrong-token-0123456789abcdef' } : {},
      );
      const { date, 'x-request-id': id, ...headers } = r.headers;
      out.push([server, p, r.status, headers, r.body, p === '/own' ? id : undefined]);
    }
  }
  return out;
}

const commentOf = (line) => /\/\* ([^*]+) \*\/ /.exec(line)?.[1];

const MODES = [
  { name: '-r (CommonJS)', agent: true, esm: false },
  { name: '--import (ES module)', agent: 'import', esm: true },
];

for (const mode of MODES) {
  test(`http2 under ${mode.name}`, async (t) => {
    const plain = await start({ ...mode, agent: false }, { PLAIN: '1' });
    const reference = await answers(plain.ports);
    const plainExit = await plain.app.stop();

    udp.clear();
    const { app, ports } = await start(mode, {
      HATCH_STATSD: 'on',
      HATCH_STATSD_PORT: String(udp.port),
      HATCH_STATSD_FLUSH_MS: '100',
      HATCH_TOKEN: TOKEN,
    });
    try {
      await t.test(
        'a new ID is minted, echoed, and is what the app sees, across a timer and a pg query; the statement carries it',
        async () => {
          for (const [i, server] of SERVERS.entries()) {
            const marker = `h2-new-${run}-${mode.agent}-${i}`;
            const r = await h2(ports, server, `/q?m=${marker}`);
            assert.equal(r.status, 200, r.body);
            const id = r.headers['x-request-id'];
            assert.match(id, UUID, server);
            assert.deepEqual(JSON.parse(r.body), { marker, handler: id, header: id, afterQuery: id }, server);
            const [line] = await waitForLog(`SELECT '${marker}' AS marker`);
            assert.equal(commentOf(line), id, line);
          }
        },
      );

      await t.test(
        "the caller's allowlisted ID is adopted, and a traceparent's trace-id when there is none",
        async () => {
          for (const [i, server] of SERVERS.entries()) {
            const marker = `h2-adopt-${run}-${mode.agent}-${i}`;
            const r = await h2(ports, server, `/q?m=${marker}`, { 'x-request-id': `caller-${i}.a:b_c` });
            assert.equal(r.headers['x-request-id'], `caller-${i}.a:b_c`, server);
            assert.deepEqual(JSON.parse(r.body), {
              marker,
              handler: `caller-${i}.a:b_c`,
              header: `caller-${i}.a:b_c`,
              afterQuery: `caller-${i}.a:b_c`,
            });
            const [line] = await waitForLog(`SELECT '${marker}' AS marker`);
            assert.equal(commentOf(line), `caller-${i}.a:b_c`, line);
            const trace = randomBytes(16).toString('hex');
            const tr = await h2(ports, server, `/q?m=${marker}-tp`, {
              traceparent: `00-${trace}-${randomBytes(8).toString('hex')}-01`,
            });
            assert.equal(tr.headers['x-request-id'], trace, server);
            assert.equal(JSON.parse(tr.body).handler, trace);
          }
        },
      );

      await t.test('hostile IDs are replaced by a UUID, never echoed nor in SQL, and counted', async () => {
        const hostile = [
          '*/ DROP TABLE x; --',
          'A'.repeat(10 * 1024),
          'a\'b"c',
          'a b\tc',
          'caf\u00e9',
          ['ok-1', 'ok-2'],
          '',
        ];
        let n = 0;
        for (const [i, server] of SERVERS.entries()) {
          for (const [j, bad] of hostile.entries()) {
            const marker = `h2-hostile-${run}-${mode.agent}-${i}-${j}`;
            const r = await h2(ports, server, `/q?m=${marker}`, { 'x-request-id': bad });
            assert.equal(r.status, 200, `${server} ${JSON.stringify(bad).slice(0, 30)}: ${r.body}`);
            const id = r.headers['x-request-id'];
            assert.match(id, UUID, `${server} ${JSON.stringify(bad).slice(0, 30)}`);
            assert.equal(JSON.parse(r.body).handler, id);
            const [line] = await waitForLog(`SELECT '${marker}' AS marker`);
            assert.equal(commentOf(line), id, line);
            assert.ok(!line.includes('DROP') && !line.includes('AAAAAAAA'), line);
            n++;
          }
        }
        await udp.waitFor(
          (ls) =>
            ls
              .filter((l) => l.startsWith('hatch.errors.invalid_request_id:'))
              .reduce((s, l) => s + Number(l.split(':')[1].split('|')[0]), 0) >= n,
          WAIT,
        );
      });

      await t.test("the echo never doubles the app's own header nor changes the app's headers object", async () => {
        for (const server of SERVERS) {
          const own = await h2(ports, server, '/own', { 'x-request-id': 'caller-own' });
          assert.equal(own.headers['x-request-id'], 'app-own', server);
          const keys = await h2(ports, server, '/keys');
          assert.deepEqual(JSON.parse(keys.body), ['content-type', 'x-kept'], server);
          assert.match(keys.headers['x-request-id'], UUID, server);
          const file = await h2(ports, server, '/plain?file=1');
          assert.match(file.headers['x-request-id'], UUID, `${server}: respondWithFile`);
        }
      });

      await t.test(
        'http.server timings: method, status sent, aborted streams; route unmatched (no framework)',
        async () => {
          const codes = { h2c: 251, tls: 252, 'h2c-stream': 253, 'tls-stream': 254 };
          for (const server of SERVERS) {
            assert.equal((await h2(ports, server, `/status?code=${codes[server]}`)).status, codes[server]);
            await cancelled(ports, server, '/hang');
          }
          const lines = await udp.waitFor(
            (ls) =>
              Object.values(codes).every((c) =>
                ls.some((l) => l.startsWith(`hatch.http.server.GET.unmatched.${c}:`)),
              ) &&
              ls
                .filter((l) => l.startsWith('hatch.http.server.GET.unmatched.aborted:'))
                .reduce((s, l) => s + l.split('|ms').length - 1, 0) >= 4,
            WAIT,
          );
          for (const l of lines.filter((x) => x.startsWith('hatch.http.server.')))
            assert.match(l, /^hatch\.http\.server\.GET\.unmatched\.(\d{3}|aborted)(:\d+(\.\d+)?\|ms)+$/);
        },
      );

      await t.test('the hatches answer a token on the compatibility API, and only there', async () => {
        const auth = { authorization: `Bearer ${TOKEN}` };
        for (const server of ['h2c', 'tls']) {
          const r = await h2(ports, server, '/_hatch/config?format=json', auth);
          assert.equal(r.status, 200, r.body);
          assert.match(r.headers['content-type'], /^application\/json/);
          assert.match(r.headers['x-request-id'], UUID);
          const body = JSON.parse(r.body);
          assert.equal(body.config.hatchToken, '[redacted]');
          assert.ok(
            body.patches.some((p) => p.module === 'http2' && p.status === 'patched'),
            JSON.stringify(body.patches),
          );
          // The record of a request served by this server: its ID, path, status, route.
          const marker = `h2-rec-${run}-${mode.agent}-${server}`;
          const q = await h2(ports, server, `/q?m=${marker}&code=241`);
          const id = q.headers['x-request-id'];
          let rec;
          for (let i = 0; i < 100 && !rec; i++) {
            const list = JSON.parse((await h2(ports, server, '/_hatch/requests?format=json', auth)).body);
            rec = list.recent.find((x) => x.id === id);
            if (!rec) await new Promise((ok) => setTimeout(ok, 50));
          }
          assert.ok(rec, `the record of ${id}`);
          assert.equal(rec.path, '/q');
          assert.equal(rec.status, 241);
          assert.equal(rec.route, 'unmatched');
          assert.equal(rec.aborted, false);
          assert.ok(
            rec.timeline.some((e) => e.kind === 'query' && e.label.includes(marker)),
            JSON.stringify(rec.timeline),
          );
          const html = await h2(ports, server, '/_hatch', { ...auth, accept: 'text/html' });
          assert.equal(html.status, 200);
          assert.match(html.headers['content-type'], /^text\/html/);
        }
        for (const server of ['h2c-stream', 'tls-stream']) {
          const r = await h2(ports, server, '/_hatch/config', auth);
          assert.equal(r.status, 404, `${server}: the app answers`);
          assert.equal(r.body, 'app 404 /_hatch/config');
        }
      });

      await t.test('stop() takes the instrumentation out of running servers, start() puts it back', async () => {
        assert.equal((await h2(ports, 'h2c', '/stop')).status, 200);
        for (const server of SERVERS) {
          const r = await h2(ports, server, '/q?m=stopped', { 'x-request-id': 'while-stopped' });
          assert.equal(r.headers['x-request-id'], undefined, server);
          assert.equal(JSON.parse(r.body).handler, undefined, server);
        }
        assert.equal((await h2(ports, 'h2c', '/start')).body, 'true');
        for (const server of SERVERS) {
          const r = await h2(ports, server, '/q?m=restarted', { 'x-request-id': 'after-start' });
          assert.equal(r.headers['x-request-id'], 'after-start', server);
          assert.equal(JSON.parse(r.body).handler, 'after-start', server);
        }
      });

      await t.test('the app answers as without the agent, apart from the echoed header; stderr the same', async () => {
        const ours = await answers(ports);
        assert.deepEqual(ours, reference);
        assert.equal(app.stderr(), plain.app.stderr());
      });
    } finally {
      const exit = await app.stop();
      assert.deepEqual(exit, plainExit);
    }
  });
}

// The agent's own failures inside the http2 patch stay the agent's: the app answers as without it,
// and one line says what failed.
for (const fault of ['http2-server', 'http2-server-echo', 'http2-server-close']) {
  test(`HATCH_TEST_FAULT=${fault}: the app answers as without the agent; one line logged`, async () => {
    const mode = MODES[0];
    const plain = await start({ ...mode, agent: false }, { PLAIN: '1' });
    const reference = await answers(plain.ports);
    await plain.app.stop();
    const { app, ports } = await start(mode, {
      HATCH_TEST_FAULT: fault,
      HATCH_STATSD: 'on',
      HATCH_STATSD_PORT: String(udp.port),
      HATCH_STATSD_FLUSH_MS: '100',
    });
    try {
      assert.deepEqual(await answers(ports), reference);
    } finally {
      await app.stop();
    }
    const lines = app
      .stderr()
      .split('\n')
      .filter((l) => l.startsWith('hatch-agent '));
    assert.equal(lines.length, 1, app.stderr());
    assert.match(lines[0], new RegExp(`^hatch-agent warn: .*hatch-agent test fault: ${fault}\\b`));
  });
}
