// pg under `node -r hatch-agent`, against a real PostgreSQL whose statement log is grepped for the
// request IDs. `npm test` runs this file once per supported pg version (oldest and newest 8.x).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { startApp, runScript, get, UUID } from '../support/app.mjs';
import { udpListener } from '../support/udp.mjs';
import { waitForLog, logFile } from '../support/pglog.mjs';

const run = randomBytes(4).toString('hex'); // keeps this run's statements apart in a shared log
const DATABASE_URL = process.env.DATABASE_URL;

const SERVER = `
const http = require('node:http');
const pg = require('pg');
const Cursor = require('pg-cursor');
const QueryStream = require('pg-query-stream');
const { getRequestId } = require('hatch-agent');
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 3 });
const SHARED = { text: "SELECT 'reuse-${run}' AS r, $1::text AS m" };
const send = (res, status, obj) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(obj)); };
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const m = url.searchParams.get('m') || '';
  try {
    switch (url.pathname) {
      case '/promise': {
        const r = await pool.query("SELECT '" + m + "' AS marker");
        return send(res, 200, { marker: r.rows[0].marker, id: getRequestId() });
      }
      case '/callback':
        return pool.query("SELECT '" + m + "' AS marker", (err, r) => send(res, err ? 500 : 200, { marker: r && r.rows[0].marker, id: getRequestId() }));
      case '/connect-callback':
        return pool.connect((err, client, release) => {
          if (err) return send(res, 500, { error: err.message });
          client.query("SELECT '" + m + "' AS marker", [], (err2, r) => { release(); send(res, 200, { marker: r.rows[0].marker, id: getRequestId() }); });
        });
      case '/named': {
        const r = await pool.query({ name: 'named-${run}', text: 'SELECT $1::int AS n', values: [Number(m)] });
        return send(res, 200, { n: r.rows[0].n, id: getRequestId() });
      }
      case '/reuse': {
        const r = await pool.query(SHARED, [m]);
        return send(res, 200, { m: r.rows[0].m, keys: Object.keys(SHARED), text: SHARED.text, id: getRequestId() });
      }
      case '/stream': {
        const client = await pool.connect();
        const ids = [];
        const rows = [];
        const s = client.query(new QueryStream("SELECT n, '" + m + "' AS m FROM generate_series(1, 5) AS n", [], { batchSize: 2 }));
        s.on('data', (row) => { rows.push(row.n); ids.push(getRequestId()); });
        s.on('error', (e) => { client.release(); send(res, 500, { error: e.message }); });
        s.on('end', () => { client.release(); send(res, 200, { rows, ids, id: getRequestId() }); });
        return;
      }
      case '/cursor': {
        const client = await pool.connect();
        const cursor = client.query(new Cursor("SELECT n, '" + m + "' AS m FROM generate_series(1, 3) AS n"));
        return cursor.read(10, (err, rows) => cursor.close(() => { client.release(); send(res, 200, { rows: rows.map((r) => r.n), id: getRequestId() }); }));
      }
      case '/error': {
        try { await pool.query('SELECT * FROM no_such_table_' + m); } catch (e) { return send(res, 200, { code: e.code, message: e.message, id: getRequestId() }); }
        return send(res, 500, {});
      }
    }
    send(res, 404, {});
  } catch (e) { send(res, 500, { error: e.message }); }
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

let udp;
let app;
before(async () => {
  udp = await udpListener();
  app = await startApp(SERVER, {
    env: { DATABASE_URL, HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(udp.port), HATCH_STATSD_FLUSH_MS: '100' },
  });
});
after(async () => {
  await app?.stop();
  udp?.close();
});

const commentOf = (line) => /\/\* ([^*]+) \*\/ /.exec(line)?.[1];
const logSize = () => fs.statSync(logFile).size;
/** The whole lines the statement log got after byte `from`, once `enough(lines)` says so. */
async function logLinesSince(from, enough, timeout = 10000) {
  const until = Date.now() + timeout;
  for (;;) {
    const fd = fs.openSync(logFile, 'r');
    let text;
    try {
      const buf = Buffer.alloc(Math.max(0, fs.fstatSync(fd).size - from));
      fs.readSync(fd, buf, 0, buf.length, from);
      text = buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
    const lines = text
      .slice(0, text.lastIndexOf('\n') + 1)
      .split('\n')
      .slice(0, -1);
    if (enough(lines)) return lines;
    if (Date.now() > until)
      throw new Error(
        `statement log after byte ${from}: not there within ${timeout} ms; last lines:\n${lines.slice(-20).join('\n')}`,
      );
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('the ID in the response header is on the exact statement in the PostgreSQL log', async () => {
  const marker = `single-${run}`;
  const r = await get(`${app.url}/promise?m=${marker}`);
  assert.equal(r.status, 200);
  const id = r.headers['x-request-id'];
  assert.match(id, UUID);
  assert.equal(JSON.parse(r.body).id, id);
  const [line] = await waitForLog(`SELECT '${marker}' AS marker`);
  assert.ok(line.includes(`statement: /* ${id} */ SELECT '${marker}' AS marker`), line);
});

test('200 concurrent requests through a pool of 3: every logged statement carries its own request ID', async () => {
  const forms = ['promise', 'callback', 'connect-callback'];
  const rs = await Promise.all(
    Array.from({ length: 200 }, (_, i) =>
      get(`${app.url}/${forms[i % 3]}?m=conc-${run}-${i}`, i % 4 === 0 ? { 'x-request-id': `caller-${run}-${i}` } : {}),
    ),
  );
  const idOf = new Map();
  for (const [i, r] of rs.entries()) {
    assert.equal(r.status, 200, r.body);
    const body = JSON.parse(r.body);
    assert.equal(body.marker, `conc-${run}-${i}`);
    assert.equal(body.id, r.headers['x-request-id'], `request ${i} (${forms[i % 3]}) saw its own ID in its callback`);
    if (i % 4 === 0) assert.equal(r.headers['x-request-id'], `caller-${run}-${i}`);
    idOf.set(`conc-${run}-${i}'`, r.headers['x-request-id']);
  }
  const lines = await waitForLog(`'conc-${run}-`, { count: 200 });
  let checked = 0;
  for (const line of lines) {
    const marker = /'(conc-[^']+')/.exec(line)[1];
    assert.equal(commentOf(line), idOf.get(marker), line);
    checked++;
  }
  assert.ok(checked >= 200);
});

