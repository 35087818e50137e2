// node-cron (`cron.schedule`) and cron (`CronJob`) under `node -r hatch-agent`: each tick runs in a
// context of its own. Real schedules firing every second, their queries read back from PostgreSQL's
// statement log, their `job.run` timings from a real UDP socket. `npm test` runs it at the oldest
// declared versions (node-cron 3.0.0, cron 4.3.4) and the newest.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { appDir, runScript, writeApp, UUID, recordedEvents } from '../support/app.mjs';
import { udpListener, statsdValues } from '../support/udp.mjs';
import { waitForLog, logFile } from '../support/pglog.mjs';

const run = randomBytes(4).toString('hex');
const DATABASE_URL = process.env.DATABASE_URL;
let udp;
before(async () => {
  udp = await udpListener();
});
after(() => udp?.close());

const env = () => ({
  DATABASE_URL,
  HATCH_STATSD: 'on',
  HATCH_STATSD_PORT: String(udp.port),
  HATCH_STATSD_FLUSH_MS: '100',
});

// Three node-cron schedules, every second: `report` (5 ticks, one query each), `slow` (each tick
// takes 1.5 s, so the next one starts while it runs; a query at its end) and `thrower` (throws).
const NODE_CRON = `
const cron = require('node-cron');
const pg = require('pg');
const { getRequestId } = require('hatch-agent');
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
const ticks = [];
const slow = [];
let thrown = 0;
let n = 0;
let k = 0;
const report = cron.schedule('* * * * * *', async () => {
  const i = ++n;
  if (i > 5) return;
  const id = getRequestId();
  await pool.query("SELECT 'cron-${run}-" + process.env.TAG + "-report-" + i + "' AS m");
  ticks.push({ i, id, same: getRequestId() === id });
  if (i === 5) setTimeout(done, 1700);
}, { name: 'nightly-report' });
const slowTask = cron.schedule('* * * * * *', async () => {
  const j = ++k;
  if (j > 3) return;
  const id = getRequestId();
  await new Promise((r) => setTimeout(r, 1500));
  await pool.query("SELECT 'cron-${run}-" + process.env.TAG + "-slow-" + j + "' AS m");
  slow.push({ j, id, same: getRequestId() === id });
}, { name: 'slow' });
const thrower = cron.schedule('* * * * * *', () => {
  thrown++;
  if (thrown <= 2) throw new Error('tick failed ' + thrown);
}, { name: 'thrower' });
function done() {
  report.stop(); slowTask.stop(); thrower.stop();
  console.log(JSON.stringify({ ticks, slow, thrown: Math.min(thrown, 2) }));
  pool.end().then(() => setTimeout(() => process.exit(0), 200));
}
`;

