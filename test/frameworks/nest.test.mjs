// NestJS on its Express and Fastify adapters, under `node -r hatch-agent` (a CommonJS app) and
// `node --import hatch-agent` (its ES-module twin). The app is plain JavaScript calling Nest's
// decorator functions itself (what TypeScript's compiled decorators do), with a global prefix and URI
// versioning: `GET /api/v1/users/:id`, and one exception filter of the app's own (`@Catch(TeapotError)`,
// answering 503 with the error's stack). Checked against a real PostgreSQL and a real UDP socket:
// - the http.server timing is named by Nest's route template (route `/api/v1/users/:id`), never by
//   the concrete IDs; Nest's own 404s outside its routes stay `unmatched`;
// - each request's SQL (a pg query in the controller, also before a throw) carries its echoed ID;
// - Nest's exception filter answers a thrown Error (500) and an HttpException (404), and the app's
//   filter its TeapotError (503, the stack in the body), exactly as without the agent (so the stack
//   has no agent frame), and Nest's logger prints the same;
// - the error each 5xx request ends in is captured as Nest's exception handling receives it, before
//   the app's filter: the requests hatch's record has its class, message and stack (the
//   controller's frame first, no agent frame), and StatsD counts one `errors` per 5xx request with
//   kind `handler`, its route and status (dogstatsd tags); the 404s are not counted.
// Nest 12 is an ES-module package: under `-r` the CommonJS app's `require('@nestjs/core')` is what
// the agent patches (src/load-hook.ts hands Nest's own imports of express and fastify over).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startApp, get, UUID, appDir } from '../support/app.mjs';
import { udpListener, statsdValues } from '../support/udp.mjs';
import { waitForLog } from '../support/pglog.mjs';

const pkg = (m) => JSON.parse(fs.readFileSync(path.join(appDir, 'node_modules', m, 'package.json'), 'utf8'));
const NEST = pkg('@nestjs/core').version;
const run = randomBytes(4).toString('hex');
const WAIT = 60_000;
// Concrete IDs no metric may contain.
const IDS = ['918273', '564738', '102938', '847561'];

// The controller, the module and the bootstrap, shared by both module forms. `common`, `NestFactory`,
// `pg`, `agent` and `fastifyAdapter()` come from the form's own header.
const BODY = `
const { Controller, Get, Param, Module, Catch, VersioningType, NotFoundException } = common;
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 3 });
const digits = (s) => String(s).replace(/[^0-9]/g, '');
const query = (what, id) => pool.query("SELECT 'nest-" + process.env.MARKER + "-" + what + "-" + digits(id) + "' AS marker");
class UsersController {
  async show(id) {
    await query('show', id);
    return { id, seen: agent ? agent.getRequestId() !== undefined : true };
  }
  async boom(id) {
    await query('boom', id);
    throw new Error('boom in the controller');
  }
  missing(id) {
    throw new NotFoundException('no user ' + id);
  }
  teapot(id) {
    throw new TeapotError('brewing ' + digits(id));
  }
}
class TeapotError extends Error {}
TeapotError.prototype.name = 'TeapotError';
// The app's own filter: its answer carries the stack, with the file name that differs from run to run cut.
let adapter;
class TeapotFilter {
  catch(exception, host) {
    const stack = String(exception.stack).split('\\n').map((l) => l.replace(/app-[0-9a-f]+\\.m?js/, 'app'));
    adapter.reply(host.switchToHttp().getResponse(), { teapot: exception.message, stack }, 503);
  }
}
Reflect.decorate([Catch(TeapotError)], TeapotFilter);
// What TypeScript emits for @Get(':id') show(@Param('id') id) and @Controller({ path, version }).
const method = (proto, name, decorators) =>
  Object.defineProperty(proto, name, Reflect.decorate(decorators, proto, name, Object.getOwnPropertyDescriptor(proto, name)));
const P = UsersController.prototype;
method(P, 'show', [Get(':id')]);
method(P, 'boom', [Get(':id/boom')]);
method(P, 'missing', [Get(':id/missing')]);
method(P, 'teapot', [Get(':id/teapot')]);
for (const name of ['show', 'boom', 'missing', 'teapot']) Param('id')(P, name, 0);
Reflect.decorate([Controller({ path: 'users', version: '1' })], UsersController);
class AppModule {}
Reflect.decorate([Module({ controllers: [UsersController] })], AppModule);
// Nest's logger, made deterministic: the message and the first line of the stack.
const first = (x) => (x instanceof Error ? String(x.stack) : String(x)).split('\\n')[0];
const logger = { log() {}, warn() {}, debug() {}, verbose() {}, error(message, stack) { console.error('nest error:', first(message), '|', first(stack)); } };
(async () => {
  const app = process.env.ADAPTER === 'fastify'
    ? await NestFactory.create(AppModule, await fastifyAdapter(), { logger })
    : await NestFactory.create(AppModule, { logger });
  adapter = app.getHttpAdapter();
  app.useGlobalFilters(new TeapotFilter());
  app.setGlobalPrefix('api');
  app.enableVersioning({ type: VersioningType.URI });
  await app.listen(0, '127.0.0.1');
  console.log('listening ' + app.getHttpServer().address().port);
})().catch((e) => { console.error('APP FAILED', e); process.exit(3); });
`;

