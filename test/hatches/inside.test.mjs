// The hatches that look inside the live process, on an app under `node -r hatch-agent` whose
// environment holds planted secrets and which runs a named busy function on a timer:
// - /report: Node's diagnostic report, no planted secret in it (JSON or HTML, the worker thread's
//   section too), excludeNetwork put back;
// - /profile: a .cpuprofile that parses and names the busy function; one at a time (409); bad
//   seconds (400); the top functions in HTML; a Node without node:inspector (an app whose require of
//   it fails, as in a Node built without it) gets 501 saying so, and runs on;
// - /heap: a .heapsnapshot that parses with its snapshot.meta; refused with 503 and the numbers when
//   the heap is over half its limit (an app with --max-old-space-size=256 that grows its heap: with
//   128, Node 24's limit counts a young generation so large that the old space runs out first), and
//   the app answers afterwards; HATCH_HEAP_SNAPSHOT with a bad value: one line, and off (403);
// - each of them: without the token exactly the app's own 404, and counted as hatch_auth;
// - the index says each one's cost on its own line.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { createRequire } from 'node:module';
import { startApp, get, appDir } from '../support/app.mjs';
import { udpListener } from '../support/udp.mjs';
import { TOKEN, STARTUP_MS, auth, until } from './apps.mjs';

const SECRET = 'planted-Secret-value-7d1f9a';
const PASSWORD = 'planted-pw-4b2c8e61';

const INSIDE_APP = `
const http = require('node:http');
const v8 = require('node:v8');
if (process.env.APP_NO_INSPECTOR) {
  // As in a Node built without the inspector: requiring it throws.
  const Module = require('node:module');
  const load = Module._load;
  Module._load = function (request, ...rest) {
    if (request === 'inspector' || request === 'node:inspector') {
      const err = new Error('Inspector is not available');
      err.code = 'ERR_INSPECTOR_NOT_AVAILABLE';
      throw err;
    }
    return load.call(this, request, ...rest);
  };
}
// The app's busy function: recursive, not a loop. A long loop runs in on-stack-replaced code, which
// a profile started after it was compiled may count for its caller (seen on Node 20: listOnTimeout).
function busyHatchTestFib(n) {
  return n < 2 ? n : busyHatchTestFib(n - 1) + busyHatchTestFib(n - 2);
}
setInterval(() => busyHatchTestFib(27), 30);
// A worker thread: the report holds its own section, with its copy of the environment. The app
// listens once the worker is online: a report taken before then has no worker section.
const worker = process.env.APP_WORKER
  ? new (require('node:worker_threads').Worker)('setInterval(() => {}, 1000)', { eval: true })
  : null;
const kept = [];
const server = http.createServer((req, res) => {
  if (req.url === '/hello') return res.end('hello');
  if (req.url === '/exclude-network') return res.end(String(process.report.excludeNetwork));
  if (req.url === '/grow') {
    // Retained until the used heap is over 52% of its limit.
    for (let s = v8.getHeapStatistics(); s.used_heap_size < 0.52 * s.heap_size_limit; s = v8.getHeapStatistics())
      kept.push(new Array(100000).fill(kept.length));
    const s = v8.getHeapStatistics();
    return res.end(JSON.stringify({ used: s.used_heap_size, limit: s.heap_size_limit }));
  }
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'x-app': 'own-404' });
  res.end('the app has no ' + req.url);
});
const listen = () => server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
if (worker) worker.once('online', listen);
else listen();
`;

const SECRETS_ENV = {
  PLANTED_API_TOKEN: SECRET,
  REPLICA_URL: `postgres://reader:${PASSWORD}@replica.internal:5432/appdb`,
  INNOCENT: `mentions the token ${TOKEN} by mistake`,
};

let udp;
let app; // hatches on, secrets planted
let plain; // the same app without HATCH_TOKEN
before(async () => {
  udp = await udpListener();
  const statsd = { HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(udp.port), HATCH_STATSD_FLUSH_MS: '100' };
  [app, plain] = await Promise.all([
    startApp(INSIDE_APP, {
      env: { ...statsd, ...SECRETS_ENV, HATCH_TOKEN: TOKEN, APP_WORKER: '1' },
      timeout: STARTUP_MS,
    }),
    startApp(INSIDE_APP, { env: { HATCH_TOKEN: '' }, timeout: STARTUP_MS }),
  ]);
});
after(async () => {
  await Promise.all([app?.stop(), plain?.stop()]);
  udp?.close();
});

