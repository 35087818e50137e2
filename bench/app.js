// The benchmark's app: plain node:http, CommonJS; /hello (text) and /db (one SELECT 1 through a pg.Pool).
const http = require('node:http');
const pg = require('pg');
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
const server = http.createServer((req, res) => {
  if (req.url === '/db') {
    pool.query('SELECT 1 AS one').then(
      (r) => res.end(String(r.rows[0].one)),
      (e) => { res.statusCode = 500; res.end(e.message); },
    );
    return;
  }
  res.end('hello');
});
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
