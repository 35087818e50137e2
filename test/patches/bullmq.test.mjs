// BullMQ under `node -r hatch-agent`: a real Redis (Debian's redis-server on a free loopback port),
// real Queues and Workers in child processes, the worker's queries read back from PostgreSQL's
// statement log, its metrics from a real UDP socket. `npm test` runs it at the oldest (5.0.0) and
// the newest 5.x the patch declares; the newest line also installs bullmq 4 (outside the range) as
// `bullmq4`, copied under its own name into a folder of its own to be required as `bullmq`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { spawnSync } from 'node:child_process';
import { appDir, startApp, runScript, get, writeApp, recordedEvents } from '../support/app.mjs';
import { udpListener, statsdValues } from '../support/udp.mjs';
import { waitForLog, logFile } from '../support/pglog.mjs';
import { startRedis, stopRedis } from '../support/redis.mjs';
import { httpRecorder } from '../support/http-recorder.mjs';

const run = randomBytes(4).toString('hex'); // keeps this run's statements apart in a shared log
const DATABASE_URL = process.env.DATABASE_URL;
let redis;
let udp;

before(async () => {
  redis = await startRedis();
  udp = await udpListener();
});
after(async () => {
  await udp?.close();
  await stopRedis();
});

const env = () => ({
  DATABASE_URL,
  REDIS_PORT: String(redis.port),
  HATCH_STATSD: 'on',
  HATCH_STATSD_PORT: String(udp.port),
  HATCH_STATSD_FLUSH_MS: '100',
});

// A worker process: runs every job of QUEUE with CONCURRENCY, each job running its two queries
// (`SELECT '<tag>-<job id>-a'` and `-b`, with a short random pause between, so that jobs interleave),
// and printing what it saw. It says `listening 0` once its worker is ready.
const WORKER = `
const { Worker } = require('bullmq');
const pg = require('pg');
const { getRequestId } = require('hatch-agent');
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 5 });
const connection = { host: '127.0.0.1', port: Number(process.env.REDIS_PORT) };
const tag = process.env.TAG;
const logger = process.env.OUT_URL ? require('pino')() : undefined;
const worker = new Worker(process.env.QUEUE, async (job) => {
  const id = getRequestId();
  await pool.query("SELECT '" + tag + "-" + job.id + "-a' AS m");
  await new Promise((r) => setTimeout(r, Math.random() * 5));
  await pool.query("SELECT '" + tag + "-" + job.id + "-b' AS m");
  if (process.env.OUT_URL) {
    await (await fetch(process.env.OUT_URL + '/job-' + job.id)).text();
    logger.info({ job: job.id }, 'job done');
  }
  console.log('JOB ' + JSON.stringify({ job: job.id, name: job.name, id, same: getRequestId() === id, data: job.data }));
  return 'done ' + job.id;
}, { connection, concurrency: Number(process.env.CONCURRENCY || 1) });
worker.waitUntilReady().then(() => console.log('listening 0'));
process.on('SIGTERM', () => worker.close().then(() => pool.end()).then(() => process.exit(0)));
`;

function startWorker(queue, extra = {}) {
  return startApp(WORKER, { env: { ...env(), QUEUE: queue, TAG: `bq-${run}-${queue}`, ...extra } });
}

function lines(out) {
  return out()
    .split('\n')
    .filter((l) => l.startsWith('JOB {'))
    .map((l) => JSON.parse(l.slice(4)));
}

