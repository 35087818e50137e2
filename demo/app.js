// The demo's sample app: an ordinary node:http + pg app that knows nothing of the agent.
// `npm run demo` starts it as `node -r hatch-agent demo/app.js`.
const http = require('node:http');
const pg = require('pg');

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });

async function setup() {
  await pool.query('CREATE TABLE IF NOT EXISTS users (id int PRIMARY KEY, name text NOT NULL)');
  await pool.query("INSERT INTO users VALUES (1, 'ada'), (2, 'grace'), (3, 'edsger') ON CONFLICT DO NOTHING");
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  try {
    const m = /^\/users\/(\d+)$/.exec(url.pathname);
    if (m) {
      const { rows } = await pool.query('SELECT id, name FROM users WHERE id = $1', [Number(m[1])]);
      res.writeHead(rows.length ? 200 : 404, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(rows[0] ?? { error: 'no such user' }));
    }
    const s = /^\/orders\/(\d+)$/.exec(url.pathname);
    if (s) {
      // Another service, called with fetch: the agent carries this request's ID along.
      const stock = await (await fetch(`${process.env.STOCK_URL}/stock/${s[1]}`)).json();
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ order: Number(s[1]), ...stock }));
    }
    if (url.pathname === '/report') {
      const client = await pool.connect();
      try {
        const count = await client.query('SELECT count(*)::int AS n FROM users');
        const longest = await client.query('SELECT name FROM users ORDER BY length(name) DESC LIMIT 1');
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ users: count.rows[0].n, longest: longest.rows[0].name }));
      } finally {
        client.release();
      }
    }
    res.writeHead(404).end('not found');
  } catch (err) {
    res.writeHead(500).end(err.message);
  }
});

setup().then(() => server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`)));
