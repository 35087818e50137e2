/**
 * `hatch-agent`: loading it starts the agent (once), and exports the small public API: request IDs
 * for code that runs outside incoming requests (scripts, queue workers), the ID of the process's
 * run (what code outside any request carries: src/run.ts), the app's own hatches (`hatch()`), and
 * `stop()` / `start()` to take the agent out of the process and put it back.
 */
import { boot, stopAgent, startAgent } from './register';
import type { HatchContext, HatchHandler, HatchOptions } from './app-hatches';

boot();

export { getRequestId, withRequestId } from './context';
export { getRunId } from './run';

/**
 * Takes the agent out: every patched function is the original again, nothing is subscribed, the
 * metrics are flushed. The app behaves as without the agent until `start()`. Never throws.
 */
export function stop(): void {
  stopAgent();
}

/**
 * Puts the agent back after `stop()`, with the configuration it started with; modules the app
 * loaded before are patched again. Returns whether the agent runs. Never throws.
 */
export function start(): boolean {
  return startAgent();
}

export type { HatchContext, HatchHandler, HatchOptions };

/**
 * Adds a hatch of the app's own: `GET <prefix>/<name>` (default `/_hatch/<name>`), behind the same
 * token as the agent's hatches, listed on `/_hatch` with its description. The handler runs inside the
 * hatch request's context (its queries carry the request's ID), gets `{ query, request }`, and what
 * it returns (or resolves to) is answered as JSON, or as a page in a browser; a throw or a rejection
 * answers 500 with its message. A name outside `[a-z0-9-]` (1 to 64), or taken, is refused with one
 * warning line: the result is false. Never throws.
 */
export function hatch(name: string, options: HatchOptions, handler: HatchHandler): boolean;
export function hatch(name: string, handler: HatchHandler): boolean;
export function hatch(name: string, options: HatchOptions | HatchHandler, handler?: HatchHandler): boolean {
  // Required here, not imported: a start-up without app hatches never loads it.
  return (require('./app-hatches') as typeof import('./app-hatches')).registerHatch(name, options, handler);
}