test('named prepared statements from many requests keep their text and work every time', async () => {
  // Only this test's statements: the log from its start on, the statement named after this file's
  // run, and the parameters its requests sent (a base no other test uses).
  const from = logSize();
  const base = 700000 + Math.floor(Math.random() * 100000);
  const rs = await Promise.all(Array.from({ length: 12 }, (_, i) => get(`${app.url}/named?m=${base + i}`)));
  rs.forEach((r, i) => {
    assert.equal(r.status, 200, r.body);
    assert.equal(JSON.parse(r.body).n, base + i);
  });
  // Each execution is logged as `execute <name>: <text>` with its parameters on the next line.
  const executed = (ls) =>
    ls.flatMap((l, i) =>
      l.includes(` execute named-${run}: `)
        ? [[l, /DETAIL: {2}Parameters: \$1 = '(\d+)'/i.exec(ls[i + 1] ?? '')?.[1]]]
        : [],
    );
  const lines = await logLinesSince(from, (ls) => executed(ls).filter(([, v]) => v !== undefined).length >= 12);
  const runs = executed(lines);
  assert.deepEqual(
    runs.map(([, v]) => Number(v)).sort((a, b) => a - b),
    rs.map((_, i) => base + i),
    'one execution per request, with its own parameter',
  );
  for (const [l] of runs)
    assert.ok(l.endsWith(`execute named-${run}: SELECT $1::int AS n`), `a named statement was changed: ${l}`);
  for (const l of lines.filter((x) => x.includes(`named-${run}`)))
    assert.equal(commentOf(l), undefined, `a named statement was changed: ${l}`);
});

