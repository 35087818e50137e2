// The config hatch of an app whose environment holds secrets: no password, no token, no key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, get } from '../support/app.mjs';
import { APP, TOKEN, STARTUP_MS, auth } from './apps.mjs';

test('the config dump shows DATABASE_URL without its password, and no token or key', async () => {
  const password = 'Sup3r-S3cret-pw';
  const url = new URL(process.env.DATABASE_URL);
  const env = {
    HATCH_TOKEN: TOKEN,
    APP_NO_CLIENT: '1',
    // Only shown: the app's pool is never used in this test.
    DATABASE_URL: `postgres://app_user:${password}@${url.host}/appdb?sslmode=disable&password=${password}`,
    REPLICA_URL: `postgresql://reader:${password}@replica.internal:5432/appdb`,
    STRIPE_API_KEY: 'sk_live_abcdef123456',
    SESSION_SECRET: 'session-secret-value',
    PGPASSWORD: password,
    INNOCENT: `mentions the token ${TOKEN} by mistake`,
  };
  const app = await startApp(APP, { env, timeout: STARTUP_MS });
  try {
    for (const format of ['json', 'html']) {
      const r = await get(`${app.url}/_hatch/config?format=${format}`, auth());
      assert.equal(r.status, 200);
      for (const secret of [password, TOKEN, 'sk_live_abcdef123456', 'session-secret-value']) {
        assert.ok(!r.body.includes(secret), `${format} shows ${secret}`);
      }
      if (format === 'json') {
        const body = JSON.parse(r.body);
        assert.equal(
          body.env.DATABASE_URL,
          `postgres://app_user:[redacted]@${url.host}/appdb?sslmode=disable&password=[redacted]`,
        );
        assert.equal(body.env.REPLICA_URL, 'postgresql://reader:[redacted]@replica.internal:5432/appdb');
        assert.equal(body.env.STRIPE_API_KEY, '[redacted]');
        assert.equal(body.env.PGPASSWORD, '[redacted]');
        assert.equal(body.env.INNOCENT, 'mentions the token [redacted] by mistake');
        assert.equal(body.config.hatchToken, '[redacted]');
      }
    }
  } finally {
    await app.stop();
  }
});
