// The package as installed from `npm pack`: what `-r hatch-agent` logs, loading it twice,
// HATCH_DISABLE, modules outside the supported range or that cannot be patched, and the types.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { appDir, runScript, fakeModule, typeCheck, writeApp } from './support/app.mjs';
import { udpListener } from './support/udp.mjs';

const pgVersion = JSON.parse(fs.readFileSync(path.join(appDir, 'node_modules/pg/package.json'), 'utf8')).version;
const poolVersion = JSON.parse(fs.readFileSync(path.join(appDir, 'node_modules/pg-pool/package.json'), 'utf8')).version;

const USES_ALL = `
const http = require('node:http');
const pg = require('pg');
const server = http.createServer((req, res) => res.end('ok'));
server.listen(0, '127.0.0.1', () => {
  http.get('http://127.0.0.1:' + server.address().port + '/', (res) => { res.resume(); res.on('end', () => server.close()); });
});
console.log(typeof pg.Client.prototype.query[Symbol.for('hatch-agent.original')]);
`;

test('HATCH_LOG=debug: one line per applied patch, with the module version', async () => {
  const r = await runScript(USES_ALL, { env: { HATCH_LOG: 'debug' } });
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stderr.split('\n').filter(Boolean);
  assert.ok(lines.includes(`hatch-agent debug: http@${process.versions.node} patched`), r.stderr);
  assert.ok(lines.includes(`hatch-agent debug: pg@${pgVersion} patched`), r.stderr);
  assert.ok(lines.includes(`hatch-agent debug: http@${process.versions.node} patched (http-client)`), r.stderr);
  assert.ok(lines.includes(`hatch-agent debug: pg-pool@${poolVersion} patched`), r.stderr);
  // One line per applied patch, each once. pg's dependencies load node:http2 without a require the hook
  // sees, so the agent patches it at the first request (and says so): http2 is the only other line.
  const applied = lines.filter((l) => /^hatch-agent debug: \S+@\S+ patched/.test(l));
  assert.equal(new Set(applied).size, applied.length, r.stderr);
  assert.equal(applied.filter((l) => !l.startsWith('hatch-agent debug: http2@')).length, 4, r.stderr);
  assert.equal(r.stdout, 'function\n');
});

test('loaded twice (-r twice): patched once, each request timed once', async () => {
  const udp = await udpListener();
  try {
    const r = await runScript(USES_ALL, {
      agent: 'twice',
      env: { HATCH_LOG: 'debug', HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(udp.port) },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.split('\n').filter((l) => l.includes('pg@') && l.includes('patched')).length, 1, r.stderr);
    assert.equal(r.stderr.split('\n').filter((l) => l.includes('started')).length, 1, r.stderr);
    await udp.waitFor((ls) => ls.some((l) => l.startsWith('hatch.http.server.')), 3000);
    await new Promise((res) => setTimeout(res, 200));
    assert.equal(udp.lines.filter((l) => l.startsWith('hatch.http.server.')).length, 1, udp.lines.join('\n'));
  } finally {
    udp.close();
  }
});

test('HATCH_DISABLE=pg leaves pg, pg-pool and pg-cursor untouched; an unknown name is reported', async () => {
  const r = await runScript(USES_ALL, { env: { HATCH_LOG: 'debug', HATCH_DISABLE: 'pg,nosuch' } });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'undefined\n', 'pg.Client.prototype.query is the original');
  assert.ok(!r.stderr.includes('pg@'), r.stderr);
  assert.match(r.stderr, /HATCH_DISABLE names "nosuch", which is no patch/);
  assert.ok(r.stderr.includes(`http@${process.versions.node} patched`));
});

test('a module outside the supported range, or that cannot be patched, logs one line and is left untouched', async () => {
  const old = fakeModule('pg', '7.18.2', `class Client { query() { return 'v7'; } } module.exports = { Client };`);
  const script = `const pg = require('pg'); const q = pg.Client.prototype.query; console.log(new pg.Client().query(), q.name, q[Symbol.for('hatch-agent.wrapped')] === undefined);`;
  fs.writeFileSync(path.join(old, 'app.js'), script);
  const a = await runScript('', { file: path.join(old, 'app.js') });
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.stdout, 'v7 query true\n');
  assert.deepEqual(a.stderr.split('\n').filter(Boolean), [
    'hatch-agent warn: pg@7.18.2 is outside the supported range >=8.0.3 <9.0.0; left untouched',
  ]);

  const odd = fakeModule('pg', '8.5.0', `class Client { notQuery() { return 'odd'; } } module.exports = { Client };`);
  fs.writeFileSync(
    path.join(odd, 'app.js'),
    `const pg = require('pg'); console.log(new pg.Client().notQuery(), Object.getOwnPropertyNames(pg.Client.prototype).join());`,
  );
  const b = await runScript('', { file: path.join(odd, 'app.js') });
  assert.equal(b.code, 0, b.stderr);
  assert.equal(b.stdout, 'odd constructor,notQuery\n');
  assert.deepEqual(b.stderr.split('\n').filter(Boolean), [
    'hatch-agent warn: pg@8.5.0 could not be patched (Client.prototype.query not found); left untouched',
  ]);
});

