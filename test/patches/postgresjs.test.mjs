// postgres.js (npm `postgres`) under `node -r hatch-agent`, against the run's real PostgreSQL, whose
// statement log is read back: each of 200 concurrent requests' statements (through a pool of 3 with
// `prepare: false`) carries its own request ID and the Express route; db.query is counted once per
// call over real UDP; `prepare: true` statements are never commented and pg_prepared_statements (read
// through the app's own connection) stays flat over 1,000 requests; every query form gives the same
// results and errors with and without the agent; the ES-module build is covered under --import and
// under -r, on every line. `npm test` runs it at the oldest and newest
// postgres 3.x the patch declares.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startApp, runScript, get, appDir } from '../support/app.mjs';
import { udpListener, statsdValues } from '../support/udp.mjs';
import { waitForLog } from '../support/pglog.mjs';

const run = randomBytes(4).toString('hex'); // keeps this run's statements apart in the shared log
const DATABASE_URL = process.env.DATABASE_URL;
const version = JSON.parse(fs.readFileSync(path.join(appDir, 'node_modules/postgres/package.json'), 'utf8')).version;

const SERVER = `
const express = require('express');
const postgres = require('postgres');
const { getRequestId } = require('hatch-agent');
const sql = postgres(process.env.DATABASE_URL, { max: 3, prepare: false, onnotice: () => {} });
// The default: prepared statements, named by their text. One connection, so pg_prepared_statements
// read through it is the count of the statements this instance prepared.
const prepared = postgres(process.env.DATABASE_URL, { max: 1, onnotice: () => {} });
const app = express();
app.get('/users/:m', async (req, res) => {
  const m = req.params.m;
  const form = req.query.form;
  try {
    let marker;
    if (form === 'tagged') marker = (await sql\`select \${m}::text as marker, 'conc-${run}' as tag\`)[0].marker;
    else if (form === 'unsafe') marker = (await sql.unsafe("select '" + m + "' as marker, 'conc-${run}' as tag"))[0].marker;
    else if (form === 'unsafe-args') marker = (await sql.unsafe("select $1::text as marker, 'conc-${run}' as tag", [m]))[0].marker;
    else if (form === 'begin') marker = await sql.begin(async (tx) => (await tx\`select \${m}::text as marker, 'conc-${run}' as tag\`)[0].marker);
    else if (form === 'forEach') { await sql\`select \${m}::text as marker, 'conc-${run}' as tag\`.forEach((r) => { marker = r.marker; if (getRequestId() !== req.headers['x-request-id']) marker = 'wrong context'; }); }
    else if (form === 'cursor') { for await (const rows of sql\`select \${m}::text as marker, 'conc-${run}' as tag\`.cursor(1)) marker = rows[0].marker; }
    res.json({ marker, id: getRequestId() });
  } catch (e) { res.status(500).json({ error: e.message }); }
});
app.get('/values', async (req, res) => {
  // Five calls, each one VALUES statement: db.query must count five.
  await sql\`values (1)\`;
  await sql.unsafe('values (2)');
  await sql.begin((tx) => tx\`values (3)\`);
  await sql\`values (4)\`.forEach(() => {});
  for await (const rows of sql\`values (5), (6)\`.cursor(1)) void rows;
  res.json({ id: getRequestId() });
});
app.get('/prepared/:m', async (req, res) => {
  const r = await prepared\`select \${req.params.m}::text as m, 'prep-${run}' as tag\`;
  res.json({ m: r[0].m });
});
app.get('/prepared-count', async (req, res) => {
  const r = await prepared\`select count(*)::int as n from pg_prepared_statements\`;
  res.json({ n: r[0].n });
});
// The first query of an instance goes out before postgres.js has shown whether it prepares (the
// patch's header): the app's own start-up query, as most apps have one.
Promise.all([sql\`select 1\`, prepared\`select 1\`]).then(() => {
  const server = app.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
});
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

const FORMS = ['tagged', 'unsafe', 'unsafe-args', 'begin', 'forEach', 'cursor'];

test(`postgres ${version}: 200 concurrent requests, each statement in the log carries its own request ID and route`, async () => {
  const rs = await Promise.all(
    Array.from({ length: 200 }, (_, i) => get(`${app.url}/users/m${run}x${i}?form=${FORMS[i % FORMS.length]}`)),
  );
  const idOf = new Map();
  for (const [i, r] of rs.entries()) {
    assert.equal(r.status, 200, r.body);
    const body = JSON.parse(r.body);
    assert.equal(body.marker, `m${run}x${i}`, `request ${i} (${FORMS[i % FORMS.length]})`);
    assert.equal(body.id, r.headers['x-request-id']);
    idOf.set(i, r.headers['x-request-id']);
  }
  // The tagged forms send the marker as a parameter: the log's `parameters:` line names it, the
  // statement line before it (same backend pid) carries the comment. Each request's statements are
  // found by its ID, and every statement of this run's tag carries one of the requests' IDs.
  // With log_min_duration_statement=0 the extended protocol logs parse, bind and execute: the
  // statement sent is the `execute` line (a cursor's each fetch), or `statement:` for the simple one.
  // The collector writes the log a little later: read until every request's statement is there.
  const sent = new RegExp(`(execute [^:]*|statement): .*'conc-${run}' as tag`);
  const ids = new Set(idOf.values());
  let seen;
  for (const until = Date.now() + 15000; ;) {
    const lines = await waitForLog(sent, { count: 200 });
    seen = new Map();
    for (const line of lines) {
      const m = /\/\* ([A-Za-z0-9._:-]+) GET \/users\/:m \*\/ select/.exec(line);
      assert.ok(m, `commented with the ID and the route: ${line}`);
      assert.ok(ids.has(m[1]), line);
      seen.set(m[1], (seen.get(m[1]) ?? 0) + 1);
      // The unsafe form inlines the marker: there the comment's ID must be that very request's.
      const inline = /'(m[0-9a-f]+x(\d+))' as marker/.exec(line);
      if (inline) assert.equal(m[1], idOf.get(Number(inline[2])), line);
    }
    if ([...ids].every((id) => seen.has(id)) || Date.now() > until) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const id of ids) assert.ok(seen.get(id) >= 1, `request ${id}'s statement is in the log with its ID`);
  // BEGIN and COMMIT of sql.begin are commented with the request's ID too.
  const begins = idOf.get(FORMS.indexOf('begin'));
  const tx = await waitForLog(`/* ${begins} GET /users/:m */ `, { count: 3 });
  assert.ok(tx.some((l) => /\*\/ begin/.test(l)) && tx.some((l) => /\*\/ commit/.test(l)), tx.join('\n'));
});

