// Proves the test harness itself works: real PostgreSQL with a greppable
// statement log, a UDP sink, and the real StatsD daemon.
//   node --test test/support/selftest.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import pg from 'pg';
import { startPostgres, stopPostgres, restartPostgres } from './postgres.mjs';
import { udpListener, closedUdpPort } from './udp.mjs';
import { startStatsdDaemon } from './statsd-daemon.mjs';

const T = { timeout: 60_000 };

function send(port, msg) {
  const s = dgram.createSocket('udp4');
  return new Promise((resolve, reject) =>
    s.send(msg, port, '127.0.0.1', (err) => {
      s.close();
      if (err) reject(err);
      else resolve();
    }),
  );
}

async function query(url, sql, params) {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    return await c.query(sql, params);
  } finally {
    await c.end();
  }
}

// One server for both postgres tests: initdb is most of the ~3 s start-up.
let db;
before(async () => {
  db = await startPostgres();
});
after(() => stopPostgres());

test('postgres: SELECT 1 runs and shows up in the statement log', T, async (t) => {
  t.diagnostic(`url=${db.url} log=${db.logFile} timings=${JSON.stringify(db.timings)}`);
  const mark = db.logSize();
  const tag = `selftest_${process.pid}_${Date.now()}`;
  const { rows } = await query(db.url, `SELECT 1 AS ${tag}`);
  assert.deepEqual(rows, [{ [tag]: 1 }]);
  if (!db.logFile) return t.skip('external DATABASE_URL without HATCH_TEST_PG_LOG');
  const log = await db.waitForLog(`statement: SELECT 1 AS ${tag}`, { from: mark });
  assert.match(log, /duration: [\d.]+ ms {2}statement: SELECT 1 AS selftest_/);
  assert.match(db.readLog(), new RegExp(tag));
  if (db.external) return;
  assert.equal((await query(db.url, 'SHOW max_connections')).rows[0].max_connections, '200');
  assert.equal((await query(db.url, 'SELECT current_database() AS d')).rows[0].d, 'hatch_test');
});

test('postgres: stop/start and crash+start keep port and data', T, async (t) => {
  if (db.external) return t.skip('cannot restart an external DATABASE_URL server');
  await query(db.url, 'CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)');
  const port = db.port;

  await db.stop();
  assert.equal(db.running, false);
  await assert.rejects(query(db.url, 'SELECT 1'), /ECONNREFUSED/);
  await db.start();
  assert.equal(db.port, port);
  assert.deepEqual((await query(db.url, 'SELECT v FROM kept')).rows, [{ v: 42 }]);

  await db.kill('SIGKILL'); // hard crash of the postmaster
  await assert.rejects(query(db.url, 'SELECT 1'), /ECONNREFUSED/);
  await restartPostgres(db);
  assert.deepEqual((await query(db.url, 'SELECT v FROM kept')).rows, [{ v: 42 }]);

  const { dataDir } = db;
  await stopPostgres(db);
  await stopPostgres(db); // idempotent
  assert.equal(fs.existsSync(dataDir), false, 'temp dir removed');
});

test('udp: listener receives lines; closed port has no listener', T, async () => {
  const udp = await udpListener();
  try {
    await send(udp.port, 'a.b:1|c\nc.d:2|ms');
    const got = await udp.waitFor((lines) => lines.filter((l) => l.startsWith('c.d')));
    assert.deepEqual(got, ['c.d:2|ms']);
    assert.deepEqual(udp.lines, ['a.b:1|c', 'c.d:2|ms']);
    assert.equal(udp.packets.length, 1);
    udp.clear();
    await assert.rejects(
      udp.waitFor((lines) => lines.length > 0, 200),
      /received 0 line/,
    );

    const closed = await closedUdpPort();
    assert.ok(closed > 0 && closed !== udp.port);
    // A connected UDP socket learns about the ICMP "port unreachable".
    const s = dgram.createSocket('udp4');
    let err = null;
    s.on('error', (e) => {
      err = e;
    });
    await new Promise((r) => s.connect(closed, '127.0.0.1', r));
    for (let i = 0; i < 50 && !err; i++) {
      await new Promise((r) => s.send('x:1|c', r));
      await new Promise((r) => setTimeout(r, 10));
    }
    s.close();
    assert.equal(err?.code, 'ECONNREFUSED');
  } finally {
    await udp.close();
  }
});

