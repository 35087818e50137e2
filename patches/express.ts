/**
 * Express 4 and 5: the matched route template, and `res.render`/`app.render` timing.
 *
 * Routes: nothing runs on the request's path, so no agent frame sits between Express and the app's
 * handlers (a per-request wrapper of Layer.handle_request and Route.dispatch put two there, and pushed
 * the app's own frames out of Node's 10-frame stacks). Instead, when the app declares them, a
 * router's `route(path)` records on the Route the router it belongs to, and `use(path, …)` records on
 * each router or app it mounts where it is mounted (the parent router, the path, the layer). When the
 * request ends (src/context.ts finalRoute), the route Express matched last (`req.route`) is joined
 * with the mounts above its router: `app.use('/api', r1); r1.use('/users', r2); r2.get('/:id')` →
 * `/api/users/:id`. An app's router is found through `req.app` and its parents, and a sub-app
 * mounted with `app.use(path, subApp)` through the `mountpath` and `parent` Express sets. A router
 * mounted at several places is named by the mount whose layer matches `req.baseUrl`.
 * Requests no route took (404s, static files) stay `unmatched`. Express's objects are reached
 * through its exports (`express.Router`, `express.application`), so no internal file is required by path.
 *
 * Render: `express.application.render` (which `res.render` calls) is timed from call to its callback,
 * with the engine named by the view's extension or the `view engine` setting, and the template
 * relative to the `views` folder. The engine's own render runs nested inside and is not counted again.
 *
 * Errors: an error on its way to an error middleware (a handler or middleware threw, passed
 * `next(err)`, or, on Express 5, rejected) passes through the Layer's error path
 * (`Layer.prototype.handle_error` on Express 4, `handleError` in Express 5's router), which is
 * wrapped to capture it (src/errors.ts captureErrorFor) before Express goes on as before. The Layer
 * class is not exported: it is found as the prototype of the first layer `use` or `route` adds to a
 * router. An error no error middleware answers reaches finalhandler, which has its own patch
 * (patches/finalhandler.ts). Only errors that already exist pass there, so their `err.stack` is the
 * same; while an app's error middleware runs, the wrapper's frame is on the stack (an error made
 * inside an error middleware has one more frame per layer the error passed).
 *
 * Limitations: a path given as a RegExp or an array is shown as written (`/^\/a/`, `/a,/b`); a
 * sub-app's route whose handler called `next()` out of the sub-app (the parent answering) lacks the
 * sub-app's mount, since `req.app` is the parent again by then.
 */
import * as path from 'node:path';
import { addRouteReader, removeRouteReader } from '../src/context';
import { argsOf, engineName, runRender, templateName } from '../src/render';
import { wrap, unwrap, type Fn } from '../src/shim';
import { captureErrorFor } from '../src/errors';
import { log } from '../src/log';
import { fault } from '../src/fault';
import type { PatchDefinition } from '../src/registry';
import type ExpressModule from 'express';

const OWNER = Symbol('hatch-agent.owner');
const MOUNTS = Symbol('hatch-agent.mounts');

/** Where a router (or an app, used as a router's handler) is mounted: the router that holds the layer. */
interface Mount {
  parent: object;
  template: string;
  layer: { match?(path: string): unknown; path?: unknown } | undefined;
}
type Mountable = { [MOUNTS]?: Mount[] };
type RouteObj = { path?: unknown; [OWNER]?: object };
interface App {
  parent?: App;
  mountpath?: unknown;
  _router?: object;
  router?: object;
  [MOUNTS]?: Mount[];
}
interface Req {
  route?: RouteObj;
  app?: App;
  baseUrl?: unknown;
}

function pathText(p: unknown): string {
  if (typeof p === 'string') return p;
  if (Array.isArray(p)) return p.map(pathText).join(',');
  return String(p);
}

/** Joins mount templates and a route path: ['/api', '/users/'] + '/:id' → '/api/users/:id'. */
export function joinRoute(mounts: readonly string[] | undefined, route: string): string {
  let out = '';
  if (mounts !== undefined) for (const m of mounts) out += m.endsWith('/') ? m.slice(0, -1) : m;
  if (route !== '/' || out === '') out += route;
  return out.replace(/\/{2,}/g, '/');
}

// The Layer prototypes found (Express 4's, or its router's; a second copy of Express brings its
// own): wrapped while patched, unwrapped by unpatch and wrapped again by the next patch, since the
// app declares its routes once.
const layerProtos = new Set<object>();
let patched = false;

function wrapHandleError(original: Fn) {
  return function handle_error(this: unknown, error: unknown, req: unknown) {
    try {
      fault('express-error');
      captureErrorFor(req, error);
    } catch (err) {
      log.warnOnce('express-error', `express: capturing an error failed: ${(err as Error).message}`);
    }
    return original.apply(this, arguments as unknown as unknown[]);
  };
}

