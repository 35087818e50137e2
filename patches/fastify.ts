/**
 * Fastify 4 and 5: the matched route template. Fastify publishes every new instance on the
 * `fastify.initialization` diagnostics channel; the agent subscribes (once fastify is loaded, in
 * range) and adds one `onResponse` hook to the root instance, which names the route from
 * `request.routeOptions.url` (`request.routerPath` on early 4.x releases that lack routeOptions).
 * Requests no route took (Fastify's 404 handler) stay `unmatched`.
 * `onResponse`, not `onRequest`: Fastify runs it once the response has finished, off the handler's
 * path. A hook before the handler changes how Fastify calls the handler, and puts Fastify's hook
 * runner and the agent's hook in the stack of every error the handler throws. The route is read at
 * the response's 'finish', before the request is recorded at its 'close'.
 * A patch, not a subscriber (src/registry.ts), although it wraps nothing: its subscription must wait
 * for fastify to be required, so that fastify's version is known and checked against the range
 * (an unsupported fastify is left alone and reported like any module), and it is undone by unpatch.
 * Errors: the same instance gets one `onError` hook, which Fastify runs for an error a route
 * handler or a hook threw, rejected or passed to `done` (before the app's error handler answers):
 * it captures the error as the one the request ends in (src/errors.ts captureErrorFor) and lets
 * Fastify go on at once, in the same tick (GO_ON below). Fastify answers, logs and runs the app's
 * error handlers as before; the error exists before the hook runs, so its `err.stack` is the same.
 * While the app's error handler runs, Fastify's hook runner and the agent's `then` are on the stack
 * (an error made inside an error handler, or Fastify 4.0's own crash on a thrown `null`, shows
 * their frames).
 * Limitations: an instance created before the agent starts (impossible with `-r`), or while it is
 * stopped, is not seen; a request whose client went away before its response finished is `unmatched`
 * (Fastify runs no onResponse hook for it). An error a custom error handler itself throws goes to
 * Fastify's parent handler without the onError hooks: the first error is the one kept anyway.
 */
import * as dc from 'node:diagnostics_channel';
import { setRoute } from '../src/context';
import { captureErrorFor } from '../src/errors';
import { log } from '../src/log';
import { fault } from '../src/fault';
import type { PatchDefinition } from '../src/registry';

const init = dc.channel('fastify.initialization');

interface FastifyRequest {
  raw?: unknown;
  routeOptions?: { url?: unknown };
  routerPath?: unknown;
  is404?: boolean;
}

function onResponse(request: FastifyRequest, _reply: unknown, done: () => void): void {
  try {
    fault('fastify');
    const options = request.routeOptions;
    // routerPath is read only where routeOptions does not exist: later 4.x warn when it is read.
    const url = options !== undefined ? options.url : request.routerPath;
    if (typeof url === 'string' && url !== '' && request.is404 !== true) setRoute(url);
  } catch (err) {
    log.warnOnce('fastify-route', `fastify: naming a route failed: ${(err as Error).message}`);
  }
  done();
}

/**
 * What the onError hook returns: a thenable that goes on at once. Fastify's hook runner calls a
 * hook inside a try/catch but a returned thenable's `then` after it, so the app's error handler runs
 * in the same tick and an exception it throws goes where it went without the hook (calling `done()`
 * from the hook instead would put the error handler inside that try/catch: Fastify would answer an
 * error handler's throw with its parent handler, where the app crashed before). One shared object.
 */
const GO_ON = Object.freeze({
  then(resolve: (value?: unknown) => void): void {
    resolve();
  },
});

function onError(request: FastifyRequest, _reply: unknown, error: unknown): typeof GO_ON {
  try {
    fault('fastify-error');
    captureErrorFor(request.raw, error);
  } catch (err) {
    log.warnOnce('fastify-error', `fastify: capturing an error failed: ${(err as Error).message}`);
  }
  return GO_ON;
}

function onInit(message: unknown): void {
  try {
    const instance = (message as { fastify?: { addHook?: (name: string, hook: unknown) => unknown } }).fastify;
    if (typeof instance?.addHook === 'function') {
      instance.addHook('onResponse', onResponse);
      instance.addHook('onError', onError);
    }
  } catch (err) {
    log.warnOnce('fastify-init', `fastify: adding the route hook failed: ${(err as Error).message}`);
  }
}

export const fastify: PatchDefinition = {
  module: 'fastify',
  feature: 'fastify',
  versions: ['4.0.0', '6.0.0'],
  patch() {
    init.subscribe(onInit);
  },
  unpatch() {
    init.unsubscribe(onInit);
  },
};
