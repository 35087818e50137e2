/**
 * `node --import hatch-agent app.mjs`: the agent for ES-module apps.
 *
 * It starts the agent exactly as `-r` does (the CommonJS entry; once per process, however often
 * and by whichever flag it is loaded), then hooks `import` too: import-in-the-middle's loader
 * wraps only the modules our patches name, and hands each one's exports to the same patcher
 * require-in-the-middle uses. A module reached by both `require` and `import` has one exports
 * object, and it is patched once.
 *
 * The loader runs in-thread through `module.registerHooks` wherever import-in-the-middle says the
 * Node version supports it (22.22.3+, 24.11.1+, 25.1+, every 26): Node 26 deprecates
 * `module.register` (DEP0205, a DeprecationWarning on the app's stderr when called), so there it
 * is never called. Older Node (20, earlier 22 and 24) gets the loader thread through
 * `module.register`, read from the module namespace only then, so a Node that removes it does
 * not fail this file's import.
 *
 * `-r` covers imports of CommonJS packages without any of this (src/load-hook.ts: Node's ES-module
 * loader passes them through `Module._load`, hooked at every start, under both flags); what the
 * loader here adds is a package's own ES-module build (ejs 7's), at tens of milliseconds of
 * start-up, which is why `-r` does not take it (bench/RESULTS.md, "Start-up in wall time").
 *
 * For a CommonJS package imported from ESM the patch applies to `module.exports` (the namespace's
 * `default`), and replaced functions are copied onto the namespace (src/esm-namespace.ts).
 * Under `-r`, an ES-module main on a Node without trusted in-thread hooks gets the same loader
 * thread from src/esm-thread.ts; the key on globalThis makes whichever comes first the only one.
 *
 * A failure here logs one line; the app runs on, instrumented where `require` reaches.
 */
import * as nodeModule from 'node:module';

const { createRequire } = nodeModule;
const require = createRequire(import.meta.url);
// Before the agent starts: the hooks here see packages' ES-module builds, so -r's own (src/load-hook.ts)
// step aside. The flag is set here, not by loading load-hook.js first: index.js is the start-up bundle
// (build/bundle.mjs), and a file of it loaded before it would be a second copy.
(globalThis as { [k: symbol]: unknown })[Symbol.for('hatch-agent.importHooks')] = true;
const api = require('./index.js') as typeof import('./index.js');
// An agent started earlier (by -r) may have hooked them already: they are taken back.
(require('./load-hook.js') as typeof import('./load-hook.js')).leaveEsmBuildsToImportHooks();
const { currentModuleHandler } = require('./registry.js') as typeof import('./registry.js');
const { log } = require('./log.js') as typeof import('./log.js');
const { onImportFor, importHookNames } = require('./esm-namespace.js') as typeof import('./esm-namespace.js');

const KEY = Symbol.for('hatch-agent.esm');
const holder = globalThis as { [KEY]?: true };

async function hookImports(): Promise<void> {
  const handler = currentModuleHandler();
  if (handler === undefined) return; // the agent is off, or no patch is enabled
  const names = importHookNames(handler);
  const iitm = require('import-in-the-middle') as typeof import('import-in-the-middle');
  const onImport = onImportFor(handler, (key, line) => log.warnOnce(key, line));
  const sync = await import('import-in-the-middle/register-hooks.mjs').catch(() => undefined);
  if (sync !== undefined && sync.supportsSyncHooks()) {
    // In-thread hooks: no loader thread, no message round trip, and no module.register (DEP0205).
    sync.register({ include: names });
    new iitm.Hook(names, onImport);
    log.debug('ES-module imports hooked (in-thread module hooks)');
    return;
  }
  const registerLoader = (nodeModule as { register?: typeof nodeModule.register }).register;
  if (typeof registerLoader !== 'function')
    throw new Error('this Node has neither in-thread module hooks nor module.register');
  const { registerOptions, waitForAllMessagesAcknowledged } = iitm.createAddHookMessageChannel();
  registerLoader('import-in-the-middle/hook.mjs', import.meta.url, registerOptions);
  new iitm.Hook(names, onImport);
  await waitForAllMessagesAcknowledged();
  log.debug('ES-module imports hooked (module hooks thread)');
}

if (holder[KEY] === undefined) {
  holder[KEY] = true;
  try {
    await hookImports();
  } catch (err) {
    log.warn(
      `could not hook ES-module imports (${(err as Error).message}); modules loaded with require are still instrumented`,
    );
  }
}

export const getRequestId = api.getRequestId;
export const withRequestId = api.withRequestId;
export const getRunId = api.getRunId;
export const stop = api.stop;
export const start = api.start;
export const hatch = api.hatch;
export type { HatchContext, HatchHandler, HatchOptions } from './index.js';
