// The pure parts, in process against the built package: config validation, the ID allowlist,
// the SQL comment and operation, metric formatting, and the marker-based wrap.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { spawnSync } from 'node:child_process';
import { statsdValues as valuesOf } from '../support/udp.mjs';

const require = createRequire(import.meta.url);
const { loadConfig, DEFAULTS } = require('../../dist/src/config.js');
const { isValidRequestId } = require('../../dist/src/request-id.js');
const { commentedSql, runCommentedSql, hasRequestComment, sqlOperation } = require('../../dist/src/sql-comment.js');
const { jobOfScript } = require('../../dist/src/run.js');
const { endBody, endLine, MAX_BODY } = require('../../dist/src/checkin.js');
const { Metric } = require('../../dist/src/sinks/statsd/series.js');
const { drainLines, drainPackets } = require('../../dist/src/sinks/statsd/packer.js');
const { wrap, unwrap, isWrapped } = require('../../dist/src/shim.js');

const { inRange } = require('../../dist/src/registry.js');
const { randomUuid, randomSpanId } = require('../../dist/src/random.js');
const { traceparentFor } = require('../../dist/src/propagation.js');

test('config: defaults with an empty environment, no problems', () => {
  const { config, problems } = loadConfig({});
  assert.deepEqual(problems, []);
  assert.deepEqual(config, DEFAULTS);
});

test('config: each bad value gives one line naming the variable, the value and what is used', () => {
  const { config, problems } = loadConfig({
    HATCH_STATSD_PORT: 'eighty',
    HATCH_STATSD_TAGS: 'influx',
    HATCH_LOG: 'loud',
    HATCH_STATSD_PREFIX: 'my prefix',
    HATCH_REQUEST_ID_HEADER: 'x request id',
    HATCH_STATSD: 'maybe',
    HATCH_STATSD_FLUSH_MS: '5',
  });
  assert.equal(problems.length, 7, problems.join('\n'));
  assert.match(
    problems.find((p) => p.startsWith('HATCH_STATSD_PORT=')),
    /"eighty".*using 8125/,
  );
  assert.match(
    problems.find((p) => p.startsWith('HATCH_STATSD_TAGS=')),
    /"influx".*none\|dogstatsd\|telegraf.*using "none"/,
  );
  assert.match(
    problems.find((p) => p.startsWith('HATCH_LOG=')),
    /using "warn"/,
  );
  assert.match(
    problems.find((p) => p.startsWith('HATCH_STATSD_FLUSH_MS=')),
    /using 1000/,
  );
  assert.equal(config.statsdPort, 8125);
  assert.equal(config.statsdTags, 'none');
  assert.equal(config.statsdPrefix, 'hatch.');
  assert.equal(config.requestIdHeader, 'x-request-id');
  assert.equal(config.statsd, true);
});

test('config: good values are taken', () => {
  const { config, problems } = loadConfig({
    HATCH_STATSD_PORT: '9125',
    HATCH_STATSD_TAGS: 'DogStatsD',
    HATCH_STATSD_PREFIX: 'app.web.',
    HATCH_REQUEST_ID_HEADER: 'X-Correlation-ID',
    HATCH_STATSD: 'off',
    HATCH_DISABLE: 'pg, HTTP',
    HATCH_SQL_COMMENT: 'off',
  });
  assert.deepEqual(problems, []);
  assert.equal(config.statsdPort, 9125);
  assert.equal(config.statsdTags, 'dogstatsd');
  assert.equal(config.statsdPrefix, 'app.web.');
  assert.equal(config.requestIdHeader, 'x-correlation-id');
  assert.equal(config.statsd, false);
  assert.equal(config.sqlComment, false);
  assert.deepEqual(config.disable, ['pg', 'http']);
});