/** Wraps the error path of the class of the layers a router holds from `from` on (once per class). */
function watchLayers(stack: unknown, from: number): void {
  if (!patched || !Array.isArray(stack)) return;
  for (let i = Math.max(0, from); i < stack.length; i++) {
    const layer: unknown = stack[i];
    if (layer === null || typeof layer !== 'object') continue;
    const proto = Object.getPrototypeOf(layer) as object | null;
    if (proto === null || layerProtos.has(proto)) continue;
    if (wrapLayer(proto)) layerProtos.add(proto);
  }
}

function wrapLayer(proto: object): boolean {
  const name = typeof (proto as { handleError?: unknown }).handleError === 'function' ? 'handleError' : 'handle_error';
  return wrap(proto, name, wrapHandleError);
}

// Registration time: `use` records, on each function it mounts (a router, an app, a middleware), the
// router it was mounted on and the path; `route` records the router a route belongs to.
function wrapUse(original: Fn) {
  return function use(this: { stack?: Array<{ handle?: unknown }> }, first: unknown) {
    const before = Array.isArray(this?.stack) ? this.stack.length : -1;
    const result = original.apply(this, arguments as unknown as unknown[]);
    try {
      fault('express-use');
      if (before >= 0) {
        watchLayers(this.stack, before);
        const pathless = typeof first === 'function' || (Array.isArray(first) && typeof first[0] === 'function');
        const template = pathless ? '/' : pathText(first);
        for (let i = before; i < this.stack!.length; i++) {
          const layer = this.stack![i]!;
          const handle: unknown = layer.handle;
          // Routers and apps only (both have `handle`): a plain middleware is never a route's parent.
          if (typeof handle !== 'function' || typeof (handle as unknown as { handle?: unknown }).handle !== 'function')
            continue;
          ((handle as Mountable)[MOUNTS] ??= []).push({ parent: this, template, layer: layer as Mount['layer'] });
        }
      }
    } catch (err) {
      log.warnOnce('express-use', `express: recording a mount failed: ${(err as Error).message}`);
    }
    return result;
  };
}

function wrapRoute(original: Fn) {
  return function route(this: { stack?: unknown[] }) {
    const result = original.apply(this, arguments as unknown as unknown[]);
    try {
      fault('express-route');
      if (result !== null && typeof result === 'object') (result as RouteObj)[OWNER] = this;
      if (Array.isArray(this.stack)) watchLayers(this.stack, this.stack.length - 1);
    } catch (err) {
      log.warnOnce('express-route', `express: recording a route failed: ${(err as Error).message}`);
    }
    return result;
  };
}

/** Express 4 keeps an app's router in `_router` (its `router` getter throws); Express 5 in `router`. */
let express4 = false;
function appRouter(app: App): object | undefined {
  return express4 ? app._router : app.router;
}

const MAX_DEPTH = 16;

/** Where a router is mounted: as a handler of other routers' `use`, and, for an app's router, where the app is. */
function mountsOf(router: object, req: Req): Mount[] | undefined {
  let list = (router as Mountable)[MOUNTS];
  let app = req.app;
  for (let n = 0; app !== undefined && app !== null && n < MAX_DEPTH; n++, app = app.parent) {
    if (appRouter(app) !== router) continue;
    const own = app[MOUNTS];
    if (own !== undefined) list = list === undefined ? own : list.concat(own);
    // app.use(path, subApp) mounts a wrapper function, not the app; Express records the mount itself.
    const parent = app.parent;
    const parentRouter = parent !== undefined && parent !== null ? appRouter(parent) : undefined;
    if (parentRouter !== undefined) {
      const mount: Mount = { parent: parentRouter, template: pathText(app.mountpath), layer: undefined };
      list = list === undefined ? [mount] : list.concat(mount);
    }
    break;
  }
  return list;
}

/** Every chain of mounts from the route's router up to a root, leaf first (bounded). */
function chains(router: object, req: Req, depth: number, acc: Mount[], out: Mount[][]): void {
  const mounts = depth < MAX_DEPTH ? mountsOf(router, req) : undefined;
  if (mounts === undefined || mounts.length === 0) {
    out.push(acc.slice());
    return;
  }
  for (const m of mounts) {
    if (out.length >= MAX_DEPTH) return;
    acc.push(m);
    chains(m.parent, req, depth + 1, acc, out);
    acc.pop();
  }
}

/** How much of `path` a mount layer matches (Express 4 returns a boolean and sets layer.path; 5 returns it). */
function matchedLength(layer: NonNullable<Mount['layer']>, path: string): number {
  if (typeof layer.match !== 'function') return 0;
  const m = layer.match(path) as boolean | { path?: unknown };
  if (m === false || m === null || m === undefined) return -1;
  const matched = typeof m === 'object' ? m.path : layer.path;
  return typeof matched === 'string' ? matched.length : 0;
}

