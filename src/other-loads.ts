/**
 * Everything that reaches a supported module other than `require` (which require-in-the-middle
 * hooks), set up by the registry at each start, the same under `-r` and `--import`:
 * - CommonJS packages loaded by the ES-module loader, and packages behind symlinks:
 *   src/load-hook.ts (`Module._load`).
 * - Built-in modules an ES module imports (`import { request } from 'node:http'`): those loads pass
 *   no hook without a module-hooks thread, so under `-r` the builtins the patches name that are
 *   loaded but unseen are patched at each CommonJS module the ES-module loader loads (by then the
 *   graph's static imports, builtins included, are loaded), and at the first request
 *   (src/unpatched.ts); their ES-module bindings are brought up to date (`syncBuiltinESMExports`).
 *   Nothing is loaded for this: loading http and https up front cost an ES-module start 9 ms.
 * - What is still missed is named in one line: src/unpatched.ts.
 * Why not import-in-the-middle under `-r` as under `--import`: its module-hooks thread (Node 20,
 * `module.register`) adds about 100 ms to start-up, and its in-thread hooks (Node 22.22.3+, 24.11.1+,
 * 26) about 40 ms (acorn and a lexer are loaded), against the +15 ms budget of `-r`. It adds only
 * what no patched library needs today but ejs's own ES-module build (7.x has one; a limitation of `-r`).
 */
import { hookLoad } from './load-hook';
import * as dc from 'node:diagnostics_channel';
import { log } from './log';
import type { UnpatchedWatch } from './unpatched';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const nodeModule = require('node:module') as typeof import('node:module');

type OnModule = (moduleExports: unknown, name: string, basedir: string | undefined) => void;

/** Hooks the other loads for the enabled patches' modules; the returned function undoes it. */
export function hookOtherLoads(names: readonly string[], onModule: OnModule, seen: (name: string, basedir: string | undefined) => boolean): () => void {
  const builtins = names.filter((n) => nodeModule.isBuiltin(n));
  const packages = new Set(names.filter((n) => !nodeModule.isBuiltin(n)));
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const patchBuiltin = (name: string) => onModule(require(name), name, undefined);
  const w: UnpatchedWatch = { packages, builtins, seen, patchBuiltin };
  const load = hookLoad({ names: packages, onModule, onEsmLoad: () => unpatched().patchLoadedBuiltins(w, 'when the ES-module loader loaded a CommonJS module') });
  const unwatch = watchUnpatched(w);
  return () => {
    load.unhook();
    unwatch();
  };
}

// The looking code is loaded only when it looks: a process that serves no request pays nothing.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const unpatched = () => require('./unpatched') as typeof import('./unpatched');

const CHANNEL = 'http.server.request.start';

/**
 * Looks for unpatched modules at the first incoming HTTP request (Node's own channel, published
 * before the server's 'request' event, unsubscribed at once: no cost per request after it).
 * Limitation: a process that serves no HTTP is not looked at (a timer for it was 0.4 ms of every
 * start-up, the first timer a process creates sets up Node's timer lists).
 */
function watchUnpatched(w: UnpatchedWatch): () => void {
  let done = false;
  const onRequest = () => {
    if (done) return;
    done = true;
    dc.unsubscribe(CHANNEL, onRequest);
    try {
      unpatched().lookForUnpatched(w);
    } catch (err) {
      log.warnOnce('unpatched-look', `looking for unpatched modules failed (${(err as Error).message})`);
    }
  };
  dc.subscribe(CHANNEL, onRequest);
  return () => {
    if (!done) {
      done = true;
      dc.unsubscribe(CHANNEL, onRequest);
    }
  };
}