test('config: HATCH_ERROR_REQUESTS and HATCH_DEBUG_ERRORS', () => {
  assert.equal(DEFAULTS.hatchErrorRequests, 50);
  assert.equal(DEFAULTS.hatchDebugErrors, false);
  const good = loadConfig({
    HATCH_ERROR_REQUESTS: '7',
    HATCH_DEBUG_ERRORS: 'on',
    HATCH_TOKEN: 'a-token-of-24-characters',
  });
  assert.deepEqual(good.problems, []);
  assert.equal(good.config.hatchErrorRequests, 7);
  assert.equal(good.config.hatchDebugErrors, true);
  const bad = loadConfig({ HATCH_ERROR_REQUESTS: '5000', HATCH_DEBUG_ERRORS: 'sometimes' });
  assert.deepEqual(bad.problems, [
    'HATCH_ERROR_REQUESTS="5000" is not a whole number from 0 to 1000; using 50',
    'HATCH_DEBUG_ERRORS="sometimes" is not on|off; using "off"',
  ]);
  assert.equal(bad.config.hatchErrorRequests, 50);
  assert.equal(bad.config.hatchDebugErrors, false);
  const tokenless = loadConfig({ HATCH_DEBUG_ERRORS: 'on' });
  assert.deepEqual(tokenless.problems, ['HATCH_DEBUG_ERRORS=on needs a valid HATCH_TOKEN; using "off"']);
  assert.equal(tokenless.config.hatchDebugErrors, false);
});

test('config: the run and check-in settings, good and bad, each bad one a line naming it', () => {
  const good = loadConfig({
    HATCH_RUN_ID: 'cron-2024-01-01.1',
    HATCH_JOB_NAME: 'send_subscriptions',
    HATCH_RUN_COMMENT: 'off',
    HATCH_CHECKIN_URL: 'https://hc-ping.com/0f8fad5b-d9cb-469f-a165-70867728950e/',
    HATCH_CHECKIN_TIMEOUT_MS: '1500',
  });
  assert.deepEqual(good.problems, []);
  assert.equal(good.config.runId, 'cron-2024-01-01.1');
  assert.equal(good.config.jobName, 'send_subscriptions');
  assert.equal(good.config.runComment, false);
  assert.equal(good.config.checkinUrl, 'https://hc-ping.com/0f8fad5b-d9cb-469f-a165-70867728950e');
  assert.equal(good.config.checkinTimeoutMs, 1500);

  const secret = 'https://hc-ping.com/abc?secret=1';
  const { config, problems } = loadConfig({
    HATCH_RUN_ID: '*/ DROP TABLE x; --',
    HATCH_JOB_NAME: 'manage.py send subscriptions',
    HATCH_RUN_COMMENT: 'sometimes',
    HATCH_CHECKIN_URL: secret,
    HATCH_CHECKIN_TIMEOUT_MS: '10',
  });
  assert.equal(problems.length, 5, problems.join('\n'));
  const line = (name) => problems.find((p) => p.startsWith(name));
  assert.match(line('HATCH_RUN_ID='), /allowlist.*using "[0-9a-f-]{36}"/);
  assert.match(config.runId, /^[0-9a-f]{8}-[0-9a-f]{4}-4/);
  assert.ok(line('HATCH_RUN_ID=').includes(config.runId), 'the line names the ID used instead');
  assert.match(line('HATCH_JOB_NAME='), /using "manage_py_send_subscriptions"/);
  assert.equal(config.jobName, 'manage_py_send_subscriptions');
  assert.match(line('HATCH_RUN_COMMENT='), /on\|off; using "on"/);
  assert.match(line('HATCH_CHECKIN_URL'), /no check-ins are sent/);
  assert.ok(!line('HATCH_CHECKIN_URL').includes('secret'), 'the URL itself is not printed');
  assert.equal(config.checkinUrl, undefined);
  assert.match(line('HATCH_CHECKIN_TIMEOUT_MS='), /using 3000/);
});

