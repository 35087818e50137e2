// The flight recorder under `node -r hatch-agent`: however the process ends (normal exit, uncaught
// exception or unhandled rejection mid-request, SIGTERM, SIGINT, an app's own signal handler), it
// leaves a complete JSON-lines file of the last events with their request IDs, and the process ends
// exactly as it does without the agent: same exit code or signal, same stderr.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeApp, runScript, UUID } from '../support/app.mjs';

// The app serves itself a few requests, each making an outgoing call to /leaf of the same server
// (so requests, calls and, on /db, a pg query are recorded), then ends the way MODE says.
const APP = `
const http = require('node:http');
const mode = process.env.MODE;
function call(port, path, id) {
  return new Promise((resolve, reject) => {
    const headers = id ? { 'x-request-id': id } : {};
    http.get({ host: '127.0.0.1', port, path, headers, agent: false }, (r) => { r.resume(); r.on('end', resolve); }).on('error', reject);
  });
}
const server = http.createServer(async (req, res) => {
  if (req.url === '/leaf') return res.end('leaf');
  await call(server.address().port, '/leaf');
  if (req.url === '/db' && process.env.DATABASE_URL) {
    const { Client } = require('pg');
    const c = new Client({ connectionString: process.env.DATABASE_URL });
    await c.connect();
    await c.query('SELECT 1 AS one');
    await c.end();
  }
  if (req.url === '/crash') return setTimeout(() => { throw new Error('boom in a request'); }, 1);
  if (req.url === '/reject') return setTimeout(() => { Promise.reject(new Error('rejected in a request')); }, 1);
  res.end('ok');
});
const keep = setInterval(() => {}, 1000); // stays up unless it ends the way MODE says
if (mode === 'handler') {
  process.on('SIGTERM', () => { process.stderr.write('app: SIGTERM, closing\\n'); process.exitCode = 5; clearInterval(keep); server.close(); });
}
server.listen(0, '127.0.0.1', async () => {
  const port = server.address().port;
  for (let i = 1; i <= Number(process.env.REQUESTS || 2); i++) await call(port, '/ok', 'req-' + i);
  if (mode === 'exit') { await call(port, '/db', 'req-db'); server.close(); clearInterval(keep); process.exitCode = 3; }
  if (mode === 'crash') call(port, '/crash', 'req-crash');
  if (mode === 'reject') call(port, '/reject', 'req-reject');
  if (mode === 'sigterm' || mode === 'handler') process.kill(process.pid, 'SIGTERM');
  if (mode === 'sigint') process.kill(process.pid, 'SIGINT');
  if (mode === 'process.exit') process.exit(4);
});
`;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-recorder-'));
let n = 0;

/** Runs the app in MODE with the agent and the recorder, and the same file without the agent. */
async function compare(mode, env = {}) {
  const file = writeApp(APP);
  const recorder = path.join(tmp, `recorder-${++n}.jsonl`);
  const common = { MODE: mode, ...env };
  const [withAgent, without] = await Promise.all([
    runScript(null, { file, env: { ...common, HATCH_FLIGHT_RECORDER: recorder } }),
    runScript(null, { file, agent: false, env: common }),
  ]);
  assert.equal(withAgent.code, without.code, `exit code; stderr: ${withAgent.stderr}`);
  assert.equal(withAgent.signal, without.signal, 'signal');
  assert.equal(withAgent.stderr, without.stderr, 'stderr');
  const text = fs.readFileSync(recorder, 'utf8');
  assert.ok(text.endsWith('\n'), 'the file is complete');
  const events = text
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(fs.readdirSync(tmp).filter((f) => f.endsWith('.tmp')).length, 0, 'no temporary file left');
  return { ...withAgent, events };
}

/** The ID of every event of this type and URL-less shape, in order. */
const ids = (events, type) => events.filter((e) => e.type === type).map((e) => e.requestId);

function assertRequests(events, requestIds) {
  for (const id of requestIds) {
    // each request's own server event, its outgoing call to /leaf and /leaf's server event carry its ID
    assert.equal(
      events.filter((e) => e.requestId === id && e.type === 'http.server').length,
      2,
      `${id}: ${JSON.stringify(events)}`,
    );
    assert.equal(events.filter((e) => e.requestId === id && e.type === 'http.client').length, 1, id);
  }
  for (const e of events) {
    if (['process', 'run', 'dropped', 'log'].includes(e.type)) continue;
    assert.match(e.time, /^\d{4}-\d\d-\d\dT/);
    assert.equal(typeof e.duration, 'number');
  }
}