test('db.query is counted once per call, over real UDP, with system pg and the operation', async () => {
  await new Promise((r) => setTimeout(r, 300)); // the earlier tests' last timings are flushed first
  udp.clear();
  for (let i = 0; i < 4; i++) assert.equal((await get(`${app.url}/values`)).status, 200);
  const values = (ls) => statsdValues(ls.filter((l) => l.startsWith('hatch.db.query.pg.VALUES.ok:')));
  await udp.waitFor((ls) => values(ls).length >= 20);
  await new Promise((r) => setTimeout(r, 400)); // two more flushes: nothing more may come
  assert.equal(values(udp.lines).length, 20, udp.lines.join('\n'));
  assert.equal(statsdValues(udp.lines.filter((l) => l.startsWith('hatch.db.query.pg.BEGIN.ok:'))).length, 4);
  assert.equal(statsdValues(udp.lines.filter((l) => l.startsWith('hatch.db.query.pg.COMMIT.ok:'))).length, 4);
});

test('prepare: true is never commented, and pg_prepared_statements stays flat over 1,000 requests', async () => {
  const count = async () => JSON.parse((await get(`${app.url}/prepared-count`)).body).n;
  for (let i = 0; i < 5; i++) await get(`${app.url}/prepared/warm${i}`);
  const before = await count();
  for (let batch = 0; batch < 20; batch++)
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        get(`${app.url}/prepared/p${batch * 50 + i}`).then((r) => assert.equal(r.status, 200)),
      ),
    );
  const afterwards = await count();
  assert.equal(afterwards, before, `prepared statements before ${before}, after 1,000 requests ${afterwards}`);
  assert.ok(before >= 2 && before <= 4, `the instance's own statements only (${before})`);
  const lines = await waitForLog(`'prep-${run}' as tag`, { count: 5 });
  for (const l of lines) assert.doesNotMatch(l, /\/\*/, l);
});

