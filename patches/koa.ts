/**
 * Koa 2 and 3: the matched route template, as @koa/router (or koa-router) leaves it in
 * `ctx._matchedRoute` (already joined with router prefixes: `/api/users/:id`). Koa's
 * `createContext` is wrapped to hand the request's store Koa's context and `matchedRoute`, the
 * function that reads the route from it; the core calls it when the request ends (src/context.ts
 * finalRoute), so a router running after awaits is still seen, and only this file knows the router's
 * private field. Without a router, or when no route matched, the route is `unmatched`.
 *
 * Errors: Koa reports an error to the app's `error` listeners with `app.emit('error', err, ctx)`:
 * its own `ctx.onerror` does for an error no middleware caught (a non-Error thrown is wrapped in
 * Koa's `non-error thrown` Error first), and Koa's documentation has a middleware that catches and
 * answers do the same. `Application.prototype.emit` is wrapped to capture that error for the
 * request `ctx` belongs to (src/errors.ts captureErrorFor), then emits as before: the error exists
 * before, so its `err.stack` is the same, and Koa's own logging (or the app's listeners) runs
 * unchanged; only an error made inside a listener has the wrapper's frame.
 * Errors a middleware throws or rejects with, caught by the app or not, are captured where they
 * pass through koa-compose (patches/koa-compose.ts); this event adds the errors Koa itself makes.
 */
import { storage } from '../src/context';
import { captureErrorFor } from '../src/errors';
import { wrap, unwrap, type Fn } from '../src/shim';
import { log } from '../src/log';
import { fault } from '../src/fault';
import type { PatchDefinition } from '../src/registry';
import type Application from 'koa';

/** The route @koa/router matched: a template string, or a route declared as a RegExp. */
function matchedRoute(ctx: object): string | undefined {
  const route = (ctx as { _matchedRoute?: unknown })._matchedRoute;
  if (typeof route === 'string') return route;
  if (route instanceof RegExp) return String(route);
  return undefined;
}

function wrapCreateContext(original: Fn) {
  return function createContext(this: unknown) {
    const ctx = original.apply(this, arguments as unknown as unknown[]);
    try {
      fault('koa');
      const store = storage.getStore();
      if (store !== undefined && ctx !== null && typeof ctx === 'object') {
        store.routeSource = ctx;
        store.routeResolver = matchedRoute;
      }
    } catch (err) {
      log.warnOnce('koa-context', `koa: keeping the context failed: ${(err as Error).message}`);
    }
    return ctx;
  };
}

function wrapEmit(original: Fn) {
  return function emit(this: unknown, event: unknown, err: unknown, ctx: unknown) {
    if (event === 'error') {
      try {
        fault('koa-error');
        captureErrorFor(ctx !== null && typeof ctx === 'object' ? (ctx as { req?: unknown }).req : undefined, err);
      } catch (e) {
        log.warnOnce('koa-error', `koa: capturing an error failed: ${(e as Error).message}`);
      }
    }
    return original.apply(this, arguments as unknown as unknown[]);
  };
}

export const koa: PatchDefinition = {
  module: 'koa',
  feature: 'koa',
  versions: ['2.0.0', '4.0.0'],
  patch(Koa: typeof Application) {
    if (!wrap(Koa.prototype, 'createContext', wrapCreateContext))
      throw new Error('Application.prototype.createContext not found');
    wrap(Koa.prototype, 'emit', wrapEmit);
  },
  unpatch(Koa: typeof Application) {
    unwrap(Koa.prototype, 'createContext');
    unwrap(Koa.prototype, 'emit');
  },
};