test('the report: the diagnostic report, with no planted secret and the network left alone', async () => {
  const before = await get(app.url + '/exclude-network');
  for (const format of ['json', 'html']) {
    const r = await get(`${app.url}/_hatch/report?format=${format}`, auth());
    assert.equal(r.status, 200, r.body);
    for (const secret of [SECRET, PASSWORD, TOKEN]) assert.ok(!r.body.includes(secret), `${format} shows ${secret}`);
    if (format === 'html') {
      assert.match(r.headers['content-type'], /^text\/html/);
      assert.match(r.body, /<h2>libuv handles \(\d+\)<\/h2>/);
      assert.match(r.body, /heap used/);
      continue;
    }
    const rep = JSON.parse(r.body);
    assert.equal(rep.header.nodejsVersion, process.version);
    assert.equal(rep.header.processId, app.child.pid);
    assert.equal(rep.header.cwd, appDir); // a path, not a secret (PWD matches the password pattern)
    assert.ok(Array.isArray(rep.libuv) && rep.libuv.length > 0);
    // The worker's section (its own environment) is swept too: checked above on the whole text.
    assert.equal(rep.workers.length, 1);
    assert.ok(rep.javascriptHeap.usedMemory > 0);
    assert.ok(Array.isArray(rep.javascriptStack.stack));
    assert.equal(rep.environmentVariables.PLANTED_API_TOKEN, '[redacted]');
    assert.equal(rep.environmentVariables.REPLICA_URL, 'postgres://reader:[redacted]@replica.internal:5432/appdb');
    assert.equal(rep.environmentVariables.INNOCENT, 'mentions the token [redacted] by mistake');
    assert.equal(rep.environmentVariables.HATCH_TOKEN, '[redacted]');
    const canExclude = before.body !== 'undefined';
    assert.match(rep.hatch.networkLookups, canExclude ? /^skipped/ : /no process\.report\.excludeNetwork/);
  }
  // Put back as it was.
  assert.equal((await get(app.url + '/exclude-network')).body, before.body);
});

test('the profile: a .cpuprofile naming the busy function; one at a time; bad seconds refused', async () => {
  const running = get(`${app.url}/_hatch/profile?seconds=2`, auth());
  // A second one while it runs. The first may not have started yet: HEAD (which takes no profile)
  // asks until it has, then a GET gets the refusal.
  await until(async () => (await head(`${app.url}/_hatch/profile?seconds=1`, auth())) === 409, 1900, 'a 409');
  const busy = await get(`${app.url}/_hatch/profile?seconds=1`, auth());
  assert.equal(busy.status, 409, busy.body);
  assert.match(JSON.parse(busy.body).error, /being taken; one at a time/);
  assert.equal((await get(app.url + '/hello')).body, 'hello'); // the app answers meanwhile
  const r = await running;
  assert.equal(r.status, 200, r.body);
  assert.match(r.headers['content-disposition'], /^attachment; filename="hatch-\d+-[\dT-]+Z\.cpuprofile"$/);
  const profile = JSON.parse(r.body);
  assert.ok(Array.isArray(profile.nodes) && profile.samples.length > 100, `${profile.samples?.length} samples`);
  assert.ok(profile.endTime - profile.startTime >= 1.5e6, 'about 2 s');
  const spin = profile.nodes.filter((n) => n.callFrame.functionName === 'busyHatchTestFib');
  assert.ok(
    spin.some((n) => n.hitCount > 0),
    `busyHatchTestFib sampled: ${JSON.stringify(spin)}`,
  );
  assert.ok(spin[0].callFrame.url.includes('app-'), spin[0].callFrame.url);

  for (const bad of ['0', '61', 'x', '1.5', '-1']) {
    const b = await get(`${app.url}/_hatch/profile?seconds=${bad}`, auth());
    assert.equal(b.status, 400, bad);
    assert.match(JSON.parse(b.body).error, /seconds must be a whole number from 1 to 60/);
  }
});

