// Scripts and cron jobs as runs (src/run.ts, src/ending.ts, src/checkin.ts), under `node -r
// hatch-agent` against real parts: PostgreSQL's statement log, a UDP listener for StatsD, and a real
// HTTP server on 127.0.0.1 standing in for the check-in service (healthchecks.io's convention).
// A cron-style script (pg queries, pino and winston lines) ends in five ways: normally,
// process.exit(3), a throw, a rejection, SIGTERM. Each time its SQL, its log lines, its check-ins
// and its flight record carry one run ID, job.run arrives with the right outcome, and its exit code,
// signal and stderr are those of the same script without the agent. Then: a server's requests
// keep their own IDs while its start-up carries the run, HATCH_RUN_ID / HATCH_JOB_NAME /
// HATCH_RUN_COMMENT, and a check-in service that is down or never answers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { appDir, runScript, startApp, get, UUID } from '../support/app.mjs';
import { udpListener } from '../support/udp.mjs';
import { waitForLog } from '../support/pglog.mjs';
import { httpRecorder } from '../support/http-recorder.mjs';
import { freeTcpPort } from '../support/postgres.mjs';

const run = randomBytes(4).toString('hex'); // keeps this run's statements apart in a shared log
const DATABASE_URL = process.env.DATABASE_URL;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-runs-'));

// The job: `nightly.js` in a folder of its own inside the app folder (pg, pino and winston resolve
// from there), so its job name is `nightly`. No require of hatch-agent: it runs unchanged without it.
const jobDir = path.join(appDir, `jobs-${run}`);
const NIGHTLY = `
const pg = require('pg');
const pino = require('pino');
const winston = require('winston');
const log = pino(pino.destination({ dest: 1, sync: true }));
const w = winston.createLogger({ format: winston.format.json(), transports: [new winston.transports.Console()] });
const M = process.env.MARK;
async function main() {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  log.info({ step: 'start' }, 'nightly starts');
  await client.query("SELECT 'text-" + M + "' AS m");
  const config = { text: "SELECT 'object-" + M + "' AS m" };
  await client.query(config);
  await client.query({ name: 'named-' + M, text: "SELECT 'named-" + M + "' AS m" });
  log.info({ step: 'done', keys: Object.keys(config), text: config.text }, 'queries done');
  w.info('winston line', { step: 'done' });
  await client.end();
  const mode = process.env.MODE;
  if (mode === 'exit3') process.exit(3);
  if (mode === 'throw') setTimeout(() => { throw new Error('nightly failed'); }, 0);
  if (mode === 'reject') Promise.reject(new Error('nightly rejected'));
  if (mode === 'sigterm') { setInterval(() => {}, 1000); process.kill(process.pid, 'SIGTERM'); }
}
main().catch((e) => { console.error('SCRIPT FAILED', e); process.exit(99); });
`;
const nightly = path.join(jobDir, 'nightly.js');

let udp;
let checkins;
before(async () => {
  fs.mkdirSync(jobDir, { recursive: true });
  fs.writeFileSync(nightly, NIGHTLY);
  udp = await udpListener();
  checkins = await httpRecorder();
});
after(async () => {
  udp?.close();
  await checkins?.close();
  fs.rmSync(jobDir, { recursive: true, force: true });
  fs.rmSync(tmp, { recursive: true, force: true });
});

const jsonLines = (text) =>
  text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));

/** The script with and without the agent, side by side; the agent's run reports to `/ping/<name>`. */
async function both(mode, name = mode) {
  const mark = `${mode}-${run}`;
  const record = path.join(tmp, `${name}.jsonl`);
  const env = { DATABASE_URL, MODE: mode, MARK: mark };
  const [withAgent, without] = await Promise.all([
    runScript(null, {
      file: nightly,
      env: {
        ...env,
        HATCH_STATSD: 'on',
        HATCH_STATSD_PORT: String(udp.port),
        HATCH_CHECKIN_URL: `${checkins.url}/ping/${name}`,
        HATCH_FLIGHT_RECORDER: record,
      },
    }),
    runScript(null, { file: nightly, agent: false, env: { ...env, MARK: `plain-${mark}` } }),
  ]);
  return { withAgent, without, mark, record };
}

const VARIANTS = [
  { mode: 'ok', code: 0, signal: null, outcome: 'ok', ping: '' },
  { mode: 'exit3', code: 3, signal: null, outcome: 'error', ping: '/3' },
  {
    mode: 'throw',
    code: 1,
    signal: null,
    outcome: 'error',
    ping: '/1',
    crash: 'uncaughtException: Error: nightly failed',
  },
  {
    mode: 'reject',
    code: 1,
    signal: null,
    outcome: 'error',
    ping: '/1',
    crash: 'unhandledRejection: Error: nightly rejected',
  },
  { mode: 'sigterm', code: null, signal: 'SIGTERM', outcome: 'signal', ping: '/fail' },
];

