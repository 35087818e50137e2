/**
 * Koa 2 and 3: the matched route template, as @koa/router (or koa-router) leaves it in
 * `ctx._matchedRoute` (already joined with router prefixes: `/api/users/:id`). Koa's
 * `createContext` is wrapped to hand the request's store Koa's context and `matchedRoute`, the
 * function that reads the route from it; the core calls it when the request ends (src/context.ts
 * finalRoute), so a router running after awaits is still seen, and only this file knows the router's
 * private field. Without a router, or when no route matched, the route is `unmatched`.
 */
import { storage } from '../src/context';
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

export const koa: PatchDefinition = {
  module: 'koa',
  feature: 'koa',
  versions: ['2.0.0', '4.0.0'],
  patch(Koa: typeof Application) {
    if (!wrap(Koa.prototype, 'createContext', wrapCreateContext))
      throw new Error('Application.prototype.createContext not found');
  },
  unpatch(Koa: typeof Application) {
    unwrap(Koa.prototype, 'createContext');
  },
};
