// mysql2 under `node -r hatch-agent`, against a real MariaDB (test/support/mariadb.mjs) whose
// general log, which records every statement as the server received it, is read for the request
// IDs. `npm test` runs this file with the oldest and the newest mysql2 the patch declares
// (node20-oldest, and every other line). StatsD timings are read off a real UDP socket.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startApp, runScript, get, UUID, fakeModule } from '../support/app.mjs';
import { udpListener } from '../support/udp.mjs';
import { startMariaDB, stopMariaDB } from '../support/mariadb.mjs';

const run = randomBytes(4).toString('hex');

// Every call form an app uses: pools (callback, promise API, getConnection, the event-emitter form,
// a stream, a pool cluster), a standalone connection (its queue holds the concurrent requests'
// queries, so most start long after their call), and execute() on a pool and through the promise API.
const SERVER = `
const http = require('node:http');
const mysql = require('mysql2');
const mysqlp = require('mysql2/promise');
const { getRequestId } = require('hatch-agent');
const uri = process.env.MYSQL_URL;
const pool = mysql.createPool({ uri, connectionLimit: 3 });
const ppool = mysqlp.createPool({ uri, connectionLimit: 3 });
const cluster = mysql.createPoolCluster();
cluster.add('one', { uri, connectionLimit: 2 });
const conn = mysql.createConnection(uri);
const send = (res, status, obj) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(obj)); };
const answer = (res) => (err, rows) => send(res, err ? 500 : 200, err ? { error: err.message } : { marker: rows[0].marker, id: getRequestId() });
const SQL = 'SELECT ? AS marker';
// (An async handler never returns a mysql2 command: awaiting one throws, by mysql2's design.)
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const m = url.searchParams.get('m') || '';
  try {
    switch (url.pathname) {
      case '/callback': return void pool.query(SQL, [m], answer(res));
      case '/promise': { const [rows] = await ppool.query(SQL, [m]); return answer(res)(null, rows); }
      case '/getconn':
        return pool.getConnection((err, c) => {
          if (err) return send(res, 500, { error: err.message });
          c.query(SQL, [m], (e, rows) => { c.release(); answer(res)(e, rows); });
        });
      case '/emitter': {
        const rows = [];
        return void pool.query({ sql: SQL, values: [m] }).on('result', (r) => rows.push(r)).on('error', (e) => send(res, 500, { error: e.message })).on('end', () => answer(res)(null, rows));
      }
      case '/stream': {
        const rows = [];
        const ids = [];
        return void pool.query('SELECT ? AS marker UNION ALL SELECT ?', [m, m + '-2']).stream()
          .on('data', (r) => { rows.push(r.marker); ids.push(getRequestId()); })
          .on('error', (e) => send(res, 500, { error: e.message }))
          .on('end', () => send(res, 200, { marker: rows[0], rows, ids, id: getRequestId() }));
      }
      case '/cluster': return void cluster.of('*').query(SQL, [m], answer(res));
      case '/conn': return void conn.query(SQL, [m], answer(res));
      case '/execute': return void pool.execute(SQL, [m], answer(res));
      case '/pexecute': { const [rows] = await ppool.execute(SQL, [m]); return answer(res)(null, rows); }
    }
    send(res, 404, {});
  } catch (e) { send(res, 500, { error: e.message }); }
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

let db;
let udp;
let app;
before(async () => {
  db = await startMariaDB();
  udp = await udpListener();
  app = await startApp(SERVER, {
    env: { MYSQL_URL: db.url, HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(udp.port), HATCH_STATSD_FLUSH_MS: '100' },
  });
});
after(async () => {
  await app?.stop();
  udp?.close();
  await stopMariaDB();
});

const COMMENTED = ['callback', 'promise', 'getconn', 'emitter', 'stream', 'cluster', 'conn'];
const FORMS = [...COMMENTED, 'execute', 'pexecute'];

/** The general log's statements after byte `from`: [command, text] (a text may span lines). */
function statements(from) {
  const out = [];
  for (const line of db.readLog(from).split('\n')) {
    const m = /^(?:\d{6} +\d?\d:\d\d:\d\d)?\t+ *\d+ (\w[\w ]*?)\t(.*)$/.exec(line);
    if (m) out.push([m[1], m[2]]);
    else if (out.length) out.at(-1)[1] += `\n${line}`;
  }
  return out;
}
const commentOf = (text) => /^\/\* ([^*]+) \*\/ /.exec(text)?.[1];
/** How many `db.query` timings the lines hold for a series (`name:v|ms:v|ms`: one `|ms` each). */
const timings = (lines, series) =>
  lines.filter((l) => l.startsWith(`${series}:`)).reduce((n, l) => n + l.split('|ms').length - 1, 0);

test('200 concurrent requests through pools and a connection: every statement in the general log carries its own request ID, and db.query is counted once per call', async () => {
  udp.clear();
  const from = db.logSize();
  const rs = await Promise.all(
    Array.from({ length: 200 }, (_, i) =>
      get(
        `${app.url}/${FORMS[i % FORMS.length]}?m=conc-${run}-${i}`,
        i % 5 === 0 ? { 'x-request-id': `caller-${run}-${i}` } : {},
      ),
    ),
  );
  const idOf = new Map();
  for (const [i, r] of rs.entries()) {
    const form = FORMS[i % FORMS.length];
    assert.equal(r.status, 200, `${form}: ${r.body}`);
    const body = JSON.parse(r.body);
    assert.equal(body.marker, `conc-${run}-${i}`, form);
    assert.equal(body.id, r.headers['x-request-id'], `request ${i} (${form}) saw its own ID in its callback`);
    if (form === 'stream') assert.deepEqual(body.ids, [body.id, body.id], 'stream rows in the request');
    if (i % 5 === 0) assert.equal(r.headers['x-request-id'], `caller-${run}-${i}`);
    idOf.set(`conc-${run}-${i}`, [form, r.headers['x-request-id']]);
  }
  // Each query() is one `Query` line, commented with its request's ID; each execute() one `Execute`
  // line (the statement with its values, as the server ran it), never commented.
  const ours = () =>
    statements(from).filter(([cmd, text]) => ['Query', 'Execute'].includes(cmd) && text.includes(`'conc-${run}-`));
  for (let t = Date.now(); ours().length < 200 && Date.now() - t < 10000;) await new Promise((r) => setTimeout(r, 50));
  const seen = ours();
  assert.equal(seen.length, 200, seen.map((s) => s.join(' ')).join('\n'));
  for (const [cmd, text] of seen) {
    const marker = /'(conc-[^']+)'/.exec(text)[1];
    const [form, id] = idOf.get(marker);
    if (form === 'execute' || form === 'pexecute') {
      assert.equal(cmd, 'Execute', text);
      assert.equal(commentOf(text), undefined, `execute() is never commented: ${text}`);
    } else {
      assert.equal(cmd, 'Query', text);
      assert.equal(commentOf(text), id, `${form}: ${text}`);
    }
  }
  // Every call timed once: 200 SELECTs, whichever layers (pool, cluster, promise API) it went through.
  const series = 'hatch.db.query.mysql.SELECT.ok';
  await udp.waitFor((ls) => timings(ls, series) >= 200, 20000);
  await new Promise((r) => setTimeout(r, 500)); // a double count would arrive with the next flushes
  assert.equal(timings(udp.lines, series), 200);
  for (const l of udp.lines.filter((x) => x.startsWith('hatch.db.query.')))
    assert.match(l, /^hatch\.db\.query\.mysql\.SELECT\.ok(:\d+(\.\d+)?\|ms)+$/);
});

