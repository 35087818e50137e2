/**
 * Says so when a supported library is loaded but was never handed to the patcher: a copy of pg
 * required by its path, a bundle's node_modules, a package loaded in a way no hook sees. Without
 * this line the app runs uninstrumented and the user believes it is instrumented.
 *
 * When: src/load-hook.ts looks at the first incoming HTTP request; this file is loaded only then.
 * The look walks `require.cache` once: a module there that is the main file of a supported package
 * (by its node_modules path, else by its nearest package.json's name) whose package folder the
 * registry never saw is named in one warning line. Nothing runs per request after it.
 * A built-in module (http, https) that an ES module imported where no hook could see it is patched
 * there and then, silently: the same exports object `require` returns, and the ES-module bindings
 * are brought up to date (`syncBuiltinESMExports`).
 * Limitations: code a bundler merged into one file has no package left to find; an ES-module
 * build of a package (not CommonJS) is not in `require.cache`.
 */
import { packageOf, mainOf } from './load-hook';
import { log } from './log';

interface Cached {
  filename?: string;
}

export interface UnpatchedWatch {
  /** Supported package names (no builtins) and builtins, of the enabled patches. */
  packages: ReadonlySet<string>;
  builtins: readonly string[];
  /** Whether the registry was handed the package at this folder (or the builtin, basedir undefined). */
  seen(name: string, basedir: string | undefined): boolean;
  /** Hands a builtin's exports to the patcher. */
  patchBuiltin(name: string): void;
}

/**
 * Patches the builtins the patches name that are loaded but were never handed over (imported by an
 * ES module, which no hook sees under `-r`), and brings their ES-module bindings up to date. Loads
 * nothing: a builtin nobody loaded is left alone.
 */
export function patchLoadedBuiltins(w: Pick<UnpatchedWatch, 'builtins' | 'seen' | 'patchBuiltin'>, why: string): void {
  let loaded: Set<string> | undefined;
  let patched = false;
  for (const name of w.builtins) {
    if (w.seen(name, undefined)) continue;
    loaded ??= new Set((process as unknown as { moduleLoadList?: string[] }).moduleLoadList ?? []);
    if (!loaded.has(`NativeModule ${name}`)) continue;
    w.patchBuiltin(name);
    patched = true;
    log.debug(`${name} was imported where no hook saw it: patched ${why}`);
  }
  if (patched) (require('node:module') as typeof import('node:module')).syncBuiltinESMExports();
}

/** Looks once now; returns what it warned about. */
export function lookForUnpatched(w: UnpatchedWatch): string[] {
  const said: string[] = [];
  patchLoadedBuiltins(w, 'at the first request');
  const cache = (require('node:module') as { _cache: Record<string, Cached | undefined> })._cache;
  const told = new Set<string>();
  for (const filename of Object.keys(cache)) {
    const pkg = packageOf(filename);
    if (pkg === undefined || !w.packages.has(pkg.name) || told.has(pkg.basedir) || w.seen(pkg.name, pkg.basedir))
      continue;
    if (mainOf(pkg.basedir) !== filename) continue; // an internal file alone is not the library in use
    told.add(pkg.basedir);
    const version = versionAt(pkg.basedir);
    const label = `${pkg.name}@${version ?? '?'}`;
    log.warnOnce(
      `unpatched-${pkg.basedir}`,
      `${label} (${pkg.basedir}) was loaded without being patched, so it is not instrumented: load it by its package name from node_modules (not copied or bundled), with the agent preloaded (node -r hatch-agent, or --import hatch-agent)`,
    );
    said.push(label);
  }
  return said;
}

function versionAt(basedir: string): string | undefined {
  try {
    const fs = require('node:fs') as typeof import('node:fs');
    return (JSON.parse(fs.readFileSync(`${basedir}/package.json`, 'utf8')) as { version?: string }).version;
  } catch {
    return undefined;
  }
}
