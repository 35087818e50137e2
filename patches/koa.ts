/**
 * Koa 2 and 3: the matched route template, as @koa/router (or koa-router) leaves it in
 * `ctx._matchedRoute` (already joined with router prefixes: `/api/users/:id`). Koa's
 * `createContext` is wrapped to keep its context on the request's store; the route is read from it
 * when the request ends, so a router running after awaits is still seen. Without a router, or when
 * no route matched, the route is `unmatched`.
 */
import { storage } from '../src/context';
import { wrap, unwrap } from '../src/shim';
import { log } from '../src/log';
import { fault } from '../src/fault';
import type { PatchDefinition } from '../src/registry';

function wrapCreateContext(original: (...args: any[]) => any) {
  return function createContext(this: unknown) {
    const ctx = original.apply(this, arguments as any);
    try {
      fault('koa');
      const store = storage.getStore();
      if (store !== undefined && ctx !== null && typeof ctx === 'object') store.routeSource = ctx;
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
  patch(Koa: any) {
    if (!wrap(Koa.prototype, 'createContext', wrapCreateContext)) throw new Error('Application.prototype.createContext not found');
  },
  unpatch(Koa: any) {
    unwrap(Koa.prototype, 'createContext');
  },
};