test('runs: the job name of a script, and the run comment', () => {
  assert.equal(jobOfScript('/srv/jobs/nightly.js'), 'nightly');
  assert.equal(jobOfScript('/srv/jobs/send.emails.mjs'), 'send_emails');
  assert.equal(jobOfScript('/usr/local/bin/cleanup'), 'cleanup');
  assert.equal(jobOfScript('/srv/.hidden'), 'hidden');
  assert.equal(jobOfScript(undefined), 'node');
  assert.equal(jobOfScript('/srv/*/ DROP.js'), 'DROP');
  assert.equal(jobOfScript('/x/' + 'a'.repeat(100) + '.js'), 'a'.repeat(64));
  const prefix = '/* job:nightly run:0f8fad5b-d9cb-469f-a165-70867728950e */ ';
  assert.equal(runCommentedSql('SELECT 1', prefix), prefix + 'SELECT 1');
  assert.equal(runCommentedSql(prefix + 'SELECT 1', prefix), undefined, 'never twice');
  assert.equal(runCommentedSql('/* req-1 */ SELECT 1', prefix), undefined, 'not over a request comment');
  assert.equal(commentedSql(prefix + 'SELECT 1', 'req-1'), undefined, 'a request comment not over the run comment');
  assert.equal(hasRequestComment('/* job:a run:b */ SELECT'), true);
  assert.equal(hasRequestComment('/* job:a b run:c */ SELECT'), false, "the app's own comment");
});

test('check-ins: the end body keeps the newest whole lines within the bound, then the ending', () => {
  const ending = { outcome: 'error', code: 1, signal: undefined, duration: 1234.5 };
  ending.crash = { origin: 'uncaughtException', name: 'Error', message: 'boom\nsecond line' };
  const last = endLine('nightly', 'rid-1', ending);
  assert.equal(
    last,
    'hatch-agent: job nightly run rid-1 ended (error) after 1235 ms: uncaughtException: Error: boom; exit code 1',
  );
  const lines = Array.from({ length: 500 }, (_, i) => `line ${i} ` + 'é'.repeat(40));
  const body = endBody(lines, last);
  assert.ok(Buffer.byteLength(body) <= MAX_BODY, `${Buffer.byteLength(body)} bytes`);
  const got = body.trimEnd().split('\n');
  assert.equal(got.at(-1), last);
  assert.equal(got.at(-2), lines.at(-1), 'the newest line is kept');
  assert.ok(got.length > 50, 'as many lines as fit');
  assert.deepEqual(got.slice(0, -1), lines.slice(-(got.length - 1)), 'whole lines, in order, none skipped');
  assert.equal(endBody([], 'x'.repeat(MAX_BODY * 2)).length, MAX_BODY, 'a huge ending line is cut');
});

test('request IDs: the allowlist', () => {
  for (const ok of ['a', 'abc-DEF_1.2:3', 'x'.repeat(128), '0f8fad5b-d9cb-469f-a165-70867728950e']) {
    assert.equal(isValidRequestId(ok), true, ok);
  }
  const hostile = [
    '',
    'x'.repeat(129),
    '*/ DROP TABLE x; --',
    'a b',
    'a\r\nSet-Cookie: x=1',
    'é',
    'a/b',
    "a'b",
    'a"b',
    'a*b',
    'a\0b',
    '😀',
    'x'.repeat(10240),
  ];
  for (const bad of hostile) assert.equal(isValidRequestId(bad), false, JSON.stringify(bad));
  // The last ID that passed is remembered: each hostile one is refused right after a valid one too.
  for (const bad of hostile) {
    assert.equal(isValidRequestId('req-1'), true);
    assert.equal(isValidRequestId(bad), false, JSON.stringify(bad));
  }
  assert.equal(isValidRequestId(['req', '1'].join('-')), true, 'an equal string, built anew');
  // Before any ID has passed (a fresh process), nothing is remembered: undefined and '' are refused.
  const fresh = spawnSync(process.execPath, [
    '-e',
    `const { isValidRequestId: v } = require(${JSON.stringify(require.resolve('../../dist/src/request-id.js'))}); console.log(v(undefined), v(''), v('a'), v('a'))`,
  ]);
  assert.equal(String(fresh.stdout).trim(), 'false false true true');
  assert.equal(isValidRequestId(undefined), false);
  assert.equal(isValidRequestId(['a', 'b']), false);
});

