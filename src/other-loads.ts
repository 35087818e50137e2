/**
 * Everything that reaches a supported module other than `require` (which require-in-the-middle
 * hooks), set up by the registry at each start, the same under `-r` and `--import`:
 * - CommonJS packages loaded by the ES-module loader, and packages behind symlinks:
 *   src/load-hook.ts (`Module._load`).
 * - Built-in modules an ES module imports (`import { request } from 'node:http'`): those loads pass
 *   no hook without a module-hooks thread, so under `-r` the builtins the patches name are patched
 *   as soon as ES modules are in play: at start when the main script is an ES module (a .mjs, or
 *   a .js under "type": "module"), else at the first CommonJS module the ES-module loader loads
 *   (an `import()` or a `require()` of an ES-module package). The ES-module bindings of a builtin
 *   are then brought up to date (`syncBuiltinESMExports`). A CommonJS app that never imports pays
 *   nothing for this.
 * - What is still missed is named in one line: src/unpatched.ts.
 * Why not import-in-the-middle under `-r` as under `--import`: its module-hooks thread (Node 20,
 * `module.register`) adds about 100 ms to start-up, and its in-thread hooks (Node 22.22.3+, 24.11.1+,
 * 26) about 40 ms (acorn and a lexer are loaded), against the +15 ms budget of `-r`. It adds only
 * what no patched library needs today but ejs's own ES-module build (7.x has one; a limitation of `-r`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hookLoad } from './load-hook';
import { watchUnpatched } from './unpatched';
import { log } from './log';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const nodeModule = require('node:module') as typeof import('node:module');

type OnModule = (moduleExports: unknown, name: string, basedir: string | undefined) => void;

/** Whether Node runs the main script as an ES module (the cheap signs: extension, "type", the flag). */
export function mainIsEsm(main = process.argv[1]): boolean {
  if (main === undefined || main === '') return false;
  if (/\.m[jt]s$/.test(main)) return true;
  if (/\.c[jt]s$/.test(main)) return false;
  const flags = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`;
  if (/--(experimental-)?default-type[= ]module/.test(flags)) return true;
  for (let dir = path.dirname(path.resolve(main)); ; dir = path.dirname(dir)) {
    try {
      return (JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { type?: unknown }).type === 'module';
    } catch {
      // no (readable) package.json here: the one above decides
    }
    if (path.dirname(dir) === dir) return false;
  }
}

/** Hooks the other loads for the enabled patches' modules; the returned function undoes it. */
export function hookOtherLoads(names: readonly string[], onModule: OnModule, seen: (name: string, basedir: string | undefined) => boolean): () => void {
  const builtins = names.filter((n) => nodeModule.isBuiltin(n));
  const packages = new Set(names.filter((n) => !nodeModule.isBuiltin(n)));
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const patchBuiltin = (name: string) => onModule(require(name), name, undefined);
  let done = false;
  const esmInPlay = (why: string) => {
    if (done) return;
    done = true;
    for (const b of builtins) patchBuiltin(b);
    nodeModule.syncBuiltinESMExports();
    if (builtins.length > 0) log.debug(`${builtins.join(', ')} patched for ES-module imports (${why})`);
  };
  const load = hookLoad({ names: packages, onModule, onEsmLoad: () => esmInPlay('the ES-module loader loaded a CommonJS module') });
  if (mainIsEsm()) esmInPlay('the main script is an ES module');
  const unwatch = watchUnpatched({ packages, builtins, seen, patchBuiltin });
  return () => {
    load.unhook();
    unwatch();
  };
}