test('a reused query object is left as it was, and each use carries its own ID', async () => {
  const rs = [];
  for (let i = 0; i < 3; i++) rs.push(await get(`${app.url}/reuse?m=r${i}`));
  for (const [i, r] of rs.entries()) {
    const b = JSON.parse(r.body);
    assert.equal(b.m, `r${i}`);
    // pg 8.0.x itself writes `values` and `callback` on the caller's object (later versions clone
    // it); the side-by-side test below shows the agent keeps that identical. Ours: the text.
    assert.ok(
      b.keys.every((k) => ['text', 'values', 'callback'].includes(k)),
      b.keys.join(),
    );
    assert.equal(b.text, `SELECT 'reuse-${run}' AS r, $1::text AS m`, 'its text is unchanged');
  }
  // Three executes (each use also logs parse and bind lines, which may come first).
  const execs = await waitForLog(new RegExp(`execute [^:]*: .*SELECT 'reuse-${run}'`), { count: 3 });
  assert.deepEqual(execs.map(commentOf).sort(), rs.map((r) => r.headers['x-request-id']).sort());
});

test('pg-query-stream and pg-cursor: commented, rows intact, callbacks and data events in the request', async () => {
  const s = await get(`${app.url}/stream?m=stream-${run}`);
  const sb = JSON.parse(s.body);
  assert.deepEqual(sb.rows, [1, 2, 3, 4, 5]);
  assert.deepEqual(sb.ids, Array(5).fill(s.headers['x-request-id']));
  const c = await get(`${app.url}/cursor?m=cursor-${run}`);
  const cb = JSON.parse(c.body);
  assert.deepEqual(cb.rows, [1, 2, 3]);
  assert.equal(cb.id, c.headers['x-request-id']);
  const [sl] = await waitForLog(`'stream-${run}' AS m`);
  assert.equal(commentOf(sl), s.headers['x-request-id'], sl);
  const [cl] = await waitForLog(`'cursor-${run}' AS m`);
  assert.equal(commentOf(cl), c.headers['x-request-id'], cl);
});

test('a hostile X-Request-ID never reaches SQL: the statement carries the replacement UUID', async () => {
  const marker = `hostile-${run}`;
  for (const bad of ['*/ DROP TABLE x; --', '/* x */', "'; SELECT pg_sleep(10); --", 'x'.repeat(10240)]) {
    const r = await get(`${app.url}/promise?m=${marker}`, { 'x-request-id': bad });
    assert.match(r.headers['x-request-id'], UUID);
  }
  const lines = await waitForLog(`SELECT '${marker}'`, { count: 4 });
  for (const l of lines) {
    assert.match(commentOf(l), UUID);
    assert.ok(!l.includes('DROP') && !l.includes('pg_sleep') && !l.includes('xxxxxxxx') && !l.includes('/* x */'), l);
  }
});

test('db.query timings reach StatsD with operation and outcome; errors reach the app unchanged', async () => {
  udp.clear();
  const r = await get(`${app.url}/error?m=${run}`);
  const b = JSON.parse(r.body);
  assert.equal(b.code, '42P01');
  assert.equal(b.message, `relation "no_such_table_${run}" does not exist`);
  await get(`${app.url}/promise?m=metric-${run}`);
  const lines = await udp.waitFor(
    (ls) =>
      ls.some((l) => l.startsWith('hatch.db.query.pg.SELECT.error:')) &&
      ls.some((l) => l.startsWith('hatch.db.query.pg.SELECT.ok:')),
  );
  for (const l of lines.filter((x) => x.startsWith('hatch.db.query.')))
    assert.match(l, /^hatch\.db\.query\.pg\.SELECT\.(ok|error)(:\d+(\.\d+)?\|ms)+$/);
});

