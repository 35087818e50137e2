/**
 * The patcher applied to an ES-module import's namespace, shared by `--import` (src/esm.mts) and by
 * `-r` with an ES-module main on a Node without trusted in-thread hooks (src/esm-thread.ts).
 * CommonJS exports are the namespace's `default`: the patch applies there, and the functions it
 * replaced are copied onto the namespace, so a named import (`import { render } from 'ejs'`) sees
 * the timed function too. A namespace without an object `default` (an ES-module build) is handed
 * on itself.
 */
import { isBuiltin } from 'node:module';
import type { ModuleHandler } from './registry';

export type Namespace = Record<string, unknown>;

export function patchNamespace(handler: ModuleHandler, ns: Namespace, name: string, baseDir: string | undefined): void {
  const target =
    ns.default !== null && (typeof ns.default === 'object' || typeof ns.default === 'function')
      ? (ns.default as Namespace)
      : ns;
  if (target === ns) {
    handler.onModule(ns, name, baseDir);
    return;
  }
  const before = new Map<string, unknown>();
  for (const k of Object.keys(ns)) if (k !== 'default') before.set(k, ns[k]);
  handler.onModule(target, name, baseDir);
  for (const [k, old] of before) {
    let now: unknown;
    try {
      now = target[k];
    } catch {
      continue;
    }
    if (now !== old && typeof now === 'function') {
      try {
        ns[k] = now;
      } catch {
        // a binding the loader cannot rebind stays as it was
      }
    }
  }
}

/** The callback import-in-the-middle calls with each hooked import: never throws into the loader. */
export function onImportFor(
  handler: ModuleHandler,
  warn: (key: string, line: string) => void,
): (ns: Namespace, name: string, baseDir: string | void) => void {
  return (ns, name, baseDir) => {
    try {
      patchNamespace(handler, ns, name.startsWith('node:') ? name.slice(5) : name, baseDir ?? undefined);
    } catch (err) {
      warn(`esm-${name}`, `${name}: patching the import failed (${(err as Error).message}); left untouched`);
    }
  };
}

/** The names import-in-the-middle is told to hook: the patched modules, and each builtin also as `node:<name>`. */
export function importHookNames(handler: ModuleHandler): string[] {
  const builtins = handler.names.filter((n) => !n.includes('/') && isBuiltin(n));
  return [...handler.names, ...builtins.map((n) => `node:${n}`)];
}
