// The run's log under `node -r hatch-agent`: a cron-style script's console, pino and winston lines
// are kept in the flight recorder and delivered however the script ends (it ends normally, calls
// process.exit(3), throws, rejects, is sent SIGTERM), to a file, to a directory (one file per run)
// and to a real HTTP server on 127.0.0.1; the script ends exactly as it does without the agent
// (exit code, signal, stdout, stderr). Also: the byte bound under a script that logs 100 MB, and an
// upload target that is down or too slow (the record lands in the fallback file, stderr says where).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeApp, runScript, appDir, UUID } from '../support/app.mjs';

// Lines just before each ending come right before it, in the same turn of the event loop.

/**
 * Output without the fields the agent adds to the loggers' records (requestId inside a request,
 * runId and job outside: patches/pino.ts, winston.ts), and winston's simple format's then empty `{}`.
 */
const agentFieldsOut = (s) =>
  s.replace(/,"(?:requestId|runId|job)":"[^"]*"|"(?:requestId|runId|job)":"[^"]*",?/g, '').replace(/ \{\}$/gm, '');

const SCRIPT = `
const pino = require('pino');
const winston = require('winston');
const p = pino({ base: null, timestamp: false }, pino.destination({ dest: 1, sync: true }));
const w = winston.createLogger({ format: winston.format.json(), transports: [new winston.transports.Console()] });
const withId = process.env.WITH_AGENT ? require('hatch-agent').withRequestId : (id, fn) => fn();
const mode = process.env.MODE;
async function main() {
  for (let i = 1; i <= 3; i++) {
    console.log('console line ' + i);
    p.info({ i }, 'pino line ' + i);
    w.info('winston line ' + i, { i });
    await new Promise((r) => setTimeout(r, 1));
  }
  withId('batch-7', () => {
    console.log('console in batch');
    p.info('pino in batch');
    w.info('winston in batch');
  });
  process.stdout.write('written in ');
  process.stdout.write('two pieces\\n');
  console.error('console.error line');
  await new Promise((r) => setTimeout(r, 1));
  console.log('console last');
  p.warn('pino last');
  w.warn('winston last');
  if (mode === 'exit') process.exit(3);
  if (mode === 'throw') setTimeout(() => { throw new Error('nightly broke'); }, 0);
  if (mode === 'reject') throw new Error('nightly rejected');
  if (mode === 'sigterm') { setInterval(() => {}, 1000); process.kill(process.pid, 'SIGTERM'); }
}
main();
`;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hatch-run-log-'));
const fallbacks = [];
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
  for (const f of fallbacks) fs.rmSync(f, { force: true });
});