for (const v of VARIANTS) {
  test(`a cron script that ends by ${v.mode}: one run ID in its SQL, logs, check-ins and flight record; job.run ${v.outcome}; the ending unchanged`, async () => {
    const { withAgent: r, without, mark, record } = await both(v.mode);

    // The ending is the one the script has without the agent, stderr included, byte for byte.
    assert.equal(r.code, v.code, r.stderr);
    assert.equal(r.signal, v.signal);
    assert.equal(without.code, v.code, without.stderr);
    assert.equal(without.signal, v.signal);
    assert.equal(r.stderr, without.stderr);
    if (v.crash) assert.match(r.stderr, new RegExp(v.crash.split(': ').slice(1).join(': ')));

    // The check-ins: start, then the end ping, both with the run's ID; the process is gone, so the
    // synchronous end ping has arrived already.
    const mine = checkins.requests.filter((q) => q.url.startsWith(`/ping/${v.mode}`));
    assert.equal(mine.length, 2, JSON.stringify(mine.map((q) => `${q.method} ${q.url}`)));
    const [start, end] = mine;
    const rid = /^\/ping\/[^/?]+\/start\?rid=(.+)$/.exec(start.url)?.[1];
    assert.equal(start.method, 'GET');
    assert.match(rid ?? '', UUID, start.url);
    assert.equal(end.method, 'POST');
    assert.equal(end.url, `/ping/${v.mode}${v.ping}?rid=${rid}`);
    assert.ok(Buffer.byteLength(end.body) <= 10_000, `${Buffer.byteLength(end.body)} bytes`);
    const lastLine = end.body.trimEnd().split('\n').at(-1);
    assert.match(lastLine, new RegExp(`^hatch-agent: job nightly run ${rid} ended \\(${v.outcome}\\)`));
    if (v.crash) assert.ok(lastLine.includes(v.crash), lastLine);
    // The body holds the run's last lines before it: the queries, as the flight recorder has them.
    assert.ok(end.body.includes(`SELECT 'named-${mark}' AS m`), end.body.slice(0, 500));

    // job.run, named by job and outcome, never by the run ID.
    const runs = await udp.waitFor((ls) => ls.filter((l) => l.startsWith(`hatch.job.run.nightly.${v.outcome}:`)));
    assert.match(runs[0], /^hatch\.job\.run\.nightly\.(ok|error|signal):\d+(\.\d+)?\|ms$/);
    assert.ok(!udp.lines.some((l) => l.includes(rid)), 'no metric name holds the run ID');

    // SQL outside any request carries the run, prepended; a named statement keeps its text; the
    // caller's config object is untouched (the pino line above printed its keys and text).
    const [text] = await waitForLog(`SELECT 'text-${mark}' AS m`);
    assert.ok(text.includes(`statement: /* job:nightly run:${rid} */ SELECT 'text-${mark}' AS m`), text);
    const [object] = await waitForLog(`SELECT 'object-${mark}' AS m`);
    assert.ok(object.includes(`/* job:nightly run:${rid} */ SELECT 'object-${mark}'`), object);
    const [named] = await waitForLog(`SELECT 'named-${mark}' AS m`);
    assert.ok(!named.includes('/*'), named);
    const [plain] = await waitForLog(`SELECT 'text-plain-${mark}' AS m`);
    assert.ok(!plain.includes('/*'), `without the agent: ${plain}`);

    // pino and winston lines carry the run; the app's own fields are as it wrote them.
    const logs = jsonLines(r.stdout);
    assert.equal(logs.length, 3, r.stdout);
    for (const l of logs) {
      assert.equal(l.runId, rid, JSON.stringify(l));
      assert.equal(l.job, 'nightly', JSON.stringify(l));
    }
    const done = logs.find((l) => l.msg === 'queries done');
    assert.deepEqual(done.keys, ['text']);
    assert.equal(done.text, `SELECT 'object-${mark}' AS m`);
    for (const l of jsonLines(without.stdout)) assert.equal(l.runId, undefined);

    // The flight record: the run's queries, each with the run's ID.
    const events = jsonLines(fs.readFileSync(record, 'utf8'));
    const queries = events.filter((e) => e.type === 'db.query' && e.text.includes(mark));
    assert.equal(queries.length, 3, JSON.stringify(events));
    for (const q of queries) {
      assert.equal(q.requestId, null);
      assert.equal(q.runId, rid);
    }
  });
}

