/**
 * NestJS 10 to 12 (`@nestjs/core`): the error a request ends in, as Nest's exception handling
 * receives it, on every adapter (platform-express, platform-fastify).
 *
 * Nest catches what a controller, guard, pipe, interceptor or Nest middleware throws (or rejects
 * with) in its router proxy and hands it to the route's `ExceptionsHandler.next(exception, host)`,
 * which runs the app's `@Catch` filters and else its built-in filter, and answers. The framework's
 * own error path (Express's `next(err)`, Fastify's `onError`) never sees it. `next` is where every
 * filter's input passes, before any filter runs: the patch wraps it and calls `captureError` with
 * the exception (src/errors.ts keeps the first; the http server patch records it if the status is
 * 500 or above, so an HttpException of 4xx is not counted). Nothing else changes: the filters get
 * the same arguments, and what they answer is sent as it is.
 *
 * How it is reached: `ExceptionsHandler` and `RouterProxy` are not exported from Nest's main entry,
 * and Nest 12 is an ES-module package whose internal files no hook sees under `-r`. The main entry
 * exports `NestApplication`: its `init` is wrapped to look, before it registers any route, at the
 * app's router proxy (`routesResolver.routerProxy`); the proxy's class gets `createProxy` and
 * `createExceptionLayerProxy` wrapped, and the first exceptions handler passed to them has its
 * class's `next` wrapped (one class for every route, Nest middleware and the not-found route).
 * These wrappers sit on the prototypes, so every app made afterwards is covered too.
 *
 * Stacks: an exception's stack was taken where it was made, so it has no agent frame. While a
 * filter runs, the `next` wrapper is one frame below it: an Error a filter itself makes shows
 * `ExceptionsHandler.next` once more (from this file). Nest's router proxy wraps no handler of
 * ours: the proxy functions Nest builds are returned as they are.
 *
 * Limitations: an error a filter throws is Nest's to answer (not captured again: the first one is
 * the cause). A Nest 12 app that is itself an ES module, started with `-r`, imports Nest's own
 * ES-module files, which only Node's in-thread module hooks show the agent (src/load-hook.ts, 3.:
 * Node 22.22.3+, 24.11.1+, 26); on Node 20 its errors are not captured (start it with `--import`;
 * the route templates still come from Express's and Fastify's patches). Microservice and
 * WebSocket exception handlers are not HTTP requests and are left alone.
 */
import { captureError } from '../src/errors';
import { wrap, unwrap, type Fn } from '../src/shim';
import { log } from '../src/log';
import type { PatchDefinition } from '../src/registry';

interface NestCore {
  NestApplication?: { prototype?: object };
}

type Make = (original: Fn) => Fn;
/** The prototypes this run wrapped, with the names wrapped on each: what unpatch undoes. */
let wrapped: Array<[object, string]> = [];
/**
 * Every prototype ever wrapped, kept across a stop: an app initialised before the stop calls
 * `init` no more, so the next start wraps these again at once.
 */
const known: Array<[object, string, Make]> = [];

function wrapOnce(proto: object, name: string, make: Make): void {
  if (!wrap(proto, name, make)) return;
  wrapped.push([proto, name]);
  if (!known.some(([p, n]) => p === proto && n === name)) known.push([proto, name, make]);
}

function wrapNext(original: Fn) {
  return function next(this: unknown, exception: unknown) {
    captureError(exception);
    return original.apply(this, arguments as unknown as unknown[]);
  };
}

/** The class of the exceptions handler Nest passes with a route's callback: its `next` captures. */
function seeHandler(handler: unknown): void {
  try {
    if (handler === null || typeof handler !== 'object') return;
    // The class that declares `next` (ExceptionsHandler), not an app's subclass of it.
    for (let p = Object.getPrototypeOf(handler) as object | null; p !== null; p = Object.getPrototypeOf(p)) {
      if (Object.prototype.hasOwnProperty.call(p, 'next')) {
        if (typeof (p as { next?: unknown }).next === 'function') wrapOnce(p, 'next', wrapNext);
        return;
      }
    }
  } catch (err) {
    log.warnOnce('nest-handler', `@nestjs/core: wrapping the exceptions handler failed: ${(err as Error).message}`);
  }
}

function wrapCreate(original: Fn) {
  return function createProxy(this: unknown, _callback: unknown, exceptionsHandler: unknown) {
    seeHandler(exceptionsHandler);
    return original.apply(this, arguments as unknown as unknown[]);
  };
}

function wrapInit(original: Fn) {
  return function init(this: unknown) {
    try {
      const proxy = (this as { routesResolver?: { routerProxy?: unknown } } | null)?.routesResolver?.routerProxy;
      const proto =
        proxy !== null && typeof proxy === 'object' ? (Object.getPrototypeOf(proxy) as object | null) : null;
      if (proto !== null) {
        wrapOnce(proto, 'createProxy', wrapCreate);
        wrapOnce(proto, 'createExceptionLayerProxy', wrapCreate);
      } else log.warnOnce('nest-proxy', "@nestjs/core: the app's router proxy was not found; errors are not captured");
    } catch (err) {
      log.warnOnce('nest-proxy', `@nestjs/core: wrapping the router proxy failed: ${(err as Error).message}`);
    }
    return original.apply(this, arguments as unknown as unknown[]);
  };
}

export const nest: PatchDefinition = {
  module: '@nestjs/core',
  feature: 'nest',
  versions: ['10.0.0', '13.0.0'],
  patch(core: NestCore) {
    const proto = core.NestApplication?.prototype;
    if (proto === undefined || !wrap(proto, 'init', wrapInit))
      throw new Error('NestApplication.prototype.init not found');
    for (const [p, name, make] of known) wrapOnce(p, name, make);
  },
  unpatch(core: NestCore) {
    const proto = core.NestApplication?.prototype;
    if (proto !== undefined) unwrap(proto, 'init');
    for (const [p, name] of wrapped.reverse()) unwrap(p, name);
    wrapped = [];
  },
};
