/**
 * pug 3: `render`, `renderFile` (Express's `__express` calls it) and the functions `compile` and
 * `compileFile` return are timed renders (engine `pug`). pug's render calls its own compile, and
 * included templates are compiled into the page: both run nested and are not counted again.
 * Template names: the file relative to the `basedir` option or the working folder; a string template
 * without a `filename` option is `inline`.
 */
import { argsOf, lastFunction, runRender, templateName, timedTemplate } from '../src/render';
import { wrap, unwrap, type Fn } from '../src/shim';
import type { PatchDefinition } from '../src/registry';
import type * as Pug from 'pug';

type Opts = { filename?: unknown; basedir?: unknown; settings?: { views?: unknown } } | undefined;

function roots(opts: Opts): unknown[] {
  if (opts === null || typeof opts !== 'object') return [];
  const views = opts.settings?.views;
  return [opts.basedir, ...(Array.isArray(views) ? views : [views])];
}
const nameOf = (file: unknown, opts: Opts) => () => templateName(file, roots(opts));

function wrapRender(original: Fn) {
  return function render(this: unknown, _src: unknown, opts: Opts) {
    const args = argsOf(arguments);
    return runRender(
      'pug',
      nameOf(typeof opts === 'object' ? opts?.filename : undefined, opts),
      original,
      this,
      args,
      lastFunction(args),
    );
  };
}

function wrapRenderFile(original: Fn) {
  return function renderFile(this: unknown, file: unknown, opts: Opts) {
    const args = argsOf(arguments);
    return runRender(
      'pug',
      nameOf(file, typeof opts === 'object' ? opts : undefined),
      original,
      this,
      args,
      lastFunction(args),
    );
  };
}

function wrapCompile(fileArg: boolean) {
  return (original: Fn) =>
    function compile(this: unknown, first: unknown, opts: Opts) {
      const fn = original.apply(this, arguments as unknown as unknown[]);
      if (typeof fn !== 'function') return fn;
      return timedTemplate(fn as Fn, 'pug', nameOf(fileArg ? first : opts?.filename, opts));
    };
}

export const pug: PatchDefinition = {
  module: 'pug',
  feature: 'pug',
  versions: ['3.0.0', '4.0.0'],
  patch(p: typeof Pug) {
    if (typeof p.render !== 'function' || typeof p.renderFile !== 'function' || typeof p.compile !== 'function')
      throw new Error('render/renderFile/compile not found');
    wrap(p, 'render', wrapRender);
    wrap(p, 'renderFile', wrapRenderFile);
    wrap(p, 'compile', wrapCompile(false));
    wrap(p, 'compileFile', wrapCompile(true));
  },
  unpatch(p: typeof Pug) {
    for (const k of ['render', 'renderFile', 'compile', 'compileFile']) unwrap(p, k);
  },
};
