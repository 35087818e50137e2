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
 * Limitations: an instance created before the agent starts (impossible with `-r`), or while it is
 * stopped, is not seen; a request whose client went away before its response finished is `unmatched`
 * (Fastify runs no onResponse hook for it).
 */
import * as dc from 'node:diagnostics_channel';
import { setRoute } from '../src/context';
import { log } from '../src/log';
import { fault } from '../src/fault';
import type { PatchDefinition } from '../src/registry';

const init = dc.channel('fastify.initialization');

interface FastifyRequest {
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

function onInit(message: unknown): void {
  try {
    const instance = (message as { fastify?: { addHook?: (name: string, hook: typeof onResponse) => unknown } })
      .fastify;
    if (typeof instance?.addHook === 'function') instance.addHook('onResponse', onResponse);
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
