/**
 * The request context, kept in one AsyncLocalStorage shared by every copy of the agent loaded in
 * the process (a global symbol), so an app that imports the API from a second copy still sees it.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { isValidRequestId, newRequestId } from './request-id';
import { log } from './log';
import { channels } from './bus';
import { now } from './clock';

export interface RequestContext {
  /** Always an allowlisted ID. */
  readonly id: string;
  /** performance.now() when the request (or withRequestId) began. */
  readonly start: number;
  /** Route template; set by framework patches, `unmatched` until then. */
  route: string | undefined;
  /**
   * For a framework that names the route only once routing is done (Koa with @koa/router): its
   * object, and the framework patch's function that reads the route from it when the request ends.
   * A module-level function and the framework's own object: nothing is allocated per request.
   */
  routeSource?: object | undefined;
  routeResolver?: ((source: object) => string | undefined) | undefined;
  /** The incoming request (node:http's IncomingMessage), for the route readers when the request ends. */
  req?: object | undefined;
  /**
   * The first error a framework patch captured for this request (src/errors.ts captureError), held
   * until the request ends and is recorded; dropped with the context.
   */
  error?: unknown;
  /** Renders in flight for this request (1 or 0): a render started meanwhile is part of that page. */
  rendering?: number;
}

const MAX_ROUTE = 200;

/** Sets the current request's route template (trimmed to a bounded length); never throws. */
export function setRoute(template: string): void {
  const store = storage.getStore();
  if (store !== undefined) store.route = template.length > MAX_ROUTE ? template.slice(0, MAX_ROUTE) : template;
}

/**
 * Framework patches that name the route from the request object itself when it ends (Express:
 * `req.route`), so that nothing of theirs runs on the request's path (and no agent frame lands in
 * the app's stack traces). Each returns undefined for a request it did not route.
 */
type RouteReader = (req: object) => string | undefined;
const routeReaders: RouteReader[] = [];
export function addRouteReader(reader: RouteReader): void {
  if (!routeReaders.includes(reader)) routeReaders.push(reader);
}
export function removeRouteReader(reader: RouteReader): void {
  const i = routeReaders.indexOf(reader);
  if (i !== -1) routeReaders.splice(i, 1);
}

function bounded(route: string): string {
  return route.length > MAX_ROUTE ? route.slice(0, MAX_ROUTE) : route;
}

/** The route a request ends with: a framework's template, or `unmatched`. */
export function finalRoute(ctx: RequestContext): string {
  if (ctx.route !== undefined) return ctx.route;
  const source = ctx.routeSource;
  const resolve = ctx.routeResolver;
  if (source !== undefined && resolve !== undefined) {
    const late = resolve(source);
    if (typeof late === 'string' && late !== '') return bounded(late);
  }
  const req = ctx.req;
  if (req !== undefined) {
    for (let i = 0; i < routeReaders.length; i++) {
      const late = routeReaders[i]!(req);
      if (typeof late === 'string' && late !== '') return bounded(late);
    }
  }
  return 'unmatched';
}

/**
 * At a request's end (its response's or stream's 'close'): the route is fixed as it ends (`route`
 * when the caller has it already), and the request's objects are let go. A context outlives its
 * request: a timer started in it, and on Node 24 and 26 the keep-alive timeout Node starts for the
 * connection in it, hold the context until the connection's next request, and Koa's context or
 * hapi's request (routeSource), or node:http's own request, would keep the whole finished request
 * (its headers, its body, the response) alive with it on every idle keep-alive connection. Work the
 * request started that runs on (a query after the response) still sees the route.
 */
export function endRequest(ctx: RequestContext, route?: string): void {
  // Worked out here only when something could still name it: with no framework source and no route
  // reader, finalRoute answers `unmatched` after the release as before it (plain node:http, no sink).
  if (ctx.route === undefined) {
    if (route !== undefined) ctx.route = route;
    else if (ctx.routeSource !== undefined || (ctx.req !== undefined && routeReaders.length > 0))
      ctx.route = finalRoute(ctx);
  }
  ctx.routeSource = undefined;
  ctx.routeResolver = undefined;
  ctx.req = undefined;
}

const KEY = Symbol.for('hatch-agent.storage');
type Holder = { [KEY]?: AsyncLocalStorage<RequestContext> };
const holder = globalThis as Holder;
export const storage: AsyncLocalStorage<RequestContext> = holder[KEY] ?? (holder[KEY] = new AsyncLocalStorage());

/** The ID of the request (or withRequestId scope) this code runs for, if any. */
export function getRequestId(): string | undefined {
  return storage.getStore()?.id;
}

/**
 * Runs `fn` with `id` as the current request ID (for scripts and queue workers).
 * An ID outside the allowlist is replaced by a new UUID rather than thrown at the caller.
 */
export function withRequestId<T>(id: string, fn: () => T): T {
  let safe = id;
  if (!isValidRequestId(id)) {
    safe = newRequestId();
    log.warnOnce(
      'withRequestId',
      `withRequestId: the ID is outside the allowlist [A-Za-z0-9._:-]{1,128}; a new one (${safe}) was used instead`,
    );
    if (channels.error.hasSubscribers) channels.error.publish({ kind: 'invalid_request_id' });
  }
  // The requests store files requests and jobs; a scope that no record will ever end is announced,
  // so that its queries are not held in flight until later scopes push them out (README). A scope
  // under its own request's ID is that request's, and stays so.
  if (channels.scope.hasSubscribers && storage.getStore()?.id !== safe) channels.scope.publish({ requestId: safe });
  return storage.run({ id: safe, start: now(), route: undefined }, fn);
}

/**
 * Binds fn to the current request context: when it runs later (from a pool queue or a socket
 * callback), it sees the store of the code that created it, not of whatever resumed it.
 * Lighter than AsyncResource.bind (no async resource per call); `this` and arguments pass through.
 */
export function bindContext<F extends (...args: never[]) => unknown>(fn: F): F {
  const store = storage.getStore();
  // callIn's two paths, written out here: the arguments go straight to Reflect.apply when the
  // context is already the right one (a pool's callback on its own request's tick), and no
  // arguments object is made for a call to callIn (64 bytes a /db request).
  return function (this: unknown) {
    if (storage.getStore() === store) return Reflect.apply(fn as Callable, this, arguments);
    return storage.run(store as RequestContext, Reflect.apply, fn, this, arguments);
  } as unknown as F;
}

/**
 * Any function, as Reflect.apply takes it: callers hand over callbacks of every shape (src/render.ts
 * holds them as `AnyFunction`), and callIn only forwards `this` and the arguments.
 */
type Callable = Parameters<typeof Reflect.apply>[0];

/**
 * Calls fn in `store`'s context. Called back in that same context already (a pool with an idle
 * client answers on nextTick, ejs answers a cached template at once), it is called directly: a run
 * would, on Node 22+, build a new context frame (a Map) for nothing.
 */
export function callIn(
  store: RequestContext | undefined,
  fn: Callable,
  self: unknown,
  args: ArrayLike<unknown>,
): unknown {
  if (storage.getStore() === store) return Reflect.apply(fn, self, args);
  return storage.run(store as RequestContext, Reflect.apply, fn, self, args);
}
