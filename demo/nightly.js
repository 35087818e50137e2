// The demo's nightly job: a script, not a server, run as `node -r hatch-agent demo/nightly.js`
// with HATCH_FLIGHT_RECORDER set. It runs under its own ID (withRequestId, so its SQL is commented
// too), queries PostgreSQL, then throws: the agent's flight record keeps the queries, the crash
// with its ID, and the exit code. The crash itself and the exit code are Node's own, unchanged.
const pg = require('pg');
const { withRequestId } = require('hatch-agent');

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 1, application_name: 'nightly' });

withRequestId(`nightly-${new Date().toISOString().slice(0, 10)}`, async () => {
  const { rows } = await pool.query('SELECT count(*)::int AS n FROM orders');
  const missing = await pool.query('SELECT o.id FROM orders o LEFT JOIN stock s ON s.sku = o.sku WHERE s.sku IS NULL');
  await pool.end();
  throw new Error(
    `nightly: ${rows[0].n} orders checked, ${missing.rowCount} without stock, but no mail server is configured to send the report`,
  );
});
