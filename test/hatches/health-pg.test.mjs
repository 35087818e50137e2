// Health follows PostgreSQL: 503 naming the app's pool while a private server is stopped, 200 again
// once it is back. The server is this file's own (the shared one must not be stopped).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, get } from '../support/app.mjs';
import { startPostgres, stopPostgres } from '../support/postgres.mjs';
import { APP, TOKEN, STARTUP_MS, SLOW_OK, auth, until } from './apps.mjs';

let db;
let app;
before(async () => {
  const shared = process.env.DATABASE_URL;
  delete process.env.DATABASE_URL; // startPostgres would only hand back the shared server
  try {
    db = await startPostgres();
  } finally {
    if (shared !== undefined) process.env.DATABASE_URL = shared;
  }
  app = await startApp(APP, {
    env: { HATCH_TOKEN: TOKEN, DATABASE_URL: db.url, HATCH_HEALTH_TIMEOUT_MS: SLOW_OK },
    timeout: STARTUP_MS,
  });
});
after(async () => {
  await app?.stop();
  await stopPostgres(db);
});

async function health() {
  const r = await get(app.url + '/_hatch/health', auth());
  return { status: r.status, body: JSON.parse(r.body) };
}

test(
  'health is 503 naming the pg check while PostgreSQL is stopped, and 200 when it returns',
  { timeout: 120000 },
  async () => {
    assert.equal((await get(app.url + '/work')).body, 'worked');
    const up = await health();
    assert.equal(up.status, 200, JSON.stringify(up.body));
    const pgChecks = up.body.checks.filter((c) => c.name.startsWith('pg '));
    assert.equal(pgChecks.length, 2, JSON.stringify(up.body)); // the pool and the standalone client
    assert.ok(
      pgChecks.every((c) => c.name.includes(`:${db.port}/`)),
      JSON.stringify(pgChecks),
    );

    await db.stop();
    const down = await until(
      async () => {
        const h = await health();
        return h.status === 503 && h.body.failing.some((n) => n.startsWith('pg pool 1 ')) && h;
      },
      30000,
      'health 503 naming the pool',
    );
    assert.equal(down.body.status, 'fail');
    assert.match(
      down.body.checks.find((c) => c.name.startsWith('pg pool 1 ')).detail,
      /ECONNREFUSED|terminat|connect/i,
    );

    await db.start();
    // The standalone client died with the server (ended, so no longer checked); the pool reconnects.
    const back = await until(
      async () => {
        const h = await health();
        return h.status === 200 && h;
      },
      30000,
      'health 200 again',
    );
    assert.equal(back.body.status, 'pass');
    assert.ok(back.body.checks.some((c) => c.name.startsWith('pg pool 1 ') && c.status === 'pass'));
    assert.equal((await get(app.url + '/work')).body, 'worked');
  },
);