test('SQL comment: prefix once, never for a hostile ID', () => {
  assert.equal(commentedSql('SELECT 1', 'req-1'), '/* req-1 */ SELECT 1');
  assert.equal(commentedSql('/* req-1 */ SELECT 1', 'req-2'), undefined, 'already carries one');
  assert.equal(commentedSql('SELECT 1', '*/ DROP TABLE x; --'), undefined);
  // The last ID that passed is remembered: one that passed just before does not let another through.
  assert.equal(commentedSql('SELECT 1', 'req-1'), '/* req-1 */ SELECT 1');
  for (const hostile of ['req-1 */ DROP TABLE x; --', '', 'req-1'.repeat(26), 'req-1\n'])
    assert.equal(commentedSql('SELECT 1', hostile), undefined, JSON.stringify(hostile));
  assert.equal(commentedSql('SELECT 2', ['req', '1'].join('-')), '/* req-1 */ SELECT 2', 'an equal string, built anew');
  assert.equal(hasRequestComment('/* a:b.c-d_e */ SELECT'), true);
  assert.equal(hasRequestComment('/* a comment of the app */ SELECT'), false);
  assert.equal(hasRequestComment('SELECT 1'), false);
});

test('SQL operation: first keyword after blanks, comments and parentheses; else OTHER', () => {
  const cases = {
    'SELECT 1': 'SELECT',
    '  select 1': 'SELECT',
    '/* req-1 */ insert into t values (1)': 'INSERT',
    '-- note\nUPDATE t SET a = 1': 'UPDATE',
    '(SELECT 1) UNION (SELECT 2)': 'SELECT',
    'with x as (select 1) select * from x': 'WITH',
    'delete from t': 'DELETE',
    BEGIN: 'BEGIN',
    frobnicate: 'OTHER',
    '': 'OTHER',
    '/* unterminated': 'OTHER',
    1234: 'OTHER',
    'SELECTED 1': 'OTHER',
    selectx: 'OTHER',
    'DeLeTe from t': 'DELETE',
    'deallocate all': 'DEALLOCATE',
    deallocatex: 'OTHER',
    'do $$ begin end $$': 'DO',
    select1: 'SELECT',
    ÉSELECT: 'OTHER',
  };
  for (const [sql, op] of Object.entries(cases)) assert.equal(sqlOperation(sql), op, sql);
});

test('metrics: plain StatsD names are Graphite-safe and in a fixed dimension order', () => {
  const m = new Metric('http.server', 'ms', ['method', 'route', 'status_code'], 'hatch.', 'none');
  m.series('GET', '/api/users/:id', 200).add(12.3456);
  m.series('GET', '/api/users/:id', 200).add(7);
  m.series('POST', 'un.safe name|#', 500).add(1);
  m.series('GET', '/users/{id}', 200).add(2); // hapi's template: no trailing `_`
  const lines = drainLines([m], 'none');
  // One line per series: its name once, then each value with its type (`name:v1|ms:v2|ms`).
  assert.deepEqual(lines, [
    'hatch.http.server.GET.api_users_id.200:12.346|ms:7|ms',
    'hatch.http.server.POST.un_safe_name.500:1|ms',
    'hatch.http.server.GET.users_id.200:2|ms',
  ]);
  for (const l of lines) assert.match(l, /^[A-Za-z0-9_.-]+(:[0-9.]+\|ms)+$/);
  assert.deepEqual(drainLines([m], 'none'), [], 'a flush empties the series');
});

test('metrics: dogstatsd tags and multi-value lines; telegraf tags', () => {
  const d = new Metric('db.query', 'ms', ['system', 'operation', 'outcome'], 'hatch.', 'dogstatsd');
  for (const v of [1, 2.5, 3]) d.series('pg', 'SELECT', 'ok').add(v);
  assert.deepEqual(drainLines([d], 'dogstatsd'), ['hatch.db.query:1:2.5:3|ms|#system:pg,operation:SELECT,outcome:ok']);
  const t = new Metric('http.server', 'ms', ['method', 'route', 'status_code'], 'hatch.', 'telegraf');
  t.series('GET', '/a/:b', 404).add(4);
  t.series('GET', '/a/:b', 404).add(5.5);
  assert.deepEqual(drainLines([t], 'telegraf'), [
    'hatch.http.server,method=GET,route=/a/_b,status_code=404:4|ms:5.5|ms',
  ]);
  const c = new Metric('errors', 'c', ['kind'], 'hatch.', 'dogstatsd');
  c.series('invalid_request_id').sum += 3;
  assert.deepEqual(drainLines([c], 'dogstatsd'), ['hatch.errors:3|c|#kind:invalid_request_id']);
});

