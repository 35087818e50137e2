// Log correlation under `node -r hatch-agent`: pino and winston loggers made by an unchanged app
// write the request's ID on every line written inside a request, none outside, and otherwise the
// same lines as without the agent (the app's mixin and format still run).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startApp, get, appDir, UUID } from '../support/app.mjs';

const version = (m) =>
  JSON.parse(fs.readFileSync(path.join(appDir, 'node_modules', m, 'package.json'), 'utf8')).version;
const versions = `pino ${version('pino')}, winston ${version('winston')}`;

const APP = `
const http = require('node:http');
const pino = require('pino');
const winston = require('winston');
// sync: the test stops the app with SIGTERM, which would lose lines still in an async buffer
const p = pino({ mixin: () => ({ mixed: true }) }, pino.destination({ dest: 1, sync: true }));
const stamp = winston.format((info) => { info.formatted = true; return info; });
const w = winston.createLogger({ format: winston.format.combine(stamp(), winston.format.json()), transports: [new winston.transports.Console()] });
p.info({ tag: 'start' }, 'pino at start');
w.info('winston at start', { tag: 'start' });
// A timer made outside any request keeps firing while requests run: its lines belong to none.
setInterval(() => { p.info({ tag: 'tick' }, 'pino tick'); w.info('winston tick', { tag: 'tick' }); }, 20).unref();
const server = http.createServer(async (req, res) => {
  const tag = req.url.slice(1);
  p.info({ tag }, 'pino in handler');
  w.info('winston in handler', { tag });
  await new Promise((r) => setTimeout(r, 5));
  p.child({ part: 'child' }).warn({ tag }, 'pino child after await');
  w.log({ level: 'warn', message: 'winston info object after await', tag });
  w.error(Object.assign(new Error('winston error'), { tag }));
  p.info({ tag, requestId: 'app-own' }, 'pino with its own requestId');
  w.info('winston with its own requestId', { tag, requestId: 'app-own' });
  p.info({ tag }, 'pino done'); // before the response: the test stops the app once it has it
  w.info('winston done', { tag });
  res.end('ok');
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

/** The JSON lines the app wrote on stdout. */
function records(stdout) {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
}

/** Starts the app, sends requests tagged r1, r2 (with these IDs), stops it; returns its records. */
async function run(env = {}, agent = true) {
  // a generous start-up limit: on a loaded shared machine node alone can take tens of seconds to start
  const app = await startApp(APP, { env, agent, timeout: 120000 });
  try {
    for (const tag of ['r1', 'r2']) {
      const r = await get(`${app.url}/${tag}`, { 'x-request-id': `id-${tag}` });
      assert.equal(r.status, 200);
    }
  } finally {
    await app.stop();
  }
  return records(app.stdout());
}

const isPino = (r) => typeof r.level === 'number';

test(`lines written inside a request carry its ID, lines outside carry none (${versions})`, async () => {
  const lines = await run();
  for (const tag of ['r1', 'r2']) {
    const mine = lines.filter((r) => r.tag === tag && !/own requestId/.test(r.msg ?? r.message));
    assert.equal(mine.filter(isPino).length, 3, `pino lines of ${tag}`);
    assert.equal(mine.filter((r) => !isPino(r)).length, 4, `winston lines of ${tag}`);
    for (const r of mine) assert.equal(r.requestId, `id-${tag}`, JSON.stringify(r));
  }
  const outside = lines.filter((r) => r.tag === 'start' || r.tag === 'tick');
  assert.ok(outside.length >= 2);
  // Outside requests a line carries the process's run instead (src/run.ts): one ID, the script's job.
  const runIds = new Set(outside.map((r) => r.runId));
  assert.equal(runIds.size, 1, JSON.stringify(outside));
  assert.match([...runIds][0], UUID);
  for (const r of outside) {
    assert.equal(r.requestId, undefined, JSON.stringify(r));
    assert.match(r.job, /^app-[0-9a-f]+$/, JSON.stringify(r));
  }
  for (const r of lines) if (r.tag === 'r1' || r.tag === 'r2') assert.equal(r.runId, undefined, JSON.stringify(r));
});

test(`the app's own fields, mixin and format are kept, and its own requestId wins (${versions})`, async () => {
  const lines = await run();
  const pinoLines = lines.filter(isPino);
  assert.ok(
    pinoLines.every((r) => r.mixed === true),
    'the pino mixin ran on every line',
  );
  assert.ok(
    pinoLines.some((r) => r.part === 'child' && r.requestId === 'id-r1'),
    'child loggers too',
  );
  const winstonLines = lines.filter((r) => !isPino(r));
  assert.ok(
    winstonLines.every((r) => r.formatted === true),
    'the winston format ran on every line',
  );
  const err = winstonLines.find((r) => r.tag === 'r1' && r.level === 'error');
  assert.equal(err.requestId, 'id-r1');
  // Each request writes one pino and one winston line with its own requestId: four in all.
  const own = lines.filter((r) => /own requestId/.test(r.msg ?? r.message));
  assert.equal(own.filter(isPino).length, 2, JSON.stringify(own));
  assert.equal(own.filter((r) => !isPino(r)).length, 2, JSON.stringify(own));
  for (const r of own) assert.equal(r.requestId, 'app-own', JSON.stringify(r));
});

test(`apart from requestId (runId and job outside requests) the lines are those written without the agent (${versions})`, async () => {
  const normalize = (lines) =>
    lines
      .filter((r) => r.tag !== 'tick')
      .map((r) => {
        const { time, pid, hostname, runId, job, ...rest } = r;
        if (rest.requestId !== 'app-own') delete rest.requestId;
        return JSON.stringify(rest);
      })
      .sort(); // pino writes to fd 1 itself, winston through process.stdout: they interleave freely
  const withAgent = await run();
  const without = await run({}, false);
  assert.deepEqual(normalize(withAgent), normalize(without));
  assert.ok(withAgent.some((r) => r.requestId === 'id-r2'));
});

test(`HATCH_LOG_INJECTION=off leaves every line without the ID (${versions})`, async () => {
  const lines = await run({ HATCH_LOG_INJECTION: 'off' });
  assert.ok(lines.filter((r) => r.tag === 'r1').length >= 7);
  for (const r of lines) {
    if (r.requestId !== 'app-own') assert.equal(r.requestId, undefined, JSON.stringify(r));
    assert.equal(r.runId, undefined, JSON.stringify(r));
  }
});
