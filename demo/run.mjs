#!/usr/bin/env node
// `npm run demo`: the whole product on one machine, nothing to set up. It starts an embedded
// PostgreSQL (every statement logged, with the client's application_name), a StatsD receiver on a
// UDP socket of its own, and two Express services under `node -r hatch-agent` with the hatches on (a
// token made at start) and the flight recorder on: the shop (demo/app.js) and the stock service it
// calls with fetch (demo/stock.js). It makes a few requests, then prints, each under a title:
//   1. the requests and their IDs (a caller's ID adopted, a hostile one replaced);
//   2. the StatsD lines, named by route template;
//   3. the services' pino log lines, each with its request ID;
//   4. the PostgreSQL statement log grepped for one request's ID, across both services;
//   5. the hatch URLs (a curl line with the token) and the requests page for a browser;
//   6. the flight record a crashing script (demo/nightly.js) leaves behind.
// Then it keeps serving until Ctrl-C (SIGINT or SIGTERM: both services and PostgreSQL stop, exit 0),
// so the requests page can be opened.
//
//   npm run demo                   # serve until Ctrl-C
//   npm run demo -- --once         # print, stop everything, exit 0
//   npm run demo -- --pg-port N    # PostgreSQL on port N instead of a free one
//
// A browser cannot send the hatches' `Authorization: Bearer` header, so the demo serves a small
// viewer on 127.0.0.1 that adds it to GET requests under /_hatch and passes them to the shop. Tests
// (and scripts) learn the addresses from the output: the line `open <url>` and the `curl` line.
// When something cannot start (PostgreSQL, a service), the demo prints one line saying so and exits 1.
// Limitations: IPv4 loopback only; the StatsD and log sections show what arrived in the first
// second or so after the requests.
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPostgres } from '../test/support/postgres.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const once = args.includes('--once');
const pgPortArg = args.indexOf('--pg-port');
const pgPort = pgPortArg >= 0 ? Number(args[pgPortArg + 1]) : undefined;
if (pgPort !== undefined && !(Number.isInteger(pgPort) && pgPort > 0 && pgPort < 65536)) {
  console.error(`demo: --pg-port needs a port number (1-65535), got ${args[pgPortArg + 1] ?? 'nothing'}`);
  process.exit(2);
}
const color = process.stdout.isTTY && !process.env.NO_COLOR;
const title = (n, t) => console.log(`\n${color ? '\x1b[1m' : ''}== ${n ? `${n}. ` : ''}${t}${color ? '\x1b[0m' : ''}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-demo-'));
const token = crypto.randomBytes(24).toString('base64url'); // 32 characters; the hatches want 24 or more
const children = [];
let pg;
let statsd;
let viewer;

/** Stops everything this demo started; safe to call twice. */
let stopping;
function stopAll() {
  stopping ??= (async () => {
    await Promise.all(
      children.map((c) => {
        if (c.exitCode !== null || c.signalCode !== null) return undefined;
        c.kill('SIGTERM');
        return new Promise((r) => c.once('exit', r));
      }),
    );
    viewer?.close();
    viewer?.closeAllConnections();
    statsd?.close();
    await pg?.destroy().catch(() => {});
    fs.rmSync(work, { recursive: true, force: true });
  })();
  return stopping;
}

/** Starts `node -r hatch-agent <file>`; resolves with the port its pino 'listening' line names. */
function startService(name, file, env) {
  const child = spawn(process.execPath, ['-r', 'hatch-agent', path.join(root, file)], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const service = { name, child, lines: [], stderr: '' };
  let pending = '';
  service.port = new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      const parts = (pending + d).split('\n');
      pending = parts.pop();
      for (const l of parts) {
        service.lines.push(l);
        try {
          const j = JSON.parse(l);
          if (j.msg === 'listening') resolve(j.port);
        } catch {}
      }
    });
    // The agent's own lines (warnings) and a crash go to stderr: kept, shown if the service dies.
    child.stderr.on('data', (d) => {
      service.stderr += d;
      if (!once && service.ready) process.stderr.write(d);
    });
    child.on('error', (e) => reject(new Error(`${file} could not be started: ${e.message}`)));
    child.on('exit', (code, sig) =>
      reject(
        new Error(
          `${file} exited (${code ?? sig}) before listening: ${service.stderr.trim().split('\n').slice(-3).join(' | ') || 'no output'}`,
        ),
      ),
    );
  });
  service.port.then(
    () => {
      service.ready = true;
    },
    () => {},
  );
  return service;
}

async function main() {
  title(0, 'starting embedded PostgreSQL (every statement logged), a StatsD receiver and two services');
  // %a: the client's application_name, so the log says which service sent a statement.
  pg = await startPostgres({ useEnv: false, port: pgPort, settings: { log_line_prefix: '%m [%p] %a ' } });
  console.log(`PostgreSQL on 127.0.0.1:${pg.port}, statement log ${pg.logFile}`);

  const statsdLines = [];
  statsd = dgram.createSocket('udp4');
  statsd.on('message', (m) => statsdLines.push(...m.toString().split('\n').filter(Boolean)));
  await new Promise((resolve, reject) => {
    statsd.once('error', reject);
    statsd.bind(0, '127.0.0.1', resolve);
  });
  console.log(`StatsD receiver on udp://127.0.0.1:${statsd.address().port}`);

  const common = {
    DATABASE_URL: pg.url,
    HATCH_STATSD_PORT: String(statsd.address().port),
    HATCH_STATSD_FLUSH_MS: '200',
    HATCH_TOKEN: token,
  };
  const stock = startService('stock', 'demo/stock.js', {
    ...common,
    HATCH_FLIGHT_RECORDER: path.join(work, 'stock.flight.jsonl'),
  });
  const stockPort = await stock.port;
  const shop = startService('shop', 'demo/app.js', {
    ...common,
    HATCH_FLIGHT_RECORDER: path.join(work, 'shop.flight.jsonl'),
    STOCK_URL: `http://127.0.0.1:${stockPort}`,
  });
  const port = await shop.port;
  console.log(`node -r hatch-agent demo/stock.js on http://127.0.0.1:${stockPort}`);
  console.log(`node -r hatch-agent demo/app.js   on http://127.0.0.1:${port} (calls the stock service with fetch)`);
  console.log(`HATCH_TOKEN=${token} (made now with crypto.randomBytes; both services)`);

  title(1, 'requests, with the X-Request-ID each response carries');
  const hostile = '*/ DROP TABLE users; --';
  const calls = [
    ['/users/1', {}, ''],
    ['/users/2', { 'X-Request-ID': 'checkout-7f3a9' }, "the caller's own ID, adopted"],
    ['/users/3', { 'X-Request-ID': hostile }, 'a hostile ID, replaced by a new one'],
    ['/orders/42', {}, 'a query, a fetch to the stock service (its own query), an ejs page'],
    ['/report', {}, 'two queries on one pooled client, an ejs page'],
    ['/users/99', {}, ''],
  ];
  const ids = {};
  for (const [p, headers, note] of calls) {
    const r = await fetch(`http://127.0.0.1:${port}${p}`, { headers });
    const id = r.headers.get('x-request-id');
    ids[p] = id;
    const body = (await r.text()).replace(/\s+/g, ' ').trim();
    const sent = headers['X-Request-ID'] ? `  (sent X-Request-ID: ${headers['X-Request-ID']})` : '';
    console.log(`GET ${p.padEnd(10)} -> ${r.status}  X-Request-ID: ${id}${sent}`);
    console.log(`    ${body.length > 110 ? `${body.slice(0, 107)}...` : body}${note ? `  [${note}]` : ''}`);
  }
  const order = ids['/orders/42'];

  // The services flush StatsD every 200 ms; PostgreSQL's log collector writes a moment later.
  for (let i = 0; i < 40 && !statsdLines.some((l) => l.includes('http.client')); i++) await sleep(100);
  await pg
    .waitForLog((t) => t.split('\n').filter((l) => l.includes(order)).length >= 2, { timeoutMs: 5000 })
    .catch(() => {});
  await sleep(300);

  title(2, 'StatsD lines received on udp://127.0.0.1:' + statsd.address().port + ' (timings named by route template)');
  for (const l of statsdLines) console.log(l);

  title(3, 'log lines (pino, JSON on stdout): the agent added requestId');
  for (const s of [shop, stock])
    for (const l of s.lines.filter((x) => x.includes('"requestId"'))) console.log(`${s.name.padEnd(5)} | ${l}`);

  title(4, `grep ${order} in the PostgreSQL statement log (GET /orders/42: the shop's query and the stock service's)`);
  const log = fs.readFileSync(pg.logFile, 'utf8').split('\n');
  for (const l of log.filter((x) => x.includes(order))) console.log(l);
  console.log(
    `lines of the log holding the hostile ID's text (${hostile}): ${log.filter((l) => l.includes('DROP TABLE')).length}`,
  );

  viewer = http.createServer((req, res) => {
    if (req.method !== 'GET' || !req.url.startsWith('/_hatch'))
      return res.writeHead(404, { 'content-type': 'text/plain' }).end('the demo viewer passes GET /_hatch/... only\n');
    const up = http.get(
      {
        host: '127.0.0.1',
        port,
        path: req.url,
        headers: { accept: req.headers.accept ?? '*/*', authorization: `Bearer ${token}` },
      },
      (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', (e) =>
      res.writeHead(502, { 'content-type': 'text/plain' }).end(`the shop did not answer: ${e.message}\n`),
    );
  });
  await new Promise((resolve, reject) => {
    viewer.once('error', reject);
    viewer.listen(0, '127.0.0.1', resolve);
  });

  title(5, "the hatches: maintenance URLs on the shop's own port, behind the token");
  console.log(`curl -H "Authorization: Bearer ${token}" http://127.0.0.1:${port}/_hatch/requests/${order}`);
  console.log(
    `also: ${['', '/health', '/config', '/requests?format=json', '/statsd?msg=hello', '/error?msg=boom'].map((h) => `/_hatch${h}`).join('  ')}`,
  );
  console.log("the requests page, a waterfall of each request's queries, calls and renders, in a browser");
  console.log(`(the demo's viewer adds the token a browser cannot send):`);
  console.log(`open http://127.0.0.1:${viewer.address().port}/_hatch/requests?format=html`);

  title(6, 'the flight record of a crashing script: node -r hatch-agent demo/nightly.js');
  const record = path.join(work, 'nightly.flight.jsonl');
  const nightly = await new Promise((resolve) => {
    const c = spawn(process.execPath, ['-r', 'hatch-agent', path.join(root, 'demo/nightly.js')], {
      cwd: root,
      env: { ...process.env, DATABASE_URL: pg.url, HATCH_STATSD: 'off', HATCH_FLIGHT_RECORDER: record },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    c.stderr.on('data', (d) => (err += d));
    c.stdout.resume();
    c.on('error', (e) => resolve({ code: null, err: e.message }));
    c.on('close', (code, sig) => resolve({ code: code ?? sig, err }));
  });
  const crash = nightly.err.split('\n').find((l) => /Error:/.test(l)) ?? nightly.err.trim().split('\n')[0] ?? '';
  console.log(`exit code ${nightly.code}; stderr: ${crash.trim()}`);
  console.log(`HATCH_FLIGHT_RECORDER=${record}:`);
  const lines = fs.existsSync(record) ? fs.readFileSync(record, 'utf8').split('\n').filter(Boolean) : [];
  if (lines.length === 0) console.log('(no flight record was written)');
  // The crash event carries the stack: shown as its first line, the record has it all.
  for (const l of lines) console.log(l.replace(/"stack":"((?:[^"\\]|\\.)*?)\\n(?:[^"\\]|\\.)*"/, '"stack":"$1\\n…"'));

  if (once) {
    await stopAll();
    title(0, 'done (--once): services and PostgreSQL stopped');
    return;
  }
  title(0, 'serving until Ctrl-C');
  console.log(
    `shop http://127.0.0.1:${port}  stock http://127.0.0.1:${stockPort}  requests page http://127.0.0.1:${viewer.address().port}/_hatch/requests?format=html`,
  );
  await new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await stopAll();
  console.log('stopped: services and PostgreSQL');
}

try {
  await main();
  process.exitCode = 0;
} catch (err) {
  // One line: PostgreSQL's own message already says what to do; anything else is named with its cause.
  console.error(`demo: ${err?.message ?? err}`.split('\n')[0]);
  await stopAll().catch(() => {});
  process.exitCode = 1;
}