// Every form, run inside withRequestId under the agent and plainly without it: results (rows and
// the result's count, command and columns) and errors (every field the app can read, the
// non-enumerable `query` and `position` included) must be identical.
const SIDE = `
const postgres = require('postgres');
const agent = process.env.USE_AGENT ? require('hatch-agent') : null;
const within = agent ? (fn) => agent.withRequestId('side-${run}', fn) : (fn) => fn();
const out = [];
const rec = (label, v) => out.push([label, v]);
const res = (r) => ({ rows: [...r], count: r.count, command: r.command, columns: r.columns && r.columns.map((c) => c.name) });
const errOf = (e) => ({ name: e.name, message: e.message, code: e.code, position: e.position, query: e.query, severity: e.severity, routine: e.routine, keys: Object.keys(e).sort(), isError: e instanceof Error, isPgErr: e instanceof postgres.PostgresError });
const settle = (p) => p.then(res, errOf);
within(async () => {
  for (const prepare of [false, true]) {
    const sql = postgres(process.env.DATABASE_URL, { max: 2, prepare, onnotice: () => {} });
    const P = 'prepare ' + prepare + ': ';
    rec(P + 'warm', await settle(sql\`select 1 as one\`));
    rec(P + 'tagged', await settle(sql\`select \${1}::int + 1 as two, \${'x'}::text as t\`));
    rec(P + 'fragment', await settle(sql\`select * from (values (1), (2)) as v(n) \${sql\`where n > \${1}\`}\`));
    rec(P + 'identifier', await settle(sql\`select 3 as \${sql('three')}\`));
    rec(P + 'unsafe', await settle(sql.unsafe('select 4 as four;')));
    rec(P + 'unsafe args', await settle(sql.unsafe('select $1::int as five', [5])));
    rec(P + 'unsafe prepared', await settle(sql.unsafe('select $1::int as six', [6], { prepare: true })));
    // .simple() and .values() came after 3.0.0.
    const seven = sql\`select 7 as seven\`;
    rec(P + 'simple', typeof seven.simple === 'function' ? await settle(seven.simple()) : 'no simple()');
    const eight = sql\`select 8 as a, 9 as b\`;
    rec(P + 'values()', typeof eight.values === 'function' ? await eight.values() : 'no values()');
    rec(P + 'raw()', (await sql\`select 10 as a\`.raw()).map((r) => r.map((b) => Buffer.from(b).toString())));
    rec(P + 'describe', await sql\`select \${1}::int as d\`.describe().then((s) => ({ types: s.types, columns: s.columns.map((c) => c.name) })));
    rec(P + 'begin', await sql.begin(async (tx) => [await tx\`select 11 as eleven\`, await tx.unsafe('select 12 as twelve')]).then((rs) => rs.map(res)));
    rec(P + 'savepoint', await sql.begin(async (tx) => { await tx.savepoint((sp) => sp\`select 13\`); return 'done'; }));
    rec(P + 'rollback', await sql.begin(async (tx) => { await tx\`select 14\`; throw new Error('app rollback'); }).then(() => 'resolved', (e) => e.message));
    rec(P + 'error in tx', await sql.begin((tx) => tx\`select * from side_missing_${run}\`).then(() => 'resolved', errOf));
    const each = []; await sql\`select n from generate_series(1, 4) as n\`.forEach((r) => each.push(r.n));
    rec(P + 'forEach', each);
    const cur = []; for await (const rows of sql\`select n from generate_series(1, 5) as n\`.cursor(2)) cur.push(rows.map((r) => r.n));
    rec(P + 'cursor', cur);
    const early = []; for await (const rows of sql\`select n from generate_series(1, 5) as n\`.cursor(1)) { early.push(rows[0].n); if (early.length === 2) break; }
    rec(P + 'cursor break', early);
    const cb = []; await sql\`select n from generate_series(1, 3) as n\`.cursor(2, (rows) => { cb.push(rows.map((r) => r.n)); });
    rec(P + 'cursor callback', cb);
    rec(P + 'syntax error', await settle(sql.unsafe('selec 1')));
    rec(P + 'missing table', await settle(sql.unsafe('select * from side_missing_${run} where x = 1')));
    rec(P + 'missing column', await settle(sql\`select nosuch from (values (1)) as v(n) where n = \${1}\`));
    rec(P + 'division', await settle(sql\`select 1/0\`));
    rec(P + 'end of input', await settle(sql.unsafe('select 1 from')));
    rec(P + 'at the semicolon', await settle(sql.unsafe('select 1 from;')));
    rec(P + 'tagged end of input', await settle(sql\`select \${1}::int from\`));
    const q = sql\`select 15 as fifteen\`;
    rec(P + 'query object', { before: typeof q.then, strings: [...q.strings], after: (await q).length, string: q.string, stringsAfter: [...q.strings] });
    await sql.end();
  }
}).then(() => console.log(JSON.stringify(out)), (e) => { console.error('FAILED', e); process.exit(3); });
`;

