/**
 * Shared by the render patches (Express, ejs, pug, handlebars, nunjucks): times one render from
 * call to completion (its callback, its promise, or its return) and publishes it on `hatch:render`.
 *
 * A render started while another is on the stack (Express calling the engine, an ejs include, a
 * handlebars partial, pug's render calling its own compile) is not a page of its own: it runs
 * untimed, so a page is counted once. Nested renders started synchronously are seen by a depth
 * counter; inside a request, the request's store also counts its renders in flight, so an Express
 * engine that reads the file first and compiles in the callback (express-handlebars, hbs) is still
 * nested. No second AsyncLocalStorage is needed.
 * Limitations: outside a request, a render started from an asynchronous callback of another render
 * counts as a page; two pages rendered at once for one request count as one.
 */
import * as path from 'node:path';
import { channels, type RenderEvent } from './bus';
import { callIn, storage, type RequestContext } from './context';
import { log } from './log';
import { fault } from './fault';
import { now } from './clock';
import { isWrapped, markWrapper, type AnyFunction } from './shim';

let depth = 0;

const MAX_TEMPLATE = 100;
const EXTENSION = /\.[A-Za-z0-9]{1,12}$/;

/**
 * The template name as a metric can carry it: relative to the first root (views folder) that holds
 * it, else to the working folder, else the file's own name; no extension; `[A-Za-z0-9_./-]` only.
 * A template given as a string, with no file name, is `inline`.
 */
export function templateName(raw: unknown, roots: readonly unknown[] = []): string {
  if (typeof raw !== 'string' || raw === '') return 'inline';
  // Remembered: the path arithmetic and four regular expressions below cost more than an ejs page
  // from ejs's cache, and an app has few templates. Keyed by the file name itself (an app passes
  // the same string each time, whose hash V8 keeps), then by the folder and roots it was named
  // against, compared in place: no key string is built per render.
  const absolute = path.isAbsolute(raw);
  const cwd = absolute ? process.cwd() : '';
  let list = names.get(raw);
  if (list !== undefined) {
    for (let i = 0; i < list.length; i++) {
      const c = list[i]!;
      if (!absolute || (c.cwd === cwd && sameRoots(c.roots, roots))) return c.name;
    }
  } else {
    if (names.size >= MAX_NAMES) names.clear();
    names.set(raw, (list = []));
  }
  const name = computeName(raw, roots);
  if (list.length < 8)
    list.push({ cwd, roots: absolute ? (roots.filter((r) => typeof r === 'string') as string[]) : [], name });
  return name;
}

interface Named {
  cwd: string;
  /** The string roots the name was found against, in order (the others play no part). */
  roots: string[];
  name: string;
}
const names = new Map<string, Named[]>();
const MAX_NAMES = 1000;

function sameRoots(kept: string[], roots: readonly unknown[]): boolean {
  let j = 0;
  for (let i = 0; i < roots.length; i++) {
    const r = roots[i];
    if (typeof r !== 'string') continue;
    if (j >= kept.length || kept[j] !== r) return false;
    j++;
  }
  return j === kept.length;
}

function computeName(raw: string, roots: readonly unknown[]): string {
  let name = raw;
  if (path.isAbsolute(name)) {
    let found: string | undefined;
    for (const root of [...roots, process.cwd()]) {
      if (typeof root !== 'string' || root === '') continue;
      const rel = path.relative(path.resolve(root), name);
      if (rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel)) {
        found = rel;
        break;
      }
    }
    name = found ?? path.basename(name);
  }
  name = name
    .split(path.sep)
    .join('/')
    .replace(EXTENSION, '')
    .replace(/\.\.+/g, '_')
    .replace(/[^A-Za-z0-9_./-]+/g, '_')
    .replace(/^[./]+/, '');
  if (name.length > MAX_TEMPLATE) name = name.slice(0, MAX_TEMPLATE);
  return name === '' ? 'inline' : name;
}

/** Express engine names by file extension; any other extension is the engine's name itself. */
const ENGINES: Record<string, string> = {
  hbs: 'handlebars',
  handlebars: 'handlebars',
  njk: 'nunjucks',
  nunjucks: 'nunjucks',
  jade: 'pug',
  pug: 'pug',
  ejs: 'ejs',
};
export function engineName(ext: string): string {
  const e = ext.replace(/^\./, '').toLowerCase();
  return ENGINES[e] ?? (e.replace(/[^a-z0-9_-]+/g, '_').slice(0, 30) || 'unknown');
}

interface Render {
  store: RequestContext | undefined;
  requestId: string | undefined;
  engine: string;
  template: string;
  start: number;
  done: boolean;
}

function end(r: Render, error: boolean): void {
  if (r.done) return;
  r.done = true;
  if (r.store !== undefined && r.store.rendering) r.store.rendering--;
  try {
    const event: RenderEvent = {
      requestId: r.requestId,
      engine: r.engine,
      template: r.template,
      error,
      start: r.start,
      duration: now() - r.start,
    };
    channels.render.publish(event);
  } catch (err) {
    log.warnOnce('render-end', `recording a render failed: ${(err as Error).message}`);
  }
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (
    v !== null &&
    (typeof v === 'object' || typeof v === 'function') &&
    typeof (v as { then?: unknown }).then === 'function'
  );
}

