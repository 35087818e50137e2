// Hostile request IDs: 10,000 generated X-Request-ID and traceparent values (random bytes, comment
// breakouts, quotes, CR/LF, oversized, non-ASCII, near-valid traceparents), sent as raw bytes on
// their own TCP connections (node:http would refuse most of them), two values per request.
// The same requests go to the app without the agent: every status and body must match (the ones
// Node itself rejects included). That twin only answers (no query, no call): it is there to show
// which values Node refuses and what the app answers, and with the same work it was half of the
// run's time on a slow CI machine. With the agent, nothing unvalidated may reach the places an ID is
// written to: every SQL comment in PostgreSQL's statement log, every X-Request-ID and traceparent
// the downstream service receives, the response header and every pino line hold an allowlisted ID
// or a well-formed traceparent; no value's marker appears anywhere; the app never crashes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startApp } from '../support/app.mjs';
import { readLog, waitForLog } from '../support/pglog.mjs';
import { DOWNSTREAM, rawRequest, request, pool, ALLOWED_ID, TRACEPARENT, scaled } from './support.mjs';

const RUN = randomBytes(4).toString('hex');
const VALUES = scaled(10000, 200) & ~1; // two per request
const CONCURRENCY = 40;
const MARK = `EVIL${RUN}`; // inside every crafted value, so a leak is easy to find
const SEED = Number(process.env.HATCH_TEST_SEED ?? Date.now() % 2 ** 31);

// xorshift32: the same seed gives the same values (the seed is printed on failure).
let s = SEED || 1;
const rnd = () => {
  s ^= s << 13;
  s >>>= 0;
  s ^= s >>> 17;
  s ^= s << 5;
  s >>>= 0;
  return s / 2 ** 32;
};
const int = (n) => Math.floor(rnd() * n);
const pick = (a) => a[int(a.length)];
const bytes = (n, lo = 0, hi = 256) => Buffer.from(Array.from({ length: n }, () => lo + int(hi - lo)));
const hex = (n) => Array.from({ length: n }, () => '0123456789abcdef'[int(16)]).join('');

const GENERATORS = [
  () => bytes(1 + int(64)), // anything, control bytes included: Node rejects most
  () => Buffer.concat([Buffer.from(`${MARK}*`), bytes(int(64), 0x20, 0x100)]), // printable + obs-text
  () => Buffer.from(`${MARK}*/ DROP TABLE users; /*`),
  () => Buffer.from(`a*/${MARK}`),
  () => Buffer.from(`${MARK}'; SELECT 1; --`),
  () => Buffer.from(`"${MARK}"`),
  () => Buffer.from(`bad id\r\nX-Injected: ${MARK}`), // a second header line
  () => Buffer.from(`${MARK}\rbare-cr`),
  () => Buffer.from(`${MARK}\nbare-lf`),
  () => Buffer.from(`${MARK}-${'a'.repeat(120 + int(200))}`), // over the 128 limit
  () => Buffer.from(MARK + 'x'.repeat(8000 + int(12000))), // near and over Node's header size limit
  () => Buffer.from(`${MARK}-é-${pick(['日本', '🙂', 'ß', '\u202e'])}`), // UTF-8
  () => Buffer.concat([Buffer.from(MARK), Buffer.from([0xe9, 0xff, 0x80])]), // latin1 / invalid UTF-8
  () => Buffer.from(`${MARK} with spaces`),
  () => Buffer.from(`${MARK}/*nested*/`),
  () => Buffer.from(`${MARK}\t\ttabs`),
  () => Buffer.from(''), // empty
];
const TRACE_GENERATORS = [
  ...GENERATORS,
  () => Buffer.from(`00-${hex(32)}-${hex(16)}-01`), // valid: its trace-id may become the ID
  () => Buffer.from(`00-${hex(30)}*/-${hex(16)}-01`),
  () => Buffer.from(`00-${hex(32).toUpperCase()}-${hex(16)}-01`),
  () => Buffer.from(`00-${'0'.repeat(32)}-${hex(16)}-01`),
  () => Buffer.from(`ff-${hex(32)}-${hex(16)}-01`),
  () => Buffer.from(`00-${hex(32)}-${hex(16)}-01-${MARK}`),
  () => Buffer.from(`00-${hex(32)}-${hex(16)}-01\r\nX-Injected: ${MARK}`),
  () => Buffer.from(`00-${hex(32)}'-${hex(16)}-01`),
];

const REQUESTS = VALUES / 2;
const heads = Array.from({ length: REQUESTS }, (_, i) => {
  const lines = [Buffer.from(`GET /h?i=${i} HTTP/1.1\r\nHost: 127.0.0.1`)];
  lines.push(Buffer.from('\r\nX-Request-ID: '), pick(GENERATORS)());
  lines.push(Buffer.from('\r\ntraceparent: '), pick(TRACE_GENERATORS)());
  return Buffer.concat(lines);
});

