/**
 * The app's own hatches (`hatch(name, { description }, handler)`, exported by src/index.ts): the
 * registry they are kept in, and the check of their names.
 *
 * - Kept in one Map on a global symbol, so an app that imports `hatch` from a second copy of the
 *   package (or through `--import` while `-r` loaded the agent) registers where the hatches look.
 * - A name is 1 to 64 of `[a-z0-9-]` and not taken: neither by another app hatch nor by a name the
 *   agent's hatches use or reserve (RESERVED). A refused name is one warning line and `false`,
 *   never a throw: an agent upgrade that adds a hatch of the app's name must not stop the app.
 * - Loaded at the first `hatch()` call (src/index.ts requires it then), and by the router at the
 *   first hatch request; a start-up without app hatches never loads it.
 * Limitations: a hatch cannot be removed or replaced once registered.
 */
import type * as http from 'node:http';
import { log } from './log';

/** What an app hatch's handler is given. */
export interface HatchContext {
  /** The query string, one value per name (the first, when a name repeats). */
  query: Record<string, string>;
  /** The incoming request (node:http's IncomingMessage; http2's compatibility request on an http2 server). */
  request: http.IncomingMessage;
}

export interface HatchOptions {
  /** What the hatch does, as the index of `/_hatch` lists it. */
  description?: string;
}

/** Answered as JSON (or, with `?format=html` or a browser, as a page showing that JSON). */
export type HatchHandler = (ctx: HatchContext) => unknown;

export interface AppHatch {
  name: string;
  description: string;
  handler: HatchHandler;
}

/**
 * The agent's own hatch names (first path segment after the prefix), and ones kept for hatches to
 * come. test/hatches/own.test.mjs checks that every built-in route is in this list.
 */
export const RESERVED: readonly string[] = [
  'health',
  'error',
  'statsd',
  'config',
  'requests',
  'request',
  'login',
  'logout',
  'report',
  'profile',
  'heap',
  'mail',
  'queue-ping',
  'debug',
];

export const NAME = /^[a-z0-9-]{1,64}$/;

const KEY = Symbol.for('hatch-agent.app-hatches');
type Holder = { [KEY]?: Map<string, AppHatch> };

/** The registered app hatches, in order of registration. */
export function appHatches(): Map<string, AppHatch> {
  const holder = globalThis as Holder;
  return (holder[KEY] ??= new Map());
}

/** Registers an app hatch; false (with one warning line) when it is refused. Never throws. */
export function registerHatch(name: unknown, options: unknown, handler: unknown): boolean {
  try {
    const shown = typeof name === 'string' ? JSON.stringify(name.slice(0, 80)) : String(typeof name);
    if (typeof name !== 'string' || !NAME.test(name)) {
      log.warn(`hatch(${shown}): a hatch name is 1 to 64 of [a-z0-9-]; this hatch is not served`);
      return false;
    }
    if (RESERVED.includes(name)) {
      log.warn(`hatch(${shown}): the name is taken by one of the agent's own hatches; this hatch is not served`);
      return false;
    }
    const hatches = appHatches();
    if (hatches.has(name)) {
      log.warn(`hatch(${shown}): the name is taken by a hatch registered before; this one is not served`);
      return false;
    }
    // hatch(name, handler) works too: the options are optional.
    let fn = handler;
    let opts = options;
    if (typeof options === 'function' && handler === undefined) {
      fn = options;
      opts = undefined;
    }
    if (typeof fn !== 'function') {
      log.warn(`hatch(${shown}): the handler is not a function; this hatch is not served`);
      return false;
    }
    const d = (opts as HatchOptions | undefined)?.description;
    const description = typeof d === 'string' ? d.slice(0, 500) : '';
    hatches.set(name, { name, description, handler: fn as HatchHandler });
    return true;
  } catch (err) {
    log.warn(`hatch(): registering failed (${(err as Error)?.message}); this hatch is not served`);
    return false;
  }
}