/** Whether the request's concrete base URL went through this chain (leaf first). */
function tookChain(chain: Mount[], baseUrl: string): boolean {
  let rest = baseUrl;
  for (let i = chain.length - 1; i >= 0; i--) {
    const layer = chain[i]!.layer;
    if (layer === undefined) continue;
    const n = matchedLength(layer, rest === '' ? '/' : rest);
    if (n < 0) return false;
    rest = rest.slice(n);
  }
  return true;
}

/**
 * Read when the request ends: the route Express matched last (`req.route`), joined with the
 * templates of the mounts above its router. A router mounted at one place (the usual case) gives
 * one chain; mounted at several, the chain whose layers match `req.baseUrl` is taken.
 */
export function expressRoute(source: object): string | undefined {
  const req = source as Req;
  const route = req.route;
  if (route === undefined || route === null || typeof route !== 'object') return undefined;
  const own = pathText(route.path);
  const router = route[OWNER];
  if (router === undefined) return own;
  const out: Mount[][] = [];
  chains(router, req, 0, [], out);
  let chain = out[0]!;
  if (out.length > 1) {
    const baseUrl = typeof req.baseUrl === 'string' ? req.baseUrl : '';
    for (const c of out) {
      if (tookChain(c, baseUrl)) {
        chain = c;
        break;
      }
    }
  }
  const templates: string[] = [];
  for (let i = chain.length - 1; i >= 0; i--) templates.push(chain[i]!.template);
  return joinRoute(templates, own);
}

function readRoute(source: object): string | undefined {
  try {
    fault('express-read');
    return expressRoute(source);
  } catch (err) {
    log.warnOnce('express-read', `express: reading the route failed: ${(err as Error).message}`);
    return undefined;
  }
}

function wrapRender(original: Fn) {
  return function render(this: { get?(k: string): unknown }, name: unknown, options: unknown) {
    let engine: string;
    try {
      fault('express-render');
      engine = engineOf(this, name);
    } catch (err) {
      log.warnOnce(
        'express-render',
        `express: naming a render's engine failed (${(err as Error).message}); it renders untimed`,
      );
      return original.apply(this, arguments as unknown as unknown[]);
    }
    const args = argsOf(arguments);
    const cbIndex = typeof options === 'function' ? 1 : 2;
    return runRender(
      engine,
      () => {
        // An arrow function: `this` is render's, the app.
        const views = typeof this.get === 'function' ? this.get('views') : undefined;
        return templateName(name, Array.isArray(views) ? views : [views]);
      },
      original,
      this,
      args,
      cbIndex,
    );
  };
}

function engineOf(app: { get?(k: string): unknown }, name: unknown): string {
  const ext = typeof name === 'string' ? path.extname(name) : '';
  if (ext !== '') return engineName(ext);
  const setting = typeof app.get === 'function' ? app.get('view engine') : undefined;
  return typeof setting === 'string' && setting !== '' ? engineName(setting) : 'unknown';
}

/**
 * The exports as @types/express describes them (Express 5). Express 4's Router is a function whose
 * prototype object holds `use` and `route` (routerProto); `lazyrouter` is Express 4's, not typed.
 */
type Express = typeof ExpressModule;

/** Where `use` lives: Express 4's Router is the prototype object itself; Express 5's is a class. */
function routerProto(express: Express): object {
  return typeof express.Router.prototype?.use === 'function' ? express.Router.prototype : express.Router;
}

export const express: PatchDefinition<Express> = {
  module: 'express',
  feature: 'express',
  versions: ['4.16.0', '6.0.0'],
  patch(exports) {
    const proto = routerProto(exports);
    if (
      typeof (proto as { route?: unknown }).route !== 'function' ||
      typeof (proto as { use?: unknown }).use !== 'function'
    ) {
      throw new Error('Router.prototype.route or use not found');
    }
    express4 = typeof (exports.application as { lazyrouter?: unknown }).lazyrouter === 'function';
    wrap(proto, 'use', wrapUse);
    wrap(proto, 'route', wrapRoute);
    wrap(exports.application, 'render', wrapRender);
    addRouteReader(readRoute);
    patched = true;
    for (const p of layerProtos) wrapLayer(p);
  },
  unpatch(exports) {
    const proto = routerProto(exports);
    unwrap(proto, 'use');
    unwrap(proto, 'route');
    unwrap(exports.application, 'render');
    removeRouteReader(readRoute);
    patched = false;
    for (const p of layerProtos) {
      unwrap(p, 'handleError');
      unwrap(p, 'handle_error');
    }
  },
};