/** An upload target on 127.0.0.1 that keeps what it is sent; `answer: false` never answers. */
async function target({ answer = true } = {}) {
  const received = [];
  const held = [];
  const server = http.createServer((req, res) => {
    // kept as it arrives: a request cut off by the agent's timeout is still seen
    const got = { method: req.method, url: req.url, headers: req.headers, body: '' };
    received.push(got);
    req.setEncoding('utf8');
    req.on('data', (d) => (got.body += d));
    req.on('end', () => {
      if (answer) res.end('stored');
      else held.push(res);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    received,
    close: () => {
      for (const res of held) res.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

/** A port nothing listens on. */
async function closedPort() {
  const s = http.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}

const parse = (text) =>
  text
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l));

/** Every line the script logged is in the record, once, with its time and request ID. */
function assertRunLog(events, file) {
  assert.equal(events[0].type, 'run', file);
  assert.match(events[0].runId, UUID);
  assert.equal(events[0].job, path.basename(file, '.js').replace(/[^A-Za-z0-9_-]+/g, '_'));
  const logs = events.filter((e) => e.type === 'log');
  for (const e of logs) assert.match(e.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const text = (source) => logs.filter((e) => e.source === source).map((e) => e.text);
  assert.deepEqual(text('stdout'), [
    'console line 1',
    'console line 2',
    'console line 3',
    'console in batch',
    'written in two pieces',
    'console last',
  ]);
  assert.deepEqual(text('stderr'), ['console.error line']);
  const records = (source) => logs.filter((e) => e.source === source);
  const pino = records('pino');
  assert.deepEqual(
    pino.map((e) => [e.level, e.record.msg]),
    [
      ['info', 'pino line 1'],
      ['info', 'pino line 2'],
      ['info', 'pino line 3'],
      ['info', 'pino in batch'],
      ['warn', 'pino last'],
    ],
  );
  assert.deepEqual(
    pino.slice(0, 3).map((e) => e.record.i),
    [1, 2, 3],
  );
  const winston = records('winston');
  assert.deepEqual(
    winston.map((e) => [e.level, e.record.message]),
    [
      ['info', 'winston line 1'],
      ['info', 'winston line 2'],
      ['info', 'winston line 3'],
      ['info', 'winston in batch'],
      ['warn', 'winston last'],
    ],
  );
  // each line carries the ID it was written under, and only that one
  const inBatch = logs.filter((e) => /in batch/.test(e.text ?? e.record?.msg ?? e.record?.message));
  assert.equal(inBatch.length, 3);
  for (const e of inBatch) assert.equal(e.requestId, 'batch-7');
  for (const e of logs.filter((x) => !inBatch.includes(x))) assert.equal(e.requestId, null);
  // the lines written just before the end are the last ones kept before the ending's own events
  const lastLogs = logs.slice(-3).map((e) => e.text ?? e.record.msg ?? e.record.message);
  assert.deepEqual(lastLogs, ['console last', 'pino last', 'winston last']);
}

/** How each variant ends, as the record tells it. */
function assertEnding(events, mode) {
  const ends = events.filter((e) => e.type === 'process');
  const shape = ends.map(
    (e) => e.event + (e.code !== undefined ? ` ${e.code}` : '') + (e.signal ? ` ${e.signal}` : ''),
  );
  const expected = {
    ok: ['exit 0'],
    exit: ['exit 3'],
    throw: ['uncaughtException', 'exit 1'],
    reject: ['unhandledRejection', 'exit 1'],
    sigterm: ['signal SIGTERM'],
  }[mode];
  assert.deepEqual(shape, expected);
  if (mode === 'throw') assert.equal(ends[0].error.message, 'nightly broke');
  if (mode === 'reject') assert.equal(ends[0].error.message, 'nightly rejected');
}

const ENDINGS = {
  ok: { code: 0, signal: null },
  exit: { code: 3, signal: null },
  throw: { code: 1, signal: null },
  reject: { code: 1, signal: null },
  sigterm: { code: null, signal: 'SIGTERM' },
};

for (const mode of Object.keys(ENDINGS)) {
  test(`${mode}: the run's log reaches a file, a directory and an HTTP target; the script ends as without the agent`, async () => {
    const file = writeApp(SCRIPT);
    const server = await target();
    const recordFile = path.join(tmp, `${mode}.jsonl`);
    const dir = path.join(tmp, `dir-${mode}`) + path.sep; // made at the ending
    const method = mode === 'exit' ? 'POST' : undefined;
    const uploadPath = `/records/${mode}.jsonl?X-Amz-Signature=abc123`;
    const agentEnv = { MODE: mode, WITH_AGENT: '1' };
    try {
      const [toFile, toDir, toUrl, without] = await Promise.all([
        runScript(null, { file, env: { ...agentEnv, HATCH_FLIGHT_RECORDER: recordFile } }),
        runScript(null, { file, env: { ...agentEnv, HATCH_FLIGHT_RECORDER: dir } }),
        runScript(null, {
          file,
          env: {
            ...agentEnv,
            HATCH_FLIGHT_RECORDER: server.url + uploadPath,
            ...(method ? { HATCH_FLIGHT_RECORDER_METHOD: method } : {}),
          },
        }),
        runScript(null, { file, agent: false, env: { MODE: mode } }),
      ]);
      assert.deepEqual({ code: without.code, signal: without.signal }, ENDINGS[mode], without.stderr);
      for (const [name, r] of Object.entries({ toFile, toDir, toUrl })) {
        assert.equal(r.code, without.code, `${name} exit code; stderr: ${r.stderr}`);
        assert.equal(r.signal, without.signal, `${name} signal`);
        assert.equal(r.stderr, without.stderr, `${name} stderr`);
        // the same bytes, but for the IDs the agent adds to the logger's records
        assert.equal(agentFieldsOut(r.stdout), without.stdout, `${name} stdout`);
      }

      const fromFile = parse(fs.readFileSync(recordFile, 'utf8'));
      assertRunLog(fromFile, file);
      assertEnding(fromFile, mode);

      const names = fs.readdirSync(dir);
      assert.equal(names.length, 1, names.join(', '));
      const fromDir = parse(fs.readFileSync(path.join(dir, names[0]), 'utf8'));
      const { job, runId } = fromDir[0];
      assert.match(names[0], new RegExp(`^${job}-\\d{8}T\\d{6}Z-${runId}\\.jsonl$`));
      assertRunLog(fromDir, file);
      assertEnding(fromDir, mode);

      assert.equal(server.received.length, 1, 'one upload');
      const upload = server.received[0];
      assert.equal(upload.method, method ?? 'PUT');
      assert.equal(upload.url, uploadPath);
      assert.equal(upload.headers['content-type'], 'application/x-ndjson');
      const fromUrl = parse(upload.body);
      assertRunLog(fromUrl, file);
      assertEnding(fromUrl, mode);
      assert.notEqual(fromUrl[0].runId, fromFile[0].runId, 'each run has its own ID');
      assert.equal(fs.readdirSync(tmp).filter((f) => f.endsWith('.tmp')).length, 0, 'no temporary file left');
    } finally {
      await server.close();
    }
  });
}

test('records written through process.stdout are kept once, as records, and the bytes on stdout are unchanged', async () => {
  const source = `
const pino = require('pino');
const winston = require('winston');
const p = pino({ base: null, timestamp: false }, process.stdout);
const w = winston.createLogger({ transports: [new winston.transports.Console({ format: winston.format.simple() })] });
// pino last: its older lines (8.x) write to fd 1 on their own, asynchronously, so a pino line
// before the others could reach stdout after them, with or without the agent.
w.info('winston to the console');
console.log('plain');
p.info('pino to process.stdout');
`;
  const file = writeApp(source);
  const recordFile = path.join(tmp, 'once.jsonl');
  const [r, without] = await Promise.all([
    runScript(null, { file, env: { HATCH_FLIGHT_RECORDER: recordFile } }),
    runScript(null, { file, agent: false }),
  ]);
  assert.equal(agentFieldsOut(r.stdout), without.stdout);
  const logs = parse(fs.readFileSync(recordFile, 'utf8')).filter((e) => e.type === 'log');
  assert.deepEqual(
    logs.map((e) => [e.source, e.text ?? e.record.msg ?? e.record.message]),
    [
      ['winston', 'winston to the console'],
      ['stdout', 'plain'],
      ['pino', 'pino to process.stdout'],
    ],
  );
});

/** Runs a script with its stdout thrown away (100 MB would fill the test's memory); { code, stderr }. */
function runQuiet(file, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-r', 'hatch-agent', file], {
      cwd: appDir,
      env: { ...process.env, HATCH_STATSD: 'off', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

test('the byte bound holds under a script that logs 100 MB: the newest lines kept, the dropped counted', async () => {
  const BYTES = 1024 * 1024;
  const file = writeApp(`
const pino = require('pino');
const p = pino(pino.destination({ dest: 1, sync: true }));
const filler = 'x'.repeat(1000);
for (let i = 0; i < 50000; i++) console.log(i + ' ' + filler);
for (let i = 0; i < 50000; i++) p.info({ i }, filler);
console.log('the last line');
`);
  const recordFile = path.join(tmp, 'big.jsonl');
  const r = await runQuiet(file, {
    HATCH_FLIGHT_RECORDER: recordFile,
    HATCH_FLIGHT_RECORDER_BYTES: String(BYTES),
    HATCH_FLIGHT_RECORDER_SIZE: '1000000',
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  const size = fs.statSync(recordFile).size;
  // the bound is on estimated sizes; the file stays within a few percent of it
  assert.ok(size <= BYTES * 1.1, `record is ${size} bytes`);
  assert.ok(size >= BYTES * 0.5, `record is ${size} bytes`);
  const events = parse(fs.readFileSync(recordFile, 'utf8'));
  const dropped = events.find((e) => e.type === 'dropped');
  assert.ok(dropped, 'a line counts what was dropped');
  assert.equal(events[1], dropped, 'right after the run line');
  const kept = events.filter((e) => e.type === 'log').length;
  assert.ok(dropped.events + kept >= 100001, `${dropped.events} dropped + ${kept} kept`);
  assert.ok(dropped.bytes >= 95 * 1024 * 1024, `${dropped.bytes} bytes dropped`);
  const logs = events.filter((e) => e.type === 'log');
  assert.equal(logs.at(-1).text, 'the last line');
  assert.equal(logs.at(-2).record.i, 49999);
  assert.equal(events.at(-1).event, 'exit');
});

/** The stderr line that tells where the record went instead, and the record there. */
function fallbackOf(stderr) {
  const m = /^hatch-agent warn: flight recorder: (PUT|POST) (\S+) failed \(([^)]*)\); the record is in (\S+)$/m.exec(
    stderr,
  );
  assert.ok(m, `stderr names the fallback file: ${stderr}`);
  fallbacks.push(m[4]);
  assert.equal(path.dirname(m[4]), os.tmpdir());
  return { url: m[2], why: m[3], file: m[4], events: parse(fs.readFileSync(m[4], 'utf8')) };
}

const withoutWarning = (stderr) => stderr.replace(/^hatch-agent warn: flight recorder: .*\n/m, '');

test('upload target down: the record is in the fallback file, stderr says where; the exit is unchanged', async () => {
  const port = await closedPort();
  const file = writeApp(SCRIPT);
  const [r, without] = await Promise.all([
    runScript(null, {
      file,
      env: { MODE: 'exit', WITH_AGENT: '1', HATCH_FLIGHT_RECORDER: `http://127.0.0.1:${port}/up?sig=secret` },
    }),
    runScript(null, { file, agent: false, env: { MODE: 'exit' } }),
  ]);
  assert.equal(r.code, 3);
  assert.equal(withoutWarning(r.stderr), without.stderr);
  const f = fallbackOf(r.stderr);
  assert.equal(f.url, `http://127.0.0.1:${port}/up`, 'the query (a signature) is not repeated');
  assert.match(f.why, /ECONNREFUSED/);
  assertRunLog(f.events, file);
  assertEnding(f.events, 'exit');
});

test('upload target too slow: cut at HATCH_FLIGHT_RECORDER_TIMEOUT_MS, the record in the fallback file', async () => {
  const server = await target({ answer: false });
  const file = writeApp(SCRIPT);
  try {
    const [r, without] = await Promise.all([
      runScript(null, {
        file,
        env: {
          MODE: 'throw',
          WITH_AGENT: '1',
          HATCH_FLIGHT_RECORDER: `${server.url}/slow`,
          HATCH_FLIGHT_RECORDER_TIMEOUT_MS: '1000',
        },
      }),
      runScript(null, { file, agent: false, env: { MODE: 'throw' } }),
    ]);
    assert.equal(r.code, 1);
    assert.equal(withoutWarning(r.stderr), without.stderr);
    const f = fallbackOf(r.stderr);
    assert.equal(f.why, 'timed out after 1000 ms');
    assertRunLog(f.events, file);
    assertEnding(f.events, 'throw');
    assert.equal(server.received.length, 1, 'the request was made, no answer came');
  } finally {
    await server.close();
  }
});

test('an HTTP error status counts as a failed upload', async () => {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.statusCode = 403;
      res.end('denied');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  try {
    const r = await runScript('console.log("one line")', {
      env: { HATCH_FLIGHT_RECORDER: `http://127.0.0.1:${server.address().port}/x` },
    });
    assert.equal(r.code, 0);
    const f = fallbackOf(r.stderr);
    assert.equal(f.why, 'HTTP 403');
    assert.deepEqual(
      f.events.filter((e) => e.type === 'log').map((e) => e.text),
      ['one line'],
    );
  } finally {
    await new Promise((r) => server.close(r));
  }
});

test('bad HATCH_FLIGHT_RECORDER_* values: one line each, naming the variable and what is used instead', async () => {
  const r = await runScript('', {
    env: {
      HATCH_FLIGHT_RECORDER: 'ftp://files.example.com/secret-path?sig=1',
      HATCH_FLIGHT_RECORDER_BYTES: 'a lot',
      HATCH_FLIGHT_RECORDER_METHOD: 'GET',
      HATCH_FLIGHT_RECORDER_TIMEOUT_MS: '5',
    },
  });
  assert.equal(r.code, 0);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 4, r.stderr);
  assert.match(
    r.stderr,
    /HATCH_FLIGHT_RECORDER="ftp:\/\/files\.example\.com\/…" is no http\(s\) URL; using "no flight recorder"/,
  );
  assert.doesNotMatch(r.stderr, /secret-path|sig=1/);
  assert.match(r.stderr, /HATCH_FLIGHT_RECORDER_BYTES="a lot" is not a whole number .*; using 4194304/);
  assert.match(r.stderr, /HATCH_FLIGHT_RECORDER_METHOD="GET" is not one of put\|post; using "put"/);
  assert.match(r.stderr, /HATCH_FLIGHT_RECORDER_TIMEOUT_MS="5" is not a whole number from 100 to 60000; using 2000/);
});

test("SIGTERM with the app's own handler: the app decides (exit code 5); the record is uploaded once, at the exit", async () => {
  const server = await target();
  const source = `
console.log('working');
setInterval(() => {}, 1000);
process.on('SIGTERM', () => { console.log('app: closing'); process.exit(5); });
setTimeout(() => process.kill(process.pid, 'SIGTERM'), 10);
`;
  const file = writeApp(source);
  try {
    const [r, without] = await Promise.all([
      runScript(null, { file, env: { HATCH_FLIGHT_RECORDER: `${server.url}/handled` } }),
      runScript(null, { file, agent: false }),
    ]);
    assert.deepEqual(
      [r.code, r.signal, r.stdout, r.stderr],
      [without.code, without.signal, without.stdout, without.stderr],
    );
    assert.equal(r.code, 5);
    assert.equal(server.received.length, 1);
    const events = parse(server.received[0].body);
    assert.deepEqual(
      events.filter((e) => e.type === 'log').map((e) => e.text),
      ['working', 'app: closing'],
    );
    assert.deepEqual(
      events.filter((e) => e.type === 'process').map((e) => e.event),
      ['signal', 'exit'],
    );
  } finally {
    await server.close();
  }
});

test('an ES-module script under --import: its console and pino lines are in the record', async () => {
  const source = `
import pino from 'pino';
const p = pino({ base: null, timestamp: false }, pino.destination({ dest: 1, sync: true }));
console.log('esm console');
p.info('esm pino');
await new Promise((r) => setTimeout(r, 1));
throw new Error('esm broke');
`;
  const file = writeApp(source, '.mjs');
  const recordFile = path.join(tmp, 'esm.jsonl');
  const [r, without] = await Promise.all([
    runScript(null, { file, agent: 'import', env: { HATCH_FLIGHT_RECORDER: recordFile } }),
    runScript(null, { file, agent: false }),
  ]);
  assert.deepEqual([r.code, agentFieldsOut(r.stdout), r.stderr], [without.code, without.stdout, without.stderr]);
  const events = parse(fs.readFileSync(recordFile, 'utf8'));
  assert.deepEqual(
    events.filter((e) => e.type === 'log').map((e) => [e.source, e.text ?? e.record.msg]),
    [
      ['stdout', 'esm console'],
      ['pino', 'esm pino'],
    ],
  );
  // a module's top-level await rejects: Node reports it as an unhandled rejection
  assert.equal(events.find((e) => e.event === 'unhandledRejection').error.message, 'esm broke');
});

test("a worker thread leaves no record of its own: its output is in the main thread's", async () => {
  const file = writeApp(`
const { Worker, isMainThread } = require('node:worker_threads');
if (isMainThread) new Worker(__filename).on('exit', () => console.log('main after the worker'));
else console.log('in the worker');
`);
  const dir = path.join(tmp, 'workers') + path.sep;
  const r = await runScript(null, { file, env: { HATCH_FLIGHT_RECORDER: dir } });
  assert.equal(r.code, 0, r.stderr);
  const names = fs.readdirSync(dir);
  assert.equal(names.length, 1, names.join(', '));
  const events = parse(fs.readFileSync(path.join(dir, names[0]), 'utf8'));
  assert.deepEqual(
    events
      .filter((e) => e.type === 'log')
      .map((e) => e.text)
      .sort(),
    ['in the worker', 'main after the worker'].sort(),
  );
});