for (const format of ['on', 'sqlcommenter'])
  test(`every query form gives the same results and errors as without the agent (HATCH_SQL_COMMENT=${format})`, async () => {
    const env = { DATABASE_URL };
    const plain = await runScript(SIDE, { agent: false, env });
    const withAgent = await runScript(SIDE, {
      agent: true,
      env: { ...env, USE_AGENT: '1', HATCH_SQL_COMMENT: format },
    });
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(withAgent.code, 0, withAgent.stderr);
    assert.equal(withAgent.stderr, plain.stderr, 'the agent logs nothing at the default level');
    const a = JSON.parse(plain.stdout);
    assert.deepEqual(JSON.parse(withAgent.stdout), a);
    assert.ok(a.length >= 50);
    // The agent did comment that run (unprepared statements only), and the errors' positions above
    // were shifted back past the comment.
    const lines = await waitForLog(`side_missing_${run} where x = 1`, { count: format === 'on' ? 4 : 8 });
    const commented =
      format === 'on'
        ? `/* side-${run} */ select * from side_missing_${run} where x = 1`
        : `select * from side_missing_${run} where x = 1 /*db_driver='postgres',request_id='side-${run}'*/`;
    assert.equal(lines.filter((l) => l.includes(commented)).length, 2, lines.join('\n'));
    const prepared = await waitForLog('select $1::int as six', { count: 2 });
    for (const l of prepared) assert.doesNotMatch(l, /side-/, 'sql.unsafe with prepare: true stays uncommented');
  });

const ESM = `
import postgres from 'postgres';
import { withRequestId } from 'hatch-agent';
const sql = postgres(process.env.DATABASE_URL, { max: 1, prepare: false, onnotice: () => {} });
await sql\`select 1\`; // the instance's first query, which shows that it does not prepare
await withRequestId(process.env.ID, async () => {
  await sql.unsafe("select 'esm-unsafe-" + process.env.ID + "' as m");
  await sql\`select \${'esm-tagged-' + process.env.ID}::text as m, 'esm-tag' as t\`;
});
await sql.end();
console.log('done');
`;