test('normal exit: requests, calls and queries with their IDs, then the exit code; the code is kept', async () => {
  const r = await compare('exit');
  assert.equal(r.code, 3);
  assertRequests(r.events, ['req-1', 'req-2', 'req-db']);
  if (process.env.DATABASE_URL) {
    const q = r.events.find((e) => e.type === 'db.query');
    assert.equal(q.requestId, 'req-db');
    assert.match(q.text, /SELECT 1 AS one/);
  }
  assert.deepEqual(r.events.at(-1), {
    type: 'process',
    time: r.events.at(-1).time,
    requestId: null,
    runId: r.events.at(-1).runId,
    event: 'exit',
    code: 3,
  });
  // Outside any request an event carries the process's run (src/run.ts).
  assert.match(r.events.at(-1).runId, UUID);
});

test('process.exit(4): written, code kept', async () => {
  const r = await compare('process.exit');
  assert.equal(r.code, 4);
  assertRequests(r.events, ['req-1', 'req-2']);
  assert.equal(r.events.at(-1).event, 'exit');
});

test('uncaught exception mid-request: the error with the request ID, Node crash output and code unchanged', async () => {
  const r = await compare('crash');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /Error: boom in a request/);
  assertRequests(r.events, ['req-1', 'req-2']);
  // the crashing request never finished, but its call did, and the error knows whose it was
  assert.deepEqual(
    ids(r.events, 'http.client').filter((id) => id === 'req-crash'),
    ['req-crash'],
  );
  const crash = r.events.find((e) => e.event === 'uncaughtException');
  assert.equal(crash.requestId, 'req-crash');
  assert.equal(crash.error.message, 'boom in a request');
  assert.deepEqual(r.events.at(-1).event, 'exit');
  assert.equal(r.events.at(-1).code, 1);
});

test('unhandled rejection mid-request: recorded with the request ID, behaviour unchanged', async () => {
  const r = await compare('reject');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /rejected in a request/);
  const crash = r.events.find((e) => e.event === 'unhandledRejection');
  assert.equal(crash.requestId, 'req-reject');
  assert.equal(crash.error.message, 'rejected in a request');
});

test('SIGTERM with no handler of the app: written, and the process still dies of SIGTERM', async () => {
  const r = await compare('sigterm');
  assert.equal(r.signal, 'SIGTERM');
  assertRequests(r.events, ['req-1', 'req-2']);
  assert.deepEqual(r.events.at(-1).signal, 'SIGTERM');
});

test('SIGINT with no handler of the app: written, and the process still dies of SIGINT', async () => {
  const r = await compare('sigint');
  assert.equal(r.signal, 'SIGINT');
  assertRequests(r.events, ['req-1', 'req-2']);
  assert.deepEqual(r.events.at(-1).signal, 'SIGINT');
});

test("SIGTERM with the app's own handler: the app decides (here: exit code 5), the file has the signal and the exit", async () => {
  const r = await compare('handler');
  assert.equal(r.code, 5);
  assert.equal(r.signal, null);
  assert.match(r.stderr, /app: SIGTERM, closing/);
  const tail = r.events.filter((e) => e.type === 'process').map((e) => e.event);
  assert.deepEqual(tail, ['signal', 'exit']);
});

test('the ring keeps only the last HATCH_FLIGHT_RECORDER_SIZE events, and a line counts the dropped', async () => {
  const r = await compare('exit', { REQUESTS: '10', HATCH_FLIGHT_RECORDER_SIZE: '5' });
  // the run's line and the dropped count head the record; 10 requests with 2 server events and a
  // call each, the /db request's 3 (and its query), and the exit make at least 35 events
  const [run, dropped, ...kept] = r.events;
  assert.equal(run.type, 'run');
  assert.equal(dropped.type, 'dropped');
  assert.ok(dropped.events >= 30, JSON.stringify(dropped));
  assert.equal(kept.length, 5);
  // the newest survive: the last request's events and the exit
  assert.equal(r.events.at(-1).event, 'exit');
  assert.ok(r.events.some((e) => e.requestId === 'req-db'));
  assert.ok(!r.events.some((e) => e.requestId === 'req-1'));
});

test('a bad HATCH_FLIGHT_RECORDER_SIZE is named on one line, and the default used', async () => {
  const r = await runScript('', { env: { HATCH_FLIGHT_RECORDER_SIZE: 'lots' } });
  assert.equal(r.code, 0);
  assert.match(r.stderr, /HATCH_FLIGHT_RECORDER_SIZE="lots" is not a whole number .*; using 10000/);
});