// Every query form, run once under the agent (inside withRequestId) and once without it: the
// printed results, errors and the caller's objects afterwards must be identical.
const FORMS = `
const pg = require('pg');
const Cursor = require('pg-cursor');
const QueryStream = require('pg-query-stream');
const agent = process.env.USE_AGENT ? require('hatch-agent') : null;
const within = agent ? (fn) => agent.withRequestId('forms-${run}', fn) : (fn) => fn();
// With the agent, what each query's event said (printed on a second line, apart from the results).
const events = [];
if (agent) require('node:diagnostics_channel').subscribe('hatch:db.query', (e) => events.push({ text: e.text, operation: e.operation, error: e.error }));
const out = [];
const rec = (label, v) => out.push([label, v]);
const errOf = (e) => ({ name: e.name, code: e.code, message: e.message, position: e.position, isError: e instanceof Error });
const cbP = (fn) => new Promise((resolve) => fn((err, res) => resolve(err ? { err: errOf(err) } : { rows: res.rows, rowCount: res.rowCount, command: res.command })));
within(async () => {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
  const res = (r) => ({ rows: r.rows, rowCount: r.rowCount, command: r.command, fields: r.fields.map((f) => f.name) });
  rec('string', res(await client.query("SELECT 1 AS one, 'forms-a' AS t")));
  rec('text+values', res(await client.query('SELECT $1::int + 1 AS two', [1])));
  rec('config', res(await client.query({ text: 'SELECT $1::text AS t', values: ['cfg'] })));
  rec('rowMode', (await client.query({ text: 'SELECT 1 AS a, 2 AS b', rowMode: 'array' })).rows);
  rec('callback', await cbP((cb) => client.query('SELECT 3 AS three', cb)));
  rec('values+callback', await cbP((cb) => client.query('SELECT $1::int AS v', [4], cb)));
  rec('config.callback', await cbP((cb) => client.query({ text: 'SELECT 5 AS five', callback: cb })));
  rec('pool promise', res(await pool.query('SELECT 6 AS six')));
  rec('pool callback', await cbP((cb) => pool.query('SELECT $1::int AS seven', [7], cb)));
  const named = { name: 'forms-named-${run}', text: 'SELECT $1::int * 10 AS n' };
  for (let i = 0; i < 3; i++) rec('named ' + i, res(await client.query(named, [i])));
  rec('named object after', { keys: Object.keys(named), text: named.text });
  const reused = { text: 'SELECT $1::text AS again' };
  for (let i = 0; i < 3; i++) rec('reused ' + i, (await client.query(reused, ['r' + i])).rows);
  rec('reused object after', { keys: Object.keys(reused), text: reused.text });
  const frozen = Object.freeze({ text: 'SELECT 8 AS frozen' });
  rec('frozen', res(await client.query(frozen)));
  class Q { get text() { return 'SELECT 9 AS getter'; } }
  const g = new Q();
  rec('getter', res(await client.query(g)));
  rec('getter object after', { keys: Object.keys(g), proto: Object.getPrototypeOf(g) === Q.prototype });
  const stream = new QueryStream('SELECT n FROM generate_series(1, 4) AS n');
  const streamed = await new Promise((resolve, reject) => { const rows = []; client.query(stream).on('data', (r) => rows.push(r.n)).on('end', () => resolve(rows)).on('error', reject); });
  rec('stream', { rows: streamed, proto: Object.getPrototypeOf(stream) === QueryStream.prototype, text: stream.cursor.text });
  const cursor = client.query(new Cursor('SELECT n FROM generate_series(1, 3) AS n'));
  const first = await new Promise((resolve) => cursor.read(2, (e, rows) => resolve(rows.map((r) => r.n))));
  await new Promise((resolve) => cursor.close(resolve));
  rec('cursor', { first, text: cursor.text, proto: Object.getPrototypeOf(cursor) === Cursor.prototype });
  const q = new pg.Query('SELECT 11 AS sub');
  rec('submittable', await new Promise((resolve) => { client.query(q, (err, r) => resolve(err ? errOf(err) : r.rows)); }));
  rec('syntax error promise', await client.query('SELEC 1').then(() => 'resolved', errOf));
  rec('syntax error callback', await cbP((cb) => client.query('SELECT * FROM forms_missing_table', cb)));
  rec('pool error', await pool.query('SELECT 1/0').then(() => 'resolved', errOf));
  let threw;
  try { client.query(null); } catch (e) { threw = errOf(e); }
  rec('null query throws', threw);
  // pg answers a failed query's callback on the ErrorResponse, before the server's ReadyForQuery,
  // so the client may still be busy here; one awaited success makes it idle. Without it the two
  // calls below can queue behind each other, and pg >= 8.19 then prints a DeprecationWarning
  // whose presence depends on timing (CI saw it once on one side only).
  rec('idle again', (await client.query('SELECT 12 AS idle')).rows);
  const pending = client.query('SELECT 1');
  let cbDone;
  const cbReturn = client.query('SELECT 1', () => cbDone());
  rec('returns', { promise: pending instanceof Promise, callback: cbReturn === undefined });
  await pending;
  await new Promise((r) => (cbDone = r));
  await client.end();
  await pool.end();
}).then(() => { console.log(JSON.stringify(out)); if (agent) console.log(JSON.stringify(events)); }, (e) => { console.error('FAILED', e); process.exit(3); });
`;

