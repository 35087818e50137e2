/**
 * handlebars 4: the template functions that `compile` returns are timed renders (engine
 * `handlebars`), on the default instance and on every instance made by `handlebars.create()`.
 * Partials are compiled and run inside the page: they run nested and are not counted again.
 * Template names: handlebars compiles strings and knows no file, so a direct render is `inline`
 * (through Express, the view's name is used). Precompiled templates (`handlebars.template`) are
 * not timed.
 */
import { templateName, timedTemplate } from '../src/render';
import { wrap, unwrap, type Fn } from '../src/shim';
import type { PatchDefinition } from '../src/registry';

function wrapCompile(original: Fn) {
  return function compile(this: unknown, _input: unknown, options: { srcName?: unknown } | undefined) {
    const fn = original.apply(this, arguments as unknown as unknown[]);
    if (typeof fn !== 'function') return fn;
    return timedTemplate(fn as Fn, 'handlebars', () => templateName(options?.srcName));
  };
}

/** What the patch touches of a Handlebars environment (the package's own types need the package). */
interface HandlebarsLike {
  compile?: unknown;
  create?: unknown;
}

function patchInstance(hb: HandlebarsLike | null | undefined): void {
  if (hb !== null && typeof hb === 'object' && typeof hb.compile === 'function') wrap(hb, 'compile', wrapCompile);
}

function wrapCreate(original: Fn) {
  return function create(this: unknown) {
    const hb = original.apply(this, arguments as unknown as unknown[]) as HandlebarsLike | null | undefined;
    try {
      patchInstance(hb);
    } catch {
      // an instance left unpatched renders as before
    }
    return hb;
  };
}

export const handlebars: PatchDefinition = {
  module: 'handlebars',
  feature: 'handlebars',
  versions: ['4.0.0', '5.0.0'],
  patch(hb: HandlebarsLike) {
    if (typeof hb.compile !== 'function') throw new Error('compile not found');
    patchInstance(hb);
    wrap(hb, 'create', wrapCreate);
  },
  unpatch(hb: HandlebarsLike) {
    unwrap(hb, 'compile');
    unwrap(hb, 'create');
  },
};
