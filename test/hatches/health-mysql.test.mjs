// mysql2 in the hatches, against a MariaDB of this file's own (it is stopped and started): health
// probes the app's Pool and Connection through the app's own objects (a busy Connection is reported,
// not queued behind), is 503 naming the pool while the server is down and 200 once it is back; the
// requests hatch's timeline holds each query as sent, and the flight recorder each query's event.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startApp, get, recordedEvents } from '../support/app.mjs';
import { startMariaDB, stopMariaDB } from '../support/mariadb.mjs';
import { TOKEN, STARTUP_MS, SLOW_OK, auth, until } from './apps.mjs';

// A pool, and a standalone connection the app makes again when mysql2 closes it after a fatal error
// (mysql2 never reconnects a connection).
const APP = `
const http = require('node:http');
const mysql = require('mysql2');
const uri = process.env.MYSQL_URL;
const pool = mysql.createPool({ uri, connectionLimit: 2 });
let conn;
const connect = () => { conn = mysql.createConnection(uri); conn.on('error', connect); };
connect();
const q = (db, sql) => new Promise((resolve, reject) => db.query(sql, (err, rows) => (err ? reject(err) : resolve(rows))));
const server = http.createServer(async (req, res) => {
  try {
    if (req.url === '/work') {
      const a = await q(pool, "SELECT 'work' AS w");
      const b = await q(conn, "SELECT 'alone' AS w");
      return res.end(a[0].w + ' ' + b[0].w);
    }
    if (req.url === '/busy') {
      q(conn, 'SELECT SLEEP(3) AS slept').catch(() => {});
      return res.end('busy');
    }
    res.statusCode = 404;
    res.end();
  } catch (err) {
    res.statusCode = 500;
    res.end(err.message);
  }
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

const recorder = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-mysql-recorder-')), 'events.jsonl');
let db;
let app;
before(async () => {
  db = await startMariaDB();
  app = await startApp(APP, {
    env: {
      HATCH_TOKEN: TOKEN,
      MYSQL_URL: db.url,
      HATCH_HEALTH_TIMEOUT_MS: SLOW_OK,
      HATCH_FLIGHT_RECORDER: recorder,
    },
    timeout: STARTUP_MS,
  });
});
after(async () => {
  await app?.stop();
  await stopMariaDB();
  fs.rmSync(path.dirname(recorder), { recursive: true, force: true });
});

async function health() {
  const r = await get(app.url + '/_hatch/health', auth());
  return { status: r.status, body: JSON.parse(r.body) };
}
const mysqlChecks = (body) => body.checks.filter((c) => c.name.startsWith('mysql '));

test(
  'health probes the pool and the connection; the timeline and the flight recorder hold every query',
  { timeout: 120000 },
  async () => {
    const w = await get(app.url + '/work');
    assert.equal(w.body, 'work alone');
    const id = w.headers['x-request-id'];

    const up = await health();
    assert.equal(up.status, 200, JSON.stringify(up.body));
    const target = `(127.0.0.1:${db.port}/hatch_test)`;
    assert.deepEqual(
      mysqlChecks(up.body).map((c) => [c.name, c.detail]),
      [
        [`mysql pool 1 ${target}`, 'SELECT 1 answered'],
        [`mysql connection 1 ${target}`, 'SELECT 1 answered'],
      ],
      JSON.stringify(up.body),
    );

    // A connection running the app's query is reported busy, never given a probe to queue behind it.
    await get(app.url + '/busy');
    const busy = await health();
    assert.equal(busy.status, 200, JSON.stringify(busy.body));
    assert.match(mysqlChecks(busy.body)[1].detail, /^busy with the app's query; connected, not probed$/);

    const rec = await until(
      async () => {
        const r = await get(`${app.url}/_hatch/requests?format=json`, auth());
        return JSON.parse(r.body).recent.find((x) => x.id === id);
      },
      10000,
      'the record of /work',
    );
    assert.deepEqual(
      rec.timeline.map((e) => [e.kind, e.label, e.outcome]),
      [
        ['query', `/* ${id} */ SELECT 'work' AS w`, 'ok'],
        ['query', `/* ${id} */ SELECT 'alone' AS w`, 'ok'],
      ],
    );

    await app.stop();
    const events = recordedEvents(recorder);
    assert.deepEqual(
      events.filter((e) => e.type === 'db.query' && e.requestId === id).map((e) => [e.system, e.text, e.error]),
      [
        ['mysql', `/* ${id} */ SELECT 'work' AS w`, false],
        ['mysql', `/* ${id} */ SELECT 'alone' AS w`, false],
      ],
    );
    app = await startApp(APP, {
      env: { HATCH_TOKEN: TOKEN, MYSQL_URL: db.url, HATCH_HEALTH_TIMEOUT_MS: SLOW_OK },
      timeout: STARTUP_MS,
    });
  },
);

test(
  'health is 503 naming the mysql pool while MariaDB is stopped, and 200 when it returns',
  { timeout: 120000 },
  async () => {
    assert.equal((await get(app.url + '/work')).body, 'work alone');
    assert.equal((await health()).status, 200);
    await db.stop();
    const down = await until(
      async () => {
        const h = await health();
        return h.status === 503 && h.body.failing.some((n) => n.startsWith('mysql pool 1 ')) && h;
      },
      30000,
      'health 503 naming the pool',
    );
    assert.match(
      down.body.checks.find((c) => c.name.startsWith('mysql pool 1 ')).detail,
      /ECONNREFUSED|connect|closed|lost/i,
    );
    await db.start();
    const back = await until(
      async () => {
        const h = await health();
        return h.status === 200 && h;
      },
      30000,
      'health 200 again',
    );
    assert.ok(
      mysqlChecks(back.body).some((c) => c.name.startsWith('mysql pool 1 ') && c.detail === 'SELECT 1 answered'),
    );
    assert.equal((await get(app.url + '/work')).body, 'work alone', 'the app works again');
  },
);