test('statsd daemon: counts a bad line, accepts a timer', T, async () => {
  const sd = await startStatsdDaemon();
  try {
    assert.equal((await sd.stats()).messages.bad_lines_seen, 0);
    await send(sd.port, 'garbage');
    await send(sd.port, 'a.b:1|ms');
    let stats;
    for (let i = 0; i < 100; i++) {
      // UDP is async: poll briefly
      stats = await sd.stats();
      if (stats.messages.bad_lines_seen >= 1 && (await sd.timers())['a.b']) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(stats.messages.bad_lines_seen, 1);
    assert.match(await sd.command('timers'), /'a\.b': \[ 1 \]/);
    assert.deepEqual((await sd.timers())['a.b'], [1]);
    assert.equal((await sd.counters())['statsd.bad_lines_seen'], 1);
  } finally {
    await sd.stop();
  }
});

test('Redis harness: a real server answers, keeps data, and restarts on the same port', T, async () => {
  const { startRedis, stopRedis } = await import('./redis.mjs');
  const redis = await startRedis({ password: 'p w' });
  try {
    assert.equal(await redis.command('SET', 'k', 'v é'), 'OK');
    assert.equal(await redis.command('GET', 'k'), 'v é');
    assert.deepEqual(await redis.command('MGET', 'k', 'missing'), ['v é', null]);
    await assert.rejects(redis.command('NOSUCHCOMMAND'), /unknown command/i);
    const port = redis.port;
    await redis.stop();
    await assert.rejects(redis.command('PING'), /ECONNREFUSED/);
    await redis.start();
    assert.equal(redis.port, port);
    assert.equal(await redis.command('PING'), 'PONG');
    assert.match(redis.url, /^redis:\/\/:p%20w@127\.0\.0\.1:\d+$/);
  } finally {
    await stopRedis();
  }
});

test(
  'MariaDB harness: a real server logs each statement as sent, keeps data across a restart on the same port, and fails in one line',
  T,
  async () => {
    const { startMariaDB, stopMariaDB, MariaDBStartError } = await import('./mariadb.mjs');
    const db = await startMariaDB();
    try {
      assert.match(db.url, /^mysql:\/\/hatch:hatch@127\.0\.0\.1:\d+\/hatch_test$/);
      const mark = db.logSize();
      const tag = `selftest_${process.pid}_${Date.now()}`;
      assert.deepEqual(await db.query(`SELECT /* ${tag} */ 'é ok' AS v`), [['é ok']]);
      await db.waitForLog(`Query\tSELECT /* ${tag} */ 'é ok' AS v`, { from: mark });
      await db.query('CREATE TABLE hatch_test.kept (v INT); INSERT INTO hatch_test.kept VALUES (42)');
      // The test user reaches its database over TCP (the harness's own queries use the unix socket).
      const { execFileSync } = await import('node:child_process');
      const overTcp = execFileSync(
        'mariadb',
        [
          '--no-defaults',
          '-h127.0.0.1',
          `-P${db.port}`,
          '-uhatch',
          '-phatch',
          '-N',
          '-e',
          'SELECT DATABASE(), CURRENT_USER()',
          'hatch_test',
        ],
        { encoding: 'utf8' },
      );
      assert.equal(overTcp.trim(), 'hatch_test\thatch@%');
      const port = db.port;
      const net = await import('node:net');
      await db.stop();
      assert.equal(db.running, false);
      await assert.rejects(
        new Promise((resolve, reject) => net.connect(port, '127.0.0.1').on('connect', resolve).on('error', reject)),
        /ECONNREFUSED/,
      );
      await db.start();
      assert.equal(db.port, port);
      assert.deepEqual(await db.query('SELECT v FROM hatch_test.kept'), [['42']]);
      // A port that is taken: one line naming it.
      const err = await startMariaDB({ port }).then(
        () => null,
        (e) => e,
      );
      assert.ok(err instanceof MariaDBStartError, String(err));
      assert.match(
        err.message,
        new RegExp(`^MariaDB could not start: port ${port} on 127\\.0\\.0\\.1 is already in use`),
      );
      assert.ok(!err.message.includes('\n'), err.message);
    } finally {
      await stopMariaDB();
    }
  },
);
