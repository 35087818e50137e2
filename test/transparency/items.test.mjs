// Issue 28, items 1-3, each as the user met it:
// 1. ejs's own test: `ejs.compile(str, { filename: 'foo.ejs' })` is a function named `foo`, and
//    `anonymous` without a filename; under the agent it was named `wrapper` (pug and handlebars
//    templates go through the same wrapper);
// 2. `http.get('not a url')` throws the same error, and printed a `hatch-agent warn` line first;
// 3. pino with `nestedKey`: `requestId` goes where pino puts a mixin's fields (under the nested key,
//    as pino 8 to 10 do), so the agent's field reads like a mixin the app could have written.
// Each app runs with and without the agent; the expected result is the library's own, not a
// hard-coded value (ejs before 3.1.7 names no template after its file).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runScript } from '../support/app.mjs';

const env = { HATCH_LOG: '' };

test('item 1: compiled templates keep the name the engine gave them', async () => {
  const source = `
const ejs = require('ejs'), pug = require('pug'), handlebars = require('handlebars');
const { withRequestId } = process.execArgv.includes('hatch-agent') ? require('hatch-agent') : { withRequestId: (id, f) => f() };
withRequestId('item-1', () => {
  const named = ejs.compile('<%= a %>', { filename: 'foo.ejs' });
  const anonymous = ejs.compile('<%= a %>');
  const p = pug.compile('p= a');
  const h = handlebars.compile('{{a}}');
  console.log(JSON.stringify({ ejs: [named.name, anonymous.name, named({ a: 1 })], pug: [p.name, p.length, p({ a: 2 })], handlebars: [h.name, h.length, h({ a: 3 })] }));
});`;
  const plain = await runScript(source, { agent: false, env });
  const agent = await runScript(source, { env });
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(agent.code, 0, agent.stderr);
  const want = JSON.parse(plain.stdout);
  assert.deepEqual(JSON.parse(agent.stdout), want);
  assert.notEqual(want.ejs[1], 'wrapper');
  assert.equal(want.ejs[1], 'anonymous');
  assert.equal(agent.stderr, plain.stderr);
});

test("item 2: http.get('not a url') throws Node's error and prints nothing more", async () => {
  const source = `
const http = require('node:http');
const { withRequestId } = process.execArgv.includes('hatch-agent') ? require('hatch-agent') : { withRequestId: (id, f) => f() };
const seen = [];
const attempt = (f) => { try { f(); seen.push('no error'); } catch (err) { seen.push(err.code + ' ' + err.message); } };
attempt(() => http.get('not a url'));
withRequestId('item-2', () => {
  attempt(() => http.get('not a url'));
  attempt(() => http.request('http://[::1', () => {}));
  attempt(() => http.request({ hostname: 42, port: 1 }));
  attempt(() => http.request({ host: '127.0.0.1', port: 1, method: 7 }));
});
console.log(JSON.stringify(seen));`;
  const plain = await runScript(source, { agent: false, env });
  const agent = await runScript(source, { env });
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(agent.code, 0, agent.stderr);
  assert.deepEqual(JSON.parse(agent.stdout), JSON.parse(plain.stdout));
  assert.match(JSON.parse(plain.stdout)[0], /^ERR_INVALID_URL /);
  assert.equal(agent.stderr, plain.stderr, 'the agent printed on stderr');
  assert.equal(agent.stderr, '');
});

test("item 3: with pino's nestedKey, requestId sits where pino puts a mixin's fields", async () => {
  // Under the agent: no mixin, the agent adds requestId. Without it: a mixin returning the same field.
  const source = (mixin) => `
const pino = require('pino');
const { withRequestId } = process.execArgv.includes('hatch-agent') ? require('hatch-agent') : { withRequestId: (id, f) => f() };
const lines = [];
const logger = pino({ nestedKey: 'payload', base: { app: 'shop' }, timestamp: false${mixin ? ", mixin: () => ({ requestId: 'rid-3' })" : ''} }, { write: (l) => lines.push(JSON.parse(l)) });
withRequestId('rid-3', () => {
  logger.info({ order: 7 }, 'with an object');
  logger.info('a message only');
  logger.child({ part: 'child' }).warn({ order: 8 }, 'from a child');
});
console.log(JSON.stringify(lines));`;
  const agent = await runScript(source(false), { env });
  const plain = await runScript(source(true), { agent: false, env });
  assert.equal(agent.code, 0, agent.stderr);
  assert.equal(plain.code, 0, plain.stderr);
  const got = JSON.parse(agent.stdout);
  assert.deepEqual(got, JSON.parse(plain.stdout));
  assert.equal(got[0].payload.requestId, 'rid-3', JSON.stringify(got[0]));
  assert.equal(got[0].app, 'shop', 'bindings stay at the top');
});
