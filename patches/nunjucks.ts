/**
 * nunjucks 3: `Environment.prototype.render` and `renderString` are timed renders (engine
 * `nunjucks`), which covers the module's own `render`/`renderString` (they call the configured
 * Environment) and Express views set up by `nunjucks.configure(…, { express: app })`. Includes and
 * `extends` run inside the page's Template and are not counted again. Callbacks run in the caller's
 * request context, whatever loader resumed them.
 * Template names: as given to render (already relative to the loader's search paths), no extension;
 * renderString is `inline` unless given `opts.path`.
 */
import { argsOf, lastFunction, runRender, templateName } from '../src/render';
import { wrap, unwrap, type Fn } from '../src/shim';
import type { PatchDefinition } from '../src/registry';
import type * as Nunjucks from 'nunjucks';

type Env = { loaders?: Array<{ searchPaths?: unknown[] }> };

function searchPaths(env: Env): unknown[] {
  const loaders = Array.isArray(env?.loaders) ? env.loaders : [];
  return loaders.flatMap((l) => (Array.isArray(l?.searchPaths) ? l.searchPaths : []));
}

function wrapRender(original: Fn) {
  return function render(this: Env, name: unknown) {
    const args = argsOf(arguments);
    return runRender('nunjucks', () => templateName(name, searchPaths(this)), original, this, args, lastFunction(args));
  };
}

function wrapRenderString(original: Fn) {
  return function renderString(this: Env, _src: unknown, _ctx: unknown, opts: { path?: unknown } | undefined) {
    const args = argsOf(arguments);
    const file = opts !== null && typeof opts === 'object' ? opts.path : undefined;
    return runRender('nunjucks', () => templateName(file, searchPaths(this)), original, this, args, lastFunction(args));
  };
}

export const nunjucks: PatchDefinition = {
  module: 'nunjucks',
  feature: 'nunjucks',
  versions: ['3.0.0', '4.0.0'],
  patch(n: typeof Nunjucks) {
    const proto = n.Environment?.prototype;
    if (typeof proto?.render !== 'function' || typeof proto?.renderString !== 'function')
      throw new Error('Environment.prototype.render/renderString not found');
    wrap(proto, 'render', wrapRender);
    wrap(proto, 'renderString', wrapRenderString);
  },
  unpatch(n: typeof Nunjucks) {
    unwrap(n.Environment.prototype, 'render');
    unwrap(n.Environment.prototype, 'renderString');
  },
};
