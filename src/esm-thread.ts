/**
 * `-r` for an ES-module main on a Node without in-thread module hooks that import-in-the-middle
 * trusts (Node 20, 22 before 22.22.3, 24 before 24.11.1): the same loader thread `--import` starts
 * there (src/esm.mts), registered from the CommonJS preload with `module.register`, before Node
 * loads the main module. So the ES-module builds of patched packages (Nest 12, ejs 7) that the
 * main's graph imports are patched under `-r` as under `--import`.
 *
 * Why only for an ES-module main: the thread's start costs about 100 ms of start-up on Node 20
 * (bench/RESULTS.md, "Start-up in wall time"), far over `-r`'s +15 ms budget, and a CommonJS main
 * gains nothing from it: its `require()` of an ES module never passes through the thread
 * (src/load-hook.ts covers the CommonJS packages such a graph loads). An ES-module app pays what
 * `--import` costs it (src/load-hook.ts mainIsEsm decides, and loads this file only then).
 *
 * Loaded only in that case; one line, and the app runs on, when the thread cannot be had.
 * Limitations: `--experimental-default-type=module` and `--input-type` are not read; a main run
 * through a loader of its own (tsx, ts-node) is judged by its file name only.
 */
import { pathToFileURL } from 'node:url';
import { log } from './log';
import { currentModuleHandler } from './registry';
import { onImportFor, importHookNames } from './esm-namespace';

/** Set on globalThis by whichever of `--import` and this file hooks imports first. */
const KEY = Symbol.for('hatch-agent.esm');

/** Registers import-in-the-middle's loader thread for the enabled patches' modules. */
export function hookImportsInThread(): void {
  const holder = globalThis as { [KEY]?: true };
  if (holder[KEY] !== undefined) return;
  holder[KEY] = true;
  try {
    const handler = currentModuleHandler();
    if (handler === undefined) return;
    const nodeModule = require('node:module') as typeof import('node:module');
    const register = (nodeModule as { register?: typeof nodeModule.register }).register;
    if (typeof register !== 'function') throw new Error('this Node has no module.register');
    const names = importHookNames(handler);
    const iitm = require('import-in-the-middle') as typeof import('import-in-the-middle');
    // The names go with the registration (the loader's initialize), so nothing has to be awaited
    // before Node loads the main module.
    register('import-in-the-middle/hook.mjs', pathToFileURL(__filename).href, { data: { include: names } });
    new iitm.Hook(
      names,
      onImportFor(handler, (key, line) => log.warnOnce(key, line)),
    );
    log.debug('ES-module imports hooked under -r (module hooks thread, for an ES-module main)');
  } catch (err) {
    log.warn(
      `could not hook the ES-module imports of this ES-module app (${(err as Error).message}); start it with --import hatch-agent, or modules loaded with require are still instrumented`,
    );
  }
}