const APP = `
const http = require('node:http');
const pg = require('pg');
const pino = require('pino');
const logger = pino({ base: undefined, timestamp: false });
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 5 });
const downstream = process.env.DOWNSTREAM;
const server = http.createServer(async (req, res) => {
  const i = new URL(req.url, 'http://x').searchParams.get('i');
  try {
    if (downstream) {
      await pool.query("SELECT 'host-${RUN}-" + Number(i) + "' AS h");
      await (await fetch(downstream + '/rec?expect=host-${RUN}-' + Number(i))).text();
    }
    logger.info({ i: Number(i) }, 'hostile');
    res.end('ok ' + i);
  } catch (err) {
    res.statusCode = 500;
    res.end('failed ' + i + ': ' + err.message + (err.cause ? ' (cause: ' + (err.cause.code ?? '') + ' ' + err.cause.message + ')' : ''));
  }
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

let down;
let app;
let bare;
before(async () => {
  down = await startApp(DOWNSTREAM, { agent: false, timeout: 90000 });
  [app, bare] = await Promise.all([
    startApp(APP, { timeout: 90000, env: { DOWNSTREAM: down.url } }),
    startApp(APP, { agent: false, timeout: 90000, env: { DOWNSTREAM: '' } }),
  ]);
});
after(async () => {
  await app?.stop();
  await bare?.stop();
  await down?.stop();
});

test(
  `${VALUES} hostile X-Request-ID/traceparent values reach no SQL, log line or outgoing header unvalidated`,
  { timeout: 2400000 },
  async () => {
    const info = `seed ${SEED} (HATCH_TEST_SEED to replay)`;
    const withAgent = await pool(heads, CONCURRENCY, (h) => rawRequest(app.port, h));
    const without = await pool(heads, CONCURRENCY, (h) => rawRequest(bare.port, h));

    // Same answers as without the agent, request by request.
    let answered = 0;
    withAgent.forEach((r, i) => {
      assert.equal(
        r.status,
        without[i].status,
        `request ${i} (${info}): ${JSON.stringify(heads[i].toString('latin1').slice(0, 300))}\n${r.raw.slice(0, 300)}`,
      );
      assert.equal(r.body, without[i].body, `request ${i} (${info})`);
      if (r.status === 200) {
        answered++;
        assert.equal(r.body, `ok ${i}`);
        assert.match(r.requestId ?? '', ALLOWED_ID, `request ${i} (${info})`);
      }
    });
    assert.ok(answered > REQUESTS / 2, `only ${answered} of ${REQUESTS} reached the app (${info})`);
    assert.ok(
      withAgent.some((r) => r.status === 400),
      'some values are rejected by Node itself',
    );

    // Every query of this run in the statement log carries exactly one well-formed comment.
    const tag = new RegExp(`host-${RUN}-(\\d+)`);
    const lines = await waitForLog(tag, { count: answered, timeout: 120000 });
    assert.equal(lines.length, answered);
    const exact = new RegExp(`statement: /\\* ([A-Za-z0-9._:-]{1,128}) \\*/ SELECT 'host-${RUN}-(\\d+)' AS h$`);
    for (const line of lines) {
      const m = exact.exec(line);
      assert.ok(m, `${line} (${info})`);
      assert.equal(m[1], withAgent[Number(m[2])].requestId, line);
    }
    assert.ok(!readLog().includes(MARK), `the statement log holds a crafted value (${info})`);

    // Downstream: each call brought the response's ID and, if any, a well-formed traceparent.
    const stats = JSON.parse((await request(`${down.url}/stats`)).body);
    const mine = Object.entries(stats.received).filter(([t]) => tag.test(t));
    assert.equal(mine.length, answered);
    for (const [t, ids] of mine) {
      const i = Number(tag.exec(t)[1]);
      assert.deepEqual(ids, [withAgent[i].requestId], t);
    }
    for (const tp of stats.traceparents) assert.match(tp, TRACEPARENT);
    assert.ok(!JSON.stringify(stats).includes(MARK));

    // The app's own log lines (pino, with the agent's requestId) and the agent's stderr.
    const logs = app
      .stdout()
      .split('\n')
      .filter((l) => l.includes('"msg":"hostile"'))
      .map((l) => JSON.parse(l));
    assert.equal(logs.length, answered);
    for (const l of logs) assert.equal(l.requestId, withAgent[l.i].requestId);
    assert.ok(
      !app.stdout().includes(MARK) && !app.stderr().includes(MARK),
      `a crafted value in the app's output (${info})`,
    );
    assert.doesNotMatch(app.stderr(), /TypeError|RangeError|uncaught/i);

    // Still up and answering.
    assert.equal(app.child.exitCode, null);
    const after = await request(`${app.url}/h?i=0`, { headers: { 'x-request-id': 'still-alive' } });
    assert.equal(after.status, 200);
    assert.equal(after.headers['x-request-id'], 'still-alive');
  },
);
