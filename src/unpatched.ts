/**
 * Says so when a supported library is loaded but was never handed to the patcher: a copy of pg
 * required by its path, a bundle's node_modules, a package loaded in a way no hook sees. Without
 * this line the app runs uninstrumented and the user believes it is instrumented.
 *
 * When: at the first incoming HTTP request (Node's own `http.server.request.start` channel,
 * unsubscribed at once), and once more 10 s after start (an unref'd timer, for processes that serve
 * no HTTP). Each look walks `require.cache` once: a module there that is the main file of a
 * supported package (by its node_modules path, else by its nearest package.json's name) whose
 * package folder the registry never saw is named in one warning line. Nothing runs per request.
 * A built-in module (http, https) that an ES module imported where no hook could see it is patched
 * there and then, silently: the same exports object `require` returns, and the ES-module bindings
 * are brought up to date (`syncBuiltinESMExports`).
 * Limitations: code a bundler merged into one file has no package left to find; an ES-module
 * build of a package (not CommonJS) is not in `require.cache`.
 */
import * as dc from 'node:diagnostics_channel';
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

const CHANNEL = 'http.server.request.start';
const LATER_MS = 10_000;

/** Looks once now; returns what it warned about (for the tests of this file's logic, and the debug log). */
export function lookForUnpatched(w: UnpatchedWatch): string[] {
  const said: string[] = [];
  const loaded = new Set((process as unknown as { moduleLoadList?: string[] }).moduleLoadList ?? []);
  let synced = false;
  for (const name of w.builtins) {
    if (!w.seen(name, undefined) && loaded.has(`NativeModule ${name}`)) {
      w.patchBuiltin(name);
      synced = true;
      log.debug(`${name} was imported where no hook saw it: patched now`);
    }
  }
  if (synced) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    (require('node:module') as typeof import('node:module')).syncBuiltinESMExports();
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const cache = (require('node:module') as { _cache: Record<string, Cached | undefined> })._cache;
  const told = new Set<string>();
  for (const filename of Object.keys(cache)) {
    const pkg = packageOf(filename);
    if (pkg === undefined || !w.packages.has(pkg.name) || told.has(pkg.basedir) || w.seen(pkg.name, pkg.basedir)) continue;
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
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const fs = require('node:fs') as typeof import('node:fs');
    return (JSON.parse(fs.readFileSync(`${basedir}/package.json`, 'utf8')) as { version?: string }).version;
  } catch {
    return undefined;
  }
}

/** Starts watching; the returned function stops it (at the agent's stop). */
export function watchUnpatched(w: UnpatchedWatch): () => void {
  let done = false;
  const look = () => {
    try {
      lookForUnpatched(w);
    } catch (err) {
      log.warnOnce('unpatched-look', `looking for unpatched modules failed (${(err as Error).message})`);
    }
  };
  const onRequest = () => {
    if (done) return;
    done = true;
    dc.unsubscribe(CHANNEL, onRequest);
    look();
  };
  dc.subscribe(CHANNEL, onRequest);
  const timer = setTimeout(look, LATER_MS);
  timer.unref();
  return () => {
    clearTimeout(timer);
    if (!done) {
      done = true;
      dc.unsubscribe(CHANNEL, onRequest);
    }
  };
}