// The types do not depend on Node's version: under `npm test` tsc runs on the first line only.
const typesElsewhere = process.env.HATCH_TEST_PRIMARY === '0' && 'tsc runs on the first matrix line';
test('the public API is typed, as installed from the package', { skip: typesElsewhere }, async () => {
  const file = path.join(appDir, 'typed.ts');
  fs.writeFileSync(
    file,
    `import { getRequestId, withRequestId, stop, start } from 'hatch-agent';
const id: string | undefined = getRequestId();
const stopped: void = stop();
const running: boolean = start();
// @ts-expect-error start takes no configuration
start({});
const n: number = withRequestId('job-1', () => 42);
const p: Promise<string> = withRequestId('job-2', async () => 'x');
// @ts-expect-error the ID must be a string
withRequestId(42, () => 0);
export { id, n, p, stopped, running };
`,
  );
  const r = await typeCheck(file);
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('the runtime API outside -r: importing the package starts the agent once and works', () => {
  const s = spawnSync(
    process.execPath,
    [
      '-e',
      `const { withRequestId, getRequestId } = require('hatch-agent'); console.log(getRequestId(), withRequestId('w-1', () => getRequestId()), withRequestId('bad id */', () => /^[0-9a-f-]{36}$/.test(getRequestId())))`,
    ],
    { cwd: appDir, encoding: 'utf8', env: { ...process.env, HATCH_STATSD: 'off' } },
  );
  assert.equal(s.stdout, 'undefined w-1 true\n', s.stderr);
  assert.match(s.stderr, /withRequestId: the ID is outside the allowlist/);
});

// The start-up is one file (build/bundle.mjs): Node compiles dist/src/index.js and no other file of
// the agent's start-up modules, neither at start nor when a lazily loaded part (the http patch)
// requires them; and that part reads the configuration the agent started with (a second copy of
// src/config.js would answer the defaults).
test('the start-up bundle: one agent file compiled at start, and lazily loaded parts share its modules', () => {
  const tracer = writeApp(
    `const Module = require('node:module');
const compile = Module.prototype._compile;
globalThis.compiled = [];
Module.prototype._compile = function (content, filename) {
  globalThis.compiled.push(filename);
  return compile.apply(this, arguments);
};`,
  );
  const script = writeApp(`
const path = require('node:path');
const dist = path.dirname(path.dirname(require.resolve('hatch-agent')));
const ours = () => globalThis.compiled.filter((f) => f.startsWith(dist)).map((f) => path.relative(dist, f).split(path.sep).join('/'));
const atStart = ours();
require('node:http');
const later = ours().slice(atStart.length);
const { activeConfig } = require(path.join(dist, 'src/config.js'));
console.log(JSON.stringify({ atStart, later, header: activeConfig().requestIdHeader }));
`);
  const s = spawnSync(process.execPath, ['-r', tracer, '-r', 'hatch-agent', script], {
    cwd: appDir,
    encoding: 'utf8',
    env: { ...process.env, HATCH_STATSD: 'off', HATCH_REQUEST_ID_HEADER: 'x-trace-bundle' },
  });
  assert.equal(s.status, 0, s.stderr);
  const r = JSON.parse(s.stdout);
  assert.deepEqual(r.atStart, ['src/index.js'], 'only the bundle is compiled at start');
  assert.ok(
    r.later.includes('patches/http-server/index.js'),
    `the http patch is loaded at require('http'): ${r.later}`,
  );
  for (const f of ['src/config.js', 'src/log.js', 'src/bus.js', 'src/context.js', 'src/registry.js'])
    assert.ok(!r.later.includes(f), `${f} is not compiled again: ${r.later}`);
  assert.equal(r.header, 'x-trace-bundle', "a lazily loaded part reads the agent's configuration");
});

test('HATCH_DISABLE=fetch (or undici) leaves fetch uninstrumented, and is no unknown name', async () => {
  const script = `
const http = require('node:http');
const { withRequestId } = require('hatch-agent');
const server = http.createServer((req, res) => { const i = req.rawHeaders.findIndex((h) => h.toLowerCase() === 'x-request-id'); res.end(i < 0 ? 'none' : req.rawHeaders[i + 1]); });
server.listen(0, '127.0.0.1', () => withRequestId('d-1', async () => {
  const url = 'http://127.0.0.1:' + server.address().port + '/';
  const viaFetch = await (await fetch(url)).text();
  const viaGet = await new Promise((ok) => http.get(url, (r) => { let b = ''; r.on('data', (d) => (b += d)); r.on('end', () => ok(b)); }));
  console.log(viaFetch, viaGet);
  server.close();
}));`;
  for (const name of ['fetch', 'undici']) {
    const r = await runScript(script, { env: { HATCH_DISABLE: name } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'none d-1\n', `HATCH_DISABLE=${name}: fetch untouched, http.get still carries the ID`);
    assert.equal(r.stderr, '');
  }
  const on = await runScript(script);
  assert.equal(on.stdout, 'd-1 d-1\n');
});
