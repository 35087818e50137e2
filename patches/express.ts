/**
 * Express 4 and 5: the matched route template, and `res.render`/`app.render` timing.
 *
 * Routes: a router's `use(path, …)` tags the layers it adds with their path template. When such a
 * layer runs, its template is pushed on a per-request stack, and popped when it calls `next` (Express
 * restores req.baseUrl at the same point). When a route dispatches, the stack plus the route's own
 * path is the template: `app.use('/api', r1); r1.use('/users', r2); r2.get('/:id')` → `/api/users/:id`.
 * Requests no route took (404s, static files) stay `unmatched`. Express's own objects are reached
 * through its exports (`express.Router`, `express.Route`) and a throwaway router made at patch time
 * (for the Layer prototype), so no internal file is required by path.
 *
 * Render: `express.application.render` (which `res.render` calls) is timed from call to its callback,
 * with the engine named by the view's extension or the `view engine` setting, and the template
 * relative to the `views` folder. The engine's own render runs nested inside and is not counted again.
 *
 * Limitations: a route reached through an error-handling mount (`handle_error`) gets no mount prefix;
 * a path given as a RegExp or an array is shown as written (`/^\/a/`, `/a,/b`).
 */
import * as path from 'node:path';
import { setRoute } from '../src/context';
import { argsOf, engineName, runRender, templateName } from '../src/render';
import { wrap, unwrap } from '../src/shim';
import { log } from '../src/log';
import { fault } from '../src/fault';
import type { PatchDefinition } from '../src/registry';

const MOUNT = Symbol('hatch-agent.mount');
const MOUNTS = Symbol('hatch-agent.mounts');

type Layer = { [MOUNT]?: string };
type Req = { [MOUNTS]?: string[] };

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

function wrapUse(original: (...args: any[]) => any) {
  return function use(this: { stack?: Layer[] }, first: unknown) {
    const before = Array.isArray(this?.stack) ? this.stack.length : -1;
    const result = original.apply(this, arguments as any);
    try {
      fault('express-use');
      // Only `use(path, …)` with a path other than '/' adds a mount template.
      if (before >= 0 && typeof first !== 'function' && !(Array.isArray(first) && typeof first[0] === 'function')) {
        const template = pathText(first);
        if (template !== '/' && template !== '') {
          for (let i = before; i < this.stack!.length; i++) this.stack![i]![MOUNT] = template;
        }
      }
    } catch (err) {
      log.warnOnce('express-use', `express: tagging a mount failed: ${(err as Error).message}`);
    }
    return result;
  };
}

function wrapHandle(original: (...args: any[]) => any) {
  return function handle(this: Layer, req: Req, res: unknown, next: unknown) {
    const mount = this[MOUNT];
    if (mount === undefined || typeof next !== 'function' || req === null || typeof req !== 'object') {
      return original.apply(this, arguments as any);
    }
    let wrappedNext: Function;
    try {
      fault('express-handle');
      const stack = req[MOUNTS] ?? (req[MOUNTS] = []);
      const depth = stack.length;
      stack.push(mount);
      wrappedNext = function (this: unknown) {
        stack.length = depth;
        return (next as Function).apply(this, arguments);
      };
    } catch (err) {
      log.warnOnce('express-handle', `express: tracking a mount failed (${(err as Error).message}); the route may lack its prefix`);
      return original.apply(this, arguments as any);
    }
    return original.call(this, req, res, wrappedNext);
  };
}

function wrapDispatch(original: (...args: any[]) => any) {
  return function dispatch(this: { path?: unknown }, req: Req) {
    try {
      fault('express-route');
      setRoute(joinRoute(req?.[MOUNTS], pathText(this.path)));
    } catch (err) {
      log.warnOnce('express-route', `express: naming a route failed: ${(err as Error).message}`);
    }
    return original.apply(this, arguments as any);
  };
}

function wrapRender(original: (...args: any[]) => any) {
  return function render(this: { get?(k: string): unknown }, name: unknown, options: unknown) {
    const app = this;
    let engine: string;
    try {
      fault('express-render');
      engine = engineOf(app, name);
    } catch (err) {
      log.warnOnce('express-render', `express: naming a render's engine failed (${(err as Error).message}); it renders untimed`);
      return original.apply(this, arguments as any);
    }
    const args = argsOf(arguments);
    const cbIndex = typeof options === 'function' ? 1 : 2;
    return runRender(
      engine,
      () => {
        const views = typeof app.get === 'function' ? app.get('views') : undefined;
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

interface Express {
  Router: any;
  Route: { prototype: object };
  application: object;
}

/** Where `use` lives: Express 4's Router is the prototype object itself; Express 5's is a class. */
function routerProto(express: Express): object {
  return typeof express.Router.prototype?.use === 'function' ? express.Router.prototype : express.Router;
}

let layerProto: object | undefined;
let handleName: 'handle_request' | 'handleRequest' | undefined;

export const express: PatchDefinition<Express> = {
  module: 'express',
  feature: 'express',
  versions: ['4.16.0', '6.0.0'],
  patch(exports) {
    // A throwaway router shows the Layer prototype and its method name (4: handle_request, 5: handleRequest).
    const probe = exports.Router();
    probe.use('/probe', () => {});
    const proto = Object.getPrototypeOf(probe.stack[0]) as object;
    const name = typeof (proto as any).handle_request === 'function' ? 'handle_request' : 'handleRequest';
    if (typeof (proto as any)[name] !== 'function' || typeof (exports.Route.prototype as any).dispatch !== 'function') {
      throw new Error('Layer.handle_request/handleRequest or Route.dispatch not found');
    }
    layerProto = proto;
    handleName = name;
    wrap(routerProto(exports), 'use', wrapUse);
    wrap(proto, name, wrapHandle);
    wrap(exports.Route.prototype, 'dispatch', wrapDispatch);
    wrap(exports.application, 'render', wrapRender);
  },
  unpatch(exports) {
    unwrap(routerProto(exports), 'use');
    if (layerProto && handleName) unwrap(layerProto, handleName);
    unwrap(exports.Route.prototype, 'dispatch');
    unwrap(exports.application, 'render');
  },
};
