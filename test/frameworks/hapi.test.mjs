// hapi (@hapi/hapi) under `node -r hatch-agent` (a CommonJS app, `new Hapi.Server()`) and under
// `node --import hatch-agent` (its ES-module twin, the named `server` import). Each app is first run
// without the agent: with it, every response is the same bytes (but the Date header and the agent's
// X-Request-ID echo) and stderr is the same text (hapi prints its own debug line for a Boom 500).
// Then: `http.server` timings are named by hapi's templates (`/users/{id}`, a plugin's prefixed
// `/api/items/{id}`), 404s are `unmatched`, and each 5xx answered with Boom (thrown Boom, a thrown
// plain Error, a returned Error) counts `errors` with kind `handler` exactly once, 4xx never: read
// from a real UDP socket. Under 50 concurrent requests each request sees its own ID in its onRequest
// ext, in its handler before and after a pg query, and in onPreResponse, and its SQL in PostgreSQL's
// statement log carries that ID. Last, HATCH_TEST_FAULT makes each of the patch's three agent-side
// parts throw: the app answers the same, and the agent says one line.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startApp, appDir } from '../support/app.mjs';
import { udpListener, statsdValues } from '../support/udp.mjs';
import { waitForLog } from '../support/pglog.mjs';
import { rawGet } from '../support/raw-http.mjs';

const version = (m) =>
  JSON.parse(fs.readFileSync(path.join(appDir, 'node_modules', m, 'package.json'), 'utf8')).version;
const HAPI = `@hapi/hapi@${version('@hapi/hapi')}`;
// Only a failing test waits this long; a loaded machine can take seconds to start hot-shots and send.
const WAIT = 60_000;
const STATSD = (udp) => ({
  HATCH_STATSD: 'on',
  HATCH_STATSD_PORT: String(udp.port),
  HATCH_STATSD_FLUSH_MS: '100',
  HATCH_STATSD_TAGS: 'dogstatsd',
});

const IMPORTS = {
  cjs: `const Hapi = require('@hapi/hapi');
const Boom = require('@hapi/boom');
const pg = require('pg');
// The run without the agent must not start it late (its unpatched-module warning would be right there).
const { getRequestId } = process.env.WITHOUT_AGENT ? { getRequestId: () => undefined } : require('hatch-agent');
const createServer = (options) => new Hapi.Server(options);`,
  esm: `import { server as createServer } from '@hapi/hapi';
import Boom from '@hapi/boom';
import pg from 'pg';
const { getRequestId } = process.env.WITHOUT_AGENT ? { getRequestId: () => undefined } : await import('hatch-agent');`,
};

// With an `x-probe` header, the IDs the request saw along hapi's lifecycle come back in `x-seen`.
const app = (kind) => `${IMPORTS[kind]}
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 5 });
const pause = () => new Promise((r) => setTimeout(r, Math.floor(Math.random() * 6)));
const who = () => getRequestId() ?? '-';
(async () => {
  const server = createServer({ port: 0, host: '127.0.0.1' });
  server.ext('onRequest', (request, h) => { request.app.seen = [who()]; return h.continue; });
  server.ext('onPreResponse', (request, h) => {
    if (request.headers['x-probe'] === undefined) return h.continue;
    request.app.seen.push(who());
    const value = request.app.seen.join(' ');
    const response = request.response;
    if (response.isBoom) response.output.headers['x-seen'] = value;
    else response.header('x-seen', value);
    return h.continue;
  });
  server.route({ method: 'GET', path: '/users/{id}', handler: async (request) => {
    const n = Number(request.params.id);
    await pause();
    request.app.seen.push(who());
    const { rows } = await pool.query("SELECT '" + process.env.MARKER + ":" + n + "' AS tag");
    request.app.seen.push(who());
    await pause();
    request.app.seen.push(who());
    return { user: n, rows: rows.length };
  } });
  server.route({ method: 'GET', path: '/boom', handler: () => { throw Boom.badImplementation('the handler broke'); } });
  server.route({ method: 'GET', path: '/throw', handler: async () => { await pause(); throw new Error('thrown in the handler'); } });
  server.route({ method: 'GET', path: '/returned', handler: () => new Error('returned by the handler') });
  server.route({ method: 'GET', path: '/forbidden', handler: () => { throw Boom.forbidden('not yours'); } });
  await server.register({
    name: 'items',
    register(api) { api.route({ method: 'GET', path: '/items/{id}', handler: (request) => 'item ' + Number(request.params.id) }); },
  }, { routes: { prefix: '/api' } });
  await server.start();
  process.on('SIGTERM', async () => { await server.stop(); await pool.end(); });
  console.log('listening ' + server.info.port);
})();
`;

const LOADERS = [
  { kind: 'cjs', agent: true, label: '-r' },
  { kind: 'esm', agent: 'import', label: '--import' },
];

