/**
 * Everything that reaches a supported module other than `require` (which require-in-the-middle
 * hooks), set up by the registry at each start, the same under `-r` and `--import`. One file, as
 * it is loaded at every start-up.
 *
 * 1. `Module._load`, which every CommonJS load passes through on every Node line (checked on 20,
 *    22, 24 and 26), for the loads require-in-the-middle cannot see:
 *    - A CommonJS package reached by `import`, from an ES module or an ES-module package
 *      (MikroORM, slonik, Nest's platform adapters): Node's ES-module loader loads it with
 *      `Module._load(<its file>, no parent)`, not through `require`, which is all
 *      require-in-the-middle wraps. The same holds inside a `require()` of an ES module (Node
 *      20.19+, 22.12+), which Node 20's module-hooks thread (`--import`) never sees. Named imports
 *      (`import { Client } from 'pg'`) are read from `module.exports` after `_load` returns, so
 *      patching here, before returning, makes them the patched functions.
 *    - A package required by name whose real path is not under `node_modules/<name>/` (`npm link`,
 *      a workspace symlink): require-in-the-middle names a module by its resolved path only.
 *    Only a package's main file is handed on (as require-in-the-middle does), found the way a
 *    `require(<package dir>)` finds it. A file loaded by path from a module (a copied pg) is left
 *    to the warning. The wrapper stays thin: any other load costs one string test.
 * 2. Built-in modules an ES module imports (`import { request } from 'node:http'`) pass no hook
 *    without a module-hooks thread: the builtins the patches name that are loaded but unseen are
 *    patched at each CommonJS module the ES-module loader loads (by then the graph's static
 *    imports, builtins included, are loaded), and at the first request; their ES-module bindings
 *    are brought up to date (`syncBuiltinESMExports`). Nothing is loaded for this: loading http
 *    and https up front cost an ES-module start 9 ms.
 * 3. A package's own ES-module build (ejs 7's `lib/esm/ejs.js`, all of Nest 12), imported by
 *    name: no CommonJS load happens, so 1. never sees it. Where Node has in-thread module hooks
 *    that import-in-the-middle also trusts (`module.registerHooks`: Node 22.22.3+, 24.11.1+,
 *    25.1+, 26), a resolve hook notes the file a patched package's name resolves to, and the
 *    load hook appends one line to that file's source when it is an ES module (nothing else is
 *    touched, so no line or column of the library moves): the module imports its own namespace
 *    and hands it on, once its body has run. The patch gets the namespace's `default` when that is
 *    an object or function (ejs's), else the namespace (Nest's classes): a real namespace is
 *    read-only, so a patch of a named function export fails (logged once); patches change objects
 *    and prototypes that the exports hold. Every other load costs one Set look-up.
 * 4. What is still missed is named in one warning line at the first incoming request
 *    (src/unpatched.ts, loaded only then).
 * Why not import-in-the-middle under `-r`, as under `--import`: its module-hooks thread (Node 20,
 *    `module.register`) and even its in-thread hooks (acorn and a lexer are loaded) cost start-up
 *    about 95 ms on Node 20 and 25 ms on Node 26 (`--import` against `-r` in bench/RESULTS.md,
 *    "Start-up in wall time"), against the +15 ms budget of `-r`. A loader thread of our own on Node
 *    20 (`module.register`, the only hook there that sees ES modules) costs the thread's start: a
 *    loader that does nothing made `node -r … -e 0` over 100 ms slower on this project's machine.
 *    So under `-r` Node 20 (and 22 before 22.22.3, 24 before 24.11.1) starts that thread only for an
 *    ES-module main (`mainIsEsm`, src/esm-thread.ts), which pays what `--import` costs it; a
 *    CommonJS main's graph does not see ES-module builds.
 * Limitations: a package's own ES-module build is not seen under `-r` on Node 20 from a CommonJS
 * main (3.), nor
 * reached by a deep import or a relative path, nor warned about (it is not in `require.cache`);
 * its named function exports cannot be replaced; a process that serves no HTTP is not looked at
 * for the warning (a timer for it was 0.4 ms of every start-up: the first timer a process creates
 * sets up Node's timer lists).
 */
