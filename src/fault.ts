/**
 * Test-only fault injection, for test/reliability/agent-faults.test.mjs. Not a user setting and
 * not in the README: HATCH_TEST_FAULT=<name> (read once, when the agent loads) makes `fault(name)`
 * throw inside the agent-side part of the wrapper that calls it, so a test can prove every wrapper
 * survives its own failure (the app's call completes as without the agent, and one line is logged).
 *
 * Names: http-server, http-server-close, http-server-echo, http2-server, http2-server-close,
 * http2-server-echo (these three tested in test/patches/http2-server.test.mjs), http-client, http-client-emit, pg-query, pg-connect,
 * pg-pool-connect, pg-cursor, express-use, express-handle, express-route, express-render, fastify,
 * koa, render (any template engine's timing, ejs/pug/handlebars/nunjucks), pino, winston,
 * undici-create, undici-headers, undici-end.
 *
 * Cost when unset: each call site is one comparison of a module constant with `undefined`.
 */
const FAULT: string | undefined = process.env.HATCH_TEST_FAULT || undefined;

export function fault(name: string): void {
  if (FAULT !== undefined && FAULT === name) throw new Error(`hatch-agent test fault: ${name}`);
}