// Under -r, an ES-module main is seen by module.registerHooks where Node has hooks to trust, and
// elsewhere (Node 20, older 22 and 24) by the module-hooks thread src/esm-thread.ts starts: every line.
for (const agent of ['import', true]) {
  test(`import postgres from 'postgres' (its ES-module build) under ${agent === true ? '-r' : '--import'}`, async () => {
    const ID = `esm-${agent === true ? 'r' : 'import'}-${run}`;
    const r = await runScript(ESM, { agent, ext: '.mjs', env: { DATABASE_URL, ID } });
    assert.equal(r.code, 0, r.stderr);
    const [unsafe] = await waitForLog(`'esm-unsafe-${ID}' as m`);
    assert.match(unsafe, new RegExp(`/\\* ${ID} \\*/ select 'esm-unsafe-`));
    const tagged = await waitForLog(`/* ${ID} */ select $1::text as m, 'esm-tag' as t`);
    assert.ok(tagged.length >= 1);
  });
}

test('HATCH_DISABLE=postgres leaves postgres.js untouched: no comment, no timing', async () => {
  const ID = `disabled-${run}`;
  const r = await runScript(
    `const postgres = require('postgres');
const { withRequestId } = require('hatch-agent');
let events = 0;
require('node:diagnostics_channel').subscribe('hatch:db.query', () => events++);
const sql = postgres(process.env.DATABASE_URL, { max: 1, onnotice: () => {} });
withRequestId('${ID}', () => sql.unsafe("select '${ID}' as m")).then(async () => { await sql.end(); console.log(events); });`,
    { env: { DATABASE_URL, HATCH_DISABLE: 'postgres' } },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), '0');
  const [line] = await waitForLog(`select '${ID}' as m`);
  assert.doesNotMatch(line, /\/\*/);
});

test('a postgres outside the declared range is left untouched, with one line', async () => {
  // A postgres 2.x of its own, in a folder under the fixture app (its node_modules is found first).
  const dir = path.join(appDir, `range-${run}`);
  fs.mkdirSync(path.join(dir, 'node_modules/postgres'), { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'node_modules/postgres/package.json'),
    JSON.stringify({ name: 'postgres', version: '2.0.0', main: 'index.js' }),
  );
  fs.writeFileSync(
    path.join(dir, 'node_modules/postgres/index.js'),
    'module.exports = function postgres() { return 2; };',
  );
  const file = path.join(dir, 'app.js');
  fs.writeFileSync(
    file,
    "const postgres = require('postgres'); console.log(postgres(), Object.keys(postgres).length, String(postgres));",
  );
  try {
    const r = await runScript(null, { file });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '2 0 function postgres() { return 2; }');
    assert.equal(
      r.stderr,
      'hatch-agent warn: postgres@2.0.0 is outside the supported range >=3.0.0 <4.0.0; left untouched\n',
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('prepare: false learnt from the instance: only its first query built goes out uncommented', async () => {
  const ID = `learn-${run}`;
  const r = await runScript(
    `const postgres = require('postgres');
const { withRequestId } = require('hatch-agent');
const sql = postgres(process.env.DATABASE_URL, { max: 2, prepare: false, onnotice: () => {} });
withRequestId('${ID}', () => Promise.all(Array.from({ length: 10 }, (_, i) => sql\`select \${i}::int as i, '${ID}' as t\`)))
  .then(async (rs) => { await sql.end(); console.log(rs.map((x) => x[0].i).join(',')); });`,
    { env: { DATABASE_URL } },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), '0,1,2,3,4,5,6,7,8,9');
  const lines = (await waitForLog(`'${ID}' as t`, { count: 10 })).filter((l) => /execute [^:]*: /.test(l));
  assert.equal(lines.length, 10, lines.join('\n'));
  assert.equal(lines.filter((l) => l.includes(`/* ${ID} */ select $1::int as i`)).length, 9, lines.join('\n'));
});
