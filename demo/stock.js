// The demo's second service: the sample app asks it for stock levels with fetch, so one request ID
// crosses a service boundary. Also an ordinary app that knows nothing of the agent.
const http = require('node:http');
const pg = require('pg');

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });

const server = http.createServer(async (req, res) => {
  const m = /^\/stock\/(\d+)$/.exec(req.url);
  if (!m) return res.writeHead(404).end();
  const { rows } = await pool.query('SELECT $1::int * 7 % 23 AS units', [Number(m[1])]);
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ units: rows[0].units }));
});
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
