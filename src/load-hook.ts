/**
 * The CommonJS loads require-in-the-middle cannot see, caught on `Module._load`, which every
 * CommonJS load passes through on every Node line (checked on 20, 22, 24 and 26):
 * - A CommonJS package reached by `import`, from an ES module or an ES-module package
 *   (MikroORM, slonik, Nest's adapters): Node's ES-module loader loads it with
 *   `Module._load(<its file>, no parent)`, not through `require`, which is all require-in-the-middle
 *   wraps. The same holds inside a `require()` of an ES module (Node 20.19+, 22.12+), which Node
 *   20's module-hooks thread (`--import`) never sees. Named imports (`import { Client } from 'pg'`)
 *   are read from `module.exports` after `_load` returns, so patching here, before returning, makes
 *   them the patched functions.
 * - A package required by name whose real path is not under `node_modules/<name>/` (`npm link`, a
 *   workspace symlink): require-in-the-middle names a module by its resolved path only.
 * So this is what lets `node -r hatch-agent` instrument ES-module apps, without a module-hooks
 * thread or import-in-the-middle: both cost tens of milliseconds at start-up (bench/RESULTS.md).
 * Only a package's main file is handed on (as require-in-the-middle does), found the way a
 * `require(<package dir>)` finds it. A file loaded by path from a module (a copied or bundled pg) is
 * left to the unpatched-module warning (src/unpatched.ts).
 * The wrapper stays as thin as it can: everything else costs one string test per load.
 * Limitation: a package's own ES-module build (ejs 7 has one) is not CommonJS, so not seen here.
 */
import * as path from 'node:path';
import * as fs from 'node:fs';
import { log } from './log';

interface ModuleInternals {
  _load(request: string, parent: unknown, isMain: boolean): unknown;
  _resolveFilename(request: string, parent: unknown): string;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Module = require('node:module') as ModuleInternals;

export interface LoadTarget {
  /** The package names (not builtins) of the enabled patches. */
  names: ReadonlySet<string>;
  onModule(moduleExports: unknown, name: string, basedir: string): void;
  /** Called at each CommonJS module the ES-module loader loads (before it is handed on). */
  onEsmLoad(): void;
}

const NM = `${path.sep}node_modules${path.sep}`;

/** The package a file belongs to: by its last node_modules segment, else its nearest named package.json. */
export function packageOf(filename: string): { name: string; basedir: string } | undefined {
  const i = filename.lastIndexOf(NM);
  if (i >= 0) {
    const rest = filename.slice(i + NM.length).split(path.sep);
    const name = rest[0]!.startsWith('@') && rest.length > 2 ? `${rest[0]}/${rest[1]}` : rest[0]!;
    return { name, basedir: filename.slice(0, i + NM.length) + name.split('/').join(path.sep) };
  }
  return namedPackageAbove(path.dirname(filename));
}

const byDir = new Map<string, { name: string; basedir: string } | null>();
function namedPackageAbove(dir: string): { name: string; basedir: string } | undefined {
  const known = byDir.get(dir);
  if (known !== undefined) return known ?? undefined;
  let found: { name: string; basedir: string } | null = null;
  try {
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: unknown };
    // A package.json without a name ({"type":"module"} in a sub-folder) is not the package's own.
    if (typeof json.name === 'string') found = { name: json.name, basedir: dir };
  } catch {
    // none here
  }
  const up = path.dirname(dir);
  if (found === null && up !== dir) found = namedPackageAbove(up) ?? null;
  byDir.set(dir, found);
  return found ?? undefined;
}

const mains = new Map<string, string | null>();
/** The file `require(<basedir>)` loads: a package's CommonJS main. */
export function mainOf(basedir: string): string | undefined {
  let m = mains.get(basedir);
  if (m === undefined) {
    try {
      m = Module._resolveFilename(basedir, null);
    } catch {
      m = null;
    }
    mains.set(basedir, m);
  }
  return m ?? undefined;
}

function inspect(t: LoadTarget, request: string, parent: unknown, isMain: boolean, exports: unknown): void {
  if (path.isAbsolute(request)) {
    // A path with a parent is a module's own require (require-in-the-middle's); the main script is no library.
    if (parent != null || isMain) return;
    t.onEsmLoad();
    const pkg = packageOf(request);
    if (pkg !== undefined && t.names.has(pkg.name) && mainOf(pkg.basedir) === request) t.onModule(exports, pkg.name, pkg.basedir);
    return;
  }
  if (!t.names.has(request)) return;
  const filename = Module._resolveFilename(request, parent);
  if (filename.includes(`${NM}${request.split('/').join(path.sep)}${path.sep}`)) return; // require-in-the-middle's
  const pkg = namedPackageAbove(path.dirname(filename));
  if (pkg !== undefined && pkg.name === request) t.onModule(exports, request, pkg.basedir);
}

let target: LoadTarget | undefined;
let original: ModuleInternals['_load'] | undefined;
let wrapper: ModuleInternals['_load'] | undefined;

/** Starts handing loads to `t`; `unhook` puts the original `Module._load` back where it still can. */
export function hookLoad(t: LoadTarget): { unhook(): void } {
  target = t;
  if (wrapper === undefined || Module._load !== wrapper) {
    const load = (original = Module._load);
    wrapper = function (this: unknown, request: string, parent: unknown, isMain: boolean) {
      const exports = Reflect.apply(load, this, arguments);
      const now = target;
      if (now !== undefined && typeof request === 'string') {
        try {
          inspect(now, request, parent, isMain === true, exports);
        } catch (err) {
          log.warnOnce(`load-${request}`, `${request}: looking at the load failed (${(err as Error).message}); left untouched`);
        }
      }
      return exports;
    } as ModuleInternals['_load'];
    Module._load = wrapper;
  }
  return {
    unhook() {
      target = undefined;
      // Someone wrapped it after us: ours stays in their chain, passing through.
      if (Module._load === wrapper && original !== undefined) {
        Module._load = original;
        wrapper = undefined;
      }
    },
  };
}
