/**
 * hapi 20.1.2 to 21 (`@hapi/hapi`): the matched route template, and 5xx errors answered with Boom.
 * (hapi 20.0.0 to 20.1.1 cannot answer a 404 on Node 20 at all, agent or not: the range starts after.)
 *
 * `Hapi.server` and `Hapi.Server` (one function in both majors) are wrapped to add two of hapi's
 * own request extensions to each server they return; nothing inside hapi is wrapped:
 * - `onRequest` (the first step of every request, before routing) hands the request's store a
 *   small adapter as its `routeSource`, with this patch's `routeResolver`; the core reads the route
 *   through them when the response closes, so a request the client gave up on mid-handler is still named. The name is
 *   hapi's own template, `request.route.path`, with plugin prefixes already joined
 *   (`/api/items/{id}`). hapi answers a request no route took (and one it rejected before
 *   routing) with its special `notFound`/`badRequest` routes, whose method is `_special`: those
 *   stay `unmatched`.
 * - `onPreResponse` captures a response that is a Boom error with status >= 500 (a handler that
 *   threw, `Boom.badImplementation`, a plain Error hapi wrapped) as the error the request ends in
 *   (src/errors.ts captureError), once per request. Nothing is printed: hapi prints its own debug
 *   line for such errors, and the app's stderr must stay its own.
 *
 * Both exts return `h.continue` and touch nothing the app sees. They act only when the current
 * store belongs to this hapi request (the adapter points back to it), so a `server.inject()` made
 * inside another request neither renames nor adds errors to the outer one.
 *
 * Limitations: our `onPreResponse` is the server's first, so it sees the handler's error before an
 * app's own onPreResponse turns it into an error page, but not a 5xx that a later onPreResponse
 * makes. A server made before the agent loaded (impossible with `-r`/`--import`) is not seen.
 */
import { storage, type RequestContext } from '../src/context';
import { captureError } from '../src/errors';
import { wrap, unwrap, type Fn } from '../src/shim';
import { log } from '../src/log';
import { fault } from '../src/fault';
import type { PatchDefinition } from '../src/registry';

interface HapiRequest {
  route?: { method?: unknown; path?: unknown };
  response?: unknown;
}
interface Toolkit {
  continue: symbol;
}
interface HapiServer {
  ext?(event: string, method: (request: HapiRequest, h: Toolkit) => unknown): unknown;
}
interface Hapi {
  server?: (...args: never[]) => HapiServer;
  Server?: (...args: never[]) => HapiServer;
}

/** What the request's store reads its route from, when the response closes. */
class HapiRoute {
  reported = false;
  constructor(readonly request: HapiRequest) {}
  get template(): string | undefined {
    try {
      const route = this.request.route;
      // `_special`: hapi's notFound and badRequest routes (`/{p*}`), taken by no route of the app.
      if (route === undefined || route.method === '_special') return undefined;
      return typeof route.path === 'string' && route.path !== '' ? route.path : undefined;
    } catch {
      return undefined;
    }
  }
}

/** The request context's route resolver (src/context.ts finalRoute): one module-level function, no closure per request. */
function resolveRoute(source: object): string | undefined {
  return source instanceof HapiRoute ? source.template : undefined;
}

/** The adapter of this request, when the current store is this request's. */
function ownRoute(request: HapiRequest): HapiRoute | undefined {
  const source = storage.getStore()?.routeSource;
  return source instanceof HapiRoute && source.request === request ? source : undefined;
}

function onRequest(request: HapiRequest, h: Toolkit): symbol {
  try {
    fault('hapi');
    const store: RequestContext | undefined = storage.getStore();
    // An inner request (server.inject inside a handler) finds its outer request's source set.
    if (store !== undefined && store.routeSource === undefined) {
      store.routeSource = new HapiRoute(request);
      store.routeResolver = resolveRoute;
    }
  } catch (err) {
    log.warnOnce('hapi-route', `hapi: naming a route failed: ${(err as Error).message}`);
  }
  return h.continue;
}

type Boomish = Error & { isBoom?: unknown; output?: { statusCode?: unknown } };

function onPreResponse(request: HapiRequest, h: Toolkit): symbol {
  try {
    fault('hapi-error');
    const response = request.response as Boomish | null | undefined;
    if (response instanceof Error && response.isBoom === true) {
      const status = response.output?.statusCode;
      const own = typeof status === 'number' && status >= 500 ? ownRoute(request) : undefined;
      if (own !== undefined && !own.reported) {
        own.reported = true;
        captureError(response);
      }
    }
  } catch (err) {
    log.warnOnce('hapi-error', `hapi: recording an error failed: ${(err as Error).message}`);
  }
  return h.continue;
}

const SEEN = new WeakSet<object>();

function instrument(server: HapiServer): void {
  try {
    fault('hapi-server');
    if (server === null || typeof server !== 'object' || typeof server.ext !== 'function' || SEEN.has(server)) return;
    SEEN.add(server);
    server.ext('onRequest', onRequest);
    server.ext('onPreResponse', onPreResponse);
  } catch (err) {
    log.warnOnce('hapi-server', `hapi: adding the route and error extensions failed: ${(err as Error).message}`);
  }
}

function wrapFactory(original: Fn) {
  // A plain function: `Hapi.server(o)` and `new Hapi.Server(o)` both return hapi's server object.
  return function server(this: unknown) {
    const result = original.apply(this, arguments as unknown as unknown[]) as HapiServer;
    instrument(result);
    return result;
  };
}

export const hapi: PatchDefinition<Hapi> = {
  module: '@hapi/hapi',
  feature: 'hapi',
  versions: ['20.1.2', '22.0.0'],
  patch(exports) {
    const a = wrap(exports, 'server', wrapFactory);
    const b = wrap(exports, 'Server', wrapFactory);
    if (!a && !b) throw new Error('server/Server not found');
  },
  unpatch(exports) {
    unwrap(exports, 'server');
    unwrap(exports, 'Server');
  },
};