/**
 * The callback runs in the caller's request context, whatever resumed the engine. It reaches the
 * engine (an app's own Express engine too) in place of the caller's,
 * so it is a plain closure with the caller's arity: making a function made per render look like the
 * caller's in full (markWrapper: own properties, prototype, markers) cost ~23 µs per call, a fifth of a
 * cached ejs page. README's table of intended differences says so.
 */
/** Passed through a call, a function expression gets no inferred name: it stays anonymous, as engines' callbacks are. */
const anonymous = (f: AnyFunction): AnyFunction => f;

function boundCallback(cb: AnyFunction, store: RequestContext | undefined, r: Render | undefined): AnyFunction {
  // An app's own Express engine does receive it: it keeps the caller's arity (the callbacks engines
  // get are anonymous, so the name matches too), declared, not defined afterwards, which is what costs.
  function call(self: unknown, err: unknown, args: IArguments): unknown {
    if (r !== undefined) end(r, err != null);
    return store === undefined ? Reflect.apply(cb, self, args) : callIn(store, cb, self, args);
  }
  let bound: AnyFunction;
  /* eslint-disable @typescript-eslint/no-unused-vars -- the parameters give each closure its length */
  switch (cb.length) {
    case 0:
      bound = anonymous(function (this: unknown) {
        return call(this, arguments[0], arguments);
      });
      break;
    case 1:
      bound = anonymous(function (this: unknown, err: unknown) {
        return call(this, err, arguments);
      });
      break;
    case 2:
      bound = anonymous(function (this: unknown, err: unknown, b: unknown) {
        return call(this, err, arguments);
      });
      break;
    default:
      bound = anonymous(function (this: unknown, err: unknown, b: unknown, c: unknown) {
        return call(this, err, arguments);
      });
      if (cb.length !== 3) Object.defineProperty(bound, 'length', { value: cb.length, configurable: true });
  }
  /* eslint-enable @typescript-eslint/no-unused-vars */
  if (cb.name !== '') Object.defineProperty(bound, 'name', { value: cb.name, configurable: true });
  return bound;
}

/**
 * Calls `original` as a (possibly) timed render. `cbIndex` is where its completion callback is, or
 * -1; without a callback there, completion is the returned promise's settling, or the return.
 * The engine's result, its exceptions and its callback's arguments reach the app unchanged.
 */
export function runRender(
  engine: string,
  template: () => string,
  original: AnyFunction,
  self: unknown,
  args: unknown[],
  cbIndex: number,
): unknown {
  const hasCallback = cbIndex >= 0 && typeof args[cbIndex] === 'function';
  const store = storage.getStore();
  if (depth > 0 || (store !== undefined && store.rendering) || !channels.render.hasSubscribers) {
    if (hasCallback && store !== undefined)
      args[cbIndex] = boundCallback(args[cbIndex] as AnyFunction, store, undefined);
    return Reflect.apply(original, self, args);
  }
  let r: Render | undefined;
  try {
    fault('render');
    r = { store, requestId: store?.id, engine, template: template(), start: now(), done: false };
    if (store !== undefined) store.rendering = 1;
    if (hasCallback) args[cbIndex] = boundCallback(args[cbIndex] as AnyFunction, store, r);
  } catch (err) {
    log.warnOnce('render-start', `timing a render failed: ${(err as Error).message}`);
    r = undefined;
  }
  let result: unknown;
  depth++;
  try {
    result = Reflect.apply(original, self, args);
  } catch (err) {
    if (r !== undefined) end(r, true);
    throw err;
  } finally {
    depth--;
  }
  if (r === undefined || hasCallback) return result;
  if (isThenable(result)) {
    const timed = r;
    return result.then(
      (value) => {
        end(timed, false);
        return value;
      },
      (err) => {
        end(timed, true);
        throw err;
      },
    );
  }
  end(r, false);
  return result;
}

/** The arguments as an array (a plain copy: Array.from goes through the iterator protocol). */
export function argsOf(a: IArguments): unknown[] {
  const out = new Array<unknown>(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i];
  return out;
}

/** Index of the last function among the arguments (an engine's callback), or -1. */
export function lastFunction(args: ArrayLike<unknown>): number {
  for (let i = args.length - 1; i >= 0; i--) if (typeof args[i] === 'function') return i;
  return -1;
}

/**
 * Wraps a compiled template so that each call is a timed render. It is handed to the app in place
 * of the engine's function, so it looks like it (src/shim.ts markWrapper): ejs names it after the
 * file (`foo`, or `anonymous`), ejs and pug keep `dependencies` on it.
 */
export function timedTemplate<F extends AnyFunction>(fn: F, engine: string, template: () => string): F {
  // pug's compileFile returns what its (wrapped) compile made: timed once is enough.
  if (isWrapped(fn)) return fn;
  const wrapper = function (this: unknown) {
    return runRender(engine, template, fn, this, argsOf(arguments), -1);
  };
  return markWrapper(wrapper, fn, `${engine} compiled template`) as unknown as F;
}