test("execute() keeps the server's prepared statements flat: Prepared_stmt_count stays within one statement per connection under 200 requests", async () => {
  const count = async () => Number((await db.query("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'"))[0][1]);
  const before = await count();
  const from = db.logSize();
  const rs = await Promise.all(
    Array.from({ length: 200 }, (_, i) => get(`${app.url}/${i % 2 ? 'execute' : 'pexecute'}?m=prep-${run}-${i}`)),
  );
  for (const r of rs) assert.equal(r.status, 200, r.body);
  const after = await count();
  // Two pools of 3 connections, one SQL text: at most 6 statements ever, whatever the request count.
  assert.ok(after <= 6, `Prepared_stmt_count went from ${before} to ${after} under 200 requests`);
  const prepared = statements(from).filter(([cmd, text]) => cmd === 'Prepare' && text.includes('AS marker'));
  assert.ok(prepared.length <= 6, prepared.map((s) => s.join(' ')).join('\n'));
  for (const [, text] of prepared) assert.equal(text, 'SELECT ? AS marker');
});

// Every call form, run once under the agent (inside withRequestId) and once without it: results,
// errors (every field mysql2 sets) and the caller's objects afterwards must be identical.
const FORMS_SCRIPT = `
const mysql = require('mysql2');
const mysqlp = require('mysql2/promise');
const agent = process.env.USE_AGENT ? require('hatch-agent') : null;
const within = agent ? (fn) => agent.withRequestId('forms-${run}', fn) : (fn) => fn();
const events = [];
if (agent) require('node:diagnostics_channel').subscribe('hatch:db.query', (e) => events.push({ system: e.system, text: e.text, operation: e.operation, error: e.error }));
const uri = process.env.MYSQL_URL;
const out = [];
const rec = (label, v) => out.push([label, v]);
const errOf = (e) => ({ name: e.name, message: e.message, code: e.code, errno: e.errno, sqlState: e.sqlState, sqlMessage: e.sqlMessage, sql: e.sql, fatal: e.fatal, isError: e instanceof Error, keys: Object.keys(e).sort() });
const fieldsOf = (f) => f && f.map((x) => [x.name, x.columnType, x.table]);
// mysql2 3.0.0 writes on the options object it is given (a frozen one throws at the call): recorded like an error.
const cb = (fn) => new Promise((resolve) => { try { fn((err, rows, fields) => resolve(err ? { err: errOf(err) } : { rows, fields: fieldsOf(fields) })); } catch (e) { resolve({ threw: errOf(e) }); } });
const events_ = (q) => new Promise((resolve) => { const got = []; q.on('fields', (f) => got.push(['fields', fieldsOf(f)])).on('result', (r) => got.push(['result', r])).on('error', (e) => got.push(['error', errOf(e)])).on('end', () => resolve(got)); });
within(async () => {
  const conn = mysql.createConnection({ uri, multipleStatements: true });
  const pool = mysql.createPool({ uri, connectionLimit: 2 });
  const pconn = await mysqlp.createConnection(uri);
  const ppool = mysqlp.createPool({ uri, connectionLimit: 2 });
  await cb((k) => conn.query('CREATE TEMPORARY TABLE t (id INT PRIMARY KEY, name VARCHAR(20), at DATETIME)', k));
  rec('insert', await cb((k) => conn.query('INSERT INTO t VALUES (1, ?, ?), (2, ?, NULL)', ['é one', new Date(Date.UTC(2024, 0, 2, 3, 4, 5)), 'two'], k)));
  rec('string', await cb((k) => conn.query("SELECT 1 AS one, 'forms' AS t", k)));
  rec('values', await cb((k) => conn.query('SELECT * FROM t WHERE id > ? ORDER BY id', [0], k)));
  const opts = { sql: 'SELECT id, name FROM t WHERE id = ?', values: [1], nestTables: true };
  rec('options nestTables', await cb((k) => conn.query(opts, k)));
  rec('options after', { keys: Object.keys(opts), opts });
  const frozen = Object.freeze({ sql: 'SELECT ? AS frozen', rowsAsArray: true });
  rec('frozen options', await cb((k) => conn.query(frozen, [5], k)));
  rec('multiple statements', await cb((k) => conn.query('SELECT 1 AS a; SELECT 2 AS b', k)));
  rec('emitter', await events_(conn.query('SELECT id FROM t ORDER BY id')));
  rec('emitter error', await events_(conn.query('SELECT nope FROM t')));
  const s = await new Promise((resolve) => { const rows = []; conn.query('SELECT id FROM t ORDER BY id').stream().on('data', (r) => rows.push(r)).on('error', (e) => resolve({ err: errOf(e) })).on('end', () => resolve(rows)); });
  rec('stream', s);
  rec('syntax error', await cb((k) => conn.query('SELEC 1', k)));
  rec('error mid-statement', await cb((k) => conn.query('SELECT 1 FROM t WHERE\\nid = = 1', k)));
  rec('missing table', await cb((k) => conn.query('SELECT * FROM no_such_table', k)));
  rec('duplicate key', await cb((k) => conn.query('INSERT INTO t (id) VALUES (1)', k)));
  rec('execute', await cb((k) => conn.execute('SELECT id, name FROM t WHERE id = ?', [2], k)));
  rec('execute again', await cb((k) => conn.execute('SELECT id, name FROM t WHERE id = ?', [1], k)));
  rec('execute options', await cb((k) => conn.execute({ sql: 'SELECT ? + 1 AS n', values: [41] }, k)));
  rec('execute error', await cb((k) => conn.execute('SELECT nope FROM t WHERE id = ?', [1], k)));
  rec('execute emitter', await events_(conn.execute('SELECT ? AS e', [3])));
  let threw;
  try { conn.execute('SELECT ?', [undefined], () => {}); } catch (e) { threw = errOf(e); }
  rec('execute throws', threw);
  rec('pool query', await cb((k) => pool.query('SELECT ? AS p', ['pool'], k)));
  rec('pool execute', await cb((k) => pool.execute('SELECT ? AS p', ['pool-x'], k)));
  rec('pool error', await cb((k) => pool.query('SELECT * FROM no_such_table', k)));
  rec('pool emitter', await events_(pool.query('SELECT 7 AS seven')));
  rec('promise query', (await pconn.query('SELECT ? AS pq', [1]))[0]);
  rec('promise execute', (await pconn.execute('SELECT ? AS pe', [2]))[0]);
  rec('promise error', await pconn.query('SELEC 2').then(() => 'resolved', errOf));
  rec('promise execute error', await pconn.execute('SELECT nope').then(() => 'resolved', errOf));
  rec('promise pool', (await ppool.query('SELECT ? AS pp', [3]))[0]);
  rec('promise pool error', await ppool.execute('SELECT * FROM no_such_table').then(() => 'resolved', errOf));
  const q = conn.query('SELECT 1');
  rec('returns', { query: q.constructor.name, hasStream: typeof q.stream, execute: conn.execute('SELECT 1', () => {}).constructor.name });
  await new Promise((r) => q.on('end', r));
  rec('query after end', { keys: Object.keys(q).filter((k) => !k.startsWith('_')).sort(), sql: q.sql, ownEmit: Object.prototype.hasOwnProperty.call(q, 'emit') });
  await new Promise((r) => conn.end(r));
  await new Promise((r) => pool.end(r));
  await pconn.end();
  await ppool.end();
}).then(() => { console.log(JSON.stringify(out)); if (agent) console.log(JSON.stringify(events)); }, (e) => { console.error('FAILED', e); process.exit(3); });
`;

