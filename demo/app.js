// The demo's shop: an ordinary Express app that knows nothing of the agent. `npm run demo` starts it
// as `node -r hatch-agent demo/app.js`. Routes with parameters (/users/:id, /orders/:id, /report),
// a pg pool, ejs pages from demo/views, a pino logger writing JSON lines to stdout, and a fetch to
// the stock service (STOCK_URL). It says it is ready with a pino line {"msg":"listening","port":…}.
const path = require('node:path');
const express = require('express');
const pg = require('pg');
const pino = require('pino');

const log = pino({ name: 'shop' });
// application_name: the PostgreSQL log's prefix shows which service ran a statement.
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4, application_name: 'shop' });

const app = express();
app.set('views', path.join(__dirname, 'views'));
app.set('view engine', 'ejs');

app.get('/users/:id', async (req, res) => {
  const { rows } = await pool.query('SELECT id, name FROM users WHERE id = $1', [Number(req.params.id)]);
  log.info({ user: Number(req.params.id), found: rows.length > 0 }, 'user looked up');
  if (rows.length === 0) return res.status(404).json({ error: 'no such user' });
  res.json(rows[0]);
});

app.get('/orders/:id', async (req, res) => {
  const { rows } = await pool.query(
    'SELECT o.id, o.sku, u.name FROM orders o JOIN users u ON u.id = o.user_id WHERE o.id = $1',
    [Number(req.params.id)],
  );
  if (rows.length === 0) return res.status(404).json({ error: 'no such order' });
  // Another service: the agent carries this request's ID along, into that service's SQL.
  const stock = await (await fetch(`${process.env.STOCK_URL}/stock/${encodeURIComponent(rows[0].sku)}`)).json();
  log.info({ order: rows[0].id, units: stock.units }, 'order shown');
  res.render('order', { order: rows[0], stock });
});

app.get('/report', async (req, res) => {
  const client = await pool.connect();
  try {
    const count = await client.query('SELECT count(*)::int AS n FROM users');
    const longest = await client.query('SELECT name FROM users ORDER BY length(name) DESC LIMIT 1');
    log.info({ users: count.rows[0].n }, 'report made');
    res.render('report', { users: count.rows[0].n, longest: longest.rows[0].name });
  } finally {
    client.release();
  }
});

async function setup() {
  await pool.query('CREATE TABLE IF NOT EXISTS users (id int PRIMARY KEY, name text NOT NULL)');
  await pool.query("INSERT INTO users VALUES (1, 'ada'), (2, 'grace'), (3, 'edsger') ON CONFLICT DO NOTHING");
  await pool.query('CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY, user_id int NOT NULL, sku text NOT NULL)');
  await pool.query("INSERT INTO orders VALUES (42, 1, 'lamp-7'), (43, 2, 'desk-2') ON CONFLICT DO NOTHING");
}

setup().then(() => {
  const server = app.listen(0, '127.0.0.1', () => log.info({ port: server.address().port }, 'listening'));
  process.on('SIGTERM', () => server.close(() => pool.end().then(() => process.exit(0))));
});
