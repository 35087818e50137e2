/**
 * ejs 3 to 7: `render`, `renderFile` (and `__express`, the same function Express calls) and the
 * functions `compile` returns are timed renders (engine `ejs`). Includes and ejs's own internal
 * compile run nested and are not counted again. A compiled function made with `client: true` is
 * left as it is: its source is shipped to browsers.
 * Template names: `filename` relative to the `views`/`root` option or the working folder; a string
 * template without a filename is `inline`.
 */
import { argsOf, lastFunction, runRender, templateName, timedTemplate } from '../src/render';
import { wrap, unwrap, type Fn } from '../src/shim';
import type { PatchDefinition } from '../src/registry';
import type * as Ejs from 'ejs';

type Opts =
  { filename?: unknown; views?: unknown; root?: unknown; client?: unknown; settings?: { views?: unknown } } | undefined;

/** The folders template names are relative to: each options object's `views` (or Express's settings.views), then its `root`. */
function roots(...all: Opts[]): unknown[] {
  const out: unknown[] = [];
  for (const opts of all) {
    if (opts === null || typeof opts !== 'object') continue;
    const views = opts.views ?? opts.settings?.views;
    if (Array.isArray(views)) for (const v of views) out.push(v);
    else out.push(views);
    out.push(opts.root);
  }
  return out;
}

function wrapRender(original: Fn) {
  return function render(this: unknown, _template: unknown, _data: unknown, opts: Opts) {
    return runRender('ejs', () => templateName(opts?.filename, roots(opts)), original, this, argsOf(arguments), -1);
  };
}

function wrapRenderFile(original: Fn) {
  return function renderFile(this: unknown, file: unknown) {
    const args = argsOf(arguments);
    // renderFile(path, [data], [opts], [cb]): Express passes its settings (with views) in data.
    return runRender(
      'ejs',
      () => templateName(file, roots(args[2] as Opts, args[1] as Opts)),
      original,
      this,
      args,
      lastFunction(args),
    );
  };
}

function wrapCompile(original: Fn) {
  return function compile(this: unknown, _template: unknown, opts: Opts) {
    const fn = original.apply(this, arguments as unknown as unknown[]);
    if (typeof fn !== 'function' || (opts !== null && typeof opts === 'object' && opts.client)) return fn;
    return timedTemplate(fn as Fn, 'ejs', () => templateName(opts?.filename, roots(opts)));
  };
}

export const ejs: PatchDefinition = {
  module: 'ejs',
  feature: 'ejs',
  versions: ['3.0.0', '8.0.0'],
  patch(e: typeof Ejs) {
    if (typeof e.render !== 'function' || typeof e.renderFile !== 'function' || typeof e.compile !== 'function')
      throw new Error('render/renderFile/compile not found');
    wrap(e, 'render', wrapRender);
    wrap(e, 'renderFile', wrapRenderFile);
    wrap(e, '__express', wrapRenderFile);
    wrap(e, 'compile', wrapCompile);
  },
  unpatch(e: typeof Ejs) {
    for (const k of ['render', 'renderFile', '__express', 'compile']) unwrap(e, k);
  },
};