const raw = rawGet;
/** The response without the lines that differ by design: the clock, and the agent's ID echo. */
const comparable = (text) =>
  text
    .split('\r\n')
    .filter((l) => !/^(date|x-request-id):/i.test(l))
    .join('\r\n');
const header = (text, name) => new RegExp(`^${name}: (.*)$`, 'im').exec(text.split('\r\n\r\n')[0])?.[1];
const status = (text) => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
/** App stderr, with the random file name startApp gives each copy of the app. */
const sameFile = (s) => s.replace(/app-[0-9a-f]{12}\.m?js/g, 'app.js');

/** Timings in the dogstatsd lines of http.server for GET with these route and status tags. */
const timings = (lines, route, code) =>
  statsdValues(
    lines.filter(
      (l) => l.startsWith('hatch.http.server:') && l.endsWith(`|#method:GET,route:${route},status_code:${code}`),
    ),
  ).length;
/** The sum of the `errors` counter lines, by kind. */
function errorCounts(lines) {
  const out = {};
  for (const l of lines.filter((x) => x.startsWith('hatch.errors:'))) {
    const kind = /\|#kind:([^,|]*)/.exec(l)?.[1];
    out[kind] = (out[kind] ?? 0) + statsdValues([l]).reduce((a, b) => a + b, 0);
  }
  return out;
}

// [path, route the timing must carry, status]
const REQUESTS = [
  ['/users/918273', '/users/{id}', 200],
  ['/api/items/564738', '/api/items/{id}', 200],
  ['/nothing/102938', 'unmatched', 404],
  ['/boom', '/boom', 500],
  ['/throw', '/throw', 500],
  ['/returned', '/returned', 500],
  ['/forbidden', '/forbidden', 403],
  ['/users/847561', '/users/{id}', 200],
];
const FAILED = REQUESTS.filter(([, , s]) => s >= 500).length;

let udp;
before(async () => {
  udp = await udpListener();
});
after(() => udp?.close());

async function settle() {
  // Flushes every 100 ms: five more would carry a late duplicate.
  await new Promise((r) => setTimeout(r, 500));
}

