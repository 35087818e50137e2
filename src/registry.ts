/**
 * The registry: every instrumentation the agent declares, of two kinds, applied and withdrawn here.
 * - A patch (`PatchDefinition`) waits for its module: it is applied when the app first requires (or
 *   imports) the module, through require-in-the-middle, and for what it cannot see (a CommonJS
 *   package loaded by `import`, a symlinked package) src/load-hook.ts; src/esm.mts hands over
 *   `--import`'s imports. Only inside its declared version range: a module outside the range, or
 *   whose patch throws, is left untouched and logged once.
 * - A subscriber (`SubscriberDefinition`) listens on diagnostics channels that a library publishes on
 *   its own, whether or not the app ever requires it (Node's fetch is undici bundled in Node):
 *   subscribed at start.
 * Both are named by HATCH_DISABLE the same way, and their outcomes are kept for `/_hatch/config`.
 *
 * Stop is exact: `enable` returns a handle whose `disable()` unpatches every applied patch, newest
 * first, unsubscribes the subscribers, and unhooks. The registry keeps every module it was handed,
 * patched or not, so a later `enable` patches them again at once: require-in-the-middle only sees a
 * module when it is required, and an app requires its modules once, at the top.
 * Limitation: a module first required while the agent is stopped is patched only if the app requires
 * it again after the restart.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { log } from './log';
import { loadRequireInTheMiddle } from './require-hook';
import { hookOtherLoads } from './load-hook';
import type { Config } from './config';

/** [lowest supported, first unsupported), as major.minor.patch. */
export type VersionRange = readonly [string, string];

export interface PatchDefinition<T = unknown> {
  kind?: 'module';
  /** The module name as required (`pg`, `http`). */
  module: string;
  /** The name HATCH_DISABLE uses; several modules may share one (`pg` covers pg-pool, pg-cursor). */
  feature: string;
  versions: VersionRange;
  /**
   * `config` is the active configuration (src/config.ts `activeConfig()`); read settings from there
   * when they are needed, not into a copy of the patch's own.
   */
  patch(exports: T, config: Config): void;
  /** Undoes `patch` exactly; also called after a `patch` that threw halfway. */
  unpatch(exports: T): void;
  /**
   * For a module whose export is one function that cannot be patched in place (finalhandler): the
   * function `require` hands the module's caller instead, given the exports (after `patch` was
   * applied). It must return the same wrapper for the same exports and pass straight through once
   * `unpatch` ran (the caller keeps it). Only a `require` (require-in-the-middle) is answered with
   * it; a module reached otherwise keeps its own export.
   */
  replace?(exports: T): unknown;
}

export interface SubscriberDefinition {
  kind: 'channels';
  /** The name HATCH_DISABLE uses, and the outcome's `module`. */
  feature: string;
  /** Other names HATCH_DISABLE takes for it (`fetch` for undici). */
  aliases: readonly string[];
  /** The channels it listens on, as shown in the outcome. */
  channels: readonly string[];
  subscribe(): void;
  unsubscribe(): void;
}

export type Definition = PatchDefinition | SubscriberDefinition;

export interface PatchOutcome {
  /** The module patched, or a subscriber's feature. */
  module: string;
  version: string | undefined;
  status: 'patched' | 'subscribed' | 'unsupported' | 'failed' | 'disabled';
  detail?: string;
}

/**
 * The outcomes of the current run (cleared by a stop, filled again by the next start), one array for
 * the process: the hatches hold it.
 */
export const outcomes: PatchOutcome[] = [];

function isSubscriber(def: Definition): def is SubscriberDefinition {
  return def.kind === 'channels';
}

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
    return JSON.parse(readFileSync(join(basedir, 'package.json'), 'utf8')).version;
  } catch {
    return undefined;
  }
}