test('every call form behaves exactly as without the agent: results, errors and the caller objects', async () => {
  const env = { MYSQL_URL: db.url };
  const from = db.logSize();
  const plain = await runScript(FORMS_SCRIPT, { agent: false, env });
  const withAgent = await runScript(FORMS_SCRIPT, { agent: true, env: { ...env, USE_AGENT: '1' } });
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(withAgent.code, 0, withAgent.stderr);
  const norm = (s) => s.replace(/\(node:\d+\)/g, '(node:PID)');
  assert.equal(norm(withAgent.stderr), norm(plain.stderr), 'the agent logs nothing at the default level');
  const a = JSON.parse(plain.stdout);
  const [results, events] = withAgent.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.deepEqual(results, a);
  assert.ok(a.length >= 30, a.length);
  // The errors are the server's, with their position: a comment on the first line moves nothing.
  const syntax = Object.fromEntries(a)['syntax error'].err;
  assert.equal(syntax.code, 'ER_PARSE_ERROR');
  assert.match(syntax.sqlMessage, /near 'SELEC 1' at line 1/);
  assert.equal(syntax.sql, 'SELEC 1');
  assert.match(Object.fromEntries(a)['error mid-statement'].err.sqlMessage, /at line 2$/);
  // Each event is mysql's, with the app's text (placeholders, not values) and its operation.
  assert.ok(events.length >= 30, JSON.stringify(events));
  for (const e of events) assert.equal(e.system, 'mysql');
  const texts = events.map((e) => e.text);
  assert.ok(texts.includes(`/* forms-${run} */ SELECT * FROM t WHERE id > ? ORDER BY id`), texts.join('\n'));
  assert.ok(texts.includes('SELECT id, name FROM t WHERE id = ?'), 'execute: timed, not commented');
  assert.deepEqual(
    events.filter((e) => e.text.endsWith('SELEC 1')).map((e) => [e.operation, e.error]),
    [['OTHER', true]],
  );
  assert.ok(!texts.some((t) => t.includes('é one')), 'values stay out of the events');
  // And only the run with the agent commented its statements.
  const sent = statements(from).filter(([cmd, t]) => cmd === 'Query' && t.endsWith("SELECT 1 AS one, 'forms' AS t"));
  assert.deepEqual(
    sent.map(([, t]) => t),
    ["SELECT 1 AS one, 'forms' AS t", `/* forms-${run} */ SELECT 1 AS one, 'forms' AS t`],
  );
});