test('a server: its requests keep their own IDs, its start-up carries the run; it sends only the start ping', async () => {
  const mark = `server-${run}`;
  const app = await startApp(
    `
const http = require('node:http');
const pg = require('pg');
const pino = require('pino');
const log = pino(pino.destination({ dest: 1, sync: true }));
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
(async () => {
  await pool.query("SELECT 'startup-${mark}' AS m");
  log.info('started');
  const server = http.createServer(async (req, res) => {
    await pool.query("SELECT 'request-${mark}' AS m");
    log.info('in request');
    res.end('ok');
  });
  server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
})();
`,
    {
      env: {
        DATABASE_URL,
        HATCH_STATSD: 'on',
        HATCH_STATSD_PORT: String(udp.port),
        HATCH_CHECKIN_URL: `${checkins.url}/ping/server`,
      },
    },
  );
  let ended;
  try {
    const r = await get(`${app.url}/`, { 'x-request-id': `req-${mark}` });
    assert.equal(r.status, 200);
  } finally {
    ended = await app.stop();
  }
  assert.equal(ended.signal, 'SIGTERM', 'it still dies of the SIGTERM it had no handler for');
  const all = await checkins.waitFor((qs) => qs.some((q) => q.url.startsWith('/ping/server/start')));
  const start = all.find((q) => q.url.startsWith('/ping/server/start'));
  const rid = /rid=(.+)$/.exec(start.url)[1];
  assert.match(rid, UUID, start.url);
  // Exited: an end ping would have been sent before the process was gone.
  assert.deepEqual(
    checkins.requests.filter((q) => q.url.startsWith('/ping/server')).map((q) => q.url),
    [`/ping/server/start?rid=${rid}`],
  );
  const [startup] = await waitForLog(`SELECT 'startup-${mark}' AS m`);
  assert.match(startup, new RegExp(`statement: /\\* job:app-[0-9a-f]+ run:${rid} \\*/ SELECT 'startup-`));
  const [request] = await waitForLog(`SELECT 'request-${mark}' AS m`);
  assert.ok(request.includes(`statement: /* req-${mark} */ SELECT 'request-${mark}' AS m`), request);
  const logs = jsonLines(app.stdout());
  const started = logs.find((l) => l.msg === 'started');
  const inRequest = logs.find((l) => l.msg === 'in request');
  assert.equal(started.runId, rid);
  assert.equal(started.requestId, undefined);
  assert.equal(inRequest.requestId, `req-${mark}`);
  assert.equal(inRequest.runId, undefined, 'a request does not carry the run');
  // Killed by SIGTERM, the server's run still times its life: by job name, outcome signal.
  await udp.waitFor((ls) => ls.some((l) => /^hatch\.job\.run\.app-[0-9a-f]+\.signal:/.test(l)));
});

test('HATCH_RUN_ID and HATCH_JOB_NAME name the run; getRunId() returns it; HATCH_RUN_COMMENT=off sends SQL bare', async () => {
  const mark = `named-run-${run}`;
  const SCRIPT = `
const pg = require('pg');
const { getRunId } = require('hatch-agent');
(async () => {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  await client.query("SELECT '" + process.env.MARK + "' AS m");
  await client.end();
  console.log('run ' + getRunId());
})();
`;
  const id = `cron-${run}.1`;
  const named = await runScript(SCRIPT, {
    env: { DATABASE_URL, MARK: `${mark}-a`, HATCH_RUN_ID: id, HATCH_JOB_NAME: 'send_subscriptions' },
  });
  assert.equal(named.code, 0, named.stderr);
  assert.equal(named.stderr, '');
  assert.match(named.stdout, new RegExp(`^run ${id.replace('.', '\\.')}$`, 'm'));
  const [a] = await waitForLog(`SELECT '${mark}-a' AS m`);
  assert.ok(a.includes(`statement: /* job:send_subscriptions run:${id} */ SELECT`), a);

  // A bad ID: one line naming the variable and the ID used instead, which the SQL then carries.
  const bad = await runScript(SCRIPT, {
    env: { DATABASE_URL, MARK: `${mark}-b`, HATCH_RUN_ID: 'x */ DROP TABLE t; --' },
  });
  assert.equal(bad.code, 0, bad.stderr);
  const lines = bad.stderr.trim().split('\n');
  assert.equal(lines.length, 1, bad.stderr);
  const used = /^hatch-agent warn: HATCH_RUN_ID=.* allowlist .*; using "([0-9a-f-]{36})"$/.exec(lines[0])?.[1];
  assert.match(used ?? '', UUID, lines[0]);
  assert.match(bad.stdout, new RegExp(`^run ${used}$`, 'm'));
  const [b] = await waitForLog(`SELECT '${mark}-b' AS m`);
  assert.ok(b.includes(`/* job:app-`) && b.includes(` run:${used} */ SELECT`), b);
  assert.ok(!b.includes('DROP'), b);

  const off = await runScript(SCRIPT, { env: { DATABASE_URL, MARK: `${mark}-c`, HATCH_RUN_COMMENT: 'off' } });
  assert.equal(off.code, 0, off.stderr);
  const [c] = await waitForLog(`SELECT '${mark}-c' AS m`);
  assert.ok(c.includes(`statement: SELECT '${mark}-c' AS m`), c);
});