import { sep, dirname, join, isAbsolute, resolve as resolvePath, extname } from 'node:path';
import { readFileSync } from 'node:fs';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { log } from './log';
import type { UnpatchedWatch } from './unpatched';

interface ModuleInternals {
  _load(request: string, parent: unknown, isMain: boolean): unknown;
  _resolveFilename(request: string, parent: unknown): string;
  isBuiltin(name: string): boolean;
}
const Module = require('node:module') as ModuleInternals;

export interface LoadTarget {
  /** The package names (not builtins) of the enabled patches. */
  names: ReadonlySet<string>;
  onModule(moduleExports: unknown, name: string, basedir: string): void;
  /** Called at each CommonJS module the ES-module loader loads (before it is handed on). */
  onEsmLoad(): void;
}

const NM = `${sep}node_modules${sep}`;

/** The package a file belongs to: by its last node_modules segment, else its nearest named package.json. */
export function packageOf(filename: string): { name: string; basedir: string } | undefined {
  const i = filename.lastIndexOf(NM);
  if (i >= 0) {
    const rest = filename.slice(i + NM.length).split(sep);
    const name = rest[0]!.startsWith('@') && rest.length > 2 ? `${rest[0]}/${rest[1]}` : rest[0]!;
    return { name, basedir: filename.slice(0, i + NM.length) + name.split('/').join(sep) };
  }
  return namedPackageAbove(dirname(filename));
}

const byDir = new Map<string, { name: string; basedir: string } | null>();
function namedPackageAbove(dir: string): { name: string; basedir: string } | undefined {
  const known = byDir.get(dir);
  if (known !== undefined) return known ?? undefined;
  let found: { name: string; basedir: string } | null = null;
  try {
    const json = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown };
    // A package.json without a name ({"type":"module"} in a sub-folder) is not the package's own.
    if (typeof json.name === 'string') found = { name: json.name, basedir: dir };
  } catch {
    // none here
  }
  const up = dirname(dir);
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
  if (isAbsolute(request)) {
    // A path with a parent is a module's own require (require-in-the-middle's); the main script is no library.
    if (parent != null || isMain) return;
    t.onEsmLoad();
    const pkg = packageOf(request);
    if (pkg !== undefined && t.names.has(pkg.name) && mainOf(pkg.basedir) === request)
      t.onModule(exports, pkg.name, pkg.basedir);
    return;
  }
  if (!t.names.has(request)) return;
  const filename = Module._resolveFilename(request, parent);
  if (filename.includes(`${NM}${request.split('/').join(sep)}${sep}`)) return; // require-in-the-middle's
  const pkg = namedPackageAbove(dirname(filename));
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
          log.warnOnce(
            `load-${request}`,
            `${request}: looking at the load failed (${(err as Error).message}); left untouched`,
          );
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

type OnModule = (moduleExports: unknown, name: string, basedir: string | undefined) => void;

/** Hooks the other loads for the enabled patches' modules; the returned function undoes it. */
export function hookOtherLoads(
  names: readonly string[],
  onModule: OnModule,
  seen: (name: string, basedir: string | undefined) => boolean,
): () => void {
  const builtins = names.filter((n) => Module.isBuiltin(n));
  const packages = new Set(names.filter((n) => !Module.isBuiltin(n)));
  const patchBuiltin = (name: string) => onModule(require(name), name, undefined);
  const w: UnpatchedWatch = { packages, builtins, seen, patchBuiltin };
  const load = hookLoad({
    names: packages,
    onModule,
    onEsmLoad: () => unpatched().patchLoadedBuiltins(w, 'when the ES-module loader loaded a CommonJS module'),
  });
  const unwatch = watchUnpatched(w);
  const unhookEsm = hookEsmBuilds(packages, onModule);
  return () => {
    load.unhook();
    unhookEsm();
    unwatch();
  };
}

