// The agent adds no frames to the app's stack traces. One app per framework (Express, Fastify, Koa
// with @koa/router, plain node:http) throws from a handler synchronously, from a middleware before the
// handler, and after an await; the framework's own error path catches it and sends `err.stack`. The
// same file runs without the agent and with it (`-r`, and `--import` for the ES-module twin), with
// Node's default stack limit (10 frames): the stacks must be the same text.
// That includes the shallow throws (plain node:http, a Koa middleware before the router), fewer than
// 10 frames above the server's `emit`, whose stacks end in Node's own frames: the http-server patch
// enters the request's context from Node's request-start channel, with nothing of its own on the stack.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runScript, writeApp, appDir } from '../support/app.mjs';

const version = (m) =>
  JSON.parse(fs.readFileSync(path.join(appDir, 'node_modules', m, 'package.json'), 'utf8')).version;

// Requests itself once per case, prints what it got, and exits.
const CLIENT = `
function boom() { throw new Error('boom'); }
async function later() { await null; boom(); }
function report(port) {
  const out = { limit: Error.stackTraceLimit, stacks: {}, agent: false };
  const cases = ['sync', 'mw', 'async'];
  const next = () => {
    const c = cases.shift();
    if (c === undefined) { console.log(JSON.stringify(out)); process.exit(0); }
    http.get({ host: '127.0.0.1', port, path: '/' + c + '/42', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => { out.stacks[c] = body; out.agent = out.agent || res.headers['x-request-id'] !== undefined; next(); });
    });
  };
  next();
}
`;

const APPS = {
  express: {
    name: () => `express@${version('express')}`,
    imports: { express: 'express' },
    body: `
const app = express();
const api = express.Router();
// Express 4 does not catch a rejected promise: the handler hands it to next itself.
const catching = (fn) => (req, res, next) => { fn(req, res, next).catch(next); };
api.get('/sync/:id', (req, res) => { boom(); });
api.get('/mw/:id', (req, res, next) => { boom(); }, (req, res) => res.send('unreached'));
api.get('/async/:id', catching(async (req, res) => { await later(); }));
app.use('/', api);
app.use((err, req, res, next) => { res.status(500).send(err.stack); });
const server = app.listen(0, '127.0.0.1', () => report(server.address().port));
`,
  },
  fastify: {
    name: () => `fastify@${version('fastify')}`,
    imports: { Fastify: 'fastify' },
    body: `
const fastify = Fastify();
fastify.setErrorHandler((err, request, reply) => { reply.code(500).send(err.stack); });
fastify.get('/sync/:id', (request, reply) => { boom(); });
fastify.get('/mw/:id', { preHandler: (request, reply, done) => { boom(); } }, (request, reply) => { reply.send('unreached'); });
fastify.get('/async/:id', async () => { await later(); });
fastify.listen({ port: 0, host: '127.0.0.1' }).then(() => report(fastify.server.address().port));
`,
  },
  koa: {
    name: () => `koa@${version('koa')} with @koa/router@${version('@koa/router')}`,
    imports: { Koa: 'koa', Router: '@koa/router' },
    // Koa's app.on('error') is skipped when a middleware catches: the first middleware catches.
    body: `
const app = new Koa();
const router = new Router();
app.use(async (ctx, next) => { try { await next(); } catch (err) { ctx.status = 500; ctx.body = err.stack; } });
app.use((ctx, next) => (ctx.path.startsWith('/mw/') ? boom() : next()));
router.get('/sync/:id', (ctx) => { boom(); });
router.get('/async/:id', async (ctx) => { await later(); });
app.use(router.routes());
const server = app.listen(0, '127.0.0.1', () => report(server.address().port));
`,
  },
  http: {
    name: () => 'node:http',
    imports: {},
    body: `
function middleware(req, res, next) { if (req.url.startsWith('/mw/')) boom(); next(); }
const server = http.createServer((req, res) => {
  const fail = (err) => { res.statusCode = 500; res.end(err.stack); };
  if (req.url.startsWith('/async/')) return void later().catch(fail);
  try {
    middleware(req, res, () => boom());
  } catch (err) {
    fail(err);
  }
});
server.listen(0, '127.0.0.1', () => report(server.address().port));
`,
  },
};

function source(app, esm) {
  const head = esm
    ? [`import http from 'node:http';`, ...Object.entries(app.imports).map(([n, m]) => `import ${n} from '${m}';`)]
    : [
        `const http = require('node:http');`,
        ...Object.entries(app.imports).map(([n, m]) => `const ${n} = require('${m}');`),
      ];
  return `${head.join('\n')}\n${CLIENT}\n${app.body}`;
}

async function stacks(file, agent) {
  const r = await runScript('', { file, agent });
  assert.equal(r.code, 0, `the app exits cleanly (agent: ${agent})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

const CASES = ['sync', 'mw', 'async'];

for (const app of Object.values(APPS)) {
  for (const [esm, agent] of [
    [false, true],
    [true, 'import'],
  ]) {
    const label = `${app.name()} (${esm ? 'ES module, --import' : 'CommonJS, -r'})`;
    let runs;
    // Both runs once per app and module format, shared by its tests.
    const both = () =>
      (runs ??= (async () => {
        // One file for both runs: the stacks name it.
        const file = writeApp(source(app, esm), esm ? '.mjs' : '.js');
        const plain = await stacks(file, false);
        const withAgent = await stacks(file, agent);
        assert.equal(plain.agent, false);
        assert.equal(withAgent.agent, true, 'the agent ran (the responses carry X-Request-ID)');
        assert.equal(plain.limit, 10, "Node's default stack limit");
        assert.equal(withAgent.limit, plain.limit, 'the stack limit is untouched');
        for (const c of CASES) {
          assert.match(plain.stacks[c], /^Error: boom\n\s+at boom \(/, `${c}: the app's error`);
          assert.ok(plain.stacks[c].includes(path.basename(file)), `${c}: the stack names the app's file`);
        }
        return { plain, withAgent };
      })());
    test(`${label}: err.stack is the same with and without the agent`, async () => {
      const { plain, withAgent } = await both();
      for (const c of CASES) assert.equal(withAgent.stacks[c], plain.stacks[c], `${c}: the same stack`);
    });
  }
}