test("outside any request, query() carries the process's run; HATCH_SQL_COMMENT=off sends it unchanged", async () => {
  const script = (tag) => `
const mysql = require('mysql2');
const { getRunId } = require('hatch-agent');
const c = mysql.createConnection(process.env.MYSQL_URL);
c.query("SELECT '${tag}-${run}'", (err) => { if (err) throw err; console.log(getRunId()); c.end(); });`;
  const from = db.logSize();
  const on = await runScript(script('outside'), { env: { MYSQL_URL: db.url } });
  assert.equal(on.code, 0, on.stderr);
  const runId = on.stdout.trim();
  assert.match(runId, UUID);
  const off = await runScript(script('off'), { env: { MYSQL_URL: db.url, HATCH_SQL_COMMENT: 'off' } });
  assert.equal(off.code, 0, off.stderr);
  const texts = statements(from)
    .filter(([cmd]) => cmd === 'Query')
    .map(([, t]) => t);
  assert.ok(
    texts.some((t) => new RegExp(`^/\\* job:app-[0-9a-f]+ run:${runId} \\*/ SELECT 'outside-${run}'$`).test(t)),
    texts.join('\n'),
  );
  assert.ok(texts.includes(`SELECT 'off-${run}'`), texts.join('\n'));
});

test('an ES-module app that imports only mysql2/promise is covered, under -r and under --import', async () => {
  const source = (tag) => `
import mysql from 'mysql2/promise';
import { withRequestId } from 'hatch-agent';
const pool = mysql.createPool({ uri: process.env.MYSQL_URL, connectionLimit: 2 });
const [rows] = await withRequestId('${tag}-${run}', () => pool.query("SELECT '${tag}' AS esm"));
console.log(JSON.stringify(rows));
await pool.end();`;
  const from = db.logSize();
  for (const [tag, agent] of [
    ['esm-r', true],
    ['esm-import', 'import'],
  ]) {
    const r = await runScript(source(tag), { agent, ext: '.mjs', env: { MYSQL_URL: db.url } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `[{"esm":"${tag}"}]\n`);
  }
  const texts = statements(from)
    .filter(([cmd]) => cmd === 'Query')
    .map(([, t]) => t);
  for (const tag of ['esm-r', 'esm-import'])
    assert.ok(texts.includes(`/* ${tag}-${run} */ SELECT '${tag}' AS esm`), `${tag}:\n${texts.join('\n')}`);
});

test('mysql2 outside 3.x is left untouched with one line; HATCH_DISABLE=mysql2 leaves it untouched', async () => {
  // The patch's module is mysql2's lib/connection.js (which every entry point requires), so the fake has one.
  const old = fakeModule('mysql2', '2.3.3', `module.exports = { Connection: require('./lib/connection.js') };`);
  fs.mkdirSync(path.join(old, 'node_modules/mysql2/lib'));
  fs.writeFileSync(
    path.join(old, 'node_modules/mysql2/lib/connection.js'),
    `class Connection { query() { return 'v2'; } execute() {} connect() {} static createQuery() { return {}; } }
module.exports = Connection;`,
  );
  fs.writeFileSync(
    path.join(old, 'app.js'),
    `const m = require('mysql2'); const q = m.Connection.prototype.query; console.log(new m.Connection().query(), q[Symbol.for('hatch-agent.wrapped')] === undefined);`,
  );
  const a = await runScript('', { file: path.join(old, 'app.js') });
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.stdout, 'v2 true\n');
  assert.deepEqual(a.stderr.split('\n').filter(Boolean), [
    'hatch-agent warn: mysql2/lib/connection@2.3.3 is outside the supported range >=3.0.0 <4.0.0; left untouched',
  ]);
  const check = `const m = require('mysql2'); const base = (p, k) => { while (!Object.prototype.hasOwnProperty.call(p, k)) p = Object.getPrototypeOf(p); return p[k]; };
console.log(['query', 'execute', 'connect'].map((k) => base(m.Connection.prototype, k)[Symbol.for('hatch-agent.wrapped')] === true).join());`;
  const off = await runScript(check, { env: { HATCH_DISABLE: 'mysql2' } });
  assert.equal(off.code, 0, off.stderr);
  assert.equal(off.stdout, 'false,false,false\n');
  assert.equal(off.stderr, '', 'mysql2 is a name HATCH_DISABLE knows');
  const on = await runScript(check);
  assert.equal(on.stdout, 'true,true,true\n', 'the same check sees the wrappers when enabled');
});