// Per definition, the outcome for each exports object it was applied to in this run: the same
// exports reached twice (by require and by import, or by two copies of the agent's hooks) are
// patched once. Replaced at stop, so the next start applies again.
let applied = new WeakMap<PatchDefinition, WeakMap<object, PatchOutcome>>();
/** What stop unpatches, in the order the patches were applied. */
let patchedNow: Array<{ def: PatchDefinition; exports: unknown }> = [];
/** Every module handed to the registry (once per exports object), kept for the next start. */
const seen: Array<{ name: string; exports: unknown; version: string | undefined }> = [];
const seenExports = new WeakMap<object, string | undefined>();
/** `name\0basedir` of each module handed over (empty basedir: a builtin), for src/unpatched.ts. */
const seenAt = new Set<string>();
export function wasSeen(name: string, basedir: string | undefined): boolean {
  return seenAt.has(`${name}\0${basedir ?? ''}`);
}

/** Applies one definition to a loaded module's exports; never throws. */
function applyPatch(
  def: PatchDefinition,
  moduleExports: unknown,
  version: string | undefined,
  config: Config,
): PatchOutcome {
  const key = Object(moduleExports) as object;
  let done = applied.get(def);
  if (done === undefined) applied.set(def, (done = new WeakMap()));
  const earlier = done.get(key);
  if (earlier !== undefined) return earlier;
  const label = `${def.module}@${version ?? '?'}`;
  let outcome: PatchOutcome;
  if (version === undefined || !inRange(version, def.versions)) {
    outcome = {
      module: def.module,
      version,
      status: 'unsupported',
      detail: `supported: ${describeRange(def.versions)}`,
    };
    // Once per process: a restart meets the same module again.
    log.warnOnce(
      `range-${label}`,
      `${label} is outside the supported range ${describeRange(def.versions)}; left untouched`,
    );
  } else {
    try {
      def.patch(moduleExports, config);
      outcome = { module: def.module, version, status: 'patched', detail: def.feature };
      patchedNow.push({ def, exports: moduleExports });
      // `http@20.20.2 patched`; the feature is named where one module carries several patches.
      log.debug(`${label} patched${def.module.startsWith(def.feature) ? '' : ` (${def.feature})`}`);
    } catch (err) {
      try {
        def.unpatch(moduleExports);
      } catch {
        // the unpatch of a half-applied patch is best effort
      }
      outcome = { module: def.module, version, status: 'failed', detail: (err as Error).message };
      log.warnOnce(
        `failed-${label}-${def.feature}`,
        `${label} could not be patched (${(err as Error).message}); left untouched`,
      );
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

function namesOf(def: Definition): string[] {
  return isSubscriber(def) ? [def.feature, ...def.aliases] : [def.feature, def.module];
}

/** What the ES-module entry (src/esm.mts) hooks: the enabled patches' module names, and their patcher. */
export interface ModuleHandler {
  names: string[];
  /** Patches a loaded module's CommonJS-shaped exports (once per exports object); never throws. */
  onModule(moduleExports: unknown, name: string, basedir: string | undefined): void;
}
let moduleHandler: ModuleHandler | undefined;
/** The handler while the agent runs; undefined before it starts and while it is stopped. */
export function currentModuleHandler(): ModuleHandler | undefined {
  return running ? moduleHandler : undefined;
}

/** The patches by module name, while the agent runs; undefined while it is stopped. */
let byModule: Map<string, PatchDefinition[]> | undefined;
let running = false;
let runConfig: Config | undefined;

/**
 * The one patcher both hooks call. While stopped, the module is only remembered: the next start
 * patches it. The handler object lives as long as the process, because src/esm.mts keeps it.
 * Returns what `require` hands on: the exports, or a definition's replacement of them.
 */
function onModule(moduleExports: unknown, name: string, basedir: string | undefined): unknown {
  let out = moduleExports;
  try {
    const bare = name.startsWith('node:') ? name.slice(5) : name;
    const key = Object(moduleExports) as object;
    let version: string | undefined; // read once: the same exports come by several hooks
    if (seenExports.has(key)) {
      version = seenExports.get(key);
    } else {
      version = moduleVersion(name, basedir);
      seenExports.set(key, version);
      seen.push({ name: bare, exports: moduleExports, version });
    }
    seenAt.add(`${bare}\0${basedir ?? ''}`);
    if (!running || byModule === undefined || runConfig === undefined) return out;
    for (const def of byModule.get(bare) ?? []) {
      const outcome = applyPatch(def, moduleExports, version, runConfig);
      if (outcome.status === 'patched' && def.replace !== undefined) out = def.replace(out);
    }
  } catch (err) {
    log.warnOnce(`hook-${name}`, `${name}: patching failed (${(err as Error).message}); left untouched`);
    return moduleExports;
  }
  return out;
}

export interface Enabled {
  /** Unpatches everything applied (newest first), unsubscribes, unhooks; never throws. */
  disable(): void;
}

/**
 * Enables the definitions not named by HATCH_DISABLE: subscribes the subscribers, patches the
 * modules already seen (after a stop), and hooks the rest. Never throws for one definition's sake.
 */
export function enable(defs: readonly Definition[], config: Config): Enabled {
  const patches: PatchDefinition[] = [];
  const subscribers: SubscriberDefinition[] = [];
  for (const def of defs) {
    const name = isSubscriber(def) ? def.feature : def.module;
    if (disabled(config, namesOf(def))) {
      outcomes.push({ module: name, version: undefined, status: 'disabled', detail: 'HATCH_DISABLE' });
      log.debug(`${name} disabled by HATCH_DISABLE`);
    } else if (isSubscriber(def)) {
      subscribers.push(def);
    } else {
      patches.push(def);
    }
  }
  const known = new Set(defs.flatMap(namesOf));
  for (const name of config.disable) {
    // Once per process: a restart reads the same HATCH_DISABLE.
    if (!known.has(name))
      log.warnOnce(
        `disable-${name}`,
        `HATCH_DISABLE names "${name}", which is no patch; known: ${[...known].join(',')}`,
      );
  }

  const subscribed: SubscriberDefinition[] = [];
  for (const s of subscribers) {
    try {
      s.subscribe();
      subscribed.push(s);
      outcomes.push({ module: s.feature, version: undefined, status: 'subscribed', detail: s.channels.join(',') });
      log.debug(`${s.feature}: subscribed to ${s.channels.join(', ')}`);
    } catch (err) {
      outcomes.push({ module: s.feature, version: undefined, status: 'failed', detail: (err as Error).message });
      log.warnOnce(`subscribe-${s.feature}`, `${s.feature}: subscribing failed (${(err as Error).message}); left out`);
    }
  }

  byModule = new Map();
  for (const d of patches) byModule.set(d.module, [...(byModule.get(d.module) ?? []), d]);
  runConfig = config;
  running = true;
  // Modules seen in an earlier run: require-in-the-middle will not be handed them again.
  for (const m of seen) for (const def of byModule.get(m.name) ?? []) applyPatch(def, m.exports, m.version, config);

  let hook: { unhook(): void } | undefined;
  let unhookOthers: (() => void) | undefined;
  if (byModule.size > 0) {
    moduleHandler ??= { names: [...byModule.keys()], onModule };
    const { Hook } = loadRequireInTheMiddle();
    // What the callback returns is what `require` hands on (its type says the same exports).
    hook = new Hook(
      [...byModule.keys()],
      { internals: false },
      (moduleExports, name, basedir) => onModule(moduleExports, name, basedir) as typeof moduleExports,
    );
    unhookOthers = hookOtherLoads([...byModule.keys()], onModule, wasSeen);
  }
  return {
    disable() {
      running = false;
      byModule = undefined;
      runConfig = undefined;
      try {
        hook?.unhook();
      } catch (err) {
        log.warnOnce('unhook', `unhooking require failed: ${(err as Error).message}`);
      }
      try {
        unhookOthers?.();
      } catch (err) {
        log.warnOnce('unhook-others', `unhooking Module._load failed: ${(err as Error).message}`);
      }
      for (const { def, exports } of patchedNow.reverse()) {
        try {
          def.unpatch(exports);
        } catch (err) {
          log.warnOnce(
            `unpatch-${def.module}-${def.feature}`,
            `${def.module}: unpatching failed (${(err as Error).message})`,
          );
        }
      }
      for (const s of subscribed.reverse()) {
        try {
          s.unsubscribe();
        } catch (err) {
          log.warnOnce(`unsubscribe-${s.feature}`, `${s.feature}: unsubscribing failed (${(err as Error).message})`);
        }
      }
      patchedNow = [];
      applied = new WeakMap();
      outcomes.length = 0;
    },
  };
}
