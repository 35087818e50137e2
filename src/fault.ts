/**
 * Test-only fault injection, for test/reliability/agent-faults.test.mjs. Not a user setting and
 * not in the README: HATCH_TEST_FAULT=<name> (read once, when the agent loads) makes `fault(name)`
 * throw inside the agent-side part of the wrapper that calls it, so a test can prove every wrapper
 * survives its own failure (the app's call completes as without the agent, and one line is logged).
 *
 * FAULT_POINTS is the one list of names: `fault()` accepts no other (a call site with a new name
 * does not compile until the name is added here), and the test reads the list from the installed
 * package, so a point added here is tested without touching the test; the test fails if a point
 * in the list is reached by nothing.
 *
 * Cost when unset: each call site is one comparison of a module constant with `undefined`.
 */
export const FAULT_POINTS = [
  'http-server',
  'http-server-close',
  'http-server-echo', // patches/http-server/
  'http2-server',
  'http2-server-close',
  'http2-server-echo', // patches/http2-server.ts
  'http-client',
  'http-client-emit', // patches/http-client.ts
  'pg-query',
  'pg-connect',
  'pg-pool-connect',
  'pg-cursor', // patches/pg/
  'undici-create',
  'undici-headers',
  'undici-end', // patches/undici.ts
  'express-use',
  'express-read',
  'express-route',
  'express-render',
  'express-error', // patches/express.ts
  'finalhandler', // patches/finalhandler.ts
  'fastify',
  'fastify-error',
  'koa',
  'koa-error', // patches/fastify.ts, koa.ts
  'koa-compose', // patches/koa-compose.ts
  'hapi-server',
  'hapi',
  'hapi-error', // patches/hapi.ts
  'render', // src/render.ts: any template engine's timing (ejs, pug, handlebars, nunjucks)
  'pino',
  'winston', // patches/pino.ts, winston.ts
] as const;

export type FaultPoint = (typeof FAULT_POINTS)[number];

const FAULT: string | undefined = process.env.HATCH_TEST_FAULT || undefined;

export function fault(name: FaultPoint): void {
  if (FAULT !== undefined && FAULT === name) throw new Error(`hatch-agent test fault: ${name}`);
}
