// The benchmark's app: plain node:http, CommonJS.
//   /hello  a text response
//   /db     one SELECT 1 through a pg.Pool (DATABASE_URL)
//   /fetch  global fetch to a second local server (DOWNSTREAM_URL)
//   /render an ejs page (bench/views/page.ejs, 20 items, ejs's own cache on as in production)
//   /mysql  a read of a 20-row table (bench_items) through a mysql2 pool (MYSQL_URL), only when
//           MYSQL_URL is set: other benchmarks of this app neither load mysql2 nor start MariaDB
//   /redis  a SET and a GET through one ioredis client (REDIS_URL; without it, 503)
// pg, mysql2, ioredis and ejs come from bench/node_modules (`npm install --prefix bench`); whatever agent is being
// measured is preloaded with -r by bench/overhead.mjs (bench/memory.mjs also uses /_bench/gc).
const http = require('node:http');
const path = require('node:path');
const pg = require('pg');
const ejs = require('ejs');

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
const mysqlPool = process.env.MYSQL_URL
  ? require('mysql2').createPool({ uri: process.env.MYSQL_URL, connectionLimit: 10 })
  : null;
const page = path.join(__dirname, 'views', 'page.ejs');
const items = Array.from({ length: 20 }, (_, i) => ({ id: i, name: `item <${i}>`, price: i * 1.5 }));
// Only with REDIS_URL: the other benchmarks start this app without a Redis server.
const redis = process.env.REDIS_URL ? new (require('ioredis'))(process.env.REDIS_URL) : null;

const server = http.createServer((req, res) => {
  if (req.url === '/fetch') {
    fetch(process.env.DOWNSTREAM_URL)
      .then((r) => r.text())
      .then(
        (t) => res.end(t),
        (e) => {
          res.statusCode = 502;
          res.end(e.message);
        },
      );
    return;
  }
  if (req.url === '/db') {
    pool.query('SELECT 1 AS one').then(
      (r) => res.end(String(r.rows[0].one)),
      (e) => {
        res.statusCode = 500;
        res.end(e.message);
      },
    );
    return;
  }
  if (req.url === '/mysql' && mysqlPool) {
    mysqlPool.query('SELECT id, name FROM bench_items WHERE id < ?', [10], (e, rows) => {
      if (e) {
        res.statusCode = 500;
        res.end(e.message);
        return;
      }
      res.end(String(rows.length));
    });
    return;
  }
  if (req.url === '/redis') {
    if (redis === null) {
      res.statusCode = 503;
      res.end('no REDIS_URL');
      return;
    }
    redis
      .set('bench:key', 'value')
      .then(() => redis.get('bench:key'))
      .then(
        (v) => res.end(v),
        (e) => {
          res.statusCode = 500;
          res.end(e.message);
        },
      );
    return;
  }
  if (req.url === '/render') {
    ejs.renderFile(page, { title: 'Items', items }, { cache: true }, (err, html) => {
      if (err) {
        res.statusCode = 500;
        res.end(err.message);
        return;
      }
      res.setHeader('content-type', 'text/html');
      res.end(html);
    });
    return;
  }
  // Only for bench/memory.mjs (node --expose-gc, BENCH_GC_ROUTE=1): a forced full GC, then the heap.
  if (req.url === '/_bench/gc' && process.env.BENCH_GC_ROUTE === '1' && typeof global.gc === 'function') {
    global.gc();
    global.gc();
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(process.memoryUsage()));
    return;
  }
  res.end('hello');
});
// bench/instructions.mjs runs the app under valgrind, tens of times slower: there an idle client
// socket must not reach the 5 s keep-alive limit while counting is being switched.
if (process.env.BENCH_KEEPALIVE_MS) server.keepAliveTimeout = Number(process.env.BENCH_KEEPALIVE_MS);
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
