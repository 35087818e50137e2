// The benchmark's app: plain node:http, CommonJS; /hello (text), /db (one SELECT 1 through a
// pg.Pool) and /fetch (global fetch to a second local server, DOWNSTREAM_URL).
const http = require('node:http');
const pg = require('pg');
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
const server = http.createServer((req, res) => {
  if (req.url === '/fetch') {
    fetch(process.env.DOWNSTREAM_URL).then((r) => r.text()).then(
      (t) => res.end(t),
      (e) => { res.statusCode = 502; res.end(e.message); },
    );
    return;
  }
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