for (const { kind, agent, label } of LOADERS) {
  const source = app(kind);
  const ext = kind === 'esm' ? '.mjs' : '.js';

  test(`${HAPI} under ${label}: the same bytes and stderr as without the agent; timings named by template; each Boom 5xx counted once`, async () => {
    const env = { MARKER: 'hapi-' + randomBytes(4).toString('hex') };
    const plainApp = await startApp(source, { agent: false, ext, env: { ...env, WITHOUT_AGENT: '1' }, timeout: WAIT });
    const plain = [];
    for (const [p] of REQUESTS) plain.push(await raw(plainApp.port, p));
    await plainApp.stop();

    udp.clear();
    const withAgent = await startApp(source, { agent, ext, env: { ...env, ...STATSD(udp) }, timeout: WAIT });
    const seen = [];
    try {
      for (const [p] of REQUESTS) seen.push(await raw(withAgent.port, p));
      for (const [i, [p, , code]] of REQUESTS.entries()) {
        assert.equal(status(seen[i]), code, `${p}: ${seen[i]}`);
        assert.equal(comparable(seen[i]), comparable(plain[i]), `${p} answers the same bytes`);
        assert.ok(header(seen[i], 'x-request-id'), `${p}: the ID is echoed`);
      }

      const expected = new Map();
      for (const [, route, code] of REQUESTS)
        expected.set(`${route} ${code}`, (expected.get(`${route} ${code}`) ?? 0) + 1);
      const done = (ls) =>
        [...expected].every(([k, n]) => timings(ls, ...k.split(' ')) >= n) && (errorCounts(ls).handler ?? 0) >= FAILED;
      await udp.waitFor(done, WAIT);
      await settle();
      const lines = [...udp.lines];
      for (const [k, n] of expected) assert.equal(timings(lines, ...k.split(' ')), n, `http.server timings for ${k}`);
      assert.equal(lines.filter((l) => l.startsWith('hatch.http.server:')).length > 0, true);
      for (const l of lines.filter((x) => x.startsWith('hatch.http.server:'))) {
        for (const id of ['918273', '564738', '102938', '847561']) assert.ok(!l.includes(id), `no concrete ID in ${l}`);
      }
      assert.deepEqual(errorCounts(lines), { handler: FAILED }, 'one error per 5xx, none for the 404 or the 403');
    } finally {
      await withAgent.stop();
    }
    assert.equal(sameFile(withAgent.stderr()), sameFile(plainApp.stderr()), "stderr is the app's own");
    assert.match(plainApp.stderr(), /the handler broke/, 'hapi prints its own line for the Boom 500');
  });

  test(`${HAPI} under ${label}: 50 concurrent requests each keep their own ID through onRequest, handler, pg and onPreResponse`, async () => {
    const marker = 'hapi-' + randomBytes(4).toString('hex');
    const run = randomBytes(3).toString('hex');
    udp.clear();
    const withAgent = await startApp(source, { agent, ext, env: { MARKER: marker, ...STATSD(udp) }, timeout: WAIT });
    const plan = Array.from({ length: 50 }, (_, n) => {
      const id = `hapi-${run}-${n}`;
      if (n % 10 === 3) return { n, id, path: `/nothing/${n}`, code: 404, stages: 2 };
      if (n % 10 === 7) return { n, id, path: '/throw', code: 500, stages: 2 };
      return { n, id, path: `/users/${n}`, code: 200, stages: 5 };
    });
    try {
      const answers = await Promise.all(
        plan.map((r) => raw(withAgent.port, r.path, { 'x-request-id': r.id, 'x-probe': '1' })),
      );
      for (const [i, r] of plan.entries()) {
        const a = answers[i];
        assert.equal(status(a), r.code, `${r.path}: ${a}`);
        assert.equal(header(a, 'x-request-id'), r.id);
        assert.equal(
          header(a, 'x-seen'),
          Array(r.stages).fill(r.id).join(' '),
          `${r.path} saw only its own ID along the lifecycle`,
        );
        if (r.code === 200) assert.deepEqual(JSON.parse(a.split('\r\n\r\n')[1]), { user: r.n, rows: 1 });
      }

      const users = plan.filter((r) => r.code === 200);
      const logged = await waitForLog(`'${marker}:`, { count: users.length, timeout: WAIT });
      const statements = logged.filter((l) => /statement: /.test(l));
      assert.equal(statements.length, users.length, 'one statement per request');
      for (const s of statements) {
        const m = new RegExp(`/\\* (hapi-${run}-(\\d+)) GET /users/\\{id\\} \\*/ SELECT '${marker}:(\\d+)'`).exec(s);
        assert.ok(m, `the statement carries a request ID: ${s}`);
        assert.equal(m[2], m[3], `the statement of request ${m[3]} carries its own ID: ${s}`);
      }
      assert.deepEqual(
        statements.map((s) => Number(/:(\d+)' AS tag/.exec(s)[1])).sort((a, b) => a - b),
        users.map((r) => r.n),
      );

      const failed = plan.filter((r) => r.code === 500).length;
      const lost = plan.filter((r) => r.code === 404).length;
      await udp.waitFor(
        (ls) =>
          timings(ls, '/users/{id}', 200) >= users.length &&
          timings(ls, 'unmatched', 404) >= lost &&
          (errorCounts(ls).handler ?? 0) >= failed,
        WAIT,
      );
      await settle();
      assert.equal(timings(udp.lines, '/users/{id}', 200), users.length);
      assert.equal(timings(udp.lines, 'unmatched', 404), lost);
      assert.equal(timings(udp.lines, '/throw', 500), failed);
      assert.deepEqual(errorCounts(udp.lines), { handler: failed });
    } finally {
      await withAgent.stop();
    }
  });
}

test(`${HAPI} under -r: the agent's own failure in either extension or in adding them leaves the app as it is, with one line`, async () => {
  const source = app('cjs');
  const env = { MARKER: 'hapi-' + randomBytes(4).toString('hex') };
  const answers = async (a) => {
    const out = [];
    // Each request twice: a fault that fires on every call must still say one line.
    for (const [p] of [...REQUESTS, ...REQUESTS]) out.push(comparable(await raw(a.port, p)));
    return out;
  };
  const plainApp = await startApp(source, { agent: false, env: { ...env, WITHOUT_AGENT: '1' }, timeout: WAIT });
  const plain = await answers(plainApp);
  await plainApp.stop();
  const agentLines = (s) => s.split('\n').filter((l) => l.startsWith('hatch-agent '));
  const appLines = (s) =>
    sameFile(
      s
        .split('\n')
        .filter((l) => !l.startsWith('hatch-agent '))
        .join('\n'),
    );
  for (const name of ['hapi-server', 'hapi', 'hapi-error']) {
    // The flight recorder listens on hatch:error, so the error path runs as far as it can.
    const recorder = path.join(appDir, `faults-${randomBytes(4).toString('hex')}.jsonl`);
    const faulty = await startApp(source, {
      env: { ...env, HATCH_TEST_FAULT: name, HATCH_FLIGHT_RECORDER: recorder },
      timeout: WAIT,
    });
    let seen;
    try {
      seen = await answers(faulty);
    } finally {
      await faulty.stop();
      fs.rmSync(recorder, { force: true });
    }
    assert.deepEqual(seen, plain, `${name}: the same bytes`);
    const lines = agentLines(faulty.stderr());
    assert.equal(lines.length, 1, `${name}: agent lines:\n${lines.join('\n')}`);
    assert.match(lines[0], new RegExp(`^hatch-agent warn: hapi: .*hatch-agent test fault: ${name}$`));
    assert.equal(appLines(faulty.stderr()), appLines(plainApp.stderr()), `${name}: the app's own stderr`);
  }
});