test('metrics: many values are cut into lines and packets that fit 1432 bytes, none lost', () => {
  const d = new Metric('http.server', 'ms', ['method', 'route', 'status_code'], 'hatch.', 'dogstatsd');
  const s = d.series('GET', 'unmatched', 200);
  for (let i = 0; i < 5000; i++) s.add(i + 0.5);
  const packets = drainPackets([d], 'dogstatsd');
  assert.ok(packets.length > 1);
  for (const p of packets) assert.ok(p.length <= 1432, `packet of ${p.length}`);
  const lines = packets.flatMap((p) => p.toString('latin1').split('\n'));
  assert.ok(lines.length > 1);
  for (const l of lines)
    assert.match(l, /^hatch\.http\.server(:\d+(\.\d+)?)+\|ms\|#method:GET,route:unmatched,status_code:200$/);
  const values = lines.flatMap((l) => l.split('|')[0].split(':').slice(1)).map(Number);
  assert.deepEqual(
    values,
    Array.from({ length: 5000 }, (_, i) => i + 0.5),
    'every value, in order',
  );
  // Plain StatsD: `name:v1|ms:v2|ms…` lines, packets full but none over 1432 bytes.
  const m = new Metric('http.server', 'ms', ['method', 'route', 'status_code'], 'hatch.', 'none');
  const t = m.series('GET', 'unmatched', 200);
  for (let i = 0; i < 5000; i++) t.add(i / 7);
  const plain = drainPackets([m], 'none');
  for (const p of plain) assert.ok(p.length <= 1432, `packet of ${p.length}`);
  for (const p of plain.slice(0, -1)) assert.ok(p.length > 1400, `a packet cut early: ${p.length} bytes`);
  const got = plain.flatMap((p) => p.toString('latin1').split('\n'));
  for (const l of got) assert.match(l, /^hatch\.http\.server\.GET\.unmatched\.200(:\d+(\.\d+)?\|ms)+$/);
  assert.deepEqual(
    valuesOf(got),
    Array.from({ length: 5000 }, (_, i) => Math.round((i / 7) * 1000) / 1000),
    'every value, in order',
  );
  assert.ok(plain.length <= 60, `${plain.length} packets for 5000 values: the name is written once a line`);
});

test('metrics: values are printed as String(round(v, 3)) would, written digit by digit', () => {
  const samples = [
    0,
    0.0004,
    0.0005,
    0.001,
    0.05,
    0.1,
    0.5,
    1,
    2.5,
    7,
    9.999,
    9.9995,
    10,
    12.3456,
    99.005,
    1234.5678,
    52723712,
    1e11 + 0.123,
    4e12,
    -1.5,
    NaN,
  ];
  const m = new Metric('runtime.x', 'ms', [], 'hatch.', 'none');
  const s = m.series('');
  for (const v of samples) s.add(v);
  const [line, ...more] = drainLines([m], 'none');
  assert.deepEqual(more, []);
  const got = line.slice('hatch.runtime.x:'.length, -'|ms'.length).split('|ms:');
  assert.deepEqual(
    got,
    samples.map((v) => String(Math.round(v * 1000) / 1000)),
  );
});

test('metrics: a series keeps its storage from one flush to the next, and holds at most 100000 values an interval', () => {
  const m = new Metric('db.query', 'ms', ['system', 'operation', 'outcome'], 'hatch.', 'none');
  const s = m.series('pg', 'SELECT', 'ok');
  for (let i = 0; i < 100; i++) s.add(i);
  const storage = s.values;
  assert.equal(valuesOf(drainLines([m], 'none')).length, 100);
  s.add(1.5);
  s.add(2);
  assert.equal(s.values, storage, 'no new storage after a flush');
  assert.deepEqual(drainLines([m], 'none'), ['hatch.db.query.pg.SELECT.ok:1.5|ms:2|ms']);
  let kept = 0;
  for (let i = 0; i < 100_005; i++) if (s.add(i)) kept++;
  assert.equal(kept, 100_000, 'the excess is refused (the sink counts it and warns once)');
  assert.equal(valuesOf(drainLines([m], 'none')).length, 100_000);
  s.add(3);
  drainLines([m], 'none');
  assert.ok(s.values.length < 100_000, 'storage far bigger than an interval needs is halved');
});

test('metrics: unbounded dimension values fold into `other` past the series cap', () => {
  const m = new Metric('http.server', 'ms', ['method', 'route', 'status_code'], 'hatch.', 'none');
  for (let i = 0; i < 2500; i++) m.series('GET', `/r${i}`, 200).add(1);
  const lines = drainLines([m], 'none');
  assert.equal(valuesOf(lines).length, 2500, 'every value is still sent');
  assert.equal(valuesOf(lines.filter((l) => l.startsWith('hatch.http.server.other.other.other:'))).length, 500);
});

test('wrap: idempotent, keeps name and length, unwrap restores', () => {
  class C {
    query(a, b) {
      return a + b;
    }
  }
  const proto = C.prototype;
  const original = proto.query;
  let calls = 0;
  const make = (orig) =>
    function () {
      calls++;
      return orig.apply(this, arguments);
    };
  assert.equal(wrap(proto, 'query', make), true);
  assert.equal(wrap(proto, 'query', make), false, 'a second wrap is refused');
  assert.equal(isWrapped(proto.query), true);
  assert.equal(proto.query.name, 'query');
  assert.equal(proto.query.length, 2);
  assert.equal(new C().query(1, 2), 3);
  assert.equal(calls, 1);
  unwrap(proto, 'query');
  assert.equal(proto.query, original);
  // An inherited method is wrapped as an own property and removed again.
  class D extends C {}
  wrap(D.prototype, 'query', make);
  assert.ok(Object.hasOwn(D.prototype, 'query'));
  unwrap(D.prototype, 'query');
  assert.ok(!Object.hasOwn(D.prototype, 'query'));
  assert.equal(D.prototype.query, original);
});

test('wrap: the wrapper handed out has the original shape, a method for a method, a function for a function', () => {
  const asMethod = (orig) =>
    ({
      query() {
        return Reflect.apply(orig, this, arguments) + 1;
      },
    }).query;
  const asPlain = (orig) =>
    function query() {
      return Reflect.apply(orig, this, arguments) + 1;
    };
  // A library whose methods are a class's (pg 8.23) and one whose are prototype assignments (pg 8.0).
  class K {
    query(a) {
      return a;
    }
  }
  function P() {}
  P.prototype.query = function query(a) {
    return a;
  };
  const constructs = (f) => {
    try {
      new f();
      return true;
    } catch (err) {
      assert.ok(err instanceof TypeError, String(err));
      return false;
    }
  };
  for (const [Lib, make] of [
    [K, asMethod],
    [K, asPlain],
    [P, asMethod],
    [P, asPlain],
  ]) {
    const original = Lib.prototype.query;
    const made = [];
    assert.equal(
      wrap(Lib.prototype, 'query', (o) => {
        const w = make(o);
        made.push(w);
        return w;
      }),
      true,
    );
    const w = Lib.prototype.query;
    const what = `${Lib.name} with a ${make === asMethod ? 'method' : 'plain'} wrapper`;
    assert.equal(new Lib().query(41), 42, what);
    assert.equal(Object.hasOwn(w, 'prototype'), Object.hasOwn(original, 'prototype'), what);
    if (Object.hasOwn(original, 'prototype')) assert.equal(w.prototype, original.prototype, what);
    assert.equal(constructs(w), constructs(original), what);
    // No shell when the shapes already agree: the patch's own function is what the app calls.
    assert.equal(w === made[0], (make === asMethod) === (Lib === K), what);
    unwrap(Lib.prototype, 'query');
    assert.equal(Lib.prototype.query, original);
  }
});

test('version ranges', () => {
  assert.equal(inRange('8.0.0', ['8.0.0', '9.0.0']), true);
  assert.equal(inRange('8.23.1', ['8.0.0', '9.0.0']), true);
  assert.equal(inRange('9.0.0', ['8.0.0', '9.0.0']), false);
  assert.equal(inRange('7.18.2', ['8.0.0', '9.0.0']), false);
  assert.equal(inRange('garbage', ['8.0.0', '9.0.0']), false);
});

test('random IDs: valid v4 UUIDs and span ids, never repeated across batches and refills of the random pool', () => {
  // 20,000 UUIDs (320 KiB of random bytes) and 20,000 span ids (160 KiB) go through the 16 KiB pool many times over.
  const uuids = new Set();
  const spans = new Set();
  const digits = new Array(16).fill(0);
  for (let i = 0; i < 20_000; i++) {
    const u = randomUuid();
    assert.match(u, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    uuids.add(u);
    const s = randomSpanId();
    assert.match(s, /^[0-9a-f]{16}$/);
    assert.notEqual(s, '0000000000000000');
    spans.add(s);
    for (const ch of s) digits[parseInt(ch, 16)]++;
  }
  assert.equal(uuids.size, 20_000);
  assert.equal(spans.size, 20_000);
  // 320,000 hex digits: each of the 16 is expected 20,000 times (a standard deviation of ~137).
  for (const n of digits) assert.ok(n > 19_000 && n < 21_000, `hex digit counts ${digits}`);
});

test('traceparent from a request ID: a UUID or 32 hex digits becomes the trace-id, lower-cased; anything else gives none', () => {
  const tp = (id) => {
    const v = traceparentFor(id);
    if (v !== undefined) assert.match(v, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    return v?.slice(3, 35);
  };
  assert.equal(tp('0f8c1a2b-3c4d-4e5f-8a9b-0123456789ab'), '0f8c1a2b3c4d4e5f8a9b0123456789ab');
  assert.equal(tp('0F8C1A2B-3C4D-4E5F-8A9B-0123456789AB'), '0f8c1a2b3c4d4e5f8a9b0123456789ab');
  assert.equal(tp('ABCDEF0123456789abcdef0123456789'), 'abcdef0123456789abcdef0123456789');
  const id = randomUuid();
  assert.equal(tp(id), id.replace(/-/g, ''));
  for (const bad of [
    '00000000-0000-0000-0000-000000000000', // the all-zero trace-id is invalid
    '0'.repeat(32),
    '0f8c1a2b3c4d-4e5f-8a9b-0123456789ab-', // 36 characters, dashes misplaced
    '0f8c1a2b-3c4d-4e5f-8a9b-0123456789ag', // not hex
    'req-1',
    'abcdef0123456789abcdef012345678', // 31
  ])
    assert.equal(traceparentFor(bad), undefined, bad);
});

test("patches/index: each lazily loaded patch is declared with its definition's module, feature and range", () => {
  const { ALL_PATCHES } = require('../../dist/patches/index.js');
  const lazy = ALL_PATCHES.filter((d) => typeof d.load === 'function');
  assert.ok(lazy.length >= 14, `the library patches are loaded lazily (${lazy.length})`);
  for (const d of lazy) {
    const real = d.load();
    assert.notEqual(real, d);
    assert.deepEqual(
      { module: d.module, feature: d.feature, versions: d.versions },
      { module: real.module, feature: real.feature, versions: real.versions },
      `patches/index.ts declares ${d.source} for ${d.module ?? d.feature} as the file does`,
    );
    assert.equal(typeof real.patch, 'function');
    assert.equal(typeof real.unpatch, 'function');
    assert.equal(
      typeof d.replace,
      typeof real.replace,
      `${d.source} for ${d.module}: a replace declared as the file has it`,
    );
  }
});

test("patches/index: each lazily loaded subscriber is declared with its definition's feature, aliases and channels", () => {
  const { SUBSCRIBERS } = require('../../dist/patches/index.js');
  const lazy = SUBSCRIBERS.filter((d) => typeof d.load === 'function');
  assert.ok(lazy.length >= 1, 'undici is loaded at its first message');
  for (const d of lazy) {
    const real = d.load();
    assert.notEqual(real, d);
    assert.deepEqual(
      { feature: d.feature, aliases: [...d.aliases], channels: [...d.channels] },
      { feature: real.feature, aliases: [...real.aliases], channels: [...real.channels] },
      `patches/index.ts declares ${d.source} for ${d.module ?? d.feature} as the file does`,
    );
    for (const c of d.channels) assert.equal(typeof real.handlers[c], 'function', `${c} has a handler`);
  }
});