test('the profile in HTML: the top functions by self time; ?download gives the file', async () => {
  const html = await get(`${app.url}/_hatch/profile?seconds=1&format=html`, auth());
  assert.equal(html.status, 200);
  assert.match(html.headers['content-type'], /^text\/html/);
  const names = [...html.body.matchAll(/<tr class="function">.*?<code class="name">([^<]*)<\/code>/g)].map((m) => m[1]);
  assert.ok(names.length > 0, html.body);
  assert.ok(names.slice(0, 5).includes('busyHatchTestFib'), names.join(', '));
  const file = await get(`${app.url}/_hatch/profile?seconds=1&download&format=html`, auth());
  assert.match(file.headers['content-disposition'], /\.cpuprofile"$/);
  assert.ok(JSON.parse(file.body).nodes.length > 0);
});

test('the heap: a .heapsnapshot that parses, with its snapshot.meta', async () => {
  const r = await get(`${app.url}/_hatch/heap`, auth());
  assert.equal(r.status, 200, r.body.slice(0, 500));
  assert.match(r.headers['content-disposition'], /^attachment; filename="hatch-\d+-[\dT-]+Z\.heapsnapshot"$/);
  const snap = JSON.parse(r.body);
  assert.ok(Array.isArray(snap.snapshot.meta.node_fields), Object.keys(snap.snapshot.meta).join());
  assert.ok(snap.snapshot.node_count > 1000);
  assert.equal((await get(app.url + '/hello')).body, 'hello');

  // One at a time: while a snapshot is still being sent (its reader paused), a second is refused.
  const first = await new Promise((resolve, reject) =>
    http.get(`${app.url}/_hatch/heap`, { headers: auth(), agent: false }, resolve).on('error', reject),
  );
  first.pause();
  const second = await get(`${app.url}/_hatch/heap`, auth());
  assert.equal(second.status, 409, second.body.slice(0, 300));
  assert.match(JSON.parse(second.body).error, /a heap snapshot is being taken; one at a time/);
  let bytes = 0;
  first.on('data', (d) => (bytes += d.length));
  await new Promise((resolve) => first.on('end', resolve).resume());
  assert.ok(bytes > 1e6, `${bytes} bytes`);
  assert.equal((await get(`${app.url}/_hatch/heap`, { ...auth() })).status, 200); // and again after it
});

test('the index says what each costs, on its own line', async () => {
  const r = await get(`${app.url}/_hatch?format=json`, auth());
  const byPath = Object.fromEntries(JSON.parse(r.body).hatches.map((h) => [h.path, h]));
  assert.match(byPath['/_hatch/report'].cost, /blocks the event loop/);
  assert.match(byPath['/_hatch/profile?seconds=N'].cost, /samples every 1 ms/);
  assert.match(byPath['/_hatch/heap'].cost, /blocks the event loop.*twice the used heap/);
  // After the tests above: what the last one took.
  assert.match(byPath['/_hatch/report'].cost, /the last one took \d+ ms/);
  assert.match(byPath['/_hatch/profile?seconds=N'].cost, /the last ran \d s and took \d+ samples/);
  assert.match(byPath['/_hatch/heap'].cost, /the last took \d+ ms and was [\d.]+ MB/);
  assert.equal(byPath['/_hatch/config'].cost, undefined);
  const html = await get(`${app.url}/_hatch`, { ...auth(), accept: 'text/html' });
  assert.match(html.body, /<br><span class="cost">cost: blocks the event loop while Node writes it/);
});

/** The status of a HEAD request. */
function head(url, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'HEAD', headers, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The answer as a comparable value: status, headers but date and the request ID, body. */
function shape(r) {
  const headers = { ...r.headers };
  delete headers.date;
  delete headers['x-request-id'];
  return { status: r.status, headers, body: r.body };
}

test("without the token each of them is the app's own 404, and counted", async () => {
  const sum = () =>
    udp.lines
      .filter((l) => l.startsWith('hatch.errors.hatch_auth:'))
      .reduce((s, l) => s + Number(/:(\d+)\|c$/.exec(l)[1]), 0);
  const start = sum();
  let n = 0;
  for (const path of ['/_hatch/report', '/_hatch/profile?seconds=1', '/_hatch/heap', '/_hatch/profile?seconds=99'])
    for (const headers of [{}, auth(TOKEN.slice(0, -1) + (TOKEN.endsWith('f') ? 'e' : 'f'))]) {
      const [a, b] = await Promise.all([get(app.url + path, headers), get(plain.url + path, headers)]);
      assert.equal(a.status, 404, path);
      assert.equal(a.headers['x-app'], 'own-404', path);
      assert.deepEqual(shape(a), shape(b), path);
      n++;
    }
  await until(() => sum() - start >= n, 10000, `${n} hatch_auth counts`);
});

test('a heap over half its limit: the snapshot is refused with 503 and the numbers; the app answers on', async () => {
  const small = await startApp(INSIDE_APP, {
    env: { HATCH_TOKEN: TOKEN, NODE_OPTIONS: '--max-old-space-size=256' },
    timeout: STARTUP_MS,
  });
  try {
    const grown = JSON.parse((await get(small.url + '/grow')).body);
    assert.ok(grown.used > grown.limit / 2, JSON.stringify(grown));
    for (const format of ['json', 'html']) {
      const r = await get(`${small.url}/_hatch/heap?format=${format}`, auth());
      assert.equal(r.status, 503, r.body.slice(0, 300));
      assert.equal(r.headers['content-disposition'], undefined);
      assert.match(r.body, /heap snapshot refused: the used heap \([\d.]+ MB\) is over half its limit \([\d.]+ MB\)/);
      if (format === 'json') {
        const j = JSON.parse(r.body);
        assert.ok(j.usedHeap > j.heapLimit / 2 && j.freeMemory > 0 && typeof j.freeMemoryFrom === 'string', r.body);
      }
    }
    assert.equal((await get(small.url + '/hello')).body, 'hello');
    assert.equal(small.child.exitCode, null);
    assert.equal(small.stderr(), '');
  } finally {
    await small.stop();
  }
});

test('HATCH_HEAP_SNAPSHOT: a bad value is one line and turns it off (403); without node:inspector the profile says so', async () => {
  const a = await startApp(INSIDE_APP, {
    env: { HATCH_TOKEN: TOKEN, HATCH_HEAP_SNAPSHOT: 'maybe', APP_NO_INSPECTOR: '1' },
    timeout: STARTUP_MS,
  });
  try {
    assert.equal(a.stderr(), 'hatch-agent warn: HATCH_HEAP_SNAPSHOT="maybe" is not on|off; using "off"\n');
    const heap = await get(`${a.url}/_hatch/heap`, auth());
    assert.equal(heap.status, 403);
    assert.match(JSON.parse(heap.body).error, /heap snapshots are off \(HATCH_HEAP_SNAPSHOT=off\)/);
    const index = JSON.parse((await get(`${a.url}/_hatch`, auth())).body);
    assert.equal(index.hatches.find((h) => h.path === '/_hatch/heap').cost, 'off (HATCH_HEAP_SNAPSHOT=off)');

    const p = await get(`${a.url}/_hatch/profile?seconds=1`, auth());
    assert.equal(p.status, 501, p.body);
    assert.match(
      JSON.parse(p.body).error,
      /no CPU profile: this Node has no inspector \(.*Inspector is not available\)/,
    );
    assert.equal((await get(`${a.url}/_hatch/report`, auth())).status, 200); // the report needs no inspector
    assert.equal((await get(a.url + '/hello')).body, 'hello');
    assert.equal(a.child.exitCode, null);
  } finally {
    await a.stop();
  }
});

test('HATCH_HEAP_SNAPSHOT: on unless off; a value not understood is one line naming it, and off', () => {
  const { loadConfig } = createRequire(import.meta.url)('../../dist/src/config.js');
  for (const [v, on, problems] of [
    [undefined, true, []],
    ['', true, []],
    ['on', true, []],
    ['OFF', false, []],
    ['0', false, []],
    ['later', false, ['HATCH_HEAP_SNAPSHOT="later" is not on|off; using "off"']],
  ]) {
    const r = loadConfig(v === undefined ? {} : { HATCH_HEAP_SNAPSHOT: v });
    assert.equal(r.config.hatchHeapSnapshot, on, String(v));
    assert.deepEqual(r.problems, problems, String(v));
  }
});