test('every query form behaves exactly as without the agent', async () => {
  const env = { DATABASE_URL };
  const plain = await runScript(FORMS, { agent: false, env });
  const withAgent = await runScript(FORMS, { agent: true, env: { ...env, USE_AGENT: '1' } });
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(withAgent.code, 0, withAgent.stderr);
  // Whatever pg or Node print (deprecations) must be the same both ways: the agent adds nothing.
  const norm = (s) => s.replace(/\(node:\d+\)/g, '(node:PID)');
  assert.equal(norm(withAgent.stderr), norm(plain.stderr), 'the agent logs nothing at the default level');
  const a = JSON.parse(plain.stdout);
  const [results, events] = withAgent.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.deepEqual(results, a);
  assert.ok(a.length >= 25);
  // Each event names its statement's operation, found on the app's text whatever the form
  // (text, config, named, getter, stream, cursor, Submittable); the misspelt one is OTHER.
  assert.ok(events.length >= 25, JSON.stringify(events));
  for (const e of events) {
    const sql = e.text.replace(/^\/\* [^*]+ \*\/ /, '');
    assert.equal(e.operation, /^SELECT\b/i.test(sql) ? 'SELECT' : 'OTHER', JSON.stringify(e));
  }
  for (const t of [
    'SELECT 11 AS sub',
    'generate_series(1, 3)',
    'generate_series(1, 4)',
    'SELECT 9 AS getter',
    'forms-named',
  ]) {
    assert.ok(
      events.some((e) => e.text.includes(t.replace('forms-named', 'SELECT $1::int * 10')) && e.operation === 'SELECT'),
      t,
    );
  }
  assert.deepEqual(
    events.filter((e) => e.text.endsWith('SELEC 1')).map((e) => [e.operation, e.error]),
    [['OTHER', true]],
  );
  // And the agent did comment the run that had it (not the one without).
  const lines = await waitForLog("'forms-a' AS t", { count: 2 });
  assert.equal(lines.filter((l) => l.includes(`/* forms-${run} */ SELECT 1 AS one`)).length, 1, lines.join('\n'));
});

test("outside any request, queries carry the process's run; withRequestId comments them with its own ID", async () => {
  const r = await runScript(
    `
const pg = require('pg');
const { withRequestId, getRequestId, getRunId } = require('hatch-agent');
(async () => {
  const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await c.connect();
  await c.query("SELECT 'outside-${run}'");
  const inside = await withRequestId('job-${run}', async () => { await c.query("SELECT 'inside-${run}'"); return getRequestId(); });
  console.log(JSON.stringify({ inside, after: getRequestId() ?? null, run: getRunId() }));
  await c.end();
})();`,
    { env: { DATABASE_URL } },
  );
  assert.equal(r.code, 0, r.stderr);
  const said = JSON.parse(r.stdout);
  assert.deepEqual({ ...said, run: undefined }, { inside: `job-${run}`, after: null, run: undefined });
  assert.match(said.run, UUID);
  const [out] = await waitForLog(`SELECT 'outside-${run}'`);
  assert.match(out, new RegExp(`statement: /\\* job:app-[0-9a-f]+ run:${said.run} \\*/ SELECT 'outside-${run}'`));
  const [inside] = await waitForLog(`SELECT 'inside-${run}'`);
  assert.ok(inside.includes(`statement: /* job-${run} */ SELECT 'inside-${run}'`), inside);
});

test('HATCH_RUN_COMMENT=off: queries outside any request go out unchanged', async () => {
  const r = await runScript(
    `
const pg = require('pg');
(async () => {
  const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await c.connect();
  await c.query("SELECT 'run-off-${run}'");
  await c.end();
})();`,
    { env: { DATABASE_URL, HATCH_RUN_COMMENT: 'off' } },
  );
  assert.equal(r.code, 0, r.stderr);
  const [out] = await waitForLog(`SELECT 'run-off-${run}'`);
  assert.ok(out.includes(`statement: SELECT 'run-off-${run}'`), out);
});