interface SyncHooks {
  registerHooks?(hooks: {
    resolve(specifier: string, context: object, next: (s: string, c?: object) => { url: string }): { url: string };
    load(
      url: string,
      context: object,
      next: (u: string, c?: object) => { format?: string | null; source?: unknown },
    ): { format?: string | null; source?: unknown };
  }): { deregister(): void };
}

/** Whether this Node's in-thread module hooks are ones import-in-the-middle trusts too (see 3.). */
export function trustsSyncHooks(version = process.versions.node): boolean {
  const [major = 0, minor = 0, patch = 0] = version.split('.').map(Number);
  if (major === 22) return minor > 22 || (minor === 22 && patch >= 3);
  if (major === 24) return minor > 11 || (minor === 11 && patch >= 1);
  if (major === 25) return minor >= 1;
  return major >= 26;
}

/**
 * Whether the process's main script is an ES module, judged as Node judges it: `.mjs`, or `.js` (or
 * no extension) under a package.json of `"type": "module"`.
 */
export function mainIsEsm(main = process.argv[1]): boolean {
  if (!main) return false;
  const file = resolvePath(main);
  if (file.endsWith('.mjs')) return true;
  if (file.endsWith('.cjs')) return false;
  const ext = extname(file);
  if (ext !== '.js' && ext !== '') return false;
  for (let dir = dirname(file); ;) {
    let text: string | undefined;
    try {
      text = readFileSync(join(dir, 'package.json'), 'utf8');
    } catch {
      // none here
    }
    if (text !== undefined) {
      try {
        return (JSON.parse(text) as { type?: unknown }).type === 'module';
      } catch {
        return false; // Node itself fails on such a package.json
      }
    }
    const parent = dirname(dir);
    if (parent === dir) return false;
    dir = parent;
  }
}

const ESM_KEY = Symbol.for('hatch-agent.esmBuild');
/**
 * Set on globalThis by src/esm.mts (`--import`), whose import-in-the-middle hooks see ES-module
 * builds themselves: two hooks on one module would each wrap the other's import of it. It sets the
 * key itself before it loads the agent, then calls leaveEsmBuildsToImportHooks for an earlier start.
 */
const IMPORT_HOOKS_KEY = Symbol.for('hatch-agent.importHooks');
type Holder = { [ESM_KEY]?: EsmHandoff; [IMPORT_HOOKS_KEY]?: true };
let esmHooks: { deregister(): void } | undefined;
/** Once per process: a loader thread cannot be taken back, and a restart must not start a second. */
let esmThreadTried = false;

/** Called by src/esm.mts before it hooks imports: the hooks of 3. step aside, now and at later starts. */
export function leaveEsmBuildsToImportHooks(): void {
  (globalThis as Holder)[IMPORT_HOOKS_KEY] = true;
  const h = esmHooks;
  esmHooks = undefined;
  h?.deregister();
}
type EsmHandoff = (ns: Record<string, unknown>, name: string, basedir: string) => void;

/**
 * 3. in the header: a patched package's ES-module build, handed on once its body has run. Returns
 * the undo (the hooks are deregistered; a module they already changed calls a no-op).
 */
