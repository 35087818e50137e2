#!/usr/bin/env node
// `npm run demo`: embedded PostgreSQL (every statement logged), a StatsD receiver on UDP, and the
// sample app under `node -r hatch-agent`; a few requests; then what the agent left behind: the
// request IDs on the responses, the StatsD lines, and the PostgreSQL log lines found by grepping
// for one request's ID.
import { spawn } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPostgres } from '../test/support/postgres.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const title = (t) => console.log(`\n\x1b[1m== ${t}\x1b[0m`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

title('starting embedded PostgreSQL with log_min_duration_statement=0');
const pg = await startPostgres();
console.log(`PostgreSQL ${pg.url.replace(/:[^:@/]*@/, ':***@')}, statement log ${pg.logFile}`);

const statsdLines = [];
const statsd = dgram.createSocket('udp4');
statsd.on('message', (m) => statsdLines.push(...m.toString().split('\n')));
await new Promise((r) => statsd.bind(0, '127.0.0.1', r));
console.log(`StatsD receiver on udp://127.0.0.1:${statsd.address().port}`);

function start(file, env) {
  const child = spawn(process.execPath, ['-r', 'hatch-agent', path.join(root, file)], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: pg.url, HATCH_STATSD_PORT: String(statsd.address().port), ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`${file} exited with ${code}`)));
  });
  return { child, port };
}

title('starting a second service: node -r hatch-agent demo/stock.js');
const stock = start('demo/stock.js', {});
const stockPort = await stock.port;
title('starting the sample app: node -r hatch-agent demo/app.js');
const sample = start('demo/app.js', { HATCH_LOG: 'debug', STOCK_URL: `http://127.0.0.1:${stockPort}` });
const app = sample.child;
const port = await sample.port;

title('requests');
const calls = [
  ['/users/1', {}],
  ['/users/2', { 'X-Request-ID': 'checkout-7f3a9' }],
  ['/report', {}],
  ['/orders/42', {}],
  ['/users/99', {}],
  ['/users/3', { 'X-Request-ID': '*/ DROP TABLE users; --' }],
];
const ids = [];
for (const [p, headers] of calls) {
  const r = await fetch(`http://127.0.0.1:${port}${p}`, { headers });
  const id = r.headers.get('x-request-id');
  ids.push(id);
  const sent = headers['X-Request-ID'] ? ` (sent X-Request-ID: ${headers['X-Request-ID']})` : '';
  console.log(`GET ${p.padEnd(10)} -> ${r.status}  X-Request-ID: ${id}${sent}  ${await r.text()}`);
}

await sleep(1500); // one StatsD flush interval, and the PostgreSQL log collector
title('StatsD lines received');
for (const l of statsdLines.filter(Boolean)) console.log(l);

const log = fs.readFileSync(pg.logFile, 'utf8').split('\n');
const notes = {
  [ids[2]]: '(one request, two queries on one pooled client)',
  [ids[1]]: "(the caller's own ID, adopted)",
  [ids[3]]: '(the sample app called the stock service with fetch: the ID crossed over, into its query)',
  [ids[5]]: '(a hostile X-Request-ID, replaced by a new one)',
};
for (const [id, note] of Object.entries(notes)) {
  title(`grep ${id} in the PostgreSQL statement log ${note}`);
  for (const l of log.filter((x) => x.includes(id))) console.log(l);
}
const hostile = log.filter((l) => l.includes('DROP TABLE')).length;
console.log(`\nlines of the log holding the hostile ID's text: ${hostile}`);

for (const child of [app, stock.child]) {
  child.kill('SIGTERM');
  await new Promise((r) => child.on('exit', r));
}
statsd.close();
await pg.stop();
title('done');