// Without the agent the app must not load it: requiring hatch-agent starts it.
const CJS = `
require('reflect-metadata');
const common = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const pg = require('pg');
const agent = process.env.PLAIN ? null : require('hatch-agent');
const fastifyAdapter = async () => new (require('@nestjs/platform-fastify').FastifyAdapter)();
${BODY}`;

// Nest 10 and 11 are CommonJS (their exports are the namespace's default), 12 is an ES module.
const ESM = `
import 'reflect-metadata';
import { createRequire } from 'node:module';
import * as commonNs from '@nestjs/common';
import * as coreNs from '@nestjs/core';
import pg from 'pg';
const lib = (ns, name) => (ns[name] !== undefined ? ns : ns.default);
const common = lib(commonNs, 'Controller');
const { NestFactory } = lib(coreNs, 'NestFactory');
// The agent's CommonJS entry: its ES-module entry would hook imports from here on, even under -r.
const agent = process.env.PLAIN ? null : createRequire(import.meta.url)('hatch-agent');
const fastifyAdapter = async () => new (lib(await import('@nestjs/platform-fastify'), 'FastifyAdapter').FastifyAdapter)();
${BODY}`;

// [path, route tag, status]
const REQUESTS = [
  ['/api/v1/users/918273', '/api/v1/users/:id', 200],
  ['/api/v1/users/564738/boom', '/api/v1/users/:id/boom', 500],
  ['/api/v1/users/102938/missing', '/api/v1/users/:id/missing', 404],
  ['/api/users/847561', undefined, 404], // no version: Nest's 404 (Nest 12 on Express names its catch-all route)
  ['/nothing/918273', 'unmatched', 404], // outside the prefix
  ['/api/v1/users/918273/teapot', '/api/v1/users/:id/teapot', 503],
];
const FAILED = REQUESTS.filter(([, , status]) => status >= 500);
const TOKEN = 'nest-test-token-0123456789abcdef';
const auth = { authorization: `Bearer ${TOKEN}` };

/** The dogstatsd lines of `metric` whose tags end with `tags`, counted by their values. */
const count = (lines, metric, tags) =>
  statsdValues(lines.filter((l) => l.startsWith(`hatch.${metric}:`) && l.endsWith(`|#${tags}`))).reduce(
    (a, v) => a + (metric === 'errors' ? v : 1),
    0,
  );

let udp;
before(async () => {
  udp = await udpListener();
});
after(() => udp?.close());