function hookEsmBuilds(packages: ReadonlySet<string>, onModule: OnModule): () => void {
  const registerHooks = (require('node:module') as SyncHooks).registerHooks;
  const holder = globalThis as Holder;
  if (packages.size === 0 || holder[IMPORT_HOOKS_KEY]) return () => {};
  if (typeof registerHooks !== 'function' || !trustsSyncHooks()) {
    // No in-thread hooks here: an ES-module main gets --import's loader thread (src/esm-thread.ts,
    // loaded only then); a CommonJS main does without.
    if (!esmThreadTried) {
      esmThreadTried = true;
      if (mainIsEsm()) (require('./esm-thread') as typeof import('./esm-thread')).hookImportsInThread();
    }
    return () => {};
  }
  const { fileURLToPath } = require('node:url') as typeof import('node:url'); // only where it is used
  const handoff: EsmHandoff = (ns, name, basedir) => {
    try {
      const d = ns.default;
      onModule(d !== null && (typeof d === 'object' || typeof d === 'function') ? d : ns, name, basedir);
    } catch (err) {
      log.warnOnce(`esm-build-${name}`, `${name}: patching its ES-module build failed (${(err as Error).message})`);
    }
  };
  holder[ESM_KEY] = handoff;
  /** The file URLs bare patched names resolved to, with their package. */
  const entries = new Map<string, { name: string; basedir: string }>();
  const hooks = (esmHooks = registerHooks({
    resolve(specifier, context, next) {
      const r = next(specifier, context);
      if (packages.has(specifier)) {
        try {
          if (!entries.has(r.url) && r.url.startsWith('file:')) {
            const pkg = packageOf(fileURLToPath(r.url));
            if (pkg !== undefined && pkg.name === specifier) entries.set(r.url, pkg);
          }
        } catch (err) {
          log.warnOnce(
            `esm-resolve-${specifier}`,
            `${specifier}: looking at its resolution failed (${(err as Error).message})`,
          );
        }
      }
      return r;
    },
    load(url, context, next) {
      const r = next(url, context);
      const pkg = entries.get(url);
      if (pkg === undefined || r.format !== 'module' || r.source == null) return r;
      try {
        const source = typeof r.source === 'string' ? r.source : Buffer.from(r.source as Uint8Array).toString('utf8');
        // One line after the module's own code: its namespace, complete once its body has run.
        const self = JSON.stringify(url);
        r.source = `${source}\n;import * as hatchAgentOwnNamespace from ${self}; globalThis[Symbol.for('hatch-agent.esmBuild')]?.(hatchAgentOwnNamespace, ${JSON.stringify(pkg.name)}, ${JSON.stringify(pkg.basedir)});\n`;
      } catch (err) {
        log.warnOnce(
          `esm-load-${pkg.name}`,
          `${pkg.name}: hooking its ES-module build failed (${(err as Error).message})`,
        );
      }
      return r;
    },
  }));
  return () => {
    if (holder[ESM_KEY] === handoff) holder[ESM_KEY] = () => {};
    if (esmHooks === hooks) {
      esmHooks = undefined;
      hooks.deregister();
    }
  };
}

// The looking code is loaded only when it looks: a process that serves no request pays nothing.
const unpatched = () => require('./unpatched') as typeof import('./unpatched');

const CHANNEL = 'http.server.request.start';

/**
 * The `http.server.request.start` message being published while the builtins an ES module imported
 * are patched at the first request: a subscriber added during a publish does not get that message,
 * so the http server patch, applied just then, takes it from here (else the first request of such
 * an app would pass uninstrumented: no ID, no hatches).
 */
let startInFlight: unknown;
export function requestStartInFlight(): unknown {
  return startInFlight;
}

/**
 * Looks for unpatched modules at the first incoming HTTP request (Node's own channel, published
 * before the server's 'request' event, unsubscribed at once: no cost per request after it).
 * Limitation: a process that serves no HTTP is not looked at (a timer for it was 0.4 ms of every
 * start-up, the first timer a process creates sets up Node's timer lists).
 */
function watchUnpatched(w: UnpatchedWatch): () => void {
  let done = false;
  const onRequest = (message: unknown) => {
    if (done) return;
    done = true;
    unsubscribe(CHANNEL, onRequest);
    startInFlight = message;
    try {
      unpatched().lookForUnpatched(w);
    } catch (err) {
      log.warnOnce('unpatched-look', `looking for unpatched modules failed (${(err as Error).message})`);
    } finally {
      startInFlight = undefined;
    }
  };
  subscribe(CHANNEL, onRequest);
  return () => {
    if (!done) {
      done = true;
      unsubscribe(CHANNEL, onRequest);
    }
  };
}