async function until(fn, what, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("a request enqueues 3 jobs: the worker's statements, log records and outgoing calls carry the request's ID, and each job is counted once", async (t) => {
  assert.ok(logFile, 'the statement log is needed');
  const queue = `req-${run}`;
  const web = await startApp(
    `
const http = require('node:http');
const { Queue } = require('bullmq');
const { getRequestId } = require('hatch-agent');
const queue = new Queue(process.env.QUEUE, { connection: { host: '127.0.0.1', port: Number(process.env.REDIS_PORT) } });
const server = http.createServer(async (req, res) => {
  const opts = { attempts: 1 };
  const a = await queue.add('receipt', { n: 1 }, opts);
  const [b, c] = await queue.addBulk([{ name: 'receipt', data: { n: 2 } }, { name: 'receipt', data: { n: 3 }, opts }]);
  res.end(JSON.stringify({ id: getRequestId(), jobs: [a.id, b.id, c.id], opts, data: [a.data, b.data, c.data] }));
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`,
    { env: { ...env(), QUEUE: queue } },
  );
  t.after(() => web.stop());
  const downstream = await httpRecorder();
  t.after(() => downstream.close());
  const worker = await startWorker(queue, { OUT_URL: downstream.url });
  t.after(() => worker.stop());
  udp.clear();
  const r = await get(`${web.url}/enqueue`, { 'x-request-id': `order-${run}` });
  assert.equal(r.status, 200);
  const body = JSON.parse(r.body);
  assert.equal(body.id, `order-${run}`);
  // The app's options and data are its own: nothing of the agent's was added to them.
  assert.deepEqual(body.opts, { attempts: 1 });
  assert.deepEqual(body.data, [{ n: 1 }, { n: 2 }, { n: 3 }]);

  const seen = await until(() => (lines(worker.stdout).length >= 3 ? lines(worker.stdout) : null), 'three jobs');
  for (const s of seen) {
    assert.equal(s.id, `order-${run}`, JSON.stringify(s));
    assert.equal(s.same, true);
  }
  assert.deepEqual(seen.map((s) => s.data.n).sort(), [1, 2, 3], "the job data is the app's as it was");
  // Its outgoing calls carry the ID, and so do its log records.
  assert.deepEqual(
    downstream.requests.map((q) => q.headers['x-request-id']),
    [`order-${run}`, `order-${run}`, `order-${run}`],
  );
  const done = () =>
    worker
      .stdout()
      .split('\n')
      .filter((l) => l.includes('"job done"'))
      .map((l) => JSON.parse(l));
  // pino 8 writes to fd 1 asynchronously: its records may come after the JOB lines.
  const records = await until(() => (done().length >= 3 ? done() : null), 'three log records');
  assert.equal(records.length, 3);
  for (const rec of records) assert.equal(rec.requestId, `order-${run}`, JSON.stringify(rec));
  for (const jobId of body.jobs)
    for (const part of ['a', 'b']) {
      const [line] = await waitForLog(`bq-${run}-${queue}-${jobId}-${part}'`);
      assert.ok(line.includes(`/* order-${run} */`), line);
    }
  const prefix = `hatch.job.process.${queue}.receipt.completed:`;
  await udp.waitFor((ls) => statsdValues(ls.filter((l) => l.startsWith(prefix))).length >= 3);
  await udp.waitFor(
    (ls) => statsdValues(ls.filter((l) => l.startsWith(`hatch.job.wait.${queue}.receipt:`))).length >= 3,
  );
  await new Promise((res) => setTimeout(res, 400)); // three flushes more: no job counted twice
  assert.equal(statsdValues(udp.lines.filter((l) => l.startsWith(prefix))).length, 3, udp.lines.join('\n'));
  assert.equal(statsdValues(udp.lines.filter((l) => l.startsWith(`hatch.job.wait.${queue}.`))).length, 3);
  assert.ok(!udp.lines.some((l) => l.startsWith('hatch.job.retries.')), 'no retries');
});

test("200 jobs with concurrency 20: no job's queries carry another job's ID", async (t) => {
  const queue = `iso-${run}`;
  // Enqueued without the agent: each job's ID is then `<queue>:<job id>`.
  const added = await runScript(
    `
const { Queue } = require('bullmq');
const queue = new Queue(process.env.QUEUE, { connection: { host: '127.0.0.1', port: Number(process.env.REDIS_PORT) } });
queue.addBulk(Array.from({ length: 200 }, (_, i) => ({ name: 'work', data: { i } })))
  .then((jobs) => { console.log(jobs.length); return queue.close(); });
`,
    { agent: false, env: { ...env(), QUEUE: queue } },
  );
  assert.equal(added.code, 0, added.stderr);
  assert.equal(added.stdout.trim(), '200');
  const worker = await startWorker(queue, { CONCURRENCY: '20' });
  t.after(() => worker.stop());
  const seen = await until(() => (lines(worker.stdout).length >= 200 ? lines(worker.stdout) : null), '200 jobs', 60000);
  assert.equal(new Set(seen.map((s) => s.job)).size, 200);
  for (const s of seen) assert.equal(s.id, `${queue}:${s.job}`, JSON.stringify(s));
  const logged = await waitForLog(new RegExp(`'bq-${run}-${queue}-\\d+-[ab]'`), { count: 400, timeout: 30000 });
  let checked = 0;
  for (const line of logged) {
    const jobId = new RegExp(`'bq-${run}-${queue}-(\\d+)-[ab]'`).exec(line)[1];
    const comment = /\/\* (\S+) \*\//.exec(line)?.[1];
    assert.equal(comment, `${queue}:${jobId}`, line);
    checked++;
  }
  assert.equal(checked, 400);
});

/**
 * Runs `source` as one file (the same stack frames either way) with and without the agent, on queues
 * `<name>-plain-<run>` and `<name>-<run>`. Both must exit 0 and print the same line and stderr. Returns
 * that line, parsed, and the agent's job records from its flight recorder.
 */
async function withAndWithout(source, name) {
  const recorder = path.join(appDir, `flight-${name}-${run}.jsonl`);
  const file = writeApp(source);
  const [plain, agent] = await Promise.all([
    runScript('', { file, agent: false, env: { ...env(), QUEUE: `${name}-plain-${run}` } }),
    runScript('', { file, env: { ...env(), QUEUE: `${name}-${run}`, HATCH_FLIGHT_RECORDER: recorder } }),
  ]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(agent.code, 0, agent.stderr);
  assert.equal(agent.stderr, plain.stderr);
  const out = JSON.parse(agent.stdout);
  assert.deepEqual(out, JSON.parse(plain.stdout));
  const jobs = recordedEvents(recorder).filter((e) => e.type === 'job');
  return { out, jobs };
}

// The same script with and without the agent: a job failing on every one of its 3 attempts.
const FAILING = `
const { Queue, Worker } = require('bullmq');
const connection = { host: '127.0.0.1', port: Number(process.env.REDIS_PORT) };
const queue = new Queue(process.env.QUEUE, { connection });
const events = [];
const worker = new Worker(queue.name, async (job) => {
  await new Promise((r) => setImmediate(r));
  throw new TypeError('card declined, attempt ' + (job.attemptsMade + 1));
}, { connection });
worker.on('failed', (job, err) => {
  events.push({ name: job.name, attemptsMade: job.attemptsMade, reason: job.failedReason, err: err.name + ': ' + err.message });
  if (job.attemptsMade === 3) finish(job.id);
});
async function finish(id) {
  const job = await queue.getJob(id);
  const state = await job.getState();
  const first = job.stacktrace.map((s) => s.split('\\n').slice(0, 2).join('|').replace(/:\\d+:\\d+\\)?$/, ''));
  console.log(JSON.stringify({ events, state, attemptsMade: job.attemptsMade, failedReason: job.failedReason, returnvalue: job.returnvalue, traces: first, opts: Object.keys(job.opts).filter((k) => k !== 'hatchRequestId').sort() }));
  await worker.close();
  await queue.close();
}
queue.add('charge', { amount: 5 }, { attempts: 3, backoff: { type: 'fixed', delay: 10 } });
`;

test("a failing job with retries: each attempt recorded with its error's stack, the app's failure handling as without the agent", async () => {
  udp.clear();
  const { out: a, jobs } = await withAndWithout(FAILING, 'fail');
  assert.equal(a.events.length, 3);
  assert.equal(a.state, 'failed');
  assert.deepEqual(
    jobs.map((j) => [j.name, j.attempt, j.outcome]),
    [
      ['charge', 1, 'failed'],
      ['charge', 2, 'failed'],
      ['charge', 3, 'failed'],
    ],
  );
  for (const j of jobs) {
    assert.equal(j.queue, `fail-${run}`);
    assert.equal(j.error.name, 'TypeError');
    assert.match(j.error.message, /^card declined, attempt [123]$/);
    assert.ok(j.error.stack.length > 0 && j.error.stack[0].includes('app-'), JSON.stringify(j.error.stack));
    assert.equal(j.requestId, jobs[0].requestId, 'every attempt carries the ID the job was enqueued with');
  }
  const q = `fail-${run}`;
  await udp.waitFor(
    (ls) => statsdValues(ls.filter((l) => l.startsWith(`hatch.job.process.${q}.charge.failed:`))).length >= 3,
  );
  const retries = (ls) => statsdValues(ls.filter((l) => l.startsWith(`hatch.job.retries.${q}.charge:`)));
  await udp.waitFor((ls) => retries(ls).reduce((x, y) => x + y, 0) >= 2);
  await new Promise((res) => setTimeout(res, 300));
  assert.equal(
    retries(udp.lines).reduce((x, y) => x + y, 0),
    2,
    'two retries, each counted once',
  );
});

// The same script with and without the agent: one job of each way a processor can end, run one at a
// time. `delayed` moves itself to the delayed set and throws DelayedError on its first run (BullMQ
// neither completes nor fails that run), then completes.
const OUTCOMES = `
const { Queue, Worker, DelayedError } = require('bullmq');
const connection = { host: '127.0.0.1', port: Number(process.env.REDIS_PORT) };
const queue = new Queue(process.env.QUEUE, { connection });
const events = [];
const ran = new Set();
const processor = (job, token) => {
  switch (job.name) {
    case 'sync-ok': return 'sync ' + job.id;
    case 'sync-throw': throw new RangeError('sync throw');
    case 'async-ok': return new Promise((r) => setImmediate(() => r('async ' + job.id)));
    case 'async-throw': return new Promise((_, f) => setImmediate(() => f(new SyntaxError('async throw'))));
    case 'delayed':
      if (ran.has(job.id)) return 'late';
      ran.add(job.id);
      return job.moveToDelayed(Date.now() + 30, token).then(() => { throw new DelayedError(); });
  }
};
const worker = new Worker(queue.name, processor, { connection, concurrency: 1 });
const names = ['sync-ok', 'sync-throw', 'async-ok', 'async-throw', 'delayed'];
const ended = (kind) => (job, x) => {
  events.push([job.name, kind, kind === 'completed' ? x : x.name + ': ' + x.message]);
  if (events.length === names.length) finish();
};
worker.on('completed', ended('completed'));
worker.on('failed', ended('failed'));
async function finish() {
  const states = [];
  for (const job of await queue.getJobs(['completed', 'failed', 'delayed', 'wait', 'active']))
    states.push([job.name, await job.getState(), job.returnvalue ?? null, job.failedReason ?? null, job.attemptsMade]);
  console.log(JSON.stringify({ events: events.sort(), states: states.sort() }));
  await worker.close();
  await queue.close();
}
(async () => { for (const n of names) await queue.add(n, {}, { attempts: 1 }); })();
`;

test("each way a processor ends is recorded once, with BullMQ's outcome; the app sees the same results and events as without the agent", async () => {
  const { out: a, jobs } = await withAndWithout(OUTCOMES, 'end');
  assert.equal(a.events.length, 5);
  assert.deepEqual(
    jobs.map((j) => [j.name, j.outcome, j.error ? `${j.error.name}: ${j.error.message}` : null]).sort(),
    [
      ['async-ok', 'completed', null],
      ['async-throw', 'failed', 'SyntaxError: async throw'],
      ['delayed', 'completed', null],
      ['sync-ok', 'completed', null],
      ['sync-throw', 'failed', 'RangeError: sync throw'],
    ],
  );
  for (const j of jobs) assert.ok(j.duration >= 0 && j.duration < 10000, JSON.stringify(j));
});

test('HATCH_DISABLE=bullmq, and a BullMQ outside the declared range, leave BullMQ untouched with one line', async (t) => {
  const script = `
const { Worker, Queue } = require('bullmq');
const { getRequestId } = require('hatch-agent');
const connection = { host: '127.0.0.1', port: Number(process.env.REDIS_PORT) };
const queue = new Queue(process.env.QUEUE, { connection });
const wrapped = Worker.prototype.callProcessJob[Symbol.for('hatch-agent.wrapped')] === true || Queue.prototype.add[Symbol.for('hatch-agent.wrapped')] === true;
const worker = new Worker(queue.name, async (job) => {
  console.log(JSON.stringify({ wrapped, id: getRequestId() ?? null, carried: 'hatchRequestId' in job.opts }));
  setImmediate(() => worker.close().then(() => queue.close()));
}, { connection });
queue.add('x', {}, { attempts: 1 });
`;
  const off = await runScript(script, {
    env: { ...env(), QUEUE: `off-${run}`, HATCH_STATSD: 'off', HATCH_DISABLE: 'bullmq' },
  });
  assert.equal(off.code, 0, off.stderr);
  assert.deepEqual(JSON.parse(off.stdout), { wrapped: false, id: null, carried: false });
  assert.equal(off.stderr, '');

  const old = path.join(appDir, 'node_modules', 'bullmq4');
  if (!fs.existsSync(old)) return t.skip('bullmq 4 is installed on the newest matrix line only');
  const version = JSON.parse(fs.readFileSync(path.join(old, 'package.json'), 'utf8')).version;
  const dir = fs.mkdtempSync(path.join(appDir, 'bullmq4-'));
  fs.cpSync(old, path.join(dir, 'node_modules', 'bullmq'), { recursive: true });
  const file = path.join(dir, 'app.js');
  fs.writeFileSync(file, script);
  const r = await runScript('', { file, env: { ...env(), QUEUE: `old-${run}`, HATCH_STATSD: 'off' } });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { wrapped: false, id: null, carried: false });
  assert.deepEqual(r.stderr.split('\n').filter(Boolean), [
    `hatch-agent warn: bullmq@${version} is outside the supported range >=5.0.0 <6.0.0; left untouched`,
  ]);
});

test('job and schedule names are bounded: cut to 100 characters, `other` past 200 distinct; expressions made metric-safe', () => {
  const require = createRequire(import.meta.url);
  const { boundedName, scheduleName, MAX_NAMES } = require('../../dist/src/jobs.js');
  assert.equal(boundedName('job', 'x'.repeat(150)), 'x'.repeat(100));
  for (let i = 0; i < MAX_NAMES * 2; i++) boundedName('job', `name-${i}`);
  assert.equal(boundedName('job', 'one-more'), 'other');
  assert.equal(boundedName('job', 'name-0'), 'name-0', 'a name seen before the cap keeps its own');
  assert.equal(scheduleName(undefined, '*/5 * * * *'), 'other', 'past the cap, schedules too');
});

test('a schedule without a name is named by its expression, made metric-safe', () => {
  const jobs = createRequire(import.meta.url).resolve('../../dist/src/jobs.js');
  const out = spawnSync(
    process.execPath,
    [
      '-e',
      `const { scheduleName } = require(${JSON.stringify(jobs)});
       console.log(JSON.stringify([scheduleName(undefined, '*/5 * * * *'), scheduleName('nightly report!', '* * * * *'), scheduleName('', '0 9 * * 1-5'), scheduleName(undefined, new Date(0))]));`,
    ],
    { encoding: 'utf8' },
  );
  assert.deepEqual(JSON.parse(out.stdout), ['xs5_x_x_x_x', 'nightly_report', '0_9_x_x_1-5', 'date']);
});
