/**
 * The patch registry: declarative patches, applied lazily when the app first requires their module
 * (require-in-the-middle), each only inside its declared version range. A module outside the range,
 * or whose patch throws, is left untouched and logged once. The outcome of every patch is kept for
 * the hatches (`/_hatch/config`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { log } from './log';
import type { Config } from './config';

/** [lowest supported, first unsupported), as major.minor.patch. */
export type VersionRange = readonly [string, string];

export interface PatchDefinition<T = any> {
  /** The module name as required (`pg`, `http`). */
  module: string;
  /** The name HATCH_DISABLE uses; several modules may share one (`pg` covers pg-pool, pg-cursor). */
  feature: string;
  versions: VersionRange;
  patch(exports: T, config: Config): void;
  unpatch(exports: T): void;
}

export interface PatchOutcome {
  module: string;
  version: string | undefined;
  status: 'patched' | 'unsupported' | 'failed' | 'disabled';
  detail?: string;
}

export const outcomes: PatchOutcome[] = [];
const applied = new WeakMap<PatchDefinition, WeakMap<object, PatchOutcome>>();

function parts(v: string): number[] {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [NaN, NaN, NaN];
}
function compare(a: string, b: string): number {
  const x = parts(a);
  const y = parts(b);
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i]! < y[i]! ? -1 : 1;
  return 0;
}
export function inRange(version: string, [low, high]: VersionRange): boolean {
  if (parts(version).some(Number.isNaN)) return false;
  return compare(version, low) >= 0 && compare(version, high) < 0;
}
export function describeRange([low, high]: VersionRange): string {
  return `>=${low} <${high}`;
}

function moduleVersion(name: string, basedir: string | undefined): string | undefined {
  if (basedir === undefined) return process.versions.node; // a core module
  try {
    return JSON.parse(fs.readFileSync(path.join(basedir, 'package.json'), 'utf8')).version;
  } catch {
    return undefined;
  }
}

/** Applies one definition to a loaded module's exports; never throws. */
export function applyPatch(def: PatchDefinition, moduleExports: unknown, version: string | undefined, config: Config): PatchOutcome {
  // The same exports reached twice (by require and by import, or by two copies of the agent's hooks)
  // are patched once.
  const key = Object(moduleExports) as object;
  let done = applied.get(def);
  if (done === undefined) applied.set(def, (done = new WeakMap()));
  const earlier = done.get(key);
  if (earlier !== undefined) return earlier;
  const label = `${def.module}@${version ?? '?'}`;
  let outcome: PatchOutcome;
  if (version === undefined || !inRange(version, def.versions)) {
    outcome = { module: def.module, version, status: 'unsupported', detail: `supported: ${describeRange(def.versions)}` };
    log.warn(`${label} is outside the supported range ${describeRange(def.versions)}; left untouched`);
  } else {
    try {
      def.patch(moduleExports, config);
      outcome = { module: def.module, version, status: 'patched', detail: def.feature };
      // `http@20.20.2 patched`; the feature is named where one module carries several patches.
      log.debug(`${label} patched${def.module.startsWith(def.feature) ? '' : ` (${def.feature})`}`);
    } catch (err) {
      try {
        def.unpatch(moduleExports);
      } catch {
        // the unpatch of a half-applied patch is best effort
      }
      outcome = { module: def.module, version, status: 'failed', detail: (err as Error).message };
      log.warn(`${label} could not be patched (${(err as Error).message}); left untouched`);
    }
  }
  outcomes.push(outcome);
  done.set(key, outcome);
  return outcome;
}

/** Whether HATCH_DISABLE names any of these (a feature, a module, or another name for them). */
export function disabled(config: Config, names: readonly string[]): boolean {
  return names.some((n) => config.disable.includes(n));
}

/**
 * Hooks the definitions' modules. `otherNames` are the HATCH_DISABLE names of instrumentation that
 * is not a module patch (channel subscribers), so that they are not reported as unknown.
 */
export function installHooks(defs: PatchDefinition[], config: Config, otherNames: readonly string[] = []): { unhook(): void } {
  const enabled: PatchDefinition[] = [];
  for (const def of defs) {
    if (disabled(config, [def.feature, def.module])) {
      outcomes.push({ module: def.module, version: undefined, status: 'disabled', detail: 'HATCH_DISABLE' });
      log.debug(`${def.module} disabled by HATCH_DISABLE`);
    } else {
      enabled.push(def);
    }
  }
  const known = new Set([...defs.flatMap((d) => [d.feature, d.module]), ...otherNames]);
  for (const name of config.disable) {
    if (!known.has(name)) log.warn(`HATCH_DISABLE names "${name}", which is no patch; known: ${[...known].join(',')}`);
  }
  if (enabled.length === 0) return { unhook() {} };

  const byModule = new Map<string, PatchDefinition[]>();
  for (const d of enabled) byModule.set(d.module, [...(byModule.get(d.module) ?? []), d]);
  const onModule = (moduleExports: unknown, name: string, basedir: string | undefined): void => {
    try {
      const version = moduleVersion(name, basedir);
      for (const def of byModule.get(name.startsWith('node:') ? name.slice(5) : name) ?? []) {
        applyPatch(def, moduleExports, version, config);
      }
    } catch (err) {
      log.warnOnce(`hook-${name}`, `${name}: patching failed (${(err as Error).message}); left untouched`);
    }
  };
  moduleHandler = { names: [...byModule.keys()], onModule };
  const { Hook } = loadRequireInTheMiddle();
  const hook = new Hook([...byModule.keys()], { internals: false }, (moduleExports, name, basedir) => {
    onModule(moduleExports, name, basedir);
    return moduleExports;
  });
  return {
    unhook() {
      moduleHandler = undefined;
      hook.unhook();
    },
  };
}

/**
 * require-in-the-middle, without the `debug` package it loads for its own debug lines: `debug`
 * (with tty and supports-color) was 5 of the 6 ms that loading the hook took, a fifth of the agent's
 * start-up. Only the require that require-in-the-middle's own file makes is answered, with a
 * silent logger, and nothing is put in the module cache: the app's `require('debug')` is untouched.
 * With DEBUG set (someone wants debug lines) it is loaded as it is.
 */
function loadRequireInTheMiddle(): typeof import('require-in-the-middle') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  if (process.env.DEBUG) return require('require-in-the-middle') as typeof import('require-in-the-middle');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Module = require('node:module') as { _load: (request: string, parent: { filename?: string } | undefined, isMain: boolean) => unknown };
  const load = Module._load;
  const silent = () => Object.assign(() => {}, { enabled: false });
  Module._load = function (this: unknown, request: string, parent: { filename?: string } | undefined) {
    if (request === 'debug' && typeof parent?.filename === 'string' && /[\\/]require-in-the-middle[\\/]index\.js$/.test(parent.filename)) return silent;
    return Reflect.apply(load, this, arguments);
  } as typeof Module._load;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('require-in-the-middle') as typeof import('require-in-the-middle');
  } finally {
    Module._load = load;
  }
}

/** What the ES-module entry (src/esm.mts) hooks: the enabled patches' module names, and their patcher. */
export interface ModuleHandler {
  names: string[];
  /** Patches a loaded module's CommonJS-shaped exports (once per exports object); never throws. */
  onModule(moduleExports: unknown, name: string, basedir: string | undefined): void;
}
let moduleHandler: ModuleHandler | undefined;
export function currentModuleHandler(): ModuleHandler | undefined {
  return moduleHandler;
}
