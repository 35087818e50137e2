// The queue-ping hatch and the BullMQ checks of /_hatch/health, on real processes under
// `node -r hatch-agent` and a real Redis: a web app that owns a Queue (and no Worker), and a worker
// app (its own process, its own hatches) that processes the queue. Without the worker the ping is
// 503 within the timeout; with it, 200 with the job's timings and the worker's pid; the worker's
// processor never sees a ping. The worker's job is filed in its requests hatch, marked as a job.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startApp, get } from '../support/app.mjs';
import { startRedis, stopRedis } from '../support/redis.mjs';
import { TOKEN, STARTUP_MS, auth, until } from './apps.mjs';

const run = randomBytes(4).toString('hex');
const QUEUE = `ping-${run}`;
const TIMEOUT_MS = 1500;
let redis;
let web;

const env = () => ({
  REDIS_PORT: String(redis.port),
  QUEUE,
  HATCH_TOKEN: TOKEN,
  HATCH_HEALTH_TIMEOUT_MS: String(TIMEOUT_MS),
});

const WEB = `
const http = require('node:http');
const { Queue } = require('bullmq');
const { getRequestId } = require('hatch-agent');
const queue = new Queue(process.env.QUEUE, { connection: { host: '127.0.0.1', port: Number(process.env.REDIS_PORT) } });
const server = http.createServer(async (req, res) => {
  const job = await queue.add('welcome-mail', { to: 'a@example.com' });
  res.end(JSON.stringify({ id: getRequestId(), job: job.id }));
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

// The worker's processor prints the name of every job it is handed.
const WORKER = `
const http = require('node:http');
const { Worker } = require('bullmq');
const worker = new Worker(process.env.QUEUE, async (job) => {
  console.log('processor saw ' + job.name);
  return 'sent';
}, { connection: { host: '127.0.0.1', port: Number(process.env.REDIS_PORT) }, name: 'mailer' });
const server = http.createServer((req, res) => res.end('worker'));
worker.waitUntilReady().then(() => server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port)));
`;

before(async () => {
  redis = await startRedis();
  web = await startApp(WEB, { env: env(), timeout: STARTUP_MS });
});
after(async () => {
  await web?.stop();
  await stopRedis();
});

async function hatch(app, path) {
  const r = await get(app.url + path, auth());
  return { status: r.status, body: JSON.parse(r.body) };
}

test('queue ping: 503 within the timeout without a worker, 200 with timings and the worker with one; the processor never sees a ping', async (t) => {
  const index = await hatch(web, '/_hatch');
  assert.ok(index.body.hatches.some((h) => h.path === '/_hatch/queue-ping?queue=…'));

  const began = Date.now();
  const none = await hatch(web, `/_hatch/queue-ping?queue=${QUEUE}`);
  const took = Date.now() - began;
  assert.equal(none.status, 503, JSON.stringify(none.body));
  assert.equal(none.body.error, `no worker took the job in ${TIMEOUT_MS} ms`);
  assert.equal(none.body.removed, true, 'the ping no worker took is not left waiting');
  assert.ok(took < TIMEOUT_MS + 1500, `answered in ${took} ms`);
  const sick = await hatch(web, '/_hatch/health');
  assert.equal(sick.status, 503);
  const check = sick.body.checks.find((c) => c.name === `bullmq queue 1 (${QUEUE})`);
  assert.ok(check, JSON.stringify(sick.body.checks));
  assert.equal(check.status, 'fail');
  assert.match(check.detail, /^waiting 0, active 0, 0 workers connected/);
  assert.equal((await hatch(web, '/_hatch/queue-ping?queue=nope')).status, 404);

  const worker = await startApp(WORKER, { env: env(), timeout: STARTUP_MS });
  t.after(() => worker.stop());
  const ok = await hatch(web, `/_hatch/queue-ping?queue=${QUEUE}`);
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body.queue, QUEUE);
  assert.match(ok.body.jobId, /^\d+$/);
  assert.ok(ok.body.startMs >= 0 && ok.body.finishMs >= ok.body.startMs, JSON.stringify(ok.body));
  assert.equal(ok.body.worker.pid, worker.child.pid);
  assert.equal(ok.body.worker.name, 'mailer');
  assert.equal((await hatch(web, '/_hatch/queue-ping')).status, 200, 'the one queue, when none is named');
  const well = await hatch(web, '/_hatch/health');
  const check2 = well.body.checks.find((c) => c.name === `bullmq queue 1 (${QUEUE})`);
  assert.equal(check2.status, 'pass', JSON.stringify(check2));
  assert.match(check2.detail, /^waiting \d+, active \d+, 1 worker connected$/);
  // The pings are in the queue's completed list as `hatch-ping`, completed by the agent.
  const completed = await redis.command('ZRANGE', `bull:${QUEUE}:completed`, '0', '-1');
  assert.ok(completed.includes(ok.body.jobId), JSON.stringify(completed));
  assert.equal(await redis.command('HGET', `bull:${QUEUE}:${ok.body.jobId}`, 'name'), 'hatch-ping');

  // A real job: the processor sees it (and only it), the worker files it as a job under the request's ID.
  const r = JSON.parse((await get(`${web.url}/signup`, { 'x-request-id': `signup-${run}` })).body);
  assert.equal(r.id, `signup-${run}`);
  await until(() => worker.stdout().includes('processor saw welcome-mail'), 20000, 'the real job');
  assert.deepEqual(
    worker
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('processor saw')),
    ['processor saw welcome-mail'],
  );
  const rec = await until(
    async () => (await hatch(worker, '/_hatch/requests')).body.recent.find((x) => x.id === `signup-${run}`),
    20000,
    'the job record',
  );
  assert.equal(rec.method, 'JOB');
  assert.deepEqual(rec.job, {
    system: 'bullmq',
    queue: QUEUE,
    name: 'welcome-mail',
    jobId: String(r.job),
    attempt: 1,
    outcome: 'completed',
  });
  assert.equal(rec.status, 200);
  const page = await get(`${worker.url}/_hatch/requests?format=html`, auth());
  assert.match(page.body, new RegExp(`<section class="request job" data-request-id="signup-${run}">`));
  assert.match(
    page.body,
    new RegExp(`job bullmq ${QUEUE}/welcome-mail #${r.job}</b> → <span class="">completed</span>`),
  );
});