async function answers(app) {
  const out = [];
  for (const [p] of REQUESTS) {
    const r = await get(app.url + p);
    out.push([p, r.status, r.headers['content-type'], r.body]);
  }
  return out;
}

// Under -r, an ES-module app imports Nest 12's own ES-module files: the agent sees them through
// Node's in-thread module hooks (22.22.3+, 24.11.1+, 25.1+, 26), and elsewhere (Node 20) through the
// loader thread that -r starts for an ES-module main (src/esm-thread.ts).
const MODES = [
  { key: 'cjs', name: '-r (CommonJS)', agent: true, source: CJS, ext: '.js' },
  { key: 'mjs', name: '--import (ES module)', agent: 'import', source: ESM, ext: '.mjs' },
  {
    key: 'r-mjs',
    name: '-r (ES module)',
    agent: true,
    source: ESM,
    ext: '.mjs',
  },
];

for (const adapter of ['express', 'fastify']) {
  for (const mode of MODES) {
    test(`nest@${NEST} on ${adapter} under ${mode.name}`, async (t) => {
      const marker = `${run}-${adapter}-${mode.key}`;
      const env = { ADAPTER: adapter, DATABASE_URL: process.env.DATABASE_URL, MARKER: marker };
      const plain = await startApp(mode.source, { agent: false, ext: mode.ext, env: { ...env, PLAIN: '1' } });
      const reference = await answers(plain);
      await plain.stop();

      udp.clear();
      const app = await startApp(mode.source, {
        agent: mode.agent,
        ext: mode.ext,
        env: {
          ...env,
          HATCH_STATSD: 'on',
          HATCH_STATSD_PORT: String(udp.port),
          HATCH_STATSD_FLUSH_MS: '100',
          HATCH_STATSD_TAGS: 'dogstatsd',
          HATCH_TOKEN: TOKEN,
        },
      });
      try {
        await t.test(
          "the answers, including the exception filter's, are those without the agent; the logger prints the same",
          async () => {
            const ours = await answers(app);
            assert.deepEqual(ours, reference);
            assert.equal(ours[1][1], 500);
            assert.deepEqual(JSON.parse(ours[1][3]), { statusCode: 500, message: 'Internal server error' });
            assert.equal(ours[2][1], 404);
            assert.equal(JSON.parse(ours[2][3]).message, 'no user 102938');
            assert.equal(ours[5][1], 503);
            const teapot = JSON.parse(ours[5][3]);
            assert.equal(teapot.teapot, 'brewing 918273');
            assert.match(teapot.stack[1], /at UsersController\.teapot \(/);
            assert.equal(app.stderr(), plain.stderr());
          },
        );

        await t.test("each request's SQL carries its own echoed ID, also before a throw, 10 at once", async () => {
          const n = 10;
          const rs = await Promise.all(
            Array.from({ length: n }, (_, i) =>
              get(
                `${app.url}/api/v1/users/${700 + i}${i % 2 ? '/boom' : ''}`,
                i % 3 === 0 ? { 'x-request-id': `nest-caller-${i}` } : {},
              ),
            ),
          );
          for (const [i, r] of rs.entries()) {
            const id = r.headers['x-request-id'];
            if (i % 3 === 0) assert.equal(id, `nest-caller-${i}`);
            else assert.match(id, UUID);
            assert.equal(r.status, i % 2 ? 500 : 200);
            if (i % 2 === 0) assert.deepEqual(JSON.parse(r.body), { id: String(700 + i), seen: true });
            const [line] = await waitForLog(`SELECT 'nest-${marker}-${i % 2 ? 'boom' : 'show'}-${700 + i}' AS marker`);
            // Express names the route before the handler runs; the Fastify patch only once the response finished.
            assert.match(line, new RegExp(`/\\* ${id}${adapter === 'express' ? ' GET /\\S+' : ''} \\*/ SELECT`), line);
          }
        });

        await t.test(
          "http.server timings are named by Nest's route templates, never by the IDs; one errors count per 5xx",
          async () => {
            // The requests before this one were counted first: one per 5xx request, the 5 concurrent booms included.
            const earlier = FAILED.map(([p, route, code]) => [
              `kind:handler,route:${route},status_code:${code}`,
              p.endsWith('/boom') ? 6 : 1,
            ]);
            await udp.waitFor((ls) => earlier.every(([tags, n]) => count(ls, 'errors', tags) >= n), WAIT);
            await new Promise((r) => setTimeout(r, 500));
            for (const [tags, n] of earlier) assert.equal(count(udp.lines, 'errors', tags), n, tags);
            udp.clear();
            for (const [p] of REQUESTS) await get(app.url + p);
            const want = REQUESTS.filter(([, route]) => route !== undefined);
            const done = (ls) =>
              want.every(([, route, code]) =>
                count(ls, 'http.server', `method:GET,route:${route},status_code:${code}`),
              ) &&
              FAILED.every(([, route, code]) => count(ls, 'errors', `kind:handler,route:${route},status_code:${code}`));
            await udp.waitFor(done, WAIT);
            await new Promise((r) => setTimeout(r, 500)); // more flushes: a count made twice would be here
            const lines = [...udp.lines];
            for (const l of lines.filter((x) => x.startsWith('hatch.http.server')))
              for (const id of IDS) assert.ok(!l.includes(id), `no concrete ID in ${l}`);
            const errors = lines.filter((l) => l.startsWith('hatch.errors:'));
            for (const [, route, code] of FAILED)
              assert.equal(count(errors, 'errors', `kind:handler,route:${route},status_code:${code}`), 1, `${route}`);
            assert.equal(
              statsdValues(errors).reduce((a, b) => a + b, 0),
              FAILED.length,
              `only the 5xx requests are counted: ${errors.join(' ')}`,
            );
          },
        );

        await t.test(
          "the requests hatch files the error as Nest's handler received it, before the app's filter",
          async () => {
            const ids = {};
            for (const [p] of REQUESTS) ids[p] = (await get(app.url + p)).headers['x-request-id'];
            const byPath = {};
            const deadline = Date.now() + WAIT;
            while (Object.keys(byPath).length < REQUESTS.length && Date.now() < deadline) {
              const r = await get(`${app.url}/_hatch/requests?format=json`, auth);
              assert.equal(r.status, 200, r.body);
              for (const rec of JSON.parse(r.body).recent)
                for (const [p] of REQUESTS) if (rec.id === ids[p]) byPath[p] = rec;
              if (Object.keys(byPath).length < REQUESTS.length) await new Promise((res) => setTimeout(res, 100));
            }
            const boom = byPath['/api/v1/users/564738/boom']?.error;
            assert.equal(boom?.kind, 'handler', JSON.stringify(byPath));
            assert.equal(boom.name, 'Error');
            assert.equal(boom.message, 'boom in the controller');
            assert.equal(boom.status, 500);
            assert.match(boom.stack[0], /^at UsersController\.boom \(/);
            const teapot = byPath['/api/v1/users/918273/teapot']?.error;
            assert.deepEqual(
              { kind: teapot?.kind, name: teapot?.name, message: teapot?.message, status: teapot?.status },
              { kind: 'handler', name: 'TeapotError', message: 'brewing 918273', status: 503 },
            );
            assert.match(teapot.stack[0], /^at UsersController\.teapot \(/);
            for (const e of [boom, teapot])
              for (const f of e.stack) assert.ok(!f.includes('hatch-agent'), `no agent frame: ${f}`);
            for (const [p, , code] of REQUESTS)
              if (code < 500) assert.equal(byPath[p]?.error, null, `${p}: a ${code} ends in no error`);
          },
        );
      } finally {
        await app.stop();
      }
    });
  }
}