test('job.run reaches StatsD even from a script that ends in its first tick (nothing sent before)', async () => {
  const env = { HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(udp.port), HATCH_JOB_NAME: `first_tick_${run}` };
  const empty = await runScript('', { env });
  assert.equal(empty.code, 0, empty.stderr);
  const exiting = await runScript('process.exit(5);', { env });
  assert.equal(exiting.code, 5, exiting.stderr);
  const thrown = await runScript("throw new Error('at once');", {
    env: { ...env, HATCH_JOB_NAME: `first_throw_${run}` },
  });
  assert.equal(thrown.code, 1);
  assert.match(thrown.stderr, /Error: at once/);
  assert.ok(!/^hatch-agent /m.test(thrown.stderr), thrown.stderr);
  // An app that asked for pending deprecations: the packet goes through node:dgram instead of Node's
  // UDP binding, so no DEP0111 is printed on its behalf. A death by SIGTERM (only the agent
  // listens) gives the process a tick after the send, in which such a warning would be printed.
  const pending = await runScript("process.kill(process.pid, 'SIGTERM'); setInterval(() => {}, 1000);", {
    env: { ...env, HATCH_JOB_NAME: `first_pending_${run}`, NODE_PENDING_DEPRECATION: '1' },
  });
  assert.equal(pending.signal, 'SIGTERM', pending.stderr);
  assert.equal(pending.stderr, '');
  await udp.waitFor((ls) => ls.some((l) => l.startsWith(`hatch.job.run.first_tick_${run}.ok:`)));
  await udp.waitFor((ls) => ls.some((l) => l.startsWith(`hatch.job.run.first_tick_${run}.error:`)));
  await udp.waitFor((ls) => ls.some((l) => l.startsWith(`hatch.job.run.first_throw_${run}.error:`)));
  await udp.waitFor((ls) => ls.some((l) => l.startsWith(`hatch.job.run.first_pending_${run}.signal:`)));
});

const QUICK = `setTimeout(() => console.log('done'), 50);`;

test('a check-in service that is down: the script ends as without the agent, one line says so', async () => {
  const port = await freeTcpPort();
  const r = await runScript(QUICK, { env: { HATCH_CHECKIN_URL: `http://127.0.0.1:${port}/ping/down` } });
  assert.equal(r.code, 0);
  assert.equal(r.stdout, 'done\n');
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(
    lines[0],
    /^hatch-agent warn: check-in: the (start|end) ping to http:\/\/127\.0\.0\.1:\d+ \(HATCH_CHECKIN_URL\) failed: .*ECONNREFUSED/,
  );
});

test('a check-in service that never answers: the exit is late by about the timeout, no more; one line', async () => {
  const hang = await httpRecorder({ mode: 'hang' });
  try {
    const timeout = 1000;
    const t0 = Date.now();
    const plain = await runScript(QUICK, { agent: false });
    const plainMs = Date.now() - t0;
    const t1 = Date.now();
    const r = await runScript(QUICK, {
      env: { HATCH_CHECKIN_URL: `${hang.url}/ping/slow`, HATCH_CHECKIN_TIMEOUT_MS: String(timeout) },
    });
    const agentMs = Date.now() - t1;
    assert.equal(r.code, 0);
    assert.equal(r.stdout, plain.stdout);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(
      lines[0],
      new RegExp(`check-in: the (start|end) ping .* failed: (no answer within|timed out after) ${timeout} ms`),
    );
    // The service holds every request forever: without the bound the script would not end at all.
    // The slack is the agent's start and the kill on a loaded machine (a bound, not a benchmark).
    assert.ok(agentMs - plainMs < timeout + 2500, `late by ${agentMs - plainMs} ms`);
    assert.ok(
      hang.requests.some((q) => q.method === 'POST' && q.url.startsWith('/ping/slow?rid=')),
      'the end ping was tried',
    );
  } finally {
    await hang.close();
  }
});