test("node-cron every second for 5 s: 5 ticks, 5 IDs, each tick's query with its own; overlapping ticks apart; a throwing tick recorded", async () => {
  assert.ok(logFile, 'the statement log is needed');
  const recorder = path.join(appDir, `cron-flight-${run}.jsonl`);
  const file = writeApp(NODE_CRON);
  udp.clear();
  const [r, plain] = await Promise.all([
    runScript('', { file, env: { ...env(), TAG: 'a', HATCH_FLIGHT_RECORDER: recorder }, timeout: 30000 }),
    runScript('', { file, agent: false, env: { DATABASE_URL, TAG: 'p' }, timeout: 30000 }),
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(plain.code, 0, plain.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.ticks.length, 5);
  const ids = out.ticks.map((t) => t.id);
  for (const id of ids) assert.match(id, UUID);
  assert.equal(new Set(ids).size, 5, 'a new ID per tick');
  for (const t of out.ticks) {
    assert.equal(t.same, true);
    const [line] = await waitForLog(`'cron-${run}-a-report-${t.i}'`);
    assert.ok(line.includes(`/* ${t.id} */`), line);
  }
  // Overlapping ticks: each its own ID, kept across its 1.5 s.
  assert.ok(out.slow.length >= 2, JSON.stringify(out.slow));
  assert.equal(new Set(out.slow.map((s) => s.id)).size, out.slow.length);
  for (const s of out.slow) {
    assert.ok(!ids.includes(s.id));
    const [line] = await waitForLog(`'cron-${run}-a-slow-${s.j}'`);
    assert.ok(line.includes(`/* ${s.id} */`), line);
  }
  // A tick that throws behaves as without the agent: the process goes on, node-cron reports it.
  assert.equal(out.thrown, 2);
  assert.equal(JSON.parse(plain.stdout).thrown, 2);
  const reported = (s) => s.split('\n').filter((l) => /tick failed [12]/.test(l)).length;
  assert.equal(reported(r.stderr), reported(plain.stderr), `${r.stderr}\n---\n${plain.stderr}`);
  // …and is recorded, with its error.
  const events = recordedEvents(recorder).filter((e) => e.type === 'job');
  const failed = events.filter((e) => e.name === 'thrower' && e.outcome === 'failed');
  assert.equal(failed.length, 2);
  assert.match(failed[0].error.message, /^tick failed [12]$/);
  assert.ok(failed[0].error.stack.length > 0);
  assert.equal(events.filter((e) => e.name === 'nightly-report').length >= 5, true);
  const values = (name) => statsdValues(udp.lines.filter((l) => l.startsWith(`hatch.job.run.${name}:`)));
  await udp.waitFor(() => values('nightly-report.completed').length >= 5);
  assert.equal(values('thrower.failed').length, 2);
});

test('cron CronJob every second: a new ID per tick, its queries commented with it, job.run by its name', async () => {
  const udpLines = () => udp.lines.filter((l) => l.startsWith('hatch.job.run.cron-test.completed:'));
  const r = await runScript(
    `
const { CronJob } = require('cron');
const pg = require('pg');
const { getRequestId } = require('hatch-agent');
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
const ticks = [];
let n = 0;
const job = CronJob.from({
  cronTime: '* * * * * *',
  name: 'cron-test',
  start: true,
  onTick: async function () {
    const i = ++n;
    if (i > 3) return;
    const id = getRequestId();
    await pool.query("SELECT 'cronjob-${run}-" + i + "' AS m");
    ticks.push({ i, id, same: getRequestId() === id, self: this === job });
    if (i === 3) { job.stop(); console.log(JSON.stringify(ticks)); pool.end().then(() => setTimeout(() => process.exit(0), 200)); }
  },
});
`,
    { env: env(), timeout: 30000 },
  );
  assert.equal(r.code, 0, r.stderr);
  const ticks = JSON.parse(r.stdout);
  assert.equal(ticks.length, 3);
  assert.equal(new Set(ticks.map((t) => t.id)).size, 3);
  for (const t of ticks) {
    assert.match(t.id, UUID);
    assert.equal(t.same, true);
    assert.equal(t.self, true, "the callback's `this` is cron's as without the agent");
    const [line] = await waitForLog(`'cronjob-${run}-${t.i}'`);
    assert.ok(line.includes(`/* ${t.id} */`), line);
  }
  await udp.waitFor(() => statsdValues(udpLines()).length >= 3);
});

test('HATCH_DISABLE=cron leaves node-cron and cron untouched', async () => {
  const r = await runScript(
    `
const nodeCron = require('node-cron');
const { CronJob } = require('cron');
const { getRequestId } = require('hatch-agent');
const W = Symbol.for('hatch-agent.wrapped');
const seen = {};
const finish = () => {
  if (!('nodeCron' in seen && 'cron' in seen) || seen.done) return;
  seen.done = true;
  // node-cron 3.0.0's stop() inside a tick does not stop it: the script ends itself.
  task.stop(); job.stop();
  const { done, ...ids } = seen;
  console.log(JSON.stringify({ ...ids, wrapped: [nodeCron.schedule[W], CronJob.prototype.addCallback[W]] }));
  process.exit(0);
};
const task = nodeCron.schedule('* * * * * *', () => { seen.nodeCron = getRequestId() ?? null; finish(); });
const job = CronJob.from({ cronTime: '* * * * * *', start: true, onTick: () => { seen.cron = getRequestId() ?? null; finish(); } });
`,
    { env: { HATCH_DISABLE: 'cron' }, timeout: 30000 },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.deepEqual(JSON.parse(r.stdout), { nodeCron: null, cron: null, wrapped: [null, null] });
});
