// The demo's second service: the shop asks it for stock levels with fetch, so one request ID
// crosses a service boundary, into this service's log lines and SQL. Also an ordinary Express app
// that knows nothing of the agent; ready when it logs {"msg":"listening","port":…}.
const express = require('express');
const pg = require('pg');
const pino = require('pino');

const log = pino({ name: 'stock' });
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2, application_name: 'stock' });

const app = express();
app.get('/stock/:sku', async (req, res) => {
  const { rows } = await pool.query('SELECT units FROM stock WHERE sku = $1', [req.params.sku]);
  log.info({ sku: req.params.sku, units: rows[0]?.units ?? 0 }, 'stock counted');
  res.json({ sku: req.params.sku, units: rows[0]?.units ?? 0 });
});

async function setup() {
  await pool.query('CREATE TABLE IF NOT EXISTS stock (sku text PRIMARY KEY, units int NOT NULL)');
  await pool.query("INSERT INTO stock VALUES ('lamp-7', 12), ('desk-2', 3) ON CONFLICT DO NOTHING");
}

setup().then(() => {
  const server = app.listen(0, '127.0.0.1', () => log.info({ port: server.address().port }, 'listening'));
  process.on('SIGTERM', () => server.close(() => pool.end().then(() => process.exit(0))));
});
